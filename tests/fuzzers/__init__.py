"""Fuzzers for what comes from outside: device trees (boards.py), ELF programs (elf.py)
and a hostile guest's system calls (syscalls.py). Test tools, not part of mteemu: the
test suite runs a fixed-seed slice of each, scripts/fuzz runs them as long as you like."""
