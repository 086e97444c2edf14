"""The memory manager's invariants (`--check-invariants`), checked from scratch against
the allocator's state — never trusting the counters being checked:

  * no page is mapped Tagged (present, not fault-on-access, in a VM_MTE VMA) without its
    tag block reserved;
  * no tag-storage page is ever tagged or has storage reserved for it;
  * each reserved block's refcount equals the tagged pages it serves;
  * free lists, pageblock types and counters agree, and every managed page is exactly one
    of: free, a user page, a kernel page, a page of a reserved tag block;
  * the reverse map agrees with the page tables and the reference counts.

(Migration checks its own copies: data and tags checksummed before and after.)
"""
from __future__ import annotations

from collections import Counter

from mteemu.errors import ModelViolation
from mteemu.kernel.mm.buddy import MAX_ORDER
from mteemu.kernel.mm.pagealloc import PageAllocator
from mteemu.kernel.mm.vma import PROT_MTE
from mteemu.machine.physmem import PAGE_SHIFT


def violations(alloc: PageAllocator) -> list[str]:
    out: list[str] = []
    st = alloc.storage
    buddy = alloc.buddy

    # Page tables and the reverse map.
    mapped: Counter[int] = Counter()
    for pfn, users in alloc.mappers.items():
        for mm, vpn in users:
            pte = mm.ptes.get(vpn)
            if pte is None or not pte.present or pte.pfn != pfn:
                out.append(f"reverse map: pfn {pfn:#x} lists {mm.owner_name} at {vpn << PAGE_SHIFT:#x}, "
                           f"which does not map it")
                continue
            mapped[pfn] += 1
            vma = mm.vmas.find(vpn << PAGE_SHIFT)
            if vma is not None and vma.prot & PROT_MTE and not pte.md_none and not alloc.has_storage(pfn):
                block = alloc.tag_storage.block_of(pfn)
                why = f"without its tag block {block:#x} reserved" if block is not None else \
                    "and it is tag storage itself"
                out.append(f"pfn {pfn:#x} is mapped Tagged by {mm.owner_name} at {vpn << PAGE_SHIFT:#x} {why}")
    for pfn, refs in alloc.user_pages().items():
        if mapped[pfn] + (pfn in alloc.owner) > refs:
            out.append(f"pfn {pfn:#x} has {refs} reference(s) but {mapped[pfn]} mapping(s)"
                       f"{' and an owner' if pfn in alloc.owner else ''}")
    for pfn in alloc.mappers:
        if alloc.mappers[pfn] and pfn not in alloc.user_pages():
            out.append(f"pfn {pfn:#x} is mapped but free")

    # Tag storage.
    if st is not None:
        for pfn in alloc.mte_tagged:
            if buddy.is_tag_storage(pfn):
                out.append(f"tag storage page {pfn:#x} is tagged")
        served: Counter[int] = Counter()
        for pfn in st.reserved:
            if buddy.is_tag_storage(pfn):
                out.append(f"tag storage page {pfn:#x} has tag storage reserved for it")
            block = st.block_of(pfn)
            if block is None:
                out.append(f"pfn {pfn:#x} has tag storage reserved but no tag block covers it")
                continue
            served[block] += 1
        for block, refs in st.blocks.items():
            if served[block] != refs:
                out.append(f"tag block {block:#x} has refcount {refs} but serves {served[block]} tagged page(s)")
        for block in served:
            if block not in st.blocks:
                out.append(f"tag block {block:#x} serves pages but is not reserved")
        for pfn in alloc.mte_tagged:
            if not st.has_storage(pfn):
                out.append(f"pfn {pfn:#x} is tagged without reserved tag storage")

    # The buddy allocator: free lists and pageblock types, and who owns every page.
    free = 0
    owners: dict[int, str] = {}
    for head, order in buddy.free_blocks():
        zone = buddy.zone_of(head)
        mt = buddy.block_type(head)
        if head % (1 << order) or order > MAX_ORDER or head not in zone.free[order][mt]:
            out.append(f"free block {head:#x} order {order} is on the wrong list")
        free += 1 << order
    nr_free_types = sum(len(z.free[o][mt]) << o for z in buddy.zones for o in range(MAX_ORDER + 1)
                        for mt in z.free[o])
    if free != buddy.nr_free or nr_free_types != free:
        out.append(f"free pages: lists hold {free}, typed lists {nr_free_types}, counter says {buddy.nr_free}")
    tag_free = sum(1 << o for h, o in buddy.free_blocks() if buddy.is_tag_storage(h))
    if tag_free != buddy.nr_free_tag_storage:
        out.append(f"free tag storage: lists hold {tag_free}, counter says {buddy.nr_free_tag_storage}")
    for pfn in alloc.user_pages():
        owners[pfn] = "user"
    for pfn in alloc.kernel_pages:
        if pfn in owners:
            out.append(f"pfn {pfn:#x} is both a kernel page and a {owners[pfn]} page")
        owners[pfn] = "kernel"
    if st is not None:
        for block in st.blocks:
            for pfn in range(block, block + st.block_pages(block)):
                if pfn in owners:
                    out.append(f"pfn {pfn:#x} is in reserved tag block {block:#x} and is a {owners[pfn]} page")
                owners[pfn] = "tag block"
    spans = sorted((h, h + (1 << o)) for h, o in buddy.free_blocks())
    i = 0
    for pfn in sorted(owners):           # one sweep: no used page lies in a free block
        while i < len(spans) and spans[i][1] <= pfn:
            i += 1
        if i < len(spans) and spans[i][0] <= pfn:
            out.append(f"pfn {pfn:#x} is a {owners[pfn]} page and free")
    if len(owners) + free != buddy.managed:
        out.append(f"page accounting: {len(owners)} used + {free} free != {buddy.managed} managed")
    return out


def check(alloc: PageAllocator, when: str) -> None:
    found = violations(alloc)
    if found:
        raise ModelViolation(f"invariant broken after {when}: {found[0]}", tuple(found[1:10]))


class Checker:
    """Runs the full check at the kernel's safe points (after a syscall or a page fault,
    never inside an allocation): whenever a significant event (reservation, migration,
    swap, mprotect) happened since the last check, else every `every` page events. The
    full check is O(pages), so `min_gap` page events must pass between two checks."""

    def __init__(self, alloc: PageAllocator, every: int = 2048, min_gap: int = 256) -> None:
        self.alloc, self.every, self.min_gap = alloc, every, min_gap
        self.checks = 0
        self._seen = 0              # vmstat events (reservations, migrations, swap...) at the last check

    def maybe(self, where: str) -> None:
        a = self.alloc
        significant = sum(a.events.values()) != self._seen
        if a.mm_events >= self.every or (significant and a.mm_events >= self.min_gap):
            self.now(where)

    def now(self, where: str) -> None:
        check(self.alloc, where)
        self.alloc.mm_events = 0
        self._seen = sum(self.alloc.events.values())
        self.checks += 1
