"""The Linux MTE user ABI for one thread (arch/arm64/kernel/mte.c).

PR_SET_TAGGED_ADDR_CTRL stores what the program asked for; the kernel turns it into
the CPU's SCTLR_EL1.TCF0 and GCR_EL1.Exclude. When a program asks for more than one
fault mode, the CPU's preferred mode (sysfs mte_tcf_preferred, `--mte-tcf-preferred`
here) decides; ASYMM can only be chosen that way (mte_update_sctlr_user()).
"""
from __future__ import annotations

import errno
from dataclasses import replace

from mteemu.kernel.uaccess import SyscallError
from mteemu.machine.tagcheck import MteState, Tcf

PR_SET_TAGGED_ADDR_CTRL, PR_GET_TAGGED_ADDR_CTRL = 55, 56
PR_TAGGED_ADDR_ENABLE = 1 << 0
PR_MTE_TCF_SYNC, PR_MTE_TCF_ASYNC = 1 << 1, 1 << 2
PR_MTE_TAG_SHIFT = 3
PR_MTE_TAG_MASK = 0xFFFF << PR_MTE_TAG_SHIFT
VALID_CTRL = PR_TAGGED_ADDR_ENABLE | PR_MTE_TCF_SYNC | PR_MTE_TCF_ASYNC | PR_MTE_TAG_MASK

PREFERRED_MODES = ("sync", "async", "asymm")
_MODES = {"sync": (Tcf.SYNC, Tcf.SYNC), "async": (Tcf.ASYNC, Tcf.ASYNC), "asymm": (Tcf.SYNC, Tcf.ASYNC)}


def check_ctrl(ctrl: int) -> None:
    """set_tagged_addr_ctrl(): unknown bits are EINVAL."""
    if ctrl & ~VALID_CTRL:
        raise SyscallError(errno.EINVAL)


def resolve_mode(ctrl: int, preferred: str) -> str:
    """The TCF0 mode the thread runs with: 'none', 'sync', 'async' or 'asymm'."""
    requested = set()
    if ctrl & PR_MTE_TCF_SYNC:
        requested.add("sync")
    if ctrl & PR_MTE_TCF_ASYNC:
        requested.add("async")
    if not requested:
        return "none"
    if len(requested) == 2:
        requested.add("asymm")       # both asked for: asymmetric is acceptable too
    return preferred if preferred in requested else requested.pop()


def state_for(ctrl: int, preferred: str, old: MteState) -> MteState:
    """The CPU tag-check state of a thread with this control value (PSTATE.TCO and the
    random generator carry over)."""
    mode = resolve_mode(ctrl, preferred)
    tcf_read, tcf_write = _MODES.get(mode, (Tcf.NONE, Tcf.NONE))
    exclude = ~(ctrl >> PR_MTE_TAG_SHIFT) & 0xFFFF
    return replace(old, tcf_read=tcf_read, tcf_write=tcf_write, exclude=exclude)
