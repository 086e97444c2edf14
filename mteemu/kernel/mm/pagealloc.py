"""Physical pages for the guests and the kernel: the buddy allocator (buddy.py) behind
reference counts, page flags (PG_mte_tagged), the reverse map, the anonymous LRU, and
the tag-storage hooks of the RFC: a tagged allocation (__GFP_TAGGED) reserves its tag
block; freeing drops it; copy_highpage() parks tags when the destination has no storage.

Freed pages go back to the host (MADV_DONTNEED), so they read back as zeros: user pages
are __GFP_ZERO without a memset.
"""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional, Protocol

from mteemu.errors import ModelViolation
from mteemu.kernel.kmsg import KernelLog
from mteemu.kernel.mm.buddy import BuddyAllocator, MigrateType, OutOfMemory
from mteemu.kernel.mm.fixes import FIXES
from mteemu.kernel.mm.tag_storage import METADATA, Policy, TagStorage, dynamic_regions
from mteemu.machine.physmem import PAGE_SHIFT, PhysMem
from mteemu.machine.tagstore import TAG_BYTES_PER_PAGE, TagStore

if TYPE_CHECKING:
    from mteemu.board.model import Board
    from mteemu.kernel.mm.swap import SwapDevice

CANDIDATES = 8        # pages whose tag block failed, set aside before a tagged allocation gives up


class PageEntries(Protocol):
    """The page-table operations migration and swap make (pagetable.PageTable)."""
    def repoint(self, vpn: int, pfn: int) -> None: ...
    def to_swap(self, vpn: int, slot: int) -> None: ...
    def from_swap(self, vpn: int, pfn: int) -> None: ...


class PageUser(Protocol):
    """Who maps a page, in the reverse map (an address space: addrspace.Mm)."""
    owner_name: str
    ptes: dict[int, Any]
    vmas: Any

    @property
    def pt(self) -> PageEntries: ...


class PageHolder(Protocol):
    """Who holds a page in its page array (the page cache, a memfd: shared.SharedObject)."""
    pages: dict[int, int]


# What the allocator falls back on when memory is short, given to it by boot_mm() (as tag
# storage is given take_block/give_block): page reclaim to swap (swap.reclaim), compaction
# for a higher order (migrate.compact), and taking a physical range (alloc_contig_range).
Reclaim = Callable[["PageAllocator"], bool]
Compact = Callable[["PageAllocator", int], bool]
TakeRange = Callable[["PageAllocator", int, int, int], bool]


def _never(*_args: object) -> bool:
    return False


class PageAllocator:
    def __init__(self, physmem: PhysMem, tags: TagStore, board: Optional["Board"] = None,
                 limit_pages: Optional[int] = None, policy: Policy = METADATA,
                 kmsg: Optional[KernelLog] = None, fixes: tuple[str, ...] = FIXES,
                 reclaim: Reclaim = _never, compact: Compact = _never, take_range: TakeRange = _never) -> None:
        self.physmem = physmem
        self.tags = tags
        self.kmsg = kmsg or KernelLog()
        self.events: Counter = Counter()                 # /proc/vmstat events
        self.fixes = frozenset(fixes)
        regions = dynamic_regions(board, self.kmsg) if board is not None else []
        online = [r for r in physmem.tag_storage if any(g.tag_start == r[0] for g in regions)]
        ranges = [(a, b) for a, b in physmem.allocatable if a < b] + online
        self.buddy = BuddyAllocator(ranges, metadata=online, tag_type=policy.pageblock_type)
        self.storage: Optional[TagStorage] = None
        self._refs: dict[int, int] = {}                  # user pages and their references
        self.kernel_pages: set[int] = set()              # UNMOVABLE: page tables, stacks, the zero page
        self._kernel_order: dict[int, int] = {}          # first pfn of a kernel allocation -> its order
        self.mte_tagged: set[int] = set()                # PG_mte_tagged: tags initialised
        self.pins: Counter = Counter()                   # transient extra references: not migratable
        self.isolated: set[int] = set()                  # pages alloc_contig_range is taking
        # The reverse map: every (mm, vpn) mapping a page, and the object (page cache,
        # memfd, shmem) holding it, so migration can move a page and fix every user.
        self.mappers: dict[int, set[tuple[PageUser, int]]] = {}
        self.owner: dict[int, tuple[PageHolder, int]] = {}
        self.lru: dict[int, None] = {}                   # anonymous pages, oldest first
        self.swap: Optional["SwapDevice"] = None
        self.reclaiming = False
        self.on_remap: Callable[[], None] = lambda: None   # translations may be stale (CPU TLB flush)
        self.remap_gen = 0          # bumped with each remap: uaccess caches translations while it holds
        self.mm_events = 0          # page allocations and frees (for invariants.Checker)
        self.total_pages = self.buddy.managed
        if limit_pages is not None:
            self.total_pages = min(self.total_pages, limit_pages)
        self._reclaim, self._compact = reclaim, compact
        if regions:
            self.storage = TagStorage(regions, policy, self.events,
                                      lambda a, b, tries: take_range(self, a, b, tries), self._give_block)
            for r in regions:
                base, size = r.tag_start << PAGE_SHIFT, (r.tag_end - r.tag_start) << PAGE_SHIFT
                self.kmsg.log(policy.region_line.format(base=base, size=size, last=base + size - 1,
                                                        block=r.block_pages))
        # The zero page: tagged once at boot, so its tag block is reserved now (§2.5).
        self.zero_pfn = self.alloc_kernel()
        if self.storage is not None:
            if self.storage.reserve(self.zero_pfn):
                self.mte_tagged.add(self.zero_pfn)
                self.tags.clear_page(self.zero_pfn)
                self.kmsg.log(policy.enabled_line)
            else:
                self.kmsg.log("MTE tag storage disabled")

    # -- counting ---------------------------------------------------------------------------------
    @property
    def used_pages(self) -> int:
        return self.buddy.managed - self.buddy.nr_free

    @property
    def free_pages(self) -> int:
        return max(0, min(self.buddy.nr_free, self.total_pages - self.used_pages))

    # -- struct page: what the rest of the memory manager may read and change ----------------
    def refcount(self, pfn: int) -> int:
        return self._refs.get(pfn, 0)

    def user_pages(self) -> Mapping[int, int]:
        """Every user page and its reference count (read-only)."""
        return MappingProxyType(self._refs)

    def set_refs(self, pfn: int, n: int) -> None:
        """A user page's reference count, set whole (swap-in: one per user, maybe none yet)."""
        self._refs[pfn] = n

    def drop_refs(self, pfn: int) -> None:
        """The page is no user page any more (swapped out: its users hold the swap entry)."""
        del self._refs[pfn]

    def move_refs(self, src: int, dst: int) -> None:
        """Migration: the new page takes over the old one's references."""
        self._refs[dst] = self._refs.pop(src)

    @property
    def tag_storage(self) -> TagStorage:
        """The tag storage, where the caller knows there is some (has_storage() said no)."""
        assert self.storage is not None
        return self.storage

    @property
    def swap_device(self) -> "SwapDevice":
        """The swap device, where the caller knows there is one (a swap entry exists)."""
        assert self.swap is not None
        return self.swap

    def has_storage(self, pfn: int) -> bool:
        return self.storage is None or self.storage.has_storage(pfn)

    def in_tag_storage(self, pfn: int) -> bool:
        return self.storage is not None and self.buddy.is_tag_storage(pfn)

    # -- allocation --------------------------------------------------------------------------------
    def alloc(self, tagged: bool = False, anon: bool = True) -> int:
        """A zeroed user page (GFP_HIGHUSER_MOVABLE) with a reference count of 1.
        `tagged`: __GFP_TAGGED, for a VM_MTE mapping: its tag storage is reserved.
        Under pressure, anonymous pages are reclaimed to swap and the allocation retried."""
        while True:
            try:
                pfn = self._alloc_movable(tagged)
                break
            except OutOfMemory:
                if not self._reclaim(self):
                    raise
        self._refs[pfn] = 1
        if anon:
            self.lru[pfn] = None
        self.mm_events += 1
        return pfn

    def _alloc_movable(self, tagged: bool) -> int:
        if self.used_pages >= self.total_pages:
            raise OutOfMemory()
        # Only untagged allocations may land in tag storage (ALLOC_FROM_METADATA /
        # arch_alloc_cma()); a tagged page's own tags must live somewhere else.
        held: list[int] = []
        failed_blocks: set[int] = set()
        try:
            while True:
                pfn = self.buddy.alloc(0, MigrateType.MOVABLE, allow_tag_storage=not tagged, watermark=True)
                if not tagged or self.storage is None:
                    return pfn
                block = self.storage.block_of(pfn)
                if block is None:
                    return pfn            # no block holds its tags: nothing to reserve
                if block not in failed_blocks:
                    if self.storage.reserve(pfn):
                        return pfn
                    if self.storage.policy.best_effort:
                        return pfn        # v3: mapped fault-on-access, reserved on first access
                    failed_blocks.add(block)
                # v1: back to the buddy, and another page is tried (return_page_to_buddy).
                held.append(pfn)
                if len(failed_blocks) >= CANDIDATES:
                    raise OutOfMemory()
        finally:
            for p in held:
                self.buddy.free(p)

    def alloc_kernel(self, order: int = 0) -> int:
        """Kernel memory (GFP_KERNEL: UNMOVABLE, may dip below the min watermark): page
        tables, kernel stacks. A failed higher-order request compacts movable pages
        first; any failure reclaims to swap and tries again."""
        while True:
            try:
                pfn = self.buddy.alloc(order, MigrateType.UNMOVABLE)
                break
            except OutOfMemory:
                if not ((order and self._compact(self, order)) or self._reclaim(self)):
                    raise
        self.kernel_pages.update(range(pfn, pfn + (1 << order)))
        self._kernel_order[pfn] = order
        return pfn

    def free_kernel(self, pfn: int) -> None:
        order = self._kernel_order.pop(pfn)
        self.kernel_pages.difference_update(range(pfn, pfn + (1 << order)))
        for p in range(pfn, pfn + (1 << order)):
            self.physmem.discard_page(p)
        self.buddy.free(pfn, order)

    def get(self, pfn: int) -> None:
        self._refs[pfn] += 1

    def put(self, pfn: int) -> None:
        n = self._refs[pfn] - 1
        if n:
            self._refs[pfn] = n
            return
        del self._refs[pfn]
        self.forget(pfn)
        self.free_to_buddy(pfn)
        self.mm_events += 1

    def forget(self, pfn: int) -> None:
        """The page's identity is gone (freed, or migrated away): its flags and maps."""
        self.mte_tagged.discard(pfn)
        self.lru.pop(pfn, None)
        self.mappers.pop(pfn, None)
        self.owner.pop(pfn, None)
        if self.storage is not None:
            self.storage.release(pfn)      # arch_free_pages_prepare(): drop the tag block

    def free_to_buddy(self, pfn: int) -> None:
        self.physmem.discard_page(pfn)
        self.buddy.free(pfn)

    def _give_block(self, first: int, end: int) -> None:
        for pfn in range(first, end):
            self.free_to_buddy(pfn)

    @contextmanager
    def pinned(self, *pfns: int) -> Iterator[None]:
        """Hold pages still (an elevated refcount): reclaim and migration leave them be."""
        for p in pfns:
            self.pins[p] += 1
        try:
            yield
        finally:
            for p in pfns:
                self.pins[p] -= 1
                if not self.pins[p]:
                    del self.pins[p]

    # -- the reverse map ------------------------------------------------------------------------------
    def add_mapper(self, pfn: int, mm: PageUser, vpn: int) -> None:
        self.mappers.setdefault(pfn, set()).add((mm, vpn))

    def remove_mapper(self, pfn: int, mm: PageUser, vpn: int) -> None:
        users = self.mappers.get(pfn)
        if users is not None:
            users.discard((mm, vpn))

    def set_owner(self, pfn: int, obj: PageHolder, idx: int) -> None:
        self.owner[pfn] = (obj, idx)
        self.lru.pop(pfn, None)

    # -- tags ---------------------------------------------------------------------------------------
    def sync_tags(self, pfn: int) -> None:
        """mte_sync_tags(): the first Tagged mapping of a page initialises its tags — the
        ones parked for it if any (a migration or swap-in before it had storage), else 0.
        The data is kept (mprotect(PROT_MTE) on a used page keeps its contents)."""
        if pfn in self.mte_tagged:
            return
        if self.in_tag_storage(pfn):
            raise ModelViolation(f"tag storage page {pfn:#x} is being mapped Tagged (tags of tags)")
        parked = self.storage.parked.pop(pfn, None) if self.storage is not None else None
        view = self.tags.page_tags(pfn)
        if parked is not None and view is not None:
            self.tags.write_page(pfn, parked)
        else:
            self.tags.clear_page(pfn)
        self.mte_tagged.add(pfn)

    def copy_highpage(self, dst: int, src: int) -> None:
        """copy_highpage(): data, and tags if the source has any. A destination without
        tag storage cannot take them: they are parked under its pfn (the fix for race A)."""
        self.physmem.copy_page(dst, src)
        if src not in self.mte_tagged:
            if self.storage is not None and src in self.storage.parked:
                self.storage.parked[dst] = self.storage.parked[src]
            return
        # (A tagged page of memory no tag region covers reads as tag 0 everywhere.)
        tags = self.saved_tags(src) or bytes(TAG_BYTES_PER_PAGE)
        if not self.has_storage(dst) and "pfn-tag-save" in self.fixes:
            self.tag_storage.parked[dst] = tags
            return
        self.write_tags(dst, tags)

    def write_tags(self, pfn: int, tags: bytes) -> None:
        """Give a page these 128 tag bytes and PG_mte_tagged (a restore or a copy). Tag
        storage has no tags of its own: there the write does nothing."""
        self.tags.write_page(pfn, tags)
        if not self.in_tag_storage(pfn):
            self.mte_tagged.add(pfn)

    def saved_tags(self, pfn: int) -> Optional[bytes]:
        """The tags a page carries for the kernel (what swap-out saves and migration must
        keep): its own if it is tagged, else any parked for it, else None."""
        if pfn in self.mte_tagged:
            view = self.tags.page_tags(pfn)
            if view is not None:
                return bytes(view)
        return self.storage.parked.get(pfn) if self.storage is not None else None



