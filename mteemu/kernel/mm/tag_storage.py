"""Dynamic tag storage: the RFC's arch/arm64/kernel/mte_tag_storage.c.

Tag storage is ordinary memory (pageblocks of the policy's type, METADATA or CMA) until
a data page needs its tags. Then the tag *block* holding them is reserved:
`alloc_contig_range()` takes the block's pages — migrating whatever data lives there —
and the block is refcounted by the data pages it serves (tag_blocks_reserved, an xarray
keyed by the block's first pfn). Freeing the last such page gives the block back.

Tags that have to wait for storage (a migration or a swap-in into a page without it)
are parked by pfn (tags_by_pfn) and restored when the storage is reserved.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Optional

from mteemu.board import bootchecks
from mteemu.board.model import Board
from mteemu.kernel.kmsg import KernelLog
from mteemu.kernel.mm.buddy import MigrateType
from mteemu.machine.physmem import PAGE_SHIFT


@dataclass(frozen=True)
class Policy:
    """Where tag storage lives in the page allocator and how reservation behaves: the
    RFC v1 design (MIGRATE_METADATA) or the v2/v3 one (MIGRATE_CMA)."""

    name: str
    pageblock_type: MigrateType
    tries: int                    # alloc_contig_range / cma_alloc_range retries on -EBUSY
    # v3: reservation at allocation is best effort; a page left without storage is
    # mapped fault-on-access and reserved (or migrated) on first access. v1: a page
    # whose block cannot be reserved goes back, another is tried, then OOM.
    best_effort: bool
    success: str                  # vmstat events, counted in pages
    fail: str
    release: str
    region_line: str
    enabled_line: str


METADATA = Policy("metadata", MigrateType.METADATA, tries=5, best_effort=False,
                  success="metadata_reserve_success", fail="metadata_reserve_fail",
                  release="metadata_reserve_free",
                  region_line="Found MTE tag storage region {size:#x}@{base:#x}, block size {block} pages",
                  enabled_line="MTE tag storage enabled")
CMA = Policy("cma", MigrateType.CMA, tries=3, best_effort=True,
             success="cma_alloc_success", fail="cma_alloc_fail", release="cma_release_success",
             region_line="Found tag storage region {base:#x}-{last:#x}, block size {block} pages",
             enabled_line="MTE tag storage region management enabled")
POLICIES = {p.name: p for p in (METADATA, CMA)}


@dataclass(frozen=True)
class Region:
    """One tag region, in pfns: the data it serves and where its tags live."""

    mem_start: int
    mem_end: int
    tag_start: int
    tag_end: int
    block_pages: int

    def block_of(self, pfn: int) -> Optional[int]:
        """tag_storage_find_block_in_region(): the first pfn of the block holding pfn's tags."""
        block = self.tag_start + ((pfn - self.mem_start) // 32) // self.block_pages * self.block_pages
        return block if block + self.block_pages <= self.tag_end else None


def dynamic_regions(board: Board, kmsg: KernelLog) -> list[Region]:
    """The tag regions the kernel may reuse (mte_tag_storage_init()'s checks, v1 wording);
    any failure disables management and leaves every region reserved (static)."""
    found = [tr for tr in board.tag_regions if tr.reusable]
    if not found:
        kmsg.log("No MTE tag storage regions detected")
        return []
    regions = []
    for i, tr in enumerate(found):
        # The checks are the validator's too (board/bootchecks.py): one verdict per board.
        problem = bootchecks.region_problem(i, tr.base, tr.size, tr.tagged.size, tr.block_size)
        if problem is not None:
            kmsg.log(problem[1])
            kmsg.log("MTE tag storage management disabled")
            return []
        regions.append(Region(tr.tagged.base >> PAGE_SHIFT, tr.tagged.end >> PAGE_SHIFT,
                              tr.base >> PAGE_SHIFT, tr.end >> PAGE_SHIFT,
                              bootchecks.block_size_pages(tr.block_size)))
    return regions


class TagStorage:
    """The reserved-block map and the parked tags. `take_block(first, end, tries)` is
    alloc_contig_range over [first, end); `give_block(first, end)` is free_contig_range."""

    def __init__(self, regions: list[Region], policy: Policy, events: Counter,
                 take_block: Callable[[int, int, int], bool], give_block: Callable[[int, int], None]) -> None:
        self.regions = regions
        self.policy = policy
        self.events = events
        self._take, self._give = take_block, give_block
        self.blocks: dict[int, int] = {}          # tag_blocks_reserved: block -> data pages it serves
        self.reserved: set[int] = set()           # PG_tag_storage_reserved
        self.parked: dict[int, bytes] = {}        # tags_by_pfn
        # A fatal signal is pending for the reserving task: alloc_contig_range() gives up
        # with -EINTR, which reserve reports as success (RFC v1 patch 34) without storage.
        self.interrupted: Callable[[], bool] = lambda: False

    def region_of(self, pfn: int) -> Optional[Region]:
        for r in self.regions:
            if r.mem_start <= pfn < r.mem_end:
                return r
        return None

    def block_of(self, pfn: int) -> Optional[int]:
        r = self.region_of(pfn)
        return None if r is None else r.block_of(pfn)

    def block_pages(self, block: int) -> int:
        for r in self.regions:
            if r.tag_start <= block < r.tag_end:
                return r.block_pages
        raise ValueError(f"{block:#x} is not tag storage")

    def is_tag_storage(self, pfn: int) -> bool:
        return any(r.tag_start <= pfn < r.tag_end for r in self.regions)

    def has_storage(self, pfn: int) -> bool:
        """page_tag_storage_reserved(). Memory no region serves needs none — except tag
        storage itself, which can never hold tags (the backstop must catch it mapped
        in a VM_MTE VMA, and the fault handler move it out)."""
        if pfn in self.reserved:
            return True
        return self.block_of(pfn) is None and not self.is_tag_storage(pfn)

    def reserve(self, pfn: int) -> bool:
        """reserve_tag_storage() for one data page (order 0: one block). True without
        storage when interrupted by a fatal signal (the caller checks has_storage)."""
        if self.has_storage(pfn):
            return True
        block = self.block_of(pfn)
        assert block is not None          # has_storage() is True for pages no block covers
        bsp = self.block_pages(block)
        if block not in self.blocks:
            if self.interrupted():
                return True
            ok = self._take(block, block + bsp, self.policy.tries)
            if not ok:
                self.events[self.policy.fail] += bsp
                return False
            self.events[self.policy.success] += bsp
            self.blocks[block] = 0
        self.blocks[block] += 1
        self.reserved.add(pfn)
        return True

    def release(self, pfn: int) -> None:
        """free_tag_storage(): drop pfn's reference; the last one frees the block."""
        self.parked.pop(pfn, None)
        if pfn not in self.reserved:
            return
        self.reserved.discard(pfn)
        block = self.block_of(pfn)
        assert block is not None          # only pages with a block are ever reserved
        self.blocks[block] -= 1
        if not self.blocks[block]:
            del self.blocks[block]
            bsp = self.block_pages(block)
            self._give(block, block + bsp)
            self.events[self.policy.release] += bsp
