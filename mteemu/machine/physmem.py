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

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = ~(PAGE_SIZE - 1)
ZERO_PAGE = bytes(PAGE_SIZE)


class _Bank:
    __slots__ = ("region", "buf", "view", "first_pfn", "end_pfn")

    def __init__(self, region: MemRegion) -> None:
        self.region = region
        self.buf = mmap.mmap(-1, region.size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.view = memoryview(self.buf)
        self.first_pfn = region.base >> PAGE_SHIFT
        self.end_pfn = region.end >> PAGE_SHIFT

    def host_address(self) -> int:
        return ctypes.addressof(ctypes.c_char.from_buffer(self.buf))


class PhysMem:
    """The board's DRAM as host memory. Page frame numbers (pfn) are PA >> 12."""

    def __init__(self, board: Board) -> None:
        for r in board.memory:
            if r.base % PAGE_SIZE or r.size % PAGE_SIZE or r.size <= 0:
                raise ValueError(f"memory region {r.base:#x}+{r.size:#x} is not page aligned")
        self.banks = [_Bank(r) for r in board.memory]

    def map_into(self, uc) -> None:  # noqa: ANN001 - a unicorn.Uc
        from unicorn import UC_PROT_ALL

        for bank in self.banks:
            uc.mem_map_ptr(bank.region.base, bank.region.size, UC_PROT_ALL, bank.host_address())

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

    def copy_page(self, dst_pfn: int, src_pfn: int) -> None:
        self.page(dst_pfn)[:] = self.page(src_pfn)

    def close(self) -> None:
        for bank in self.banks:
            bank.view.release()
