"""A simple physical page allocator with reference counts.

Stand-in for the buddy allocator of a later issue: order-0 pages only, a free stack
plus a bump pointer per memory bank, so allocation cost does not grow with the board
(no scan of every page) and untouched RAM is never visited. Pages that come from the
bump pointer are known to be zero (fresh host memory); recycled pages are zeroed
when handed out again, as Linux does for __GFP_ZERO user pages.
"""
from __future__ import annotations

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
        # (next pfn, end pfn) per allocatable range, consumed from the bottom.
        self._bump = [[first, end] for first, end in physmem.allocatable if first < end]
        self._free: list[int] = []
        self._refs: dict[int, int] = {}
        self.total_pages = sum(end - first for first, end in self._bump)
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
        if self._free:
            pfn = self._free.pop()
            self.physmem.zero_page(pfn)
        else:
            for bump in self._bump:
                if bump[0] < bump[1]:
                    pfn = bump[0]
                    bump[0] += 1
                    break
            else:  # pragma: no cover - total_pages accounting forbids it
                raise OutOfMemory()
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
            self._free.append(pfn)

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
