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
    # Described by an arm,mte-tag-storage node, so the kernel may reuse it as memory
    # (the RFC); False for a firmware carve-out the kernel never sees (static MTE).
    reusable: bool = True

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass(frozen=True)
class Board:
    """`memory` is the DRAM the kernel may use; `tag_regions` say where the tags of
    (parts of) it live. Tag storage outside `memory` is DRAM the kernel never sees
    (a firmware carve-out, "static" MTE)."""

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


def with_tag_carveout(name: str, dram: MemRegion) -> Board:
    """A board whose tag storage is hidden at the top of its DRAM (classic static MTE):
    the kernel sees the lower 32/33 of the bank, its tags (1/32 of that) sit above it."""
    tags = (dram.size // 33 + 0xFFF) & ~0xFFF
    visible = MemRegion(base=dram.base, size=(dram.size - tags) & ~0xFFF, numa_node=dram.numa_node, name=dram.name)
    tag_size = visible.size // 32
    return Board(name=name, memory=(visible,),
                 tag_regions=(TagRegion(base=visible.end, size=tag_size, tagged=visible, name="tag-carveout",
                                           reusable=False),))


def default_board() -> Board:
    """The built-in board: 1 GiB of DRAM where the Arm base memory map puts it, the
    top 31 MiB of it holding the tags of the rest."""
    return with_tag_carveout("mteemu-default", MemRegion(base=0x8000_0000, size=1 * GiB))


def small_reuse_board() -> Board:
    """dts/small-v3.dts as an object: 64 MiB of tagged DRAM at 0x8000_0000 and its 2 MiB
    of tag storage right above it, which the kernel reuses as memory (RFC v3 binding)."""
    data = MemRegion(base=0x8000_0000, size=64 * MiB, name="/memory@80000000")
    tags = MemRegion(base=0x8400_0000, size=2 * MiB, name="/memory@84000000")
    return Board("small-v3", memory=(data, tags),
                 tag_regions=(TagRegion(tags.base, tags.size, data, name="/reserved-memory/tag-storage@84000000"),))
