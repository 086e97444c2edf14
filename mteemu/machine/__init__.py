"""The hardware: physical memory, the CPU (Unicorn), and (later) MTE tag storage.

Nothing in this package imports the kernel: the kernel registers callbacks.
"""
