"""An address space (Linux's mm_struct): VMAs, page tables and the page-fault handler.

The page table maps a virtual page number to a physical page; Unicorn's TLB-fill
hook calls `fault()` for every TLB miss, which is where demand paging, copy-on-write
and permission checks happen — the same decisions as Linux's handle_mm_fault().
"""
from __future__ import annotations

import enum
from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Optional

from mteemu.kernel.mm import migrate, swap
from mteemu.kernel.mm.pagealloc import OutOfMemory, PageAllocator
from mteemu.kernel.mm.pagetable import PageTable
from mteemu.kernel.mm.pagetable import Pte as Pte
from mteemu.kernel.mm.shared import SharedObject
from mteemu.kernel.mm.vma import PROT_EXEC, PROT_MTE, PROT_READ, PROT_WRITE, Vma, VmaList
from mteemu.machine.arm64 import ACCESS_FETCH, ACCESS_READ, ACCESS_WRITE, Translation
from mteemu.machine.physmem import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from mteemu.machine.allochist import History

TASK_SIZE = 1 << 48            # arm64, 48-bit VA, 4 KiB pages
TOP_BYTE_MASK = (1 << 56) - 1  # Top Byte Ignore: bits 63:56 are not part of the address

class Fault(enum.IntEnum):
    """Why a fault() gave no translation (handle_mm_fault()'s VM_FAULT_* and the signal)."""
    MAPERR = 1        # no mapping: SIGSEGV/SEGV_MAPERR
    ACCERR = 2        # the mapping forbids the access: SIGSEGV/SEGV_ACCERR
    BUS = 3           # beyond the end of a file: SIGBUS
    OOM = 4           # no memory: the OOM killer
    RETRY = 5         # a fatal signal interrupted it: replay the access


FAULT_MAPERR, FAULT_ACCERR, FAULT_BUS, FAULT_OOM, FAULT_RETRY = Fault.MAPERR, Fault.ACCERR, Fault.BUS, Fault.OOM, \
    Fault.RETRY


class _Retry(Exception):
    """VM_FAULT_RETRY: the access must be replayed (a fatal signal interrupted it)."""


def untag(addr: int) -> int:
    return addr & TOP_BYTE_MASK


# The protection an access needs (a read: readable or writable, as arm64 has no write-only
# pages: Linux's PROT_WRITE implies read).
_NEEDED = {ACCESS_READ: PROT_READ | PROT_WRITE, ACCESS_WRITE: PROT_WRITE, ACCESS_FETCH: PROT_EXEC}


class Mm:
    _next_id = 1

    def __init__(self, alloc: PageAllocator) -> None:
        self.alloc = alloc
        self.physmem = alloc.physmem
        self.vmas = VmaList()
        self.pt = PageTable(alloc, self, lambda addr: self.vmas.find(addr))
        self.ptes = self.pt.ptes                # vpn -> Pte (read by /proc, ptrace, swap...)
        self.pt_pages = self.pt.pt_pages
        self.brk_start = self.brk = 0
        self.mmap_base = 0
        self.stack_top = 0
        self.sigreturn_trampoline = 0           # the [vdso] stand-in's sigreturn code (kernel.py)
        self.alloc_history: "Optional[History]" = None   # its allocator calls (kernel/allocwatch.py)
        self.id = Mm._next_id
        Mm._next_id += 1
        self.owner_name = f"mm {self.id}"       # for reports: set to the process by the kernel
        # Called whenever a translation may have been cached that is now stale.
        self.flush: Callable[[], None] = lambda: None
        # Bumped whenever a translation of this mm may change (the CPU's TLB is flushed
        # then too): what uaccess.UserMemory caches is valid while it stays the same.
        self.gen = 0

    def changed(self) -> None:
        """Translations may differ from now on: every cache of them is dropped."""
        self.gen += 1
        self.flush()

    # -- the fault handler ---------------------------------------------------------
    def fault(self, vaddr: int, access: int) -> Translation | Fault:
        """Resolve an access: (physical address of the page, uc perms, Tagged) or a FAULT_* code."""
        addr = vaddr & TOP_BYTE_MASK
        if addr >= TASK_SIZE:
            return FAULT_MAPERR
        if access == ACCESS_FETCH and vaddr >> 56:
            # TBI is for data only: Linux sets TCR_EL1.TBID0 (tcr_tbid0_enabled()), so a
            # tagged PC is a non-canonical instruction address: a translation fault.
            return FAULT_MAPERR
        vma = self.vmas.find(addr)
        if vma is None:
            return FAULT_MAPERR
        prot = vma.prot
        if not prot & _NEEDED.get(access, PROT_READ | PROT_WRITE):
            return FAULT_ACCERR
        tagged = bool(prot & PROT_MTE)
        try:
            pte = self._present(vma, addr, access, tagged)
        except OutOfMemory:
            return FAULT_OOM
        except _Retry:
            return FAULT_RETRY
        if isinstance(pte, Fault):
            return pte
        perms = prot & (PROT_READ | PROT_EXEC)
        if prot & PROT_WRITE:
            perms |= PROT_READ
            if not pte.wp:
                perms |= PROT_WRITE
        return Translation(pte.pfn << PAGE_SHIFT, perms, tagged)

    def _present(self, vma: Vma, addr: int, access: int, tagged: bool) -> Pte | Fault:
        """handle_pte_fault(): the page made present for the access (faulted in, swapped
        in, copied on write, its tag storage reserved, its tags initialised)."""
        vpn = addr >> PAGE_SHIFT
        pte = self.ptes.get(vpn)
        if pte is None:
            got = self._fault_in(vma, addr & PAGE_MASK, tagged)
            if isinstance(got, Fault):
                return got
            pte = got
            self.pt.install(vpn, pte)
        elif pte.swap is not None:
            swap.swap_in(self.alloc, pte.swap, tagged)
        if access == ACCESS_WRITE and pte.wp:
            self._write_fault(vma, addr, vpn, pte, tagged)
        if pte.md_none:
            self._tag_storage_fault(vpn, pte)
        if tagged:
            self.alloc.sync_tags(pte.pfn)
        return pte

    def fault_forced(self, vaddr: int, access: int) -> Translation | Fault:
        """get_user_pages(FOLL_FORCE), as /proc/<pid>/mem uses it: a write may go into a
        private mapping the process itself cannot write (a debugger's breakpoint in its
        code); the page becomes the process's own copy and stays read-only to it."""
        res = self.fault(vaddr, access)
        if access != ACCESS_WRITE or res != FAULT_ACCERR:
            return res
        addr = vaddr & TOP_BYTE_MASK
        vma = self.vmas.find(addr)
        if vma is None or vma.shared or not vma.prot & (PROT_READ | PROT_EXEC):
            return res           # check_vma_flags(): FOLL_FORCE never writes a shared mapping
        res = self.fault(vaddr, ACCESS_READ if vma.prot & PROT_READ else ACCESS_FETCH)
        if isinstance(res, Fault):
            return res
        vpn = addr >> PAGE_SHIFT
        pte = self.ptes[vpn]
        if self.alloc.refcount(pte.pfn) > 1:
            pte.wp = True
            self._write_fault(vma, addr, vpn, pte, bool(vma.prot & PROT_MTE))
        return Translation(pte.pfn << PAGE_SHIFT, res.perms, res.tagged)

    def _fault_in(self, vma: Vma, page_addr: int, tagged: bool) -> Pte | Fault:
        obj: Optional[SharedObject] = vma.obj
        if obj is None:
            return Pte(self.alloc.alloc(tagged=tagged), False)
        idx = vma.page_index(page_addr)
        if obj.host_fd is not None and (idx << PAGE_SHIFT) >= obj.size:
            return FAULT_BUS   # beyond the end of the file: SIGBUS, as Linux
        src = obj.page(idx)
        if vma.shared:
            self.alloc.get(src)
            return Pte(src, obj.tracks_dirty)
        with self.alloc.pinned(src):
            pfn = self.alloc.alloc(tagged=tagged)
            self.alloc.copy_highpage(pfn, src)
        return Pte(pfn, False)

    def _write_fault(self, vma: Vma, addr: int, vpn: int, pte: Pte, tagged: bool) -> None:
        if vma.shared:
            assert vma.obj is not None            # a shared mapping always has its object
            vma.obj.dirty.add(vma.page_index(addr & PAGE_MASK))
        elif self.alloc.refcount(pte.pfn) > 1:
            old = pte.pfn
            with self.alloc.pinned(old):
                new = self.alloc.alloc(tagged=tagged)
                self.alloc.copy_highpage(new, old)
            self.alloc.remove_mapper(old, self, vpn)
            self.alloc.put(old)
            pte.pfn, pte.md_none = new, False
            self.alloc.add_mapper(new, self, vpn)
            self.pt.backstop(vpn, pte)
            # Other tagged aliases of this page may still hold the old translation.
            self.changed()
        pte.wp = False

    def _tag_storage_fault(self, vpn: int, pte: Pte) -> None:
        """The fault-on-access handler (handle_page_missing_tag_storage, RFC v1 patch 30):
        reserve the page's tag storage, or — if the page is tag storage itself, or its
        block cannot be reserved — move it to a page that has storage."""
        vma = self.vmas.find(vpn << PAGE_SHIFT)
        if vma is not None and vma.prot & PROT_MTE and not self.alloc.has_storage(pte.pfn):
            st = self.alloc.tag_storage
            if self.alloc.in_tag_storage(pte.pfn) or not st.reserve(pte.pfn):
                if migrate.replace_with_tagged(self.alloc, pte.pfn, st.policy.tries) is None:
                    raise OutOfMemory()
                # The new page may itself lack storage (v3's best-effort allocation).
                if not st.reserve(pte.pfn):
                    raise OutOfMemory()
            if not self.alloc.has_storage(pte.pfn):
                raise _Retry()       # interrupted: the entry stays fault-on-access
        pte.md_none = False

    # -- mapping changes -----------------------------------------------------------------
    def map(self, vma: Vma) -> None:
        """Insert a VMA over [start, end), replacing whatever was there (MAP_FIXED)."""
        self.unmap(vma.start, vma.end)
        if vma.obj is not None:
            vma.obj.hold()
        self.vmas.insert(vma)

    def unmap(self, start: int, end: int) -> None:
        pieces = self.vmas.carve(start, end)
        if not pieces:
            return
        for piece in pieces:
            if piece.obj is not None and piece.shared:
                piece.obj.writeback(piece.pgoff, piece.page_index(piece.end - 1))
            self.pt.drop_range(piece.start, piece.end)
            if piece.obj is not None:
                piece.obj.drop()
        self.changed()

    def discard(self, start: int, end: int) -> None:
        """MADV_DONTNEED: drop the pages; private anonymous memory reads back as zero."""
        for vma in self.vmas.overlapping(start, end):
            lo, hi = max(start, vma.start), min(end, vma.end)
            if vma.obj is not None and vma.shared:
                vma.obj.writeback(vma.page_index(lo), vma.page_index(hi - 1))
            self.pt.drop_range(lo, hi)
        self.changed()

    def protect(self, start: int, end: int, prot: int) -> None:
        for piece in self.vmas.carve(start, end):
            becomes_mte = prot & PROT_MTE and not piece.prot & PROT_MTE
            # VM_MTE is sticky: arm64's VM_ARCH_CLEAR drops only BTI (mm/mprotect.c).
            piece.prot = prot | (piece.prot & PROT_MTE)
            self.vmas.insert(piece)
            if not becomes_mte:
                continue
            self.alloc.events["mprotect_mte"] += 1
            # change_protection() rewrites every present entry. With MM_CP_PROT_METADATA_NONE
            # they become fault-on-access (storage reserved on first access, not here;
            # pages already tagged through another mapping are skipped); without it, each
            # rewrite still goes through set_pte_at() and its backstop.
            on_access = "fault-on-access" in self.alloc.fixes
            for vpn in self.pt.vpns(piece.start, piece.end):
                pte = self.ptes[vpn]
                if not pte.present:
                    continue
                if not on_access:
                    self.pt.backstop(vpn, pte)
                elif not (pte.pfn in self.alloc.mte_tagged and self.alloc.has_storage(pte.pfn)):
                    pte.md_none = True
        self.changed()

    def move(self, old_start: int, old_end: int, new_start: int) -> None:
        """mremap: move the VMAs and their pages (data stays in the same physical pages)."""
        self.unmap(new_start, new_start + (old_end - old_start))
        delta = new_start - old_start
        for piece in self.vmas.carve(old_start, old_end):
            self.vmas.insert(replace(piece, start=piece.start + delta, end=piece.end + delta))
        moved = {v: self.ptes.pop(v) for v in self.pt.vpns(old_start, old_end)}
        dv = delta >> PAGE_SHIFT
        for vpn, pte in moved.items():
            if pte.swap is not None:
                self.alloc.swap_device.users[pte.swap].discard((self, vpn))
                swap.add_entry(self.alloc, pte.swap, self, vpn + dv)
                self.pt.ensure(vpn + dv)
                self.ptes[vpn + dv] = pte
            else:
                self.alloc.remove_mapper(pte.pfn, self, vpn)
                self.pt.install(vpn + dv, pte)
        self.changed()

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
        child.sigreturn_trampoline = self.sigreturn_trampoline   # the [vdso] VMA is copied below
        if self.alloc_history is not None:
            child.alloc_history = self.alloc_history.clone()     # the child's history starts as ours
        for vma in self.vmas:
            copy = replace(vma)
            if copy.obj is not None:
                copy.obj.hold()
            child.vmas.insert(copy)
        try:
            self._copy_ptes(child)
        except OutOfMemory:        # no memory for the child's page tables: fork fails
            child.destroy()
            self.changed()
            raise
        self.changed()
        return child

    def _copy_ptes(self, child: "Mm") -> None:
        for vma in self.vmas:
            for vpn in self.pt.vpns(vma.start, vma.end):
                pte = self.ptes[vpn]
                child.pt.ensure(vpn)             # (may fail: before any reference is taken)
                if not vma.shared:
                    pte.wp = True          # copy-on-write, also for a page now in swap
                new = Pte(pte.pfn, pte.wp)
                new.md_none = pte.md_none
                if pte.swap is not None:
                    new.swap = pte.swap
                    swap.add_entry(self.alloc, pte.swap, child, vpn)
                    child.ptes[vpn] = new
                    continue
                self.alloc.get(pte.pfn)
                child.pt.install(vpn, new)

    def destroy(self) -> None:
        for vma in self.vmas:
            if vma.obj is not None and vma.shared:
                vma.obj.writeback()
        self.pt.drop_all()
        for vma in self.vmas:
            if vma.obj is not None:
                vma.obj.drop()
        self.vmas = VmaList()
        self.pt.free_tables()
        if self.alloc_history is not None:
            self.alloc_history.close()
            self.alloc_history = None
