"""Resource limits and usage (kernel/sys.c): prlimit64, getrlimit, setrlimit, getrusage.
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from mteemu.kernel.fs.procfs.pid import host_capabilities
from mteemu.kernel.process import Thread
from mteemu.kernel.syscalls.args import process, s32
from mteemu.kernel.syscalls.registry import Support, Unmodelled, syscall
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi
from mteemu.kernel.syscalls.clone import MAX_THREADS

RLIM_INFINITY = (1 << 64) - 1
RLIMIT_NOFILE = 7


NR_OPEN = 1 << 20                             # fs.nr_open
CAP_SYS_RESOURCE = 24


RLIMITS = {3: (8 << 20, RLIM_INFINITY),       # STACK
           7: (1024, 4096),                   # NOFILE: INR_OPEN_CUR/INR_OPEN_MAX, init's on Linux
           6: (MAX_THREADS, MAX_THREADS),     # NPROC
           4: (0, RLIM_INFINITY)}             # CORE


def capable(cap: int) -> bool:
    """capable(): whether the guest holds the capability (the host process's effective set)."""
    try:
        return bool(int(dict(host_capabilities())["CapEff"], 16) >> cap & 1)
    except ValueError:
        return False


NOT_ENFORCED = "the limit is kept and reported, not enforced"


@syscall("prlimit64", support=Support.PARTIAL, note="only RLIMIT_NOFILE is enforced; the others are kept and reported")
def sys_prlimit64(k: "KernelApi", t: Thread, pid: int, resource: int, new: int, old: int) -> "int | Unmodelled":
    proc = process(k, t, pid)
    if resource >= 16:
        raise SyscallError(errno.EINVAL)
    cur = proc.rlimits.get(resource) or RLIMITS.get(resource, (RLIM_INFINITY, RLIM_INFINITY))
    if new:
        soft, hard = t.proc.mem.read_struct("<QQ", new)
        if soft > hard:
            raise SyscallError(errno.EINVAL)
        if hard > cur[1] and not capable(CAP_SYS_RESOURCE):
            raise SyscallError(errno.EPERM)    # raising a hard limit needs CAP_SYS_RESOURCE
        if resource == RLIMIT_NOFILE and hard > NR_OPEN:
            raise SyscallError(errno.EPERM)    # do_prlimit(): never above fs.nr_open
    if old:
        t.proc.mem.write_struct("<QQ", old, *cur)
    if new:
        proc.rlimits[resource] = (soft, hard)
        if resource == RLIMIT_NOFILE:
            proc.fds.limit = soft                  # the hard limit is fs.nr_open, never raised
        else:
            return Unmodelled(0, NOT_ENFORCED)
    return 0


@syscall("getrlimit")
def sys_getrlimit(k: "KernelApi", t: Thread, resource: int, old: int) -> "int | Unmodelled":
    return sys_prlimit64(k, t, 0, resource, 0, old)


@syscall("setrlimit", support=Support.PARTIAL, note="only RLIMIT_NOFILE is enforced; the others are kept and reported")
def sys_setrlimit(k: "KernelApi", t: Thread, resource: int, new: int) -> "int | Unmodelled":
    return sys_prlimit64(k, t, 0, resource, new, 0)


@syscall("getrusage", support=Support.PARTIAL,
         note="every usage count is 0 (no per-process accounting)")
def sys_getrusage(k: "KernelApi", t: Thread, who: int, usage: int) -> int:
    if s32(who) not in (0, -1, 1):
        raise SyscallError(errno.EINVAL)
    t.proc.mem.write(usage, bytes(144))
    return 0
