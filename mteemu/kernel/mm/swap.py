"""Swap: a swap device, reclaim of anonymous pages in LRU order, and swap-in — with MTE's
part: the tags of a tagged page are saved per swap entry on swap-out (mte_save_tags,
tags_by_swp_entry) and restored on swap-in (arch_swap_restore). A page swapped in
without tag storage cannot take them: arch_swap_prepare_to_restore() parks them under
its pfn until the storage is reserved (the fix for the RFC's race B).

Swap-in brings a page back for every mapping of the entry at once (Linux gets the same
result through the swap cache).
"""
from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING, Optional

from mteemu.errors import InputError
from mteemu.kernel.mm.migrate import movable
from mteemu.kernel.mm.pagealloc import PageAllocator
from mteemu.machine.physmem import PAGE_SIZE

if TYPE_CHECKING:
    from mteemu.kernel.mm.addrspace import Mm
    from mteemu.kernel.mm.pagealloc import PageUser

SWAP_CLUSTER_MAX = 32          # pages reclaimed per round (mm/vmscan.c)


class SwapDevice:
    """`pages` slots, kept in host memory, or in a new file at `path` (removed at close)."""

    def __init__(self, pages: int, path: Optional[str] = None) -> None:
        self.capacity = pages
        self._next = 0
        self._free: list[int] = []
        self._mem: dict[int, bytes] = {}
        self.tags: dict[int, bytes] = {}                       # tags_by_swp_entry
        self.users: dict[int, set[tuple["PageUser", int]]] = {}      # the page-table entries holding a slot
        self.path = path
        self._fd: Optional[int] = None
        if path is not None:
            try:
                self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                raise InputError(f"--swap-file {path}: exists; mteemu only creates a new swap file") from None
            except OSError as e:
                raise InputError(f"--swap-file {path}: {e.strerror}") from None

    @property
    def used(self) -> int:
        return self._next - len(self._free)

    def full(self) -> bool:
        return self.used >= self.capacity

    def store(self, data: bytes) -> int:
        slot = self._free.pop() if self._free else self._next
        if slot == self._next:
            self._next += 1
        if self._fd is not None:
            os.pwrite(self._fd, data, slot * PAGE_SIZE)
        else:
            self._mem[slot] = data
        return slot

    def load(self, slot: int) -> bytes:
        if self._fd is not None:
            return os.pread(self._fd, PAGE_SIZE, slot * PAGE_SIZE)
        return self._mem[slot]

    def release(self, slot: int) -> None:
        """swap_free(): the last entry referring to the slot is gone (its tags too)."""
        self._mem.pop(slot, None)
        self.tags.pop(slot, None)
        self.users.pop(slot, None)
        self._free.append(slot)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            try:
                os.unlink(self.path or "")
            except OSError:
                pass


def reclaim(alloc: PageAllocator, want: int = SWAP_CLUSTER_MAX) -> bool:
    """shrink_inactive_list() for anonymous pages, oldest first: True if any page was
    swapped out. Pages that cannot move (pinned, isolated, unknown users) stay."""
    dev = alloc.swap
    if dev is None or alloc.reclaiming:
        return False
    alloc.reclaiming = True
    freed = scanned = 0
    try:
        # Oldest first; a page that cannot go now moves to the young end (as Linux puts
        # it back on the LRU), so each round looks at a few pages, not the whole list.
        while freed < want and scanned < len(alloc.lru) and not dev.full():
            batch = list(itertools.islice(alloc.lru, 2 * (want - freed)))
            for pfn in batch:
                scanned += 1
                if movable(alloc, pfn) and pfn not in alloc.owner and alloc.mappers.get(pfn):
                    swap_out(alloc, pfn)
                    freed += 1
                    if dev.full():
                        break
                elif pfn in alloc.lru:
                    del alloc.lru[pfn]
                    alloc.lru[pfn] = None
    finally:
        alloc.reclaiming = False
    return freed > 0


def swap_out(alloc: PageAllocator, pfn: int) -> None:
    dev = alloc.swap_device
    slot = dev.store(bytes(alloc.physmem.page(pfn)))
    tags = alloc.saved_tags(pfn)                                    # arch_prepare_to_swap()
    if tags is not None:
        dev.tags[slot] = tags
    users = alloc.mappers.pop(pfn)
    for mm, vpn in users:
        mm.pt.to_swap(vpn, slot)
    dev.users[slot] = users
    alloc.drop_refs(pfn)
    alloc.forget(pfn)
    alloc.free_to_buddy(pfn)
    alloc.events["pswpout"] += 1
    alloc.remap_gen += 1
    alloc.on_remap()


def swap_in(alloc: PageAllocator, slot: int, tagged: bool) -> int:
    """do_swap_page(): a new page for the entry (tagged when the faulting VMA is VM_MTE),
    its data and tags, installed in every page-table entry that held the slot."""
    pfn = alloc.alloc(tagged=tagged, anon=True)
    read_page(alloc, slot, pfn)
    restore_tags(alloc, slot, pfn)
    install(alloc, slot, pfn)
    return pfn


def read_page(alloc: PageAllocator, slot: int, pfn: int) -> None:
    alloc.physmem.page(pfn)[:] = alloc.swap_device.load(slot)


def restore_tags(alloc: PageAllocator, slot: int, pfn: int) -> None:
    """arch_swap_prepare_to_restore() + arch_swap_restore()."""
    tags = alloc.swap_device.tags.get(slot)
    if tags is None:
        return
    if not alloc.has_storage(pfn) and "swap-prepare-restore" in alloc.fixes:
        # "Tags will be restored when tag storage is reserved."
        alloc.tag_storage.parked[pfn] = tags
    else:
        # Mainline restores whenever the entry has tags (so a later mprotect(PROT_MTE) of
        # an untagged mapping sees them) — without storage, into someone else's memory:
        # race B.
        alloc.write_tags(pfn, tags)


def install(alloc: PageAllocator, slot: int, pfn: int) -> None:
    """The new page replaces the entry in every PTE holding it; the slot is freed."""
    users = alloc.swap_device.users.get(slot, set())
    alloc.set_refs(pfn, len(users))
    for mm, vpn in users:
        mm.pt.from_swap(vpn, pfn)
        alloc.add_mapper(pfn, mm, vpn)
    alloc.swap_device.release(slot)
    alloc.events["pswpin"] += 1


def drop_entry(alloc: PageAllocator, slot: int, mm: "Mm", vpn: int) -> None:
    """A page-table entry holding the slot is gone (munmap, exit)."""
    users = alloc.swap_device.users.get(slot)
    if users is not None:
        users.discard((mm, vpn))
        if not users:
            alloc.swap_device.release(slot)


def add_entry(alloc: PageAllocator, slot: int, mm: "Mm", vpn: int) -> None:
    """swap_duplicate(): fork or mremap made another entry hold the slot."""
    alloc.swap_device.users.setdefault(slot, set()).add((mm, vpn))
