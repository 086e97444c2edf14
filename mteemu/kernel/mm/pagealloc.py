"""Pages for guest memory: the buddy allocator (buddy.py) behind reference counts,
zeroing (user pages are __GFP_ZERO) and PG_mte_tagged.

Every guest page is an order-0 MOVABLE allocation. Tag storage is not handed out yet
(PhysMem.allocatable leaves it out); reusing it for data is the tag-storage manager's.
"""
from __future__ import annotations

from mteemu.kernel.mm.buddy import BuddyAllocator, MigrateType
from mteemu.kernel.mm.buddy import OutOfMemory as _BuddyOOM
from mteemu.machine.physmem import PAGE_SHIFT, PhysMem
from mteemu.machine.tagstore import TagStore


class OutOfMemory(Exception):
    """No free physical page: the kernel turns this into ENOMEM or an OOM kill."""


class PageAllocator:
    def __init__(self, physmem: PhysMem, tags: TagStore, limit_pages: int | None = None) -> None:
        self.physmem = physmem
        self.tags = tags
        # PG_mte_tagged: pages whose tags have been initialised since they were allocated.
        self.mte_tagged: set[int] = set()
        self.buddy = BuddyAllocator([(a, b) for a, b in physmem.allocatable if a < b])
        self._refs: dict[int, int] = {}
        self.total_pages = self.buddy.managed
        if limit_pages is not None:
            self.total_pages = min(self.total_pages, limit_pages)

    @property
    def used_pages(self) -> int:
        return len(self._refs)

    @property
    def free_pages(self) -> int:
        return self.total_pages - len(self._refs)

    def alloc(self) -> int:
        """One zeroed page with a reference count of 1."""
        if len(self._refs) >= self.total_pages:
            raise OutOfMemory()
        try:
            pfn = self.buddy.alloc(0, MigrateType.MOVABLE)
        except _BuddyOOM:
            raise OutOfMemory() from None
        self.physmem.zero_page(pfn)
        self._refs[pfn] = 1
        return pfn

    def get(self, pfn: int) -> None:
        self._refs[pfn] += 1

    def put(self, pfn: int) -> None:
        n = self._refs[pfn] - 1
        if n:
            self._refs[pfn] = n
        else:
            del self._refs[pfn]
            self.mte_tagged.discard(pfn)
            self.buddy.free(pfn)

    def ensure_tags(self, pfn: int) -> None:
        """mte_sync_tags(): the first Tagged mapping of a page starts its tags at 0 (the
        data is kept: mprotect(PROT_MTE) on a used page keeps its contents)."""
        if pfn not in self.mte_tagged:
            self.tags.clear_page(pfn)
            self.mte_tagged.add(pfn)

    def copy_page(self, dst: int, src: int) -> None:
        """copy_highpage(): the data, and the tags if the source has any."""
        self.physmem.copy_page(dst, src)
        if src in self.mte_tagged:
            self.tags.copy_page(dst, src)
            self.mte_tagged.add(dst)

    def refcount(self, pfn: int) -> int:
        return self._refs.get(pfn, 0)


def pfn_to_pa(pfn: int) -> int:
    return pfn << PAGE_SHIFT
