"""Waiting for children (kernel/exit.c's do_wait): wait4.
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from mteemu.kernel.process import Process, Thread, Wait
from mteemu.kernel.syscalls.args import s32
from mteemu.kernel.syscalls.registry import syscall
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi


WNOHANG, WUNTRACED, WCONTINUED, WALL, WCLONE = 1, 2, 8, 0x40000000, 0x80000000


@syscall("wait4")
def sys_wait4(k: "KernelApi", t: Thread, pid: int, wstatus: int, options: int, rusage: int) -> "int | Wait":
    pid = s32(pid)
    if options & ~(WNOHANG | WUNTRACED | WCONTINUED | WALL | WCLONE | 0x20000000):
        raise SyscallError(errno.EINVAL)
    proc = t.proc

    def matching() -> list[Process]:
        kids = proc.children
        if pid > 0:
            return [c for c in kids if c.pid == pid]
        if pid == 0:
            return [c for c in kids if c.pgid == proc.pgid]
        if pid < -1:
            return [c for c in kids if c.pgid == -pid]
        return list(kids)

    if not matching():
        raise SyscallError(errno.ECHILD)

    def attempt() -> int | None:
        kids = matching()
        if not kids:
            return -errno.ECHILD
        for c in kids:
            if c.wait_status is not None and not c.live_threads:
                if wstatus:
                    proc.mem.put_u32(wstatus, c.wait_status)
                if rusage:
                    proc.mem.write(rusage, bytes(144))
                proc.children.remove(c)
                k.tasks.procs.pop(c.pid, None)
                proc.child_wq.wake()            # another waiter may now find none (ECHILD)
                return c.pid
        return None

    r = attempt()
    if r is not None:
        if r < 0:
            raise SyscallError(-r)
        return r
    if options & WNOHANG:
        return 0
    return Wait(poll=attempt, queues=(proc.child_wq,))
