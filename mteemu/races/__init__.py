"""The race explorer (`mteemu races`): the RFC's races between migration, mprotect(PROT_MTE),
swap-in and copy_highpage, replayed step by step against the memory-manager model in every
interleaving, with and without the fixes that guard them."""
