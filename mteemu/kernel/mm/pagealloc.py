"""A simple physical page allocator with reference counts.

Stand-in for the buddy allocator of a later issue: order-0 pages only, a free stack
plus a bump pointer per memory bank, so allocation cost does not grow with the board
(no scan of every page) and untouched RAM is never visited. Pages that come from the
bump pointer are known to be zero (fresh host memory); recycled pages are zeroed
when handed out again, as Linux does for __GFP_ZERO user pages.
"""
from __future__ import annotations

from mteemu.machine.physmem import PAGE_SHIFT, PhysMem


class OutOfMemory(Exception):
    """No free physical page: the kernel turns this into ENOMEM or an OOM kill."""


class PageAllocator:
    def __init__(self, physmem: PhysMem, limit_pages: int | None = None) -> None:
        self.physmem = physmem
        # (next pfn, end pfn) per bank, consumed from the bottom.
        self._bump = [[b.first_pfn, b.end_pfn] for b in physmem.banks]
        self._free: list[int] = []
        self._refs: dict[int, int] = {}
        self.total_pages = sum(b.end_pfn - b.first_pfn for b in physmem.banks)
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
            self._free.append(pfn)

    def refcount(self, pfn: int) -> int:
        return self._refs.get(pfn, 0)


def pfn_to_pa(pfn: int) -> int:
    return pfn << PAGE_SHIFT
