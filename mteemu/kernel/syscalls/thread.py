"""A thread's user-space contracts with the kernel: the tid address cleared at exit, the
robust futex list, and restartable sequences.
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from mteemu.kernel.process import Thread
from mteemu.kernel.syscalls.args import s32
from mteemu.kernel.syscalls.registry import syscall
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi


@syscall("set_tid_address")
def sys_set_tid_address(k: "KernelApi", t: Thread, addr: int) -> int:
    t.clear_child_tid = addr
    return t.tid


@syscall("set_robust_list")
def sys_set_robust_list(k: "KernelApi", t: Thread, head: int, length: int) -> int:
    if length != 24:
        raise SyscallError(errno.EINVAL)
    t.robust_list = (head, length)
    return 0


@syscall("get_robust_list")
def sys_get_robust_list(k: "KernelApi", t: Thread, pid: int, head_ptr: int, len_ptr: int) -> int:
    th = t if s32(pid) == 0 else k.tasks.threads.get(s32(pid))
    if th is None:
        raise SyscallError(errno.ESRCH)
    t.proc.mem.put_u64(head_ptr, th.robust_list[0])
    t.proc.mem.put_u64(len_ptr, th.robust_list[1])
    return 0


RSEQ_SIG_FLAGS_UNREGISTER = 1


@syscall("rseq")
def sys_rseq(k: "KernelApi", t: Thread, addr: int, length: int, flags: int, sig: int) -> int:
    if flags & RSEQ_SIG_FLAGS_UNREGISTER:
        if t.rseq != addr:
            raise SyscallError(errno.EINVAL)
        t.rseq = 0
        return 0
    if flags or length < 32 or addr & 31:
        raise SyscallError(errno.EINVAL)
    if t.rseq:
        raise SyscallError(errno.EBUSY if t.rseq == addr else errno.EINVAL)
    # One emulated CPU: cpu_id_start = cpu_id = 0, node_id = 0.
    t.proc.mem.write_struct("<II", addr, 0, 0)
    t.rseq = addr
    return 0
