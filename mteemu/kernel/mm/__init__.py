"""The memory manager: physical pages, address spaces, page faults."""
