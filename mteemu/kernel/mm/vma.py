"""Virtual memory areas (Linux's vm_area_struct) and the sorted list that holds them."""
from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Iterator, Optional

from mteemu.machine.physmem import PAGE_SHIFT

if TYPE_CHECKING:
    from mteemu.kernel.mm.shared import SharedObject

PROT_READ, PROT_WRITE, PROT_EXEC = 0x1, 0x2, 0x4
PROT_MTE = 0x20                  # arm64: the mapping is Tagged (VM_MTE)


@dataclass
class Vma:
    start: int
    end: int
    prot: int
    shared: bool = False
    # What backs the pages: None for private anonymous memory, else a SharedObject
    # (a file's page cache, a memfd, shared anonymous memory). A private mapping of
    # an object copies a page out of it on first touch.
    obj: Optional["SharedObject"] = None
    pgoff: int = 0               # page offset of `start` in obj
    name: str = ""               # "[stack]", "[heap]", a path... (for /proc/self/maps)
    growsdown: bool = False
    mte_allowed: bool = False    # VM_MTE_ALLOWED: anonymous, shmem/memfd or tmpfs memory
    file: object = None          # the held program file a loaded segment came from (its symbols)

    def contains(self, addr: int) -> bool:
        return self.start <= addr < self.end

    def page_index(self, addr: int) -> int:
        """Index of addr's page in the backing object/file."""
        return self.pgoff + ((addr - self.start) >> PAGE_SHIFT)

    def split(self, addr: int) -> tuple["Vma", "Vma"]:
        lo = replace(self, end=addr)
        hi = replace(self, start=addr, pgoff=self.page_index(addr))
        return lo, hi


class VmaList:
    """Non-overlapping VMAs sorted by start address."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._vmas: list[Vma] = []

    def __iter__(self) -> Iterator[Vma]:
        return iter(list(self._vmas))

    def __len__(self) -> int:
        return len(self._vmas)

    def find(self, addr: int) -> Optional[Vma]:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self._vmas[i].end:
            return self._vmas[i]
        return None

    def insert(self, vma: Vma) -> None:
        i = bisect.bisect_left(self._starts, vma.start)
        self._starts.insert(i, vma.start)
        self._vmas.insert(i, vma)

    def overlapping(self, start: int, end: int) -> list[Vma]:
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        out = []
        while i < len(self._vmas) and self._vmas[i].start < end:
            if self._vmas[i].end > start:
                out.append(self._vmas[i])
            i += 1
        return out

    def is_free(self, start: int, end: int) -> bool:
        return not self.overlapping(start, end)

    def _remove(self, vma: Vma) -> None:
        i = self._vmas.index(vma)
        del self._starts[i]
        del self._vmas[i]

    def carve(self, start: int, end: int) -> list[Vma]:
        """Remove [start, end) from the list, splitting VMAs at the edges; return the removed pieces."""
        removed = []
        for vma in self.overlapping(start, end):
            self._remove(vma)
            piece = vma
            # Each split leaves one more VMA holding the backing object (a file's page
            # cache, a memfd): it takes a reference, or unmapping the removed piece would
            # release the object under the piece that stays (its pages would read as zeros).
            if piece.start < start:
                lo, piece = piece.split(start)
                self.insert(lo)
                if lo.obj is not None:
                    lo.obj.hold()
            if piece.end > end:
                piece, hi = piece.split(end)
                self.insert(hi)
                if hi.obj is not None:
                    hi.obj.hold()
            removed.append(piece)
        return removed

    def gap_below(self, top: int, length: int, floor: int) -> Optional[int]:
        """Highest start address s with [s, s+length) free, s+length <= top, s >= floor."""
        end = top
        i = bisect.bisect_left(self._starts, top) - 1
        while True:
            vma = self._vmas[i] if i >= 0 else None
            low = vma.end if vma is not None else floor
            if vma is not None and vma.end > end:
                end = min(end, vma.start)
                i -= 1
                continue
            if end - max(low, floor) >= length:
                return end - length
            if vma is None:
                return None
            end = vma.start
            i -= 1
