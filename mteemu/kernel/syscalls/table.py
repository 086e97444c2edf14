"""The system call table: number -> handler, built from the handler modules named here;
dispatch, --strace and ENOSYS reporting.

A handler gets the kernel, the calling thread and as many raw 64-bit arguments as it
declares; it returns the result, a Wait when the call must block, NORETURN when it has set
the registers itself (rt_sigreturn, exit), or an Unmodelled result. Errors are raised as
SyscallError(errno) and returned as -errno.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Callable, Optional

from mteemu.kernel.process import Thread, Wait
from mteemu.kernel.syscalls import (
    attr,
    clone,
    exec,
    exit,
    file,
    futex,
    ids,
    misc,
    mm,
    path,
    poll,
    prctl,
    read_write,
    rlimit,
    sched,
    shm,
    signal,
    stat,
    thread,
    time,
    wait,
    xattr,
)
from mteemu.kernel.syscalls.args import s64
from mteemu.kernel.syscalls.numbers import SYSCALL_NAMES, SYSCALL_NUMBERS
from mteemu.kernel.syscalls.registry import NORETURN, NoReturnResult, Spec, Support, Unmodelled
from mteemu.kernel.uaccess import SyscallError
from mteemu.machine.arm64 import MASK64

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi

# The handler modules, by family as gVisor's sentry keeps them (one per file of Linux's).
MODULES: tuple[ModuleType, ...] = (
    read_write, file, path, stat, attr, xattr, poll, mm, shm, exec, clone, exit, wait, thread, futex, ids,
    prctl, sched, rlimit, signal, time, misc)


@dataclass(frozen=True)
class Handler:
    nr: int
    name: str
    fn: Callable
    nargs: int
    strings: tuple[int, ...]     # argument positions that are C strings (for --strace)
    support: Support
    note: str


def collect(modules: tuple[ModuleType, ...] = MODULES) -> dict[int, Handler]:
    """Every handler the modules mark with @syscall, by number; a call marked twice is an error."""
    out: dict[int, Handler] = {}
    for mod in modules:
        for fn in vars(mod).values():
            specs: Optional[list[Spec]] = getattr(fn, "syscalls", None) if callable(fn) else None
            for spec in specs or ():
                nr = SYSCALL_NUMBERS[spec.name]
                if nr in out and out[nr].fn is not fn:
                    raise RuntimeError(f"{spec.name} is handled twice: {out[nr].fn} and {fn}")
                nargs = fn.__code__.co_argcount - 2    # (k, t, args...): inspect.signature costs 10 ms at start-up
                out[nr] = Handler(nr, spec.name, fn, nargs, spec.strings, spec.support, spec.note)
    return out


HANDLERS = collect()


class SyscallTable:
    def __init__(self, kernel: "KernelApi") -> None:
        self.kernel = kernel
        self.handlers = HANDLERS
        self.warned: set[int] = set()

    def dispatch(self, t: Thread) -> int:
        """Make the call the thread's registers hold; its number."""
        k = self.kernel
        nr, *args = k.cpu.sys.args()
        h = self.handlers.get(nr)
        # The arguments as strace shows them, read before the call: execve replaces the
        # memory its path and argv strings were in.
        shown = self._shown(t, h, args) if k.options.strace else []
        if h is None:
            result = -errno.ENOSYS
            if nr not in self.warned:
                self.warned.add(nr)
                k.say(f"unimplemented syscall {SYSCALL_NAMES.get(nr, '?')} ({nr}): returning ENOSYS")
        else:
            try:
                result = h.fn(k, t, *args[:h.nargs])
            except SyscallError as e:
                result = -e.errno
            except OSError as e:
                # A host call under a handler failed (e.g. pwrite on a read-only host fd):
                # the guest sees its errno, as it would from Linux.
                result = -(e.errno or errno.EIO)
            except BaseException:
                # The call ended the run (the first process exited): still trace it.
                if k.options.strace:
                    self._trace(t, nr, h, shown, NORETURN)
                raise
        if k.options.strace:
            # An execve that returns no more succeeded: strace shows it as 0.
            self._trace(t, nr, h, shown, 0 if result is NORETURN and h is not None and h.name in EXECS else result)
        if type(result) is Unmodelled:
            result = result.result
        if result is NORETURN:
            return nr
        if isinstance(result, Wait):
            k.sched.block(t, result)
            return nr
        k.cpu.sys.ret(result)
        return nr

    @staticmethod
    def _shown(t: Thread, h: "Handler | None", args: list[int]) -> list[str]:
        shown = []
        for i, a in enumerate(args[:h.nargs if h else 6]):
            if h and i in h.strings:
                try:
                    shown.append(repr(t.proc.mem.read_cstr(a, 256).decode(errors="replace")).replace("'", '"'))
                    continue
                except SyscallError:
                    pass
            sa = s64(a)
            shown.append(str(sa) if -4096 < sa < 65536 else hex(a))
        return shown

    def _trace(self, t: Thread, nr: int, h: "Handler | None", shown: list[str],
               result: "int | Wait | NoReturnResult | Unmodelled") -> None:
        name = h.name if h else SYSCALL_NAMES.get(nr, f"syscall_{nr}")
        not_modelled = None
        if isinstance(result, Unmodelled):
            result, not_modelled = result
        if isinstance(result, NoReturnResult):
            res = "?"
        elif isinstance(result, Wait):
            res = "? <blocked>"
        else:
            r = s64(result & MASK64)
            res = f"-1 {errno.errorcode.get(-r, -r)} ({os.strerror(-r)})" if -4096 < r < 0 else \
                (str(r) if r < 65536 else hex(r))
        k = self.kernel
        if not_modelled:
            res += f" (not modelled: {not_modelled})"
        k.write_diag(f"[{t.tid}] {name}({', '.join(shown)}) = {res}\n")


EXECS = ("execve", "execveat")

# Calls that only report: nothing another thread waits for can change by them, so no
# blocked thread is polled after one (Scheduler.pick polls them all before every switch).
QUERIES = frozenset(SYSCALL_NUMBERS[n] for n in (
    "getpid", "getppid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getpgid", "getsid",
    "clock_gettime", "clock_getres", "gettimeofday", "uname", "getrandom", "getcwd", "sched_getaffinity",
    "getrusage", "sysinfo", "times", "fstat", "newfstatat"))


# The calls C answers itself once armed (cpu.sys.answer_ids): their answers change only when
# the kernel runs.
IDS = frozenset(SYSCALL_NUMBERS[n] for n in ("getpid", "getppid", "gettid"))
