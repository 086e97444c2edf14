"""A small machine for memory-manager experiments without a CPU: the 66 MiB board of
dts/small-v3.dts (64 MiB of tagged DRAM, 2 MiB of tag storage above it), its page
allocator with tag storage reuse, a swap device, and address spaces, plus the means to
arrange exactly which physical pages the allocator has left — how a race's victim is
put in harm's way."""
from __future__ import annotations

from typing import Iterable, Optional

from mteemu.board.model import Board, small_reuse_board
from mteemu.kernel.mm.addrspace import Mm, Pte
from mteemu.kernel.mm.boot import boot_mm
from mteemu.kernel.mm.fixes import FIXES
from mteemu.kernel.mm.tag_storage import Region
from mteemu.kernel.mm.vma import PROT_MTE, PROT_READ, PROT_WRITE, Vma
from mteemu.machine.arm64 import ACCESS_READ, ACCESS_WRITE, Translation
from mteemu.machine.physmem import PAGE_SHIFT, PAGE_SIZE

BOARD = small_reuse_board()


class World:
    def __init__(self, policy: str = "metadata", fixes: Iterable[str] = FIXES, swap_pages: int = 4096,
                 board: Board = BOARD) -> None:
        ms = boot_mm(board, policy, fixes=tuple(fixes), swap_pages=swap_pages)
        self.physmem, self.tags, self.alloc = ms.physmem, ms.tags, ms.alloc
        self.region: Region = self.alloc.tag_storage.regions[0]
        self.mms: list[Mm] = []

    def close(self) -> None:
        self.physmem.close()

    # -- arranging memory -----------------------------------------------------------------------
    def leave_free(self, keep: Iterable[int] = (), tag_storage: bool = True) -> None:
        """Take every free ordinary page except `keep` as kernel memory (unmovable), so the
        allocator can only hand out those (and tag storage, unless `tag_storage` is False).
        The min watermark goes to 0: the pages left are all the allocator may use."""
        keep = set(keep)
        b = self.alloc.buddy
        for z in b.zones:
            z.watermark_min = 0
        for head, order in sorted(b.free_blocks()):
            if b.is_tag_storage(head) and tag_storage:
                continue
            # Whole runs between the kept pages, not a page at a time.
            cuts = [head - 1] + sorted(p for p in keep if head <= p < head + (1 << order)) + [head + (1 << order)]
            for lo, hi in zip(cuts, cuts[1:]):
                if lo + 1 < hi:
                    b.take_free_range(lo + 1, hi)
                    self.alloc.kernel_pages.update(range(lo + 1, hi))

    def take(self, pfn: int, anon: bool = True) -> int:
        """The allocator happens to return this (free) page: a user page, refcount 1."""
        if self.alloc.buddy.take_free_range(pfn, pfn + 1):
            raise ValueError(f"pfn {pfn:#x} is not free")
        self.alloc.set_refs(pfn, 1)
        if anon:
            self.alloc.lru[pfn] = None
        return pfn

    def data_pfns_of_block(self, block: int) -> range:
        """The data pages whose tags live in tag page `block`."""
        first = self.region.mem_start + (block - self.region.tag_start) * 32
        return range(first, first + 32)

    def tag_storage_pfn(self, index: int = 0) -> int:
        return self.region.tag_start + index

    # -- processes ----------------------------------------------------------------------------
    def new_mm(self, name: str) -> Mm:
        mm = Mm(self.alloc)
        mm.mmap_base = 1 << 40
        mm.owner_name = name
        self.mms.append(mm)
        return mm

    def map(self, mm: Mm, pages: int, mte: bool = False, addr: Optional[int] = None) -> int:
        addr = addr if addr is not None else mm.get_unmapped_area(pages << PAGE_SHIFT)
        assert addr is not None                 # the race worlds are small: there is always room
        prot = PROT_READ | PROT_WRITE | (PROT_MTE if mte else 0)
        mm.map(Vma(addr, addr + (pages << PAGE_SHIFT), prot, name="anon", mte_allowed=True))
        return addr

    def place(self, mm: Mm, addr: int, pfn: int, data: bytes) -> None:
        """A page of `mm` at `addr` that lives in physical page `pfn`, holding `data`."""
        self.take(pfn)
        mm.pt.install(addr >> PAGE_SHIFT, Pte(pfn, False))
        self.physmem.page(pfn)[:len(data)] = data

    # -- the CPU's part -----------------------------------------------------------------------------
    def fault(self, mm: Mm, addr: int, write: bool) -> Optional[tuple[int, int, bool]]:
        res = mm.fault(addr, ACCESS_WRITE if write else ACCESS_READ)
        return res if isinstance(res, Translation) else None

    def read(self, mm: Mm, addr: int, n: int = 16) -> Optional[tuple[bytes, int]]:
        """Load n bytes and the granule's allocation tag (0 when the mapping is untagged)."""
        res = self.fault(mm, addr, False)
        if res is None:
            return None
        pa = res[0] | (addr & (PAGE_SIZE - 1))
        return bytes(self.physmem.view(pa, n)), (self.tags.get(pa) if res[2] else 0)

    def stg(self, mm: Mm, addr: int, tag: int) -> Optional[bool]:
        """STG: set the allocation tag of addr's granule (a write access). True: done;
        False: the mapping is not Tagged (the tag write is ignored); None: the access
        faulted without a translation (VM_FAULT_RETRY, OOM)."""
        res = self.fault(mm, addr, True)
        if res is None:
            return None
        if not res[2]:
            return False
        self.tags.set_range(res[0] | (addr & (PAGE_SIZE - 1) & ~15), 16, tag)
        return True


def stg_note(ok: Optional[bool], what: str) -> str:
    if ok is None:
        return "no translation (VM_FAULT_RETRY): the access is replayed later"
    return what if ok else "not a Tagged mapping yet: the tag write is ignored"
