"""The board: physical memory regions and where their MTE tags are kept.

This layer knows nothing about Unicorn or Linux. Device trees are parsed into these
objects (a later layer); a built-in default board exists for when none is given.
"""
from __future__ import annotations

from dataclasses import dataclass, field

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class MemRegion:
    """A contiguous range of DRAM, as a device tree `memory` node describes it."""

    base: int
    size: int
    numa_node: int = 0
    name: str = "memory"

    @property
    def end(self) -> int:
        return self.base + self.size

    def contains(self, pa: int, length: int = 1) -> bool:
        return self.base <= pa and pa + length <= self.end


@dataclass(frozen=True)
class TagRegion:
    """Tag storage: 4 bits per 16-byte granule of `tagged`, i.e. 1/32 of its size."""

    base: int
    size: int
    tagged: MemRegion
    block_size: int = 4096
    name: str = "tag-storage"

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass(frozen=True)
class Board:
    name: str
    memory: tuple[MemRegion, ...]
    tag_regions: tuple[TagRegion, ...] = field(default=())

    @property
    def total_memory(self) -> int:
        return sum(r.size for r in self.memory)

    def region_of(self, pa: int) -> MemRegion | None:
        for r in self.memory:
            if r.contains(pa):
                return r
        return None


def default_board() -> Board:
    """The built-in board: 1 GiB of DRAM where the Arm base memory map puts it."""
    return Board(name="mteemu-default", memory=(MemRegion(base=0x8000_0000, size=1 * GiB),))
