"""Boards: the physical memory map a machine is built from."""
