"""Ending threads and processes (kernel/exit.c's do_exit, do_group_exit).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from mteemu.kernel.process import Thread
from mteemu.kernel.syscalls.registry import NORETURN, syscall

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi


@syscall("exit")
def sys_exit(k: "KernelApi", t: Thread, code: int) -> object:
    proc = t.proc
    if len(proc.live_threads) == 1:
        proc.wait_status = (code & 0xFF) << 8
    k.exits.exit_thread(t)
    return NORETURN


@syscall("exit_group")
def sys_exit_group(k: "KernelApi", t: Thread, code: int) -> object:
    k.exits.exit_process(t.proc, code)
    return NORETURN
