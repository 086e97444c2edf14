"""The Python "Linux": processes, the ELF loader, syscalls, signals."""
