"""Page migration (mm/migrate.c) and what is built on it: alloc_contig_range() taking a
tag block, replacing a page with a tagged one (the RFC's fault path), and compaction.

A page can move when every reference to it is known — its page-table entries (the
reverse map) and the object holding it — and nobody has it pinned. Migration copies
the data and the tags (copy_highpage), repoints every user, and checks that the copy
kept both (checksums): a migration that loses either is a model violation.
"""
from __future__ import annotations

from collections import Counter
from typing import Optional

from mteemu.errors import ModelViolation
from mteemu.kernel.mm import pagecheck
from mteemu.kernel.mm.pagealloc import OutOfMemory, PageAllocator


def movable(alloc: PageAllocator, pfn: int, isolated_ok: bool = False) -> bool:
    """A user page whose references are all accounted for, not pinned or isolated (by
    someone else than the caller)."""
    refs = alloc.refcount(pfn)
    if not refs or pfn in alloc.pins or (pfn in alloc.isolated and not isolated_ok):
        return False
    return refs == len(alloc.mappers.get(pfn, ())) + (pfn in alloc.owner)


def migrate_page(alloc: PageAllocator, src: int, tagged: Optional[bool] = None,
                 isolated_ok: bool = False) -> Optional[int]:
    """Move src to a new page; returns it, or None (pgmigrate_fail). The source is left
    with no users and is not freed: the caller keeps it (alloc_contig_range) or frees it.
    The target is tagged (__GFP_TAGGED) when the source is, or when asked."""
    if not movable(alloc, src, isolated_ok):
        alloc.events["pgmigrate_fail"] += 1
        return None
    want_tags = src in alloc.mte_tagged if tagged is None else tagged
    before = pagecheck.checksum(alloc, src)
    with alloc.pinned(src):          # nothing else (reclaim, a nested reservation) may take it
        try:
            dst = alloc.alloc(tagged=want_tags, anon=src in alloc.lru)
        except OutOfMemory:
            alloc.events["pgmigrate_fail"] += 1
            return None
    alloc.copy_highpage(dst, src)
    after = pagecheck.checksum(alloc, dst)
    if after != before:
        what = "data" if after[0] != before[0] else "tags"
        raise ModelViolation(f"migrating pfn {src:#x} to {dst:#x} lost its {what}",
                             (f"source: {pagecheck.describe(alloc, src)}",))
    move_users(alloc, src, dst)
    return dst


def move_users(alloc: PageAllocator, src: int, dst: int) -> None:
    """The end of a migration: every user of src now uses dst (remove_migration_ptes()),
    and src is left with none (not freed)."""
    alloc.move_refs(src, dst)
    users = alloc.mappers.pop(src, set())
    for mm, vpn in users:
        mm.pt.repoint(vpn, dst)
    if users:
        alloc.mappers[dst] = users
    if src in alloc.owner:
        obj, idx = alloc.owner[src]
        obj.pages[idx] = dst
        alloc.set_owner(dst, obj, idx)
    alloc.forget(src)
    alloc.events["pgmigrate_success"] += 1
    alloc.remap_gen += 1
    alloc.on_remap()


def alloc_contig_range(alloc: PageAllocator, start: int, end: int, tries: int) -> bool:
    """Take [start, end) out of the allocator: free pages straight off the free lists,
    used ones migrated away. -EBUSY (a page that cannot move) is retried `tries` times."""
    for _ in range(tries):
        if all(alloc.buddy.is_free(p) or movable(alloc, p) for p in range(start, end)):
            break
    else:
        return False
    pages = range(start, end)
    alloc.isolated.update(pages)         # MIGRATE_ISOLATE: reclaim and other migrations keep off
    try:
        used = set(alloc.buddy.take_free_range(start, end))
        done = [p for p in pages if p not in used]
        for p in sorted(used):
            if migrate_page(alloc, p, isolated_ok=True) is None:
                for q in done:
                    alloc.free_to_buddy(q)
                # Pages still in use stay where they are; the ones not yet moved are untouched.
                return False
            done.append(p)
        return True
    finally:
        alloc.isolated.difference_update(pages)


def replace_with_tagged(alloc: PageAllocator, src: int, tries: int) -> Optional[int]:
    """replace_folio_with_tagged(): a page that cannot get tag storage where it is (it is
    tag storage itself, or its block cannot be reserved) moves to a tagged page."""
    for _ in range(tries):
        dst = migrate_page(alloc, src, tagged=True)
        if dst is not None:
            alloc.free_to_buddy(src)
            return dst
    return None


def compact(alloc: PageAllocator, order: int) -> bool:
    """Direct compaction for an allocation of 2**order pages that failed: pick the
    aligned range with the fewest movable pages in it (never tag storage) and move them
    out. Only runs on this slow path, so looking at every used page here is fine."""
    alloc.events["compact_stall"] += 1
    size = 1 << order
    occupancy = Counter(p >> order for p in alloc.user_pages())
    for key, _n in sorted(occupancy.items(), key=lambda kv: (kv[1], kv[0])):
        start = key << order
        pages = range(start, start + size)
        try:
            if any(alloc.buddy.is_tag_storage(p) for p in (start, start + size - 1)) or \
                    alloc.buddy.zone_of(start) is not alloc.buddy.zone_of(start + size - 1):
                continue
        except ValueError:
            continue                     # not all managed memory
        if not all(alloc.buddy.is_free(p) or movable(alloc, p) for p in pages):
            continue
        if alloc_contig_range(alloc, start, start + size, 1):
            for p in pages:
                alloc.free_to_buddy(p)
            alloc.events["compact_success"] += 1
            return True
    alloc.events["compact_fail"] += 1
    return False
