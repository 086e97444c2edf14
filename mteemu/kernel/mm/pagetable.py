"""An address space's page table (Linux's pte level: set_pte_at(), pte_alloc(), the swap
and migration entries): virtual page numbers to physical pages, the last-level table pages
it costs, and the reverse map kept in step (pagealloc.py's mappers)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from mteemu.kernel.mm import swap
from mteemu.kernel.mm.pagealloc import PageAllocator
from mteemu.kernel.mm.vma import PROT_MTE, Vma
from mteemu.machine.physmem import PAGE_SHIFT

if TYPE_CHECKING:
    from mteemu.kernel.mm.addrspace import Mm

PT_SHIFT = 9                   # one last-level page table maps 512 pages


class Pte:
    """A page-table entry. `wp` (write-protected) means: the VMA may be writable, but the
    first write must come back to the fault handler — for copy-on-write of private
    pages, and to mark shared file pages dirty. `md_none` is the RFC's fault-on-access
    protection (PAGE_METADATA_NONE): the page is there, but its first access must reserve
    its tag storage. `swap`: the page is in swap slot `swap` (then pfn is -1)."""

    __slots__ = ("pfn", "wp", "md_none", "swap")

    def __init__(self, pfn: int, wp: bool) -> None:
        self.pfn = pfn
        self.wp = wp
        self.md_none = False
        self.swap: Optional[int] = None

    @property
    def present(self) -> bool:
        return self.swap is None


class PageTable:
    def __init__(self, alloc: PageAllocator, owner: "Mm", vma_at: Callable[[int], Optional[Vma]]) -> None:
        self.alloc, self.owner, self.vma_at = alloc, owner, vma_at
        self.ptes: dict[int, Pte] = {}
        self.pt_pages: dict[int, int] = {}      # last-level page-table pages (UNMOVABLE), per 2 MiB of VA

    def install(self, vpn: int, pte: Pte) -> None:
        self.ensure(vpn)
        self.ptes[vpn] = pte
        self.alloc.add_mapper(pte.pfn, self.owner, vpn)
        self.backstop(vpn, pte)

    def ensure(self, vpn: int) -> None:
        """The page table holding vpn's entry exists (pte_alloc)."""
        if vpn >> PT_SHIFT not in self.pt_pages:
            self.pt_pages[vpn >> PT_SHIFT] = self.alloc.alloc_kernel()

    def backstop(self, vpn: int, pte: Pte) -> None:
        """set_pte_at() -> mte_sync_tags(): a Tagged entry for a page without reserved tag
        storage becomes fault-on-access (RFC v1 patch 31), whoever installs it."""
        if pte.md_none or "set-pte-backstop" not in self.alloc.fixes or self.alloc.has_storage(pte.pfn):
            return
        vma = self.vma_at(vpn << PAGE_SHIFT)
        if vma is not None and vma.prot & PROT_MTE:
            pte.md_none = True

    def repoint(self, vpn: int, pfn: int) -> None:
        """Migration moved the page: remove_migration_ptes() builds a fresh entry from the
        VMA's protection — a fault-on-access mark is not carried over, which is why
        set_pte_at()'s backstop exists (RFC race C)."""
        pte = self.ptes[vpn]
        pte.pfn, pte.md_none = pfn, False
        self.backstop(vpn, pte)

    def to_swap(self, vpn: int, slot: int) -> None:
        pte = self.ptes[vpn]
        pte.pfn, pte.swap, pte.md_none = -1, slot, False

    def from_swap(self, vpn: int, pfn: int) -> None:
        pte = self.ptes[vpn]
        pte.pfn, pte.swap = pfn, None
        self.backstop(vpn, pte)

    def drop(self, vpn: int) -> None:
        pte = self.ptes.pop(vpn)
        if pte.swap is not None:
            swap.drop_entry(self.alloc, pte.swap, self.owner, vpn)
        else:
            self.alloc.remove_mapper(pte.pfn, self.owner, vpn)
            self.alloc.put(pte.pfn)

    def populate(self, vpn: int) -> Pte:
        """The kernel filling a page in (ELF loading): an untagged anonymous page."""
        pte = self.ptes.get(vpn)
        if pte is None:
            pte = Pte(self.alloc.alloc(), False)
            self.install(vpn, pte)
        return pte

    def vpns(self, start: int, end: int) -> list[int]:
        """The mapped pages in [start, end), without walking a huge empty range."""
        lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
        if hi - lo > len(self.ptes):
            return sorted(v for v in self.ptes if lo <= v < hi)
        return [v for v in range(lo, hi) if v in self.ptes]

    def drop_range(self, start: int, end: int) -> None:
        for vpn in self.vpns(start, end):
            self.drop(vpn)

    def drop_all(self) -> None:
        for vpn in list(self.ptes):
            self.drop(vpn)

    def free_tables(self) -> None:
        """The table pages given back (every entry dropped first)."""
        for pfn in self.pt_pages.values():
            self.alloc.free_kernel(pfn)
        self.pt_pages.clear()
