"""Time syscalls: the host's clocks, and sleeps that block only the calling thread."""
from __future__ import annotations

import errno
import struct
import time
from typing import TYPE_CHECKING

from mteemu.kernel import signals as S
from mteemu.kernel.process import Thread, Wait
from mteemu.kernel.syscalls.args import s32
from mteemu.kernel.syscalls.registry import Support, syscall
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi

CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 0, 1, 2, 3
CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME = 4, 5, 6, 7
TIMER_ABSTIME = 1


def _clock_ns(clock: int) -> int:
    clock = s32(clock)
    if clock in (CLOCK_REALTIME, CLOCK_REALTIME_COARSE, 8):
        return time.time_ns()
    if clock in (CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME, 9):
        return time.monotonic_ns()
    if clock in (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID):
        return time.process_time_ns()
    raise SyscallError(errno.EINVAL)


def _read_timespec(t: Thread, addr: int) -> int:
    sec, nsec = t.proc.mem.read_struct("<qq", addr)
    if sec < 0 or not 0 <= nsec < 1_000_000_000:
        raise SyscallError(errno.EINVAL)
    return sec * 1_000_000_000 + nsec


@syscall("clock_gettime")
def sys_clock_gettime(k: "KernelApi", t: Thread, clock: int, tp: int) -> int:
    ns = _clock_ns(clock)
    t.proc.mem.write_struct("<qq", tp, ns // 1_000_000_000, ns % 1_000_000_000)
    return 0


@syscall("clock_getres")
def sys_clock_getres(k: "KernelApi", t: Thread, clock: int, tp: int) -> int:
    _clock_ns(clock)
    if tp:
        t.proc.mem.write_struct("<qq", tp, 0, 1)
    return 0


@syscall("gettimeofday")
def sys_gettimeofday(k: "KernelApi", t: Thread, tv: int, tz: int) -> int:
    ns = time.time_ns()
    if tv:
        t.proc.mem.write_struct("<qq", tv, ns // 1_000_000_000, (ns // 1000) % 1_000_000)
    if tz:
        t.proc.mem.write_struct("<ii", tz, 0, 0)
    return 0


def _sleep(t: Thread, wake_ns: int, clock_now, rem: int) -> Wait:  # noqa: ANN001
    """Block until the clock reaches wake_ns; on a signal, EINTR with the time left in rem."""
    deadline = time.monotonic() + max(0, wake_ns - clock_now()) / 1e9

    def interrupted() -> int:
        if rem:
            left = max(0, wake_ns - clock_now())
            try:
                t.proc.mem.write_struct("<qq", rem, left // 1_000_000_000, left % 1_000_000_000)
            except SyscallError:
                pass
        return -errno.EINTR

    return Wait(poll=lambda: 0 if clock_now() >= wake_ns else None, deadline=deadline,
                on_timeout=lambda: 0, restartable=False, interrupted=interrupted, queues=())


@syscall("nanosleep")
def sys_nanosleep(k: "KernelApi", t: Thread, req: int, rem: int) -> Wait:
    ns = _read_timespec(t, req)
    return _sleep(t, time.monotonic_ns() + ns, time.monotonic_ns, rem)


@syscall("clock_nanosleep")
def sys_clock_nanosleep(k: "KernelApi", t: Thread, clock: int, flags: int, req: int, rem: int) -> Wait:
    if s32(clock) in (CLOCK_THREAD_CPUTIME_ID,):
        raise SyscallError(errno.EINVAL)
    _clock_ns(clock)
    ns = _read_timespec(t, req)
    def now() -> int:
        return _clock_ns(clock)
    if flags & TIMER_ABSTIME:
        return _sleep(t, ns, now, 0)
    return _sleep(t, now() + ns, now, rem)


@syscall("times", support=Support.PARTIAL,
         note="the children's times are 0; the process's user time is mteemu's CPU time")
def sys_times(k: "KernelApi", t: Thread, buf: int) -> int:
    ticks = int(time.process_time() * 100)
    if buf:
        t.proc.mem.write_struct("<qqqq", buf, ticks, 0, 0, 0)
    return int(time.monotonic() * 100)




def _timeval(t: Thread, addr: int) -> tuple[float, float]:
    isec, iusec, vsec, vusec = t.proc.mem.read_struct("<qqqq", addr)
    if min(isec, vsec) < 0 or not 0 <= iusec < 1_000_000 or not 0 <= vusec < 1_000_000:
        raise SyscallError(errno.EINVAL)
    return isec + iusec / 1e6, vsec + vusec / 1e6


def _current(t: Thread, which: int) -> bytes:
    expiry, interval = t.proc.itimers.get(which, (0.0, 0.0))
    left = max(0.0, expiry - time.monotonic()) if expiry else 0.0
    if expiry and left == 0.0:
        left = 1e-6                             # due but not yet delivered: still armed
    us = [round(x * 1e6) for x in (interval, left)]
    return struct.pack("<qqqq", us[0] // 1_000_000, us[0] % 1_000_000, us[1] // 1_000_000, us[1] % 1_000_000)


@syscall("getitimer", support=Support.PARTIAL,
         note="ITIMER_VIRTUAL and ITIMER_PROF count wall-clock time like ITIMER_REAL")
def sys_getitimer(k: "KernelApi", t: Thread, which: int, value: int) -> int:
    if s32(which) not in S.ITIMER_SIGNALS:
        raise SyscallError(errno.EINVAL)
    t.proc.mem.write(value, _current(t, s32(which)))
    return 0


@syscall("setitimer", support=Support.PARTIAL,
         note="ITIMER_VIRTUAL and ITIMER_PROF count wall-clock time like ITIMER_REAL (no per-process CPU time)")
def sys_setitimer(k: "KernelApi", t: Thread, which: int, new: int, old: int) -> int:
    """setitimer(): ITIMER_REAL counts wall-clock time and sends SIGALRM (alarm() is this);
    ITIMER_VIRTUAL and ITIMER_PROF count the same clock here (docs/known-differences.md)."""
    which = s32(which)
    if which not in S.ITIMER_SIGNALS:
        raise SyscallError(errno.EINVAL)
    interval, value = _timeval(t, new) if new else (0.0, 0.0)
    if old:
        t.proc.mem.write(old, _current(t, which))
    if value:
        t.proc.itimers[which] = (time.monotonic() + value, interval)
        k.sched.need_resched = True      # leave the CPU: the next run is bounded by the timer
    else:
        t.proc.itimers.pop(which, None)
    return 0
