"""Who a process is (kernel/sys.c): pids, tids, user and group ids (the host's, never
changed), process groups and sessions.
"""
from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Callable

from mteemu.kernel.process import Thread
from mteemu.kernel.syscalls.args import process, s32
from mteemu.kernel.syscalls.registry import Support, syscall
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi


@syscall("getpid")
def sys_getpid(k: "KernelApi", t: Thread) -> int:
    return t.proc.pid


@syscall("getppid")
def sys_getppid(k: "KernelApi", t: Thread) -> int:
    return k.tasks.ppid(t.proc)


@syscall("gettid")
def sys_gettid(k: "KernelApi", t: Thread) -> int:
    return t.tid


def _host_id(get: Callable[[], int]) -> Callable[["KernelApi", Thread], int]:
    """getuid and friends answer the host's ids: the guest never gains or drops host rights."""
    def handler(k: "KernelApi", t: Thread) -> int:
        return get()
    return handler


sys_getuid = syscall("getuid")(_host_id(os.getuid))
sys_geteuid = syscall("geteuid")(_host_id(os.geteuid))
sys_getgid = syscall("getgid")(_host_id(os.getgid))
sys_getegid = syscall("getegid")(_host_id(os.getegid))


@syscall("getresuid")
def sys_getresuid(k: "KernelApi", t: Thread, r: int, e: int, s: int) -> int:
    for a in (r, e, s):
        t.proc.mem.put_u32(a, os.getuid())
    return 0


@syscall("getresgid")
def sys_getresgid(k: "KernelApi", t: Thread, r: int, e: int, s: int) -> int:
    for a in (r, e, s):
        t.proc.mem.put_u32(a, os.getgid())
    return 0


@syscall("getgroups", support=Support.PARTIAL,
         note="no supplementary groups")
def sys_getgroups(k: "KernelApi", t: Thread, size: int, lst: int) -> int:
    return 0


def _same_id(*ids: int) -> int:
    """setuid and friends: only a no-op change is allowed; the guest never gains or drops host rights."""
    for i in ids:
        if s32(i) not in (-1, os.getuid(), os.getgid()):
            raise SyscallError(errno.EPERM)
    return 0


@syscall("setuid", support=Support.PARTIAL,
         note="only a change to the current ids succeeds (EPERM otherwise, even as root)")
@syscall("setgid")
@syscall("setfsuid")
@syscall("setfsgid")
def sys_setuid(k: "KernelApi", t: Thread, a: int) -> int:
    return _same_id(a)


@syscall("setreuid", support=Support.PARTIAL,
         note="only a change to the current ids succeeds")
@syscall("setregid")
def sys_setreuid(k: "KernelApi", t: Thread, a: int, b: int) -> int:
    return _same_id(a, b)


@syscall("setresuid", support=Support.PARTIAL,
         note="only a change to the current ids succeeds")
@syscall("setresgid")
def sys_setresuid(k: "KernelApi", t: Thread, a: int, b: int, c: int) -> int:
    return _same_id(a, b, c)


@syscall("getpgid")
def sys_getpgid(k: "KernelApi", t: Thread, pid: int) -> int:
    p = process(k, t, pid)
    return p.pgid


@syscall("setpgid")
def sys_setpgid(k: "KernelApi", t: Thread, pid: int, pgid: int) -> int:
    p = process(k, t, pid)
    if s32(pgid) < 0:
        raise SyscallError(errno.EINVAL)
    p.pgid = s32(pgid) or p.pid
    return 0


@syscall("getsid")
def sys_getsid(k: "KernelApi", t: Thread, pid: int) -> int:
    p = process(k, t, pid)
    return p.sid


@syscall("setsid")
def sys_setsid(k: "KernelApi", t: Thread) -> int:
    p = t.proc
    if p.pgid == p.pid:
        raise SyscallError(errno.EPERM)
    p.sid = p.pgid = p.pid
    return p.sid
