"""The hardware: physical memory, its MTE tag storage, the CPU (Unicorn) and what runs
beside it (the MTE instructions, tag checks, the C hot path, debugger hooks).

Nothing in this package imports the kernel: the kernel registers callbacks.
"""
