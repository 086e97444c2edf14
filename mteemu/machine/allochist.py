"""The allocation history: every call of the program's allocator (malloc, calloc,
realloc, free, memalign, posix_memalign, aligned_alloc, valloc, pvalloc) with its
pointer, size, thread and a short backtrace, and every tag store made outside it — what a
tag-check fault report needs to say who allocated, freed or last tagged the memory
(report/causes.py).

How it is heard: a bounded `UC_HOOK_CODE` hook on each allocator entry point (found by
symbol: kernel/allocwatch.py) reads the arguments. A free is recorded there. A call that
returns a pointer is remembered for its thread, and its return address (x30) replaced by
the address of a `ret` in the [vdso] stand-in (the *trampoline*), whose own hook records
the result and puts the real return address back before that `ret` runs: uretprobes'
method (Documentation/trace/uprobetracer.rst), with a code hook for the breakpoint. A
free is recorded at its entry, and returns through the trampoline too, so that the tag
stores it makes are known to be the allocator's. A call made inside another (realloc's
malloc) belongs to the outer one and is not recorded. A PACIASP at the entry signs the
trampoline's address, which AUTIASP then checks: nothing in the program notices.

Tag stores (STG, ST2G, STZG, STZ2G, STGP, DC GVA/GZVA) to tagged memory made while the
thread is in no allocator call are the fallback for a program whose allocator mteemu does
not know: one event per run of contiguous granules tagged by one instruction with one tag.

Two rings keep the last events (a ring like Scudo's: the oldest are forgotten): the calls
and the tag stores, one sequence number across both. A history belongs to an address
space: threads share it, fork copies it, exec starts a new one.

Two implementations record the same events: `PyHistory` (this file: the reference, used
by the pure-Python path) and `NativeHistory` (_allochist.c, Unicorn calls it directly: no
Python frame per call). tests/test_alloc_history.py runs programs on both and compares.
"""
from __future__ import annotations

import ctypes
from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from mteemu.machine.arm64 import ACCESS_READ, REG_SP, X_REGS
from mteemu.machine.physmem import PAGE_SIZE

if TYPE_CHECKING:
    from mteemu.machine.native import Native
    from mteemu.machine.physmem import PhysMem

OPS = {"malloc": 1, "calloc": 2, "realloc": 3, "free": 4, "memalign": 5, "posix_memalign": 6,
       "aligned_alloc": 7, "valloc": 8, "pvalloc": 9}
OP_NAMES = {v: k for k, v in OPS.items()} | {16: "tag store"}
TAG_WRITE = 16
KIND_ALLOC, KIND_FREE, KIND_TAGS = 1, 2, 3
FRAMES = 10                   # pc, lr, then up to 8 return addresses of the x29 chain
PENDING = 64                  # threads inside an allocator call at once
ENTRIES = 16
DEFAULT_CALLS = 65536         # events kept per address space (--alloc-history N)
DEFAULT_TAG_STORES = 4096
_VA = (1 << 56) - 1


@dataclass(frozen=True)
class Event:
    seq: int                  # order across both rings
    op: int                   # OPS, or TAG_WRITE
    kind: int                 # KIND_ALLOC, KIND_FREE, KIND_TAGS
    tid: int
    ptr: int                  # the pointer as the program saw it (tag bits kept)
    size: int                 # bytes asked for (0 for a free); tagged bytes for a tag store
    frames: tuple[int, ...]   # pc, lr, return addresses (lr 0 when not known)

    @property
    def start(self) -> int:
        return self.ptr & _VA

    @property
    def tag(self) -> int:
        return (self.ptr >> 56) & 0xF


class History(Protocol):
    """What the kernel and the report use of a history, either implementation."""
    table: dict[int, int]
    trampoline: int

    def set_table(self, table: dict[int, int], trampoline: int) -> None: ...
    def clone(self) -> "History": ...
    def events(self, tags: bool = False) -> list[Event]: ...
    def tag_write(self, tid: int, pc: int, va: int, size: int, frames: Callable[[], tuple[int, ...]]) -> None: ...
    def close(self) -> None: ...


def _size(op: int, a0: int, a1: int, a2: int) -> int:
    """The bytes asked for, from the arguments (ah_size() in C)."""
    if op == OPS["calloc"]:
        return (a0 * a1) & ((1 << 64) - 1)
    if op == OPS["realloc"]:
        return a1
    if op == OPS["posix_memalign"]:
        return a2
    if op == OPS["pvalloc"]:
        return (a0 + 4095) & ~4095 & ((1 << 64) - 1)
    if op in (OPS["malloc"], OPS["valloc"]):
        return a0
    return a1                 # memalign, aligned_alloc: (alignment, size)


@dataclass
class _Pending:
    op: int
    lr: int
    sp: int
    args: tuple[int, int, int]
    frames: tuple[int, ...]


class PyHistory:
    """The reference: the events _allochist.c records, in Python."""

    def __init__(self, calls: int = DEFAULT_CALLS, tag_stores: int = DEFAULT_TAG_STORES) -> None:
        self.calls: deque[Event] = deque(maxlen=calls)
        self.tags: deque[Event] = deque(maxlen=tag_stores)
        self.seq = 0
        self.pending: dict[int, _Pending] = {}
        self.table: dict[int, int] = {}
        self.trampoline = 0

    def set_table(self, table: dict[int, int], trampoline: int) -> None:
        if len(table) > ENTRIES:
            raise ValueError(f"more than {ENTRIES} allocator entry points")
        self.table, self.trampoline = dict(table), trampoline

    def clone(self) -> "PyHistory":
        h = PyHistory(self.calls.maxlen or 0, self.tags.maxlen or 0)
        h.calls.extend(self.calls)
        h.tags.extend(self.tags)
        h.seq, h.table, h.trampoline = self.seq, dict(self.table), self.trampoline
        return h

    def events(self, tags: bool = False) -> list[Event]:
        return list(self.tags if tags else self.calls)

    def close(self) -> None:
        pass

    def _record(self, ring: deque, op: int, kind: int, tid: int, ptr: int, size: int,
                frames: tuple[int, ...]) -> None:
        if ring.maxlen:
            self.seq += 1
            ring.append(Event(self.seq, op, kind, tid, ptr, size, frames))

    # -- what the hooks hear (ah_on_code, ah_tag_write in C) --------------------------------
    def entered(self, op: int, tid: int, regs: Callable[[int], int], set_lr: Callable[[int], None],
                frames: tuple[int, ...], sp: int) -> None:
        outer = self.pending.get(tid)
        if outer is not None and (sp < outer.sp or regs(30) == self.trampoline):
            # Inside another allocator call (realloc's malloc), deeper on the stack or
            # tail-called from it (realloc(NULL, n) jumps to malloc: x30 is the trampoline).
            return
        self.pending.pop(tid, None)   # a call left without returning (longjmp): forgotten
        if op == OPS["free"] and regs(0):     # recorded now; its return only ends the call
            self._record(self.calls, op, KIND_FREE, tid, regs(0), 0, frames)
        if not self.trampoline or len(self.pending) >= PENDING:
            return
        self.pending[tid] = _Pending(op, regs(30), sp, (regs(0), regs(1), regs(2)), frames)
        set_lr(self.trampoline)

    def returned(self, tid: int, regs: Callable[[int], int], set_lr: Callable[[int], None],
                 read_u64: Callable[[int], Optional[int]]) -> None:
        p = self.pending.pop(tid, None)
        if p is None:
            return
        ret = regs(0)
        set_lr(p.lr)
        a0, a1, a2 = p.args
        if p.op == OPS["posix_memalign"]:
            ret = (read_u64(a0) or 0) if ret == 0 else 0
        if p.op == OPS["realloc"] and a0 and (ret or a1 == 0):
            self._record(self.calls, p.op, KIND_FREE, tid, a0, 0, p.frames)
        if ret and p.op != OPS["free"]:
            self._record(self.calls, p.op, KIND_ALLOC, tid, ret, _size(p.op, a0, a1, a2), p.frames)

    def tag_write(self, tid: int, pc: int, va: int, size: int, frames: Callable[[], tuple[int, ...]]) -> None:
        """A tag store to tagged memory (va with the tag stored) outside the allocator."""
        if not self.tags.maxlen or tid in self.pending:
            return
        last = self.tags[-1] if self.tags else None
        if last is not None and last.frames[0] == pc and last.tid == tid and last.ptr >> 56 == va >> 56 \
                and last.start + last.size == va & _VA:
            self.tags[-1] = replace(last, size=last.size + size)
            return
        self._record(self.tags, TAG_WRITE, KIND_TAGS, tid, va, size, frames())


class _CEvent(ctypes.Structure):
    """struct ah_event (_allochist.c)."""

    _fields_ = (("seq", ctypes.c_uint64), ("op", ctypes.c_uint32), ("kind", ctypes.c_uint32),
                ("tid", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("ptr", ctypes.c_uint64),
                ("size", ctypes.c_uint64), ("frames", ctypes.c_uint64 * FRAMES))


class NativeHistory:
    """A history kept by _allochist.c (a `struct ah_hist`, freed by close())."""

    def __init__(self, native: "Native", calls: int = DEFAULT_CALLS, tag_stores: int = DEFAULT_TAG_STORES,
                 handle: Optional[int] = None) -> None:
        self.native, self.lib = native, native.lib
        self.handle: Optional[int] = handle if handle is not None else self.lib.ah_new(calls, tag_stores)
        if not self.handle:
            raise MemoryError("ah_new")
        self.table: dict[int, int] = {}
        self.trampoline = 0

    def set_table(self, table: dict[int, int], trampoline: int) -> None:
        n = len(table)
        addrs = (ctypes.c_uint64 * max(n, 1))(*table)
        ops = (ctypes.c_uint32 * max(n, 1))(*table.values())
        if self.lib.ah_set_table(self.handle, n, addrs, ops, trampoline) != 0:
            raise ValueError(f"more than {ENTRIES} allocator entry points")
        self.table, self.trampoline = dict(table), trampoline

    def clone(self) -> "NativeHistory":
        handle = self.lib.ah_clone(self.handle)
        if not handle:
            raise MemoryError("ah_clone")
        h = NativeHistory(self.native, handle=handle)
        h.table, h.trampoline = dict(self.table), self.trampoline
        return h

    def events(self, tags: bool = False) -> list[Event]:
        out, ev = [], _CEvent()
        for i in range(self.lib.ah_count(self.handle, int(tags))):
            self.lib.ah_get(self.handle, int(tags), i, ctypes.byref(ev))
            frames = tuple(ev.frames)
            out.append(Event(ev.seq, ev.op, ev.kind, ev.tid, ev.ptr, ev.size, _trim(frames)))
        return out

    def tag_write(self, tid: int, pc: int, va: int, size: int, frames: Callable[[], tuple[int, ...]]) -> None:
        got = frames()
        arr = (ctypes.c_uint64 * FRAMES)(*got[:FRAMES])
        self.lib.ah_add_tag_write(self.handle, tid, pc, va, size, arr)

    def close(self) -> None:
        if self.handle:
            if self.native.ctx:
                self.lib.mte_drop_history(self.native.ctx, self.handle)
            self.lib.ah_free(self.handle)
            self.handle = None

    def __del__(self) -> None:
        self.close()


def _trim(frames: tuple[int, ...]) -> tuple[int, ...]:
    """Frames without the unused zero slots at the end (pc and lr always kept)."""
    n = len(frames)
    while n > 2 and frames[n - 1] == 0:
        n -= 1
    return frames[:n]


class AllocHooks:
    """The CPU's hooks on allocator entry points and trampolines, and the history they
    record into (the address space on the CPU's). Hooks are the engine's, shared by every
    address space: an address hooked for one is ignored while another runs there."""

    def __init__(self, uc: Any, physmem: "PhysMem", native: "Optional[Native]",
                 translate: Callable[[int, int], Any], invalidate_code: Callable[[], None]) -> None:
        self.uc, self.physmem, self.native, self.translate = uc, physmem, native, translate
        self._invalidate_code = invalidate_code
        self.hooked: set[int] = set()
        self.current: Optional[History] = None
        self.tid = 0

    def new_history(self, calls: int, tag_stores: int) -> History:
        if self.native is not None:
            return NativeHistory(self.native, calls, tag_stores)
        return PyHistory(calls, tag_stores)

    def set_current(self, history: Optional[History], tid: int) -> None:
        self.current, self.tid = history, tid
        if self.native is not None:
            handle = history.handle if isinstance(history, NativeHistory) else None
            self.native.lib.mte_set_history(self.native.ctx, handle, tid)

    def watch(self, addrs: set[int]) -> None:
        """Hook these addresses too (the hooks stay: a later address space often uses the
        same); translated code is dropped, as hook calls are compiled into it."""
        from unicorn import UC_HOOK_CODE

        from mteemu.machine import unicorn_shim

        new = addrs - self.hooked
        if not new:
            return
        for addr in sorted(new):
            if self.native is not None and self.native.ctx is not None:
                unicorn_shim.add_c_hook(self.uc, UC_HOOK_CODE, self.native.ah_hook, self.native.ctx, addr, addr)
            else:
                self.uc.hook_add(UC_HOOK_CODE, self._on_code, begin=addr, end=addr)
        self.hooked |= new
        self._invalidate_code()

    # -- the pure-Python path's hooks (ah_on_code in C) ---------------------------------------
    def read_u64(self, va: int) -> Optional[int]:
        if va & 7:
            return None
        res = self.translate(va & ~(PAGE_SIZE - 1) & _VA, ACCESS_READ)
        if res is None:
            return None
        return int.from_bytes(self.physmem.view(res[0] | (va & (PAGE_SIZE - 1)), 8), "little")

    def backtrace(self, pc: int, lr: int, fp: int) -> tuple[int, ...]:
        """pc, lr, then the return addresses of the AAPCS64 frame records from x29
        (ah_backtrace() in C: the same stopping rules)."""
        frames = [pc, lr & _VA]
        while len(frames) < FRAMES and fp and not fp & 7:
            nxt, ret = self.read_u64(fp), self.read_u64(fp + 8)
            if nxt is None or not ret:
                break
            frames.append(ret & _VA)
            if nxt <= fp:
                break
            fp = nxt
        return tuple(frames)

    def _on_code(self, uc: Any, address: int, _size: int, _data: Any) -> None:
        h = self.current
        if not isinstance(h, PyHistory):
            return
        regs: Callable[[int], int] = lambda n: uc.reg_read(X_REGS[n])   # noqa: E731

        def set_lr(v: int) -> None:
            uc.reg_write(X_REGS[30], v)

        if address == h.trampoline:
            h.returned(self.tid, regs, set_lr, self.read_u64)
            return
        op = h.table.get(address)
        if op is not None:
            h.entered(op, self.tid, regs, set_lr, self.backtrace(address, regs(30), regs(29)), uc.reg_read(REG_SP))

    def tag_write(self, pc: int, va: int, size: int, reg: Callable[[int], int]) -> None:
        """A tag store the Python path emulated at pc (ah_tag_write in C); va carries
        the tag stored."""
        h = self.current
        if h is not None:
            h.tag_write(self.tid, pc, va, size, lambda: self.backtrace(pc, reg(30), reg(29)))

