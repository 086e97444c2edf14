"""prctl(2) (kernel/sys.c): the options real programs use, MTE's tagged-address control
and pointer authentication's among them.
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from mteemu.kernel import mte, pauth
from mteemu.kernel import signals as S
from mteemu.kernel.process import Thread
from mteemu.kernel.syscalls.args import s32
from mteemu.kernel.syscalls.registry import Support, syscall
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi


PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_DUMPABLE = 1, 2, 3, 4


PR_SET_NAME, PR_GET_NAME = 15, 16


@syscall("prctl", support=Support.PARTIAL,
         note=("PR_SET_PDEATHSIG's signal comes when the parent process exits (Linux: when the "
               "creating thread does); options real programs do not use are EINVAL"))
def sys_prctl(k: "KernelApi", t: Thread, option: int, a2: int, a3: int, a4: int, a5: int) -> int:
    option = s32(option)
    if option == PR_SET_NAME:
        t.name = t.proc.mem.read(a2, 16).split(b"\0")[0][:15]
        return 0
    if option == PR_GET_NAME:
        t.proc.mem.write(a2, t.name.ljust(16, b"\0"))
        return 0
    if option == PR_GET_DUMPABLE:
        return t.proc.dumpable
    if option == PR_SET_DUMPABLE:
        if a2 not in (0, 1):                 # SUID_DUMP_ROOT (2) may not be set this way
            raise SyscallError(errno.EINVAL)
        t.proc.dumpable = a2
        return 0
    if option == PR_SET_PDEATHSIG:
        if not 0 <= a2 <= S.NSIG:
            raise SyscallError(errno.EINVAL)
        t.proc.pdeath_signal = a2
        return 0
    if option == PR_GET_PDEATHSIG:
        t.proc.mem.put_u32(a2, t.proc.pdeath_signal)
        return 0
    if option == mte.PR_SET_TAGGED_ADDR_CTRL:
        if a3 or a4 or a5:
            raise SyscallError(errno.EINVAL)
        mte.check_ctrl(a2)
        t.tagged_addr_ctrl = a2
        t.mte = mte.state_for(a2, k.options.mte_tcf_preferred, t.mte)
        k.cpu.set_mte(t.mte)
        return 0
    if option == pauth.PR_PAC_RESET_KEYS:
        if a3 or a4 or a5:
            raise SyscallError(errno.EINVAL)
        t.pac_keys = pauth.reset_keys(t.pac_keys, a2, k.pac_rng)
        k.cpu.set_pac(t.pac_keys, t.pac_enabled)
        return 0
    if option == pauth.PR_PAC_SET_ENABLED_KEYS:
        if a4 or a5:
            raise SyscallError(errno.EINVAL)
        t.pac_enabled = pauth.set_enabled(t.pac_enabled, a2, a3)
        k.cpu.set_pac(t.pac_keys, t.pac_enabled)
        return 0
    if option == pauth.PR_PAC_GET_ENABLED_KEYS:
        if a2 or a3 or a4 or a5:
            raise SyscallError(errno.EINVAL)
        return t.pac_enabled
    if option == mte.PR_GET_TAGGED_ADDR_CTRL:
        if a2 or a3 or a4 or a5:
            raise SyscallError(errno.EINVAL)
        return t.tagged_addr_ctrl
    raise SyscallError(errno.EINVAL)
