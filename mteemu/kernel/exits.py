"""Exits: threads and processes ending (do_exit(), exit_notify()), the parent told,
orphans reparented, and the first process's end becoming mteemu's exit status.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Optional

from mteemu.errors import EXIT_SIGNAL_BASE
from mteemu.kernel import signals as S
from mteemu.kernel.futex import FutexTable, exit_robust_list
from mteemu.kernel.process import Process, State, Thread, release_vfork
from mteemu.kernel.tasks import Tasks
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.api import SignalsApi
    from mteemu.kernel.mm.pagealloc import PageAllocator
    from mteemu.kernel.ptrace import Tracer as Debugger
    from mteemu.kernel.sched import Scheduler


class GuestExit(Exception):
    """The first process is gone: mteemu's exit status is known."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Exits:
    """Thread and process exit and what follows it: the parent told, orphans reparented."""

    def __init__(self, tasks: Tasks, sched: "Scheduler", signals: "SignalsApi", futex: FutexTable,
                 alloc: "PageAllocator", say: Callable[[str], None]) -> None:
        self.tasks, self.sched, self.signals = tasks, sched, signals
        self.futex, self.alloc, self.say = futex, alloc, say
        self.tracer: "Optional[Debugger]" = None

    # -- process and thread exit -------------------------------------------------------------------
    def exit_thread(self, t: Thread) -> None:
        if t.state is State.DEAD:
            return
        if t.wait is not None:
            self.sched.abandon_wait(t)
        t.state = State.DEAD
        exit_robust_list(self.futex, t)            # mm_release(): robust futexes first, then the TID
        if t.clear_child_tid and t.proc.wait_status is None:
            try:
                t.proc.mem.put_u32(t.clear_child_tid, 0)
                self.futex.wake_address(t.proc, t.clear_child_tid, 1)
            except SyscallError:
                pass
        self.sched.dequeue(t)
        self.tasks.threads.pop(t.tid, None)
        if t.kernel_stack is not None:
            self.alloc.free_kernel(t.kernel_stack)
            t.kernel_stack = None
        if not t.proc.live_threads:
            self._process_exited(t.proc)

    def exit_process(self, proc: Process, code: int) -> None:
        proc.wait_status = (code & 0xFF) << 8
        for t in list(proc.live_threads):
            self.exit_thread(t)

    def kill_process(self, proc: Process, sig: int, code: Optional[int] = None) -> None:
        """Kill by signal sig; code is the si_code of a fault that did it (for the
        termination line: test runners check it)."""
        if proc.wait_status is None:
            proc.wait_status = sig
            proc.kill_code = code
        for t in list(proc.live_threads):
            self.exit_thread(t)

    def _process_exited(self, proc: Process) -> None:
        if self.tracer is not None and self.tracer.traces(proc):
            self.tracer.exited(proc)
        proc.fds.close_all()
        if proc.vfork_parent is not None:
            release_vfork(proc)            # the parent's mm was only borrowed: wake the parent
        else:
            proc.mm.destroy()
            self.sched.forget_mm(proc.mm)
        if proc is self.tasks.init:
            self._init_exited(proc)
        for child in proc.children:
            child.parent = None
            if child.pdeath_signal and child.wait_status is None:
                # forget_original_parent(): the orphan gets its parent-death signal.
                self.signals.send(child, S.SigInfo(child.pdeath_signal, S.SI_USER, pid=proc.pid, uid=os.getuid()))
        parent = proc.parent
        if parent is None or parent.wait_status is not None:
            self.tasks.procs.pop(proc.pid, None)
            return
        parent.child_wq.wake()             # wait4() may reap it now
        status = proc.wait_status or 0
        sig = status & 0x7F
        code = S.CLD_KILLED if sig else S.CLD_EXITED
        if proc.exit_signal:        # clone's exit signal (0: the parent is not told)
            self.signals.send(parent, S.SigInfo(proc.exit_signal, code, pid=proc.pid, uid=os.getuid(),
                                               status=sig if sig else status >> 8))
        if parent.action(S.SIGCHLD).handler == S.SIG_IGN or parent.action(S.SIGCHLD).flags & S.SA_NOCLDWAIT:
            parent.children.remove(proc)       # auto-reaped, as Linux does
            self.tasks.procs.pop(proc.pid, None)

    def _init_exited(self, proc: Process) -> None:
        status = proc.wait_status or 0
        sig = status & 0x7F
        if sig:
            code = f", si_code {proc.kill_code}" if proc.kill_code is not None else ""
            self.say(f"guest terminated by signal {sig} ({S.name(sig)}){code}")
            raise GuestExit(EXIT_SIGNAL_BASE + sig)
        raise GuestExit(status >> 8)
