"""The system call table: number -> handler, dispatch, --strace and ENOSYS reporting.

Handlers live in one module per area (fs, mm, signal, process, time, misc) and are
registered with @syscall("name"). A handler gets the kernel, the calling thread and
as many raw 64-bit arguments as it declares; it returns the result, a Wait when the
call must block, or NORETURN when it has set the registers itself (rt_sigreturn,
exit). Errors are raised as SyscallError(errno) and returned as -errno.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from mteemu.kernel.process import Thread, Wait
from mteemu.kernel.syscalls.numbers import SYSCALL_NAMES, SYSCALL_NUMBERS
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.kernel import Kernel

class _NoReturn:
    """The result of a call that set the registers itself (rt_sigreturn, execve)."""


NORETURN = _NoReturn()
# What a handler returns: x0, a Wait (the call blocks), or NORETURN.
SyscallResult = "int | Wait | _NoReturn"
MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class Handler:
    name: str
    fn: Callable
    nargs: int
    strings: tuple[int, ...]     # argument positions that are C strings (for --strace)


_HANDLERS: dict[int, Handler] = {}


def syscall(name: str, strings: tuple[int, ...] = ()) -> Callable:
    def register(fn: Callable) -> Callable:
        nargs = fn.__code__.co_argcount - 2       # (k, t, args...): inspect.signature costs 10 ms at start-up
        _HANDLERS[SYSCALL_NUMBERS[name]] = Handler(name, fn, nargs, strings)
        return fn
    return register


def s32(v: int) -> int:
    v &= 0xFFFF_FFFF
    return v - (1 << 32) if v & (1 << 31) else v


def s64(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


class SyscallTable:
    def __init__(self, kernel: "Kernel") -> None:
        # Importing the area modules registers their handlers.
        from mteemu.kernel.syscalls import exec, fs, fsinfo, misc, mm, process, shm, signal, time  # noqa: F401
        self.kernel = kernel
        self.handlers = _HANDLERS
        self.warned: set[int] = set()

    # What the call being made did not model (unmodelled()): --strace says so.
    not_modelled: Optional[str] = None

    def dispatch(self, t: Thread) -> int:
        """Make the call the thread's registers hold; its number."""
        k = self.kernel
        nr, *args = k.cpu.syscall_args()
        self.not_modelled = None
        h = self.handlers.get(nr)
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
                    self._trace(t, nr, h, args, NORETURN)
                raise
        if k.options.strace:
            self._trace(t, nr, h, args, result)
        if result is NORETURN:
            return nr
        if isinstance(result, Wait):
            k.block(t, result)
            return nr
        k.cpu.syscall_return(result)
        return nr

    def _trace(self, t: Thread, nr: int, h: "Handler | None", args: list[int],
               result: "int | Wait | _NoReturn") -> None:
        name = h.name if h else SYSCALL_NAMES.get(nr, f"syscall_{nr}")
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
        if isinstance(result, _NoReturn):
            res = "?"
        elif isinstance(result, Wait):
            res = "? <blocked>"
        else:
            r = s64(result & MASK64)
            res = f"-1 {errno.errorcode.get(-r, -r)} ({os.strerror(-r)})" if -4096 < r < 0 else \
                (str(r) if r < 65536 else hex(r))
        k = self.kernel
        if self.not_modelled:
            res += f" (not modelled: {self.not_modelled})"
        k.diag.write(f"[{t.tid}] {name}({', '.join(shown)}) = {res}\n")
        k.diag.flush()


# Calls that only report: nothing another thread waits for can change by them, so no
# blocked thread is polled after one (sched._pick polls them all before every switch).
QUERIES = frozenset(SYSCALL_NUMBERS[n] for n in (
    "getpid", "getppid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getpgid", "getsid",
    "clock_gettime", "clock_getres", "gettimeofday", "uname", "getrandom", "getcwd", "sched_getaffinity",
    "getrusage", "sysinfo", "times", "fstat", "newfstatat"))


# The calls C answers itself once armed (cpu.answer_ids): their answers change only when
# the kernel runs.
IDS = frozenset(SYSCALL_NUMBERS[n] for n in ("getpid", "getppid", "gettid"))


def unmodelled(k: "Kernel", what: str) -> None:
    """The call succeeds without all of the effect Linux would give it (each such case is in
    the README's known differences); `--strace` shows `what` on the call's line."""
    k.syscalls.not_modelled = what


def blocking(attempt: Callable[[], int], would: type[Exception], **wait_args) -> "int | Wait":
    """Run attempt(); if it would block, return a Wait that retries it until it can finish."""
    try:
        return attempt()
    except would:
        pass

    def poll() -> "int | None":
        try:
            return attempt()
        except would:
            return None
        except SyscallError as e:
            return -e.errno

    return Wait(poll=poll, **wait_args)
