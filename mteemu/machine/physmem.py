"""Physical RAM: one host buffer per board memory region, mapped into Unicorn.

Buffers are anonymous host mappings, so RAM the guest never touches costs the host
nothing (the kernel zero-fills on first touch). Unicorn sees them through
`mem_map_ptr` at their physical addresses; the kernel model reads and writes them
directly through memoryviews, which is far cheaper than `uc.mem_read`.
"""
from __future__ import annotations

import ctypes
import mmap

from mteemu.board.model import Board, MemRegion
from mteemu.errors import BoardError

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = ~(PAGE_SIZE - 1)
ZERO_PAGE = bytes(PAGE_SIZE)
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)   # Linux's value; Python < 3.12 lacks it


class _Bank:
    __slots__ = ("region", "buf", "view", "first_pfn", "end_pfn")

    def __init__(self, region: MemRegion) -> None:
        self.region = region
        # MAP_NORESERVE: a board's DRAM may be larger than the host's; only touched
        # pages cost anything.
        try:
            self.buf = mmap.mmap(-1, region.size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)
        except (OSError, OverflowError) as e:
            raise BoardError(f"{region.name}: cannot reserve {region.size:#x} bytes of host memory for it "
                             f"({e})") from None
        self.view = memoryview(self.buf)
        self.first_pfn = region.base >> PAGE_SHIFT
        self.end_pfn = region.end >> PAGE_SHIFT

    def host_address(self) -> int:
        return ctypes.addressof(ctypes.c_char.from_buffer(self.buf))


def _dram_regions(board: Board) -> list[MemRegion]:
    """The board's memory, plus tag storage outside it as DRAM of its own; page aligned and
    disjoint, or the board cannot be built."""
    regions = list(board.memory)
    for tr in board.tag_regions:
        if not any(r.contains(tr.base, tr.size) for r in board.memory):
            regions.append(MemRegion(base=tr.base & PAGE_MASK, size=(tr.end - (tr.base & PAGE_MASK) + PAGE_SIZE - 1)
                                     & PAGE_MASK, name=tr.name))
    for r in regions:
        if r.base % PAGE_SIZE or r.size % PAGE_SIZE or r.size <= 0:
            raise BoardError(f"memory region {r.name} {r.base:#x}+{r.size:#x} is not page aligned")
    spans = sorted((r.base, r.end, r.name) for r in regions)
    for (_a, a_end, a_name), (b, _b_end, b_name) in zip(spans, spans[1:]):
        if b < a_end:
            raise BoardError(f"{a_name} and {b_name} overlap: the board cannot be built")
    return regions


class PhysMem:
    """The board's DRAM as host memory. Page frame numbers (pfn) are PA >> 12.

    Tag storage that lies outside the kernel's memory (a carve-out, or the v1/v2
    bindings' own ranges) is DRAM too and gets a bank of its own. Tag storage is never
    handed out as ordinary pages (`allocatable`): reusing it is the tag-storage
    manager's job (`tag_storage`)."""

    def __init__(self, board: Board) -> None:
        regions = _dram_regions(board)
        self.banks = [_Bank(r) for r in regions]
        self.tagged_regions = tuple(dict.fromkeys(tr.tagged for tr in board.tag_regions))
        # (first pfn, end pfn) of the kernel's memory minus every tag region; tag regions
        # the kernel may reuse are `tag_storage` (onlined by the tag-storage manager).
        self.allocatable: list[tuple[int, int]] = []
        for r in board.memory:
            pieces = [(r.base, r.end)]
            for tr in board.tag_regions:
                pieces = [p for a, b in pieces for p in ((a, min(b, tr.base)), (max(a, tr.end), b)) if p[0] < p[1]]
            self.allocatable += [((a + PAGE_SIZE - 1) >> PAGE_SHIFT, b >> PAGE_SHIFT) for a, b in pieces]
        self.tag_storage = [(tr.base >> PAGE_SHIFT, tr.end >> PAGE_SHIFT) for tr in board.tag_regions
                            if tr.reusable and tr.base % PAGE_SIZE == 0 and tr.size % PAGE_SIZE == 0]

    def map_into(self, uc, offset: int = 0, regions: tuple[MemRegion, ...] | None = None) -> None:  # noqa: ANN001
        """Map RAM into a Unicorn engine at PA + offset (an alias window when offset != 0)."""
        from unicorn import UC_PROT_ALL

        for bank in self.banks:
            if regions is None or bank.region in regions:
                uc.mem_map_ptr(offset + bank.region.base, bank.region.size, UC_PROT_ALL, bank.host_address())

    def view(self, pa: int, length: int) -> memoryview:
        """A writable view of [pa, pa+length), which must lie in one bank."""
        bank = self._bank(pa >> PAGE_SHIFT)
        off = pa - bank.region.base
        if off + length > bank.region.size:
            raise IndexError(f"{pa:#x}+{length:#x} crosses the end of its memory bank")
        return bank.view[off:off + length]

    def host_address_of(self, pa: int) -> int:
        """The host address of physical address pa (for the native hot path)."""
        bank = self._bank(pa >> PAGE_SHIFT)
        return bank.host_address() + (pa - bank.region.base)

    @staticmethod
    def host_address(view: memoryview) -> int:
        """The host address of a writable view's first byte (tag storage for the native path)."""
        return ctypes.addressof(ctypes.c_char.from_buffer(view))

    def _bank(self, pfn: int) -> _Bank:
        for bank in self.banks:
            if bank.first_pfn <= pfn < bank.end_pfn:
                return bank
        raise IndexError(f"pfn {pfn:#x} is not RAM")

    def page(self, pfn: int) -> memoryview:
        """A writable view of one physical page."""
        bank = self._bank(pfn)
        off = (pfn - bank.first_pfn) << PAGE_SHIFT
        return bank.view[off:off + PAGE_SIZE]

    def zero_page(self, pfn: int) -> None:
        self.page(pfn)[:] = ZERO_PAGE

    def discard_page(self, pfn: int) -> None:
        """Give a free page's host memory back (MADV_DONTNEED): it reads back as zeros, so
        freed pages cost the host nothing and need no zeroing when allocated again."""
        bank = self._bank(pfn)
        bank.buf.madvise(mmap.MADV_DONTNEED, (pfn - bank.first_pfn) << PAGE_SHIFT, PAGE_SIZE)

    def copy_page(self, dst_pfn: int, src_pfn: int) -> None:
        self.page(dst_pfn)[:] = self.page(src_pfn)

    def close(self) -> None:
        for bank in self.banks:
            bank.view.release()
