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
from typing import Iterator

from mteemu.errors import ModelViolation
from mteemu.kernel.mm.buddy import MAX_ORDER
from mteemu.kernel.mm.pagealloc import PageAllocator
from mteemu.kernel.mm.vma import PROT_MTE
from mteemu.machine.physmem import PAGE_SHIFT


def reverse_map(alloc: PageAllocator) -> Iterator[str]:
    """Every (mm, vpn) the reverse map lists maps the page; no page is mapped Tagged without
    its tag block reserved; references cover mappings; no free page is mapped."""
    mapped: Counter[int] = Counter()
    for pfn, users in alloc.mappers.items():
        for mm, vpn in users:
            pte = mm.ptes.get(vpn)
            if pte is None or not pte.present or pte.pfn != pfn:
                yield (f"reverse map: pfn {pfn:#x} lists {mm.owner_name} at {vpn << PAGE_SHIFT:#x}, "
                       f"which does not map it")
                continue
            mapped[pfn] += 1
            vma = mm.vmas.find(vpn << PAGE_SHIFT)
            if vma is not None and vma.prot & PROT_MTE and not pte.md_none and not alloc.has_storage(pfn):
                block = alloc.tag_storage.block_of(pfn)
                why = f"without its tag block {block:#x} reserved" if block is not None else \
                    "and it is tag storage itself"
                yield f"pfn {pfn:#x} is mapped Tagged by {mm.owner_name} at {vpn << PAGE_SHIFT:#x} {why}"
    in_use = alloc.user_pages()
    for pfn, refs in in_use.items():
        if mapped[pfn] + (pfn in alloc.owner) > refs:
            yield (f"pfn {pfn:#x} has {refs} reference(s) but {mapped[pfn]} mapping(s)"
                   f"{' and an owner' if pfn in alloc.owner else ''}")
    for pfn, mappers in alloc.mappers.items():
        if mappers and pfn not in in_use:
            yield f"pfn {pfn:#x} is mapped but free"


def tag_storage_untagged(alloc: PageAllocator) -> Iterator[str]:
    """No tag-storage page is tagged or has tag storage reserved for it (tags of tags)."""
    st, buddy = alloc.storage, alloc.buddy
    if st is None:
        return
    for pfn in alloc.mte_tagged:
        if buddy.is_tag_storage(pfn):
            yield f"tag storage page {pfn:#x} is tagged"
    for pfn in st.reserved:
        if buddy.is_tag_storage(pfn):
            yield f"tag storage page {pfn:#x} has tag storage reserved for it"


def tag_blocks_counted(alloc: PageAllocator) -> Iterator[str]:
    """Each reserved block's refcount is the number of tagged pages it serves, and every
    tagged page has its storage reserved."""
    st = alloc.storage
    if st is None:
        return
    served: Counter[int] = Counter()
    for pfn in st.reserved:
        block = st.block_of(pfn)
        if block is None:
            yield f"pfn {pfn:#x} has tag storage reserved but no tag block covers it"
            continue
        served[block] += 1
    for block, refs in st.blocks.items():
        if served[block] != refs:
            yield f"tag block {block:#x} has refcount {refs} but serves {served[block]} tagged page(s)"
    for block in served:
        if block not in st.blocks:
            yield f"tag block {block:#x} serves pages but is not reserved"
    for pfn in alloc.mte_tagged:
        if not st.has_storage(pfn):
            yield f"pfn {pfn:#x} is tagged without reserved tag storage"


def free_lists(alloc: PageAllocator) -> Iterator[str]:
    """Every free block is on the list of its zone, order and pageblock type, and the free
    counters (all memory and tag storage) agree with the lists."""
    buddy = alloc.buddy
    free = 0
    for head, order in buddy.free_blocks():
        zone = buddy.zone_of(head)
        mt = buddy.block_type(head)
        if head % (1 << order) or order > MAX_ORDER or head not in zone.free[order][mt]:
            yield f"free block {head:#x} order {order} is on the wrong list"
        free += 1 << order
    nr_free_types = sum(len(z.free[o][mt]) << o for z in buddy.zones for o in range(MAX_ORDER + 1)
                        for mt in z.free[o])
    if free != buddy.nr_free or nr_free_types != free:
        yield f"free pages: lists hold {free}, typed lists {nr_free_types}, counter says {buddy.nr_free}"
    tag_free = sum(1 << o for h, o in buddy.free_blocks() if buddy.is_tag_storage(h))
    if tag_free != buddy.nr_free_tag_storage:
        yield f"free tag storage: lists hold {tag_free}, counter says {buddy.nr_free_tag_storage}"


def one_owner_per_page(alloc: PageAllocator) -> Iterator[str]:
    """Every managed page is exactly one of: free, a user page, a kernel page, a page of a
    reserved tag block."""
    buddy, st = alloc.buddy, alloc.storage
    owners: dict[int, str] = dict.fromkeys(alloc.user_pages(), "user")
    for pfn in alloc.kernel_pages:
        if pfn in owners:
            yield f"pfn {pfn:#x} is both a kernel page and a {owners[pfn]} page"
        owners[pfn] = "kernel"
    for block in st.blocks if st is not None else ():
        for pfn in range(block, block + st.block_pages(block)):      # type: ignore[union-attr]
            if pfn in owners:
                yield f"pfn {pfn:#x} is in reserved tag block {block:#x} and is a {owners[pfn]} page"
            owners[pfn] = "tag block"
    spans = sorted((h, h + (1 << o)) for h, o in buddy.free_blocks())
    i = 0
    for pfn in sorted(owners):           # one sweep: no used page lies in a free block
        while i < len(spans) and spans[i][1] <= pfn:
            i += 1
        if i < len(spans) and spans[i][0] <= pfn:
            yield f"pfn {pfn:#x} is a {owners[pfn]} page and free"
    free = sum(end - head for head, end in spans)
    if len(owners) + free != buddy.managed:
        yield f"page accounting: {len(owners)} used + {free} free != {buddy.managed} managed"


INVARIANTS = (reverse_map, tag_storage_untagged, tag_blocks_counted, free_lists, one_owner_per_page)


def violations(alloc: PageAllocator) -> list[str]:
    return [v for invariant in INVARIANTS for v in invariant(alloc)]


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
