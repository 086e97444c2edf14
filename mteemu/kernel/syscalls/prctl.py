"""prctl(2) (kernel/sys.c): the options real programs use, MTE's tagged-address control
and pointer authentication's among them.
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Callable

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
    handler = _OPTIONS.get(s32(option))
    if handler is None:
        raise SyscallError(errno.EINVAL)
    return handler(k, t, a2, a3, a4, a5)


def _unused(*args: int) -> None:
    """Arguments an option does not take must be 0 (EINVAL otherwise, as Linux checks)."""
    if any(args):
        raise SyscallError(errno.EINVAL)


def _set_name(k: "KernelApi", t: Thread, a2: int, a3: int, a4: int, a5: int) -> int:
    t.name = t.proc.mem.read(a2, 16).split(b"\0")[0][:15]
    return 0


def _get_name(k: "KernelApi", t: Thread, a2: int, a3: int, a4: int, a5: int) -> int:
    t.proc.mem.write(a2, t.name.ljust(16, b"\0"))
    return 0


def _get_dumpable(k: "KernelApi", t: Thread, a2: int, a3: int, a4: int, a5: int) -> int:
    return t.proc.dumpable


def _set_dumpable(k: "KernelApi", t: Thread, a2: int, a3: int, a4: int, a5: int) -> int:
    if a2 not in (0, 1):                 # SUID_DUMP_ROOT (2) may not be set this way
        raise SyscallError(errno.EINVAL)
    t.proc.dumpable = a2
    return 0


def _set_pdeathsig(k: "KernelApi", t: Thread, a2: int, a3: int, a4: int, a5: int) -> int:
    if not 0 <= a2 <= S.NSIG:
        raise SyscallError(errno.EINVAL)
    t.proc.pdeath_signal = a2
    return 0


def _get_pdeathsig(k: "KernelApi", t: Thread, a2: int, a3: int, a4: int, a5: int) -> int:
    t.proc.mem.put_u32(a2, t.proc.pdeath_signal)
    return 0


def _set_tagged_addr_ctrl(k: "KernelApi", t: Thread, a2: int, a3: int, a4: int, a5: int) -> int:
    _unused(a3, a4, a5)
    mte.check_ctrl(a2)
    t.tagged_addr_ctrl = a2
    t.mte = mte.state_for(a2, k.options.mte_tcf_preferred, t.mte)
    k.cpu.set_mte(t.mte)
    return 0


def _get_tagged_addr_ctrl(k: "KernelApi", t: Thread, a2: int, a3: int, a4: int, a5: int) -> int:
    _unused(a2, a3, a4, a5)
    return t.tagged_addr_ctrl


def _pac_reset_keys(k: "KernelApi", t: Thread, a2: int, a3: int, a4: int, a5: int) -> int:
    _unused(a3, a4, a5)
    t.pac_keys = pauth.reset_keys(t.pac_keys, a2, k.pac_rng)
    k.cpu.set_pac(t.pac_keys, t.pac_enabled)
    return 0


def _pac_set_enabled_keys(k: "KernelApi", t: Thread, a2: int, a3: int, a4: int, a5: int) -> int:
    _unused(a4, a5)
    t.pac_enabled = pauth.set_enabled(t.pac_enabled, a2, a3)
    k.cpu.set_pac(t.pac_keys, t.pac_enabled)
    return 0


def _pac_get_enabled_keys(k: "KernelApi", t: Thread, a2: int, a3: int, a4: int, a5: int) -> int:
    _unused(a2, a3, a4, a5)
    return t.pac_enabled


_OPTIONS: dict[int, Callable[["KernelApi", Thread, int, int, int, int], int]] = {
    PR_SET_NAME: _set_name, PR_GET_NAME: _get_name, PR_GET_DUMPABLE: _get_dumpable, PR_SET_DUMPABLE: _set_dumpable,
    PR_SET_PDEATHSIG: _set_pdeathsig, PR_GET_PDEATHSIG: _get_pdeathsig,
    mte.PR_SET_TAGGED_ADDR_CTRL: _set_tagged_addr_ctrl, mte.PR_GET_TAGGED_ADDR_CTRL: _get_tagged_addr_ctrl,
    pauth.PR_PAC_RESET_KEYS: _pac_reset_keys, pauth.PR_PAC_SET_ENABLED_KEYS: _pac_set_enabled_keys,
    pauth.PR_PAC_GET_ENABLED_KEYS: _pac_get_enabled_keys,
}
