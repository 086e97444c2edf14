"""futex(2) (kernel/futex/syscalls.c): decoding the operation; the waiters are kernel/futex.py's.
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from mteemu.kernel import futex as F
from mteemu.kernel.process import Thread, Wait
from mteemu.kernel.syscalls.args import s32
from mteemu.kernel.syscalls.registry import Support, syscall
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi


@syscall("futex", support=Support.PARTIAL,
         note="WAIT, WAKE, their bitset forms and (CMP_)REQUEUE; the PI and WAKE_OP operations are ENOSYS")
def sys_futex(k: "KernelApi", t: Thread, addr: int, op: int, val: int, tmo: int, addr2: int,
              val3: int) -> "int | Wait":
    cmd = op & ~(F.FUTEX_PRIVATE_FLAG | F.FUTEX_CLOCK_REALTIME)
    realtime = bool(op & F.FUTEX_CLOCK_REALTIME)
    if cmd == F.FUTEX_WAIT:
        return k.futex.wait(t, addr, val, F.deadline_from_timespec(t, tmo, False, realtime), F.FUTEX_BITSET_MATCH_ANY)
    if cmd == F.FUTEX_WAIT_BITSET:
        return k.futex.wait(t, addr, val, F.deadline_from_timespec(t, tmo, True, realtime), val3 & 0xFFFF_FFFF)
    if cmd == F.FUTEX_WAKE:
        return k.futex.wake_address(t.proc, addr, s32(val))
    if cmd == F.FUTEX_WAKE_BITSET:
        if not val3 & 0xFFFF_FFFF:
            raise SyscallError(errno.EINVAL)
        return k.futex.wake_address(t.proc, addr, s32(val), val3 & 0xFFFF_FFFF)
    if cmd in (F.FUTEX_REQUEUE, F.FUTEX_CMP_REQUEUE):
        if cmd == F.FUTEX_CMP_REQUEUE and t.proc.mem.u32(addr) != val3 & 0xFFFF_FFFF:
            raise SyscallError(errno.EAGAIN)
        return k.futex.requeue(t.proc, addr, s32(val), addr2, s32(tmo))
    raise SyscallError(errno.ENOSYS)
