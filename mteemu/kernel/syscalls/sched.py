"""Scheduling calls (kernel/sched/core.c, kernel/sys.c): yield, CPU affinity on the one
emulated CPU, and niceness.
"""
from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from mteemu.kernel.process import Process, Thread
from mteemu.kernel.syscalls.args import s32
from mteemu.kernel.syscalls.registry import syscall
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi
from mteemu.kernel.syscalls.rlimit import capable


@syscall("sched_yield")
def sys_sched_yield(k: "KernelApi", t: Thread) -> int:
    k.sched.need_resched = True
    return 0


@syscall("sched_getaffinity")
def sys_sched_getaffinity(k: "KernelApi", t: Thread, pid: int, size: int, mask: int) -> int:
    if size < 8 or size & 7:
        raise SyscallError(errno.EINVAL)
    t.proc.mem.write(mask, (1).to_bytes(8, "little"))   # one emulated CPU
    return 8


@syscall("sched_setaffinity")
def sys_sched_setaffinity(k: "KernelApi", t: Thread, pid: int, size: int, mask: int) -> int:
    if not any(t.proc.mem.read(mask, min(size, 128))):
        raise SyscallError(errno.EINVAL)
    return 0


@syscall("getcpu")
def sys_getcpu(k: "KernelApi", t: Thread, cpu: int, node: int) -> int:
    if cpu:
        t.proc.mem.put_u32(cpu, 0)
    if node:
        t.proc.mem.put_u32(node, 0)
    return 0


PRIO_PROCESS, PRIO_PGRP, PRIO_USER = 0, 1, 2
CAP_SYS_NICE = 23


def _prio_targets(k: "KernelApi", t: Thread, which: int, who: int) -> list[Process]:
    which, who = s32(which), s32(who)
    if which == PRIO_PROCESS:
        procs = [t.proc] if who == 0 else [p for p in k.tasks.procs.values() if p.pid == who]
    elif which == PRIO_PGRP:
        pgid = t.proc.pgid if who == 0 else who
        procs = [p for p in k.tasks.procs.values() if p.pgid == pgid]
    elif which == PRIO_USER:
        procs = list(k.tasks.procs.values()) if who in (0, os.getuid()) else []   # every guest process is the user's
    else:
        raise SyscallError(errno.EINVAL)
    procs = [p for p in procs if p.wait_status is None]
    if not procs:
        raise SyscallError(errno.ESRCH)
    return procs


@syscall("getpriority")
def sys_getpriority(k: "KernelApi", t: Thread, which: int, who: int) -> int:
    """The best (lowest) nice value among the targets, as 20 - nice (glibc undoes it)."""
    return 20 - min(p.nice for p in _prio_targets(k, t, which, who))


@syscall("setpriority")
def sys_setpriority(k: "KernelApi", t: Thread, which: int, who: int, niceval: int) -> int:
    """set_one_prio(): nice is clamped to -20..19; lowering it needs CAP_SYS_NICE (EACCES).
    Kept and inherited; the emulated CPU has one queue and does not weigh it."""
    nice = max(-20, min(19, s32(niceval)))
    for p in _prio_targets(k, t, which, who):
        if nice < p.nice and not capable(CAP_SYS_NICE):
            raise SyscallError(errno.EACCES)
        p.nice = nice
    return 0
