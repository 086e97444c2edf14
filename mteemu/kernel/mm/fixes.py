"""The fixes the RFC makes for its races (§5), by name; each can be switched off
(`mteemu run --without FIX`, `mteemu races --without FIX`) to watch what it prevents.

  pfn-tag-save          copy_highpage() parks the tags of a page whose destination has no
                        tag storage under the destination's pfn (race A)
  fault-on-access       mprotect(PROT_MTE) marks present pages PAGE_METADATA_NONE, so
                        their storage is reserved on first access
  swap-prepare-restore  arch_swap_prepare_to_restore() parks swapped tags for a page that
                        has no storage (race B)
  set-pte-backstop      set_pte_at() makes a Tagged entry for a page without storage
                        fault-on-access (race C)
"""
from __future__ import annotations

FIXES = ("pfn-tag-save", "fault-on-access", "swap-prepare-restore", "set-pte-backstop")
