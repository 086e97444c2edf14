"""An address space (Linux's mm_struct): VMAs, page tables and the page-fault handler.

The page table maps a virtual page number to a physical page; Unicorn's TLB-fill
hook calls `fault()` for every TLB miss, which is where demand paging, copy-on-write
and permission checks happen — the same decisions as Linux's handle_mm_fault().
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Optional

from mteemu.kernel.mm.pagealloc import OutOfMemory, PageAllocator
from mteemu.kernel.mm.shared import SharedObject
from mteemu.kernel.mm.vma import PROT_EXEC, PROT_MTE, PROT_READ, PROT_WRITE, Vma, VmaList
from mteemu.machine.cpu import ACCESS_FETCH, ACCESS_WRITE
from mteemu.machine.physmem import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE

TASK_SIZE = 1 << 48            # arm64, 48-bit VA, 4 KiB pages
TOP_BYTE_MASK = (1 << 56) - 1  # Top Byte Ignore: bits 63:56 are not part of the address

# Fault results (anything that is not a translation).
FAULT_MAPERR, FAULT_ACCERR, FAULT_BUS, FAULT_OOM = 1, 2, 3, 4


class Pte:
    """A page-table entry. `wp` (write-protected) means: the VMA may be writable, but the
    first write must come back to the fault handler — for copy-on-write of private
    pages, and to mark shared file pages dirty."""

    __slots__ = ("pfn", "wp")

    def __init__(self, pfn: int, wp: bool) -> None:
        self.pfn = pfn
        self.wp = wp


def untag(addr: int) -> int:
    return addr & TOP_BYTE_MASK


class Mm:
    _next_id = 1

    def __init__(self, alloc: PageAllocator) -> None:
        self.alloc = alloc
        self.physmem = alloc.physmem
        self.vmas = VmaList()
        self.ptes: dict[int, Pte] = {}
        self.brk_start = self.brk = 0
        self.mmap_base = 0
        self.stack_top = 0
        self.id = Mm._next_id
        Mm._next_id += 1
        # Called whenever a translation may have been cached that is now stale.
        self.flush: Callable[[], None] = lambda: None

    # -- the fault handler ---------------------------------------------------------
    def fault(self, vaddr: int, access: int) -> tuple[int, int, bool] | int:
        """Resolve an access: (physical address of the page, uc perms, Tagged) or a FAULT_* code."""
        addr = vaddr & TOP_BYTE_MASK
        if addr >= TASK_SIZE:
            return FAULT_MAPERR
        vma = self.vmas.find(addr)
        if vma is None:
            return FAULT_MAPERR
        prot = vma.prot
        if access == ACCESS_WRITE:
            if not prot & PROT_WRITE:
                return FAULT_ACCERR
        elif access == ACCESS_FETCH:
            if not prot & PROT_EXEC:
                return FAULT_ACCERR
        elif not prot & (PROT_READ | PROT_WRITE):
            return FAULT_ACCERR
        vpn = addr >> PAGE_SHIFT
        pte = self.ptes.get(vpn)
        try:
            if pte is None:
                pte = self._fault_in(vma, addr & PAGE_MASK)
                if isinstance(pte, int):
                    return pte
                self.ptes[vpn] = pte
            if access == ACCESS_WRITE and pte.wp:
                self._write_fault(vma, addr, pte)
        except OutOfMemory:
            return FAULT_OOM
        perms = prot & (PROT_READ | PROT_EXEC)
        if prot & PROT_WRITE:
            perms |= PROT_READ
            if not pte.wp:
                perms |= PROT_WRITE
        tagged = bool(prot & PROT_MTE)
        if tagged:
            self.alloc.ensure_tags(pte.pfn)
        return pte.pfn << PAGE_SHIFT, perms, tagged

    def _fault_in(self, vma: Vma, page_addr: int) -> Pte | int:
        obj: Optional[SharedObject] = vma.obj
        if obj is None:
            return Pte(self.alloc.alloc(), False)
        idx = vma.page_index(page_addr)
        if obj.host_fd is not None and (idx << PAGE_SHIFT) >= obj.size:
            return FAULT_BUS   # beyond the end of the file: SIGBUS, as Linux
        src = obj.page(idx)
        if vma.shared:
            self.alloc.get(src)
            return Pte(src, obj.tracks_dirty)
        pfn = self.alloc.alloc()
        self.alloc.copy_page(pfn, src)
        return Pte(pfn, False)

    def _write_fault(self, vma: Vma, addr: int, pte: Pte) -> None:
        if vma.shared:
            vma.obj.dirty.add(vma.page_index(addr & PAGE_MASK))
        elif self.alloc.refcount(pte.pfn) > 1:
            new = self.alloc.alloc()
            self.alloc.copy_page(new, pte.pfn)
            self.alloc.put(pte.pfn)
            pte.pfn = new
            # Other tagged aliases of this page may still hold the old translation.
            self.flush()
        pte.wp = False

    # -- mapping changes -----------------------------------------------------------------
    def map(self, vma: Vma) -> None:
        """Insert a VMA over [start, end), replacing whatever was there (MAP_FIXED)."""
        self.unmap(vma.start, vma.end)
        if vma.obj is not None:
            vma.obj.hold()
        self.vmas.insert(vma)

    def _drop_ptes(self, start: int, end: int) -> None:
        lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
        if hi - lo > len(self.ptes):
            vpns = [v for v in self.ptes if lo <= v < hi]
        else:
            vpns = [v for v in range(lo, hi) if v in self.ptes]
        for vpn in vpns:
            self.alloc.put(self.ptes.pop(vpn).pfn)

    def unmap(self, start: int, end: int) -> None:
        pieces = self.vmas.carve(start, end)
        if not pieces:
            return
        for piece in pieces:
            if piece.obj is not None and piece.shared:
                piece.obj.writeback(piece.pgoff, piece.page_index(piece.end - 1))
            self._drop_ptes(piece.start, piece.end)
            if piece.obj is not None:
                piece.obj.drop()
        self.flush()

    def discard(self, start: int, end: int) -> None:
        """MADV_DONTNEED: drop the pages; private anonymous memory reads back as zero."""
        for vma in self.vmas.overlapping(start, end):
            lo, hi = max(start, vma.start), min(end, vma.end)
            if vma.obj is not None and vma.shared:
                vma.obj.writeback(vma.page_index(lo), vma.page_index(hi - 1))
            self._drop_ptes(lo, hi)
        self.flush()

    def protect(self, start: int, end: int, prot: int) -> None:
        for piece in self.vmas.carve(start, end):
            # VM_MTE is sticky: arm64's VM_ARCH_CLEAR drops only BTI (mm/mprotect.c).
            piece.prot = prot | (piece.prot & PROT_MTE)
            self.vmas.insert(piece)
        self.flush()

    def move(self, old_start: int, old_end: int, new_start: int) -> None:
        """mremap: move the VMAs and their pages (data stays in the same physical pages)."""
        self.unmap(new_start, new_start + (old_end - old_start))
        delta = new_start - old_start
        for piece in self.vmas.carve(old_start, old_end):
            self.vmas.insert(replace(piece, start=piece.start + delta, end=piece.end + delta))
        lo, hi = old_start >> PAGE_SHIFT, old_end >> PAGE_SHIFT
        moved = {v: self.ptes.pop(v) for v in [v for v in self.ptes if lo <= v < hi]}
        dv = delta >> PAGE_SHIFT
        for vpn, pte in moved.items():
            self.ptes[vpn + dv] = pte
        self.flush()

    def get_unmapped_area(self, length: int, hint: int = 0) -> Optional[int]:
        """Top-down placement below mmap_base, as Linux's default layout; honour a free hint."""
        if hint and hint + length <= TASK_SIZE and hint >= PAGE_SIZE * 16:
            hint &= PAGE_MASK
            if self.vmas.is_free(hint, hint + length):
                return hint
        return self.vmas.gap_below(self.mmap_base, length, PAGE_SIZE * 16)

    # -- whole address space ---------------------------------------------------------------
    def fork(self) -> "Mm":
        """dup_mmap(): share every page; private pages become copy-on-write in both."""
        child = Mm(self.alloc)
        child.flush = self.flush          # the same CPU caches the child's translations
        child.brk_start, child.brk = self.brk_start, self.brk
        child.mmap_base, child.stack_top = self.mmap_base, self.stack_top
        for vma in self.vmas:
            copy = replace(vma)
            if copy.obj is not None:
                copy.obj.hold()
            child.vmas.insert(copy)
            for vpn in range(vma.start >> PAGE_SHIFT, vma.end >> PAGE_SHIFT) \
                    if (vma.end - vma.start) >> PAGE_SHIFT <= len(self.ptes) else \
                    [v for v in self.ptes if vma.start >> PAGE_SHIFT <= v < vma.end >> PAGE_SHIFT]:
                pte = self.ptes.get(vpn)
                if pte is None:
                    continue
                if not vma.shared:
                    pte.wp = True
                self.alloc.get(pte.pfn)
                child.ptes[vpn] = Pte(pte.pfn, pte.wp)
        self.flush()
        return child

    def destroy(self) -> None:
        for vma in self.vmas:
            if vma.obj is not None and vma.shared:
                vma.obj.writeback()
        for pte in self.ptes.values():
            self.alloc.put(pte.pfn)
        self.ptes.clear()
        for vma in self.vmas:
            if vma.obj is not None:
                vma.obj.drop()
        self.vmas = VmaList()
