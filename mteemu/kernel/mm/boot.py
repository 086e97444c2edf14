"""Booting the memory manager on a board, once for everyone who needs one: the kernel,
the race explorer's world and the allocator benchmark (mm_init() and what precedes it).

RAM and its tag storage become host memory (machine/), the page allocator takes every
page the board offers and the tag-storage regions its boot checks accept
(board/bootchecks.py), swap is added if asked for, and — the machine's side of the RFC's
design — a tag write for a page whose tag block is not reserved is caught (tags.guard)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

from mteemu.board.model import Board
from mteemu.kernel.kmsg import KernelLog
from mteemu.kernel.mm import migrate, pagecheck, swap
from mteemu.kernel.mm.fixes import FIXES
from mteemu.kernel.mm.pagealloc import PageAllocator
from mteemu.kernel.mm.swap import SwapDevice
from mteemu.kernel.mm.tag_storage import POLICIES
from mteemu.machine.physmem import PhysMem
from mteemu.machine.tagstore import TagStore


@dataclass
class MemorySystem:
    physmem: PhysMem
    tags: TagStore
    alloc: PageAllocator
    kmsg: KernelLog


def boot_mm(board: Board, policy: str = "metadata", limit_pages: Optional[int] = None,
            kmsg: Optional[KernelLog] = None, fixes: tuple[str, ...] = FIXES, swap_pages: int = 0,
            swap_file: Optional[str] = None) -> MemorySystem:
    kmsg = kmsg or KernelLog()
    physmem = PhysMem(board)
    tags = TagStore(board, physmem)
    alloc = PageAllocator(physmem, tags, board, limit_pages, POLICIES[policy], kmsg, tuple(fixes),
                          reclaim=swap.reclaim, compact=migrate.compact, take_range=migrate.alloc_contig_range)
    if swap_pages:
        alloc.swap = SwapDevice(swap_pages, swap_file)
        kmsg.log(f"Adding {swap_pages * 4}k swap on {swap_file or '[memory]'}")
    if alloc.storage is not None:
        tags.guarded = alloc.storage.reserved
        tags.guard = functools.partial(pagecheck.tag_write_guard, alloc)
    return MemorySystem(physmem, tags, alloc, kmsg)
