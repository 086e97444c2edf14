"""The DRAM windows of Arm's base memory maps (ARM DEN 0001C, "Principles of ARM Memory
Maps"): 2–4 GB, 34–64 GB, 544 GB–1 TB and the larger windows of the same pattern
(docs/reference/tag-storage-rfc.md §7; the 44- and 48-bit ones are from that pattern)."""
from __future__ import annotations

from typing import Optional

GiB = 1 << 30

# (name, start, end): end exclusive.
DRAM_WINDOWS = (
    ("2GB-4GB", 0x8000_0000, 0x1_0000_0000),
    ("34GB-64GB", 0x8_8000_0000, 0x10_0000_0000),
    ("544GB-1TB", 0x88_0000_0000, 0x100_0000_0000),
    ("8.5TB-16TB", 0x880_0000_0000, 0x1000_0000_0000),
    ("136TB-256TB", 0x8800_0000_0000, 0x1_0000_0000_0000),
)


def window_of(start: int, end: int) -> Optional[tuple[str, int, int]]:
    """The window that holds all of [start, end), or None."""
    for w in DRAM_WINDOWS:
        if w[1] <= start and end <= w[2]:
            return w
    return None


def windows_touched(start: int, end: int) -> list[tuple[str, int, int]]:
    return [w for w in DRAM_WINDOWS if start < w[2] and w[1] < end]


def fmt_range(start: int, end: int) -> str:
    return f"{start:#x}-{end - 1:#x}"


def fmt_size(size: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size:#x} bytes"
