"""What the memory manager's checks and reports say about a page: a checksum of its data
and tags (migration must keep both), who uses it, and the guard that refuses a tag write
into tag storage that is not reserved (TagStore.guard)."""
from __future__ import annotations

from typing import Optional

from mteemu.errors import ModelViolation
from mteemu.kernel.mm.pagealloc import PageAllocator
from mteemu.machine.physmem import PAGE_SHIFT


def checksum(alloc: PageAllocator, pfn: int) -> tuple[bytes, Optional[bytes]]:
    """The page's data and (if tagged, or parked) tags, hashed: migration must keep both."""
    import hashlib  # invariant checks only: not on every start

    return hashlib.blake2b(alloc.physmem.page(pfn), digest_size=16).digest(), alloc.saved_tags(pfn)


def tag_write_guard(alloc: PageAllocator, pfn: int) -> None:
    """A tag write for a page whose tag storage is not reserved (TagStore.guard): the
    tags would land in memory the allocator may have given to anyone."""
    st = alloc.tag_storage             # the guard exists only with tag storage
    block = st.block_of(pfn)
    if block is None:
        return
    pages = range(block, block + st.block_pages(block))
    living = [f"pfn {p:#x}: {describe(alloc, p)}" for p in pages if not alloc.buddy.is_free(p)]
    what = "holds data" if living else "is free memory"
    raise ModelViolation(
        f"tags of pfn {pfn:#x} written into tag block {block:#x}, which is not reserved and {what}",
        tuple(living) + (f"the page whose tags were written: pfn {pfn:#x}, {describe(alloc, pfn)}",))


def describe(alloc: PageAllocator, pfn: int) -> str:
    """Who uses a page, for reports."""
    if pfn in alloc.kernel_pages:
        return "a kernel page" + (" (the zero page)" if pfn == alloc.zero_pfn else "")
    if alloc.storage is not None and pfn in alloc.storage.blocks:
        return "a reserved tag block"
    users = []
    for mm, vpn in sorted(alloc.mappers.get(pfn, ()), key=lambda u: (getattr(u[0], "id", 0), u[1])):
        users.append(f"{getattr(mm, 'owner_name', 'mm')} at {vpn << PAGE_SHIFT:#x}")
    if pfn in alloc.owner:
        obj, idx = alloc.owner[pfn]
        users.append(f"page {idx} of {getattr(obj, 'name', 'an object')}")
    if not users:
        return "free" if alloc.buddy.is_free(pfn) else "an unmapped page"
    return "data of " + ", ".join(users)
