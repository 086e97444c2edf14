"""futex(2): wait queues keyed as Linux keys them.

A private futex (or any futex in private memory) is keyed by (mm, address); one in a
shared mapping by (backing object, offset), so processes sharing memory meet.
"""
from __future__ import annotations

import errno
import time
from dataclasses import dataclass, field
from typing import Optional

from mteemu.kernel.process import Process, Thread, Wait
from mteemu.kernel.uaccess import SyscallError, UserMemory
from mteemu.kernel.waitqueue import WaitQueue
from mteemu.machine.physmem import PAGE_SHIFT

FUTEX_WAIT, FUTEX_WAKE, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE = 0, 1, 3, 4
FUTEX_WAKE_OP, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 5, 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256
FUTEX_BITSET_MATCH_ANY = 0xFFFF_FFFF


@dataclass(eq=False)
class Waiter:
    thread: Thread
    bitset: int
    woken: bool = False
    wq: WaitQueue = field(default_factory=WaitQueue)     # its thread sleeps here until woken


class FutexTable:
    def __init__(self) -> None:
        self.queues: dict[tuple, list[Waiter]] = {}

    @staticmethod
    def key(proc: Process, addr: int) -> tuple:
        addr &= (1 << 56) - 1
        vma = proc.mm.vmas.find(addr)
        if vma is not None and vma.shared and vma.obj is not None:
            return ("obj", id(vma.obj), (vma.page_index(addr) << PAGE_SHIFT) | (addr & 0xFFF))
        return ("mm", proc.mm.id, addr)

    def wait(self, t: Thread, addr: int, val: int, deadline: Optional[float], bitset: int) -> Wait:
        if addr & 3:
            raise SyscallError(errno.EINVAL)
        if bitset == 0:
            raise SyscallError(errno.EINVAL)
        if t.proc.mem.u32(addr) != val & 0xFFFF_FFFF:
            raise SyscallError(errno.EAGAIN)
        key = self.key(t.proc, addr)
        w = Waiter(t, bitset)
        self.queues.setdefault(key, []).append(w)

        def cancel() -> None:
            q = self.queues.get(key)
            if q and w in q:
                q.remove(w)
                if not q:
                    del self.queues[key]

        return Wait(poll=lambda: 0 if w.woken else None, deadline=deadline,
                    on_timeout=lambda: -errno.ETIMEDOUT, cancel=cancel, restartable=False, queues=(w.wq,))

    def wake_key(self, key: tuple, n: int, bitset: int = FUTEX_BITSET_MATCH_ANY) -> int:
        q = self.queues.get(key, [])
        woken = 0
        for w in list(q):
            if woken >= n:
                break
            if w.bitset & bitset:
                w.woken = True
                w.wq.wake()
                q.remove(w)
                woken += 1
        if not q:
            self.queues.pop(key, None)
        return woken

    def wake_address(self, proc: Process, addr: int, n: int, bitset: int = FUTEX_BITSET_MATCH_ANY) -> int:
        return self.wake_key(self.key(proc, addr), n, bitset)

    def requeue(self, proc: Process, addr: int, n_wake: int, addr2: int, n_requeue: int) -> int:
        src, dst = self.key(proc, addr), self.key(proc, addr2)
        woken = self.wake_key(src, n_wake)
        q = self.queues.get(src, [])
        moved = q[:n_requeue]
        if moved:
            del q[:n_requeue]
            if not q:
                self.queues.pop(src, None)
            self.queues.setdefault(dst, []).extend(moved)
        return woken + len(moved)


FUTEX_WAITERS, FUTEX_OWNER_DIED, FUTEX_TID_MASK = 0x8000_0000, 0x4000_0000, 0x3FFF_FFFF
ROBUST_LIST_LIMIT = 2048       # the kernel walks at most this many entries (a cyclic list ends)


def exit_robust_list(futexes: FutexTable, t: Thread) -> None:
    """exit_robust_list() (kernel/futex/core.c), run when a thread exits or execs: every
    robust futex on its list that it still owns gets FUTEX_OWNER_DIED, and one waiter is
    woken, so the next pthread_mutex_lock() returns EOWNERDEAD instead of waiting forever.
    The list is struct robust_list_head { next; futex_offset; list_op_pending; }."""
    head = t.robust_list[0]
    if not head:
        return
    mem = UserMemory(t.proc.mm)
    mem.tagged_addr_abi = True
    try:
        entry, offset, pending = mem.read_struct("<QqQ", head)
    except SyscallError:
        return
    for _ in range(ROBUST_LIST_LIMIT):
        if entry == head:
            break
        try:
            nxt = mem.u64(entry & ~1)
        except SyscallError:
            return
        if entry != pending:
            _futex_death(futexes, t, mem, (entry & ~1) + offset, bool(entry & 1), pending_op=False)
        entry = nxt
    if pending:
        _futex_death(futexes, t, mem, (pending & ~1) + offset, bool(pending & 1), pending_op=True)


def _futex_death(futexes: FutexTable, t: Thread, mem: UserMemory, uaddr: int, pi: bool, pending_op: bool) -> None:
    """handle_futex_death()."""
    uaddr &= (1 << 64) - 1
    if uaddr & 3:
        return
    try:
        uval = mem.u32(uaddr)
        if pending_op and not pi and not uval:
            # The owner died between taking the lock and adding it to the list.
            futexes.wake_address(t.proc, uaddr, 1)
            return
        if uval & FUTEX_TID_MASK != t.tid:
            return
        mem.put_u32(uaddr, (uval & FUTEX_WAITERS) | FUTEX_OWNER_DIED)
    except SyscallError:
        return
    if not pi and uval & FUTEX_WAITERS:
        futexes.wake_address(t.proc, uaddr, 1)


def deadline_from_timespec(t: Thread, addr: int, absolute: bool, realtime: bool) -> Optional[float]:
    """A futex timeout as a time.monotonic() deadline (None: wait forever)."""
    if not addr:
        return None
    sec, nsec = t.proc.mem.read_struct("<qq", addr)
    if sec < 0 or not 0 <= nsec < 1_000_000_000:
        raise SyscallError(errno.EINVAL)
    value = sec + nsec / 1e9
    if not absolute:
        return time.monotonic() + value
    now = time.time() if realtime else time.monotonic()
    return time.monotonic() + (value - now)
