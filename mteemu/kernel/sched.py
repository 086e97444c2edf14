"""The scheduler: which guest thread runs on the one CPU, and waiting for the world when none
can (timers, blocked threads, a debugger's stops). Deterministic: the running thread keeps
the CPU until it blocks, exits, wakes another, or — only while another thread is runnable —
spends its instruction budget (the kernel's run loop, kernel.py, asks for that budget).
"""
from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Optional

from mteemu import host_signals
from mteemu.errors import Deadlock, GuestTimeout
from mteemu.kernel import signals as S
from mteemu.kernel.process import Process, State, Thread, Wait
from mteemu.kernel.tasks import Tasks
from mteemu.machine import arm64 as C

if TYPE_CHECKING:
    from mteemu.kernel.api import SignalsApi
    from mteemu.kernel.mm.addrspace import Mm
    from mteemu.kernel.ptrace import Tracer as Debugger
    from mteemu.machine.cpu import Cpu

QUANTUM = 200_000           # instructions a thread may run while another one waits for the CPU
# An asynchronous tag-check fault is reported at the next kernel entry; without a
# syscall, the "timer tick" comes after this many instructions.
ASYNC_WINDOW = 100_000


class Scheduler:
    """Runnable and blocked threads, picking and switching, blocking and waking."""

    def __init__(self, cpu: "Cpu", tasks: Tasks, timeout: Optional[float], start_time: float) -> None:
        self.cpu = cpu
        self.tasks = tasks
        self.timeout = timeout                       # --timeout, and when it ends (time.monotonic())
        self.deadline = start_time + timeout if timeout else None
        self.signals: "SignalsApi"                   # set by the kernel: signals and threads name each other
        self.tracer: "Optional[Debugger]" = None
        self.runq: deque[Thread] = deque()
        self.blocked: dict[Thread, None] = {}       # blocked threads (the wake scan is skipped without any)
        self.ready: dict[Thread, None] = {}         # blocked threads to re-try: their queue was woken, or a signal came
        self.unqueued: dict[Thread, None] = {}      # blocked threads whose wait has no queue: re-tried after every call
        self.timed: dict[Thread, None] = {}         # blocked threads whose wait has a deadline
        self.next_deadline = float("inf")           # the earliest of those deadlines (time.monotonic())
        self.wait_polls = 0                         # calls of blocked threads re-tried (--stats)
        self.wake_scans = 0                         # polls of the blocked threads (poll_waits)
        self.current: Optional[Thread] = None       # the thread on the CPU
        self.need_resched = False                   # leave the CPU at the next chance
        self.switches = 0                           # context switches (/proc/stat ctxt)
        self.on_cpu_mm: "Optional[Mm]" = None       # whose translations the CPU caches

    def budget(self, t: Thread) -> int:
        """How many instructions t may run now (0: until it leaves the CPU by itself)."""
        others = any(o.state is State.RUNNABLE for o in self.runq if o is not t)
        self.need_resched = False
        budget = QUANTUM if others else 0
        if t.tfsr is not None:
            budget = min(budget or ASYNC_WINDOW, ASYNC_WINDOW)
        return budget

    def signal_wake(self, proc: "Process", threads: "list[Thread]") -> None:
        """signal_wake_up(): a blocked thread's wait may end in EINTR or a restart; a signal
        for the process on the CPU makes it leave the CPU to take it."""
        for t in threads:
            if t.state is State.BLOCKED:
                self.ready[t] = None
        if self.current is not None and self.current.proc is proc:
            self.need_resched = True

    def enqueue(self, t: Thread) -> None:
        """A new thread: runnable, last in the round."""
        self.runq.append(t)

    def dequeue(self, t: Thread) -> None:
        """t is exiting: off the run queue and the CPU."""
        if t in self.runq:
            self.runq.remove(t)
        if self.current is t:
            self.current = None

    def forget_mm(self, mm: "Mm") -> None:
        if self.on_cpu_mm is mm:
            self.on_cpu_mm = None

    def timer_deadline(self) -> Optional[float]:
        """The earliest armed interval timer of any process (time.monotonic())."""
        expiries = [e for p in self.tasks.procs.values() if p.wait_status is None for e, _ in p.itimers.values()]
        return min(expiries) if expiries else None

    def fire_timers(self) -> bool:
        """it_real_fn(): each expired timer sends its signal and re-arms by its interval;
        True if any fired."""
        fired = False
        now = time.monotonic()
        for proc in list(self.tasks.procs.values()):
            if proc.wait_status is not None:
                continue
            for which, (expiry, interval) in list(proc.itimers.items()):
                if expiry > now:
                    continue
                if interval:
                    proc.itimers[which] = (max(expiry + interval, now), interval)
                else:
                    del proc.itimers[which]
                self.signals.send(proc, S.SigInfo(S.ITIMER_SIGNALS[which], S.SI_KERNEL))
                fired = True
        return fired

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise GuestTimeout(f"guest did not finish within {self.timeout:g} s (--timeout)")

    def pick(self) -> Thread:
        """Round-robin over runnable threads; wait (really) when all are blocked."""
        while True:
            if self.cpu.interrupted:
                host_signals.check()
                self.check_deadline()
            self.poll_waits()
            t = self._next_runnable()
            if t is not None:
                return t
            # Nothing can run: re-try every blocked call before waiting for the world
            # (a change no queue reported; cheap now that the CPU would be idle anyway).
            if self.poll_waits(every=True):
                continue
            if self.fire_timers():
                continue                            # a signal may wake a waiting thread
            if self.tracer is not None:
                self.tracer.idle()                  # a debugger's interrupt stops a blocked process too
            deadlines = [t.wait.deadline for t in self.runq if t.state is State.BLOCKED
                         and t.wait and t.wait.deadline is not None]
            timer = self.timer_deadline()
            if timer is not None:
                deadlines.append(timer)             # an interval timer will wake someone
            if any(t.wait.host for t in self.runq if t.state is State.BLOCKED and t.wait):
                deadlines.append(time.monotonic() + 0.05)   # look again: a host process may act
            if not deadlines:
                raise Deadlock("every guest thread is blocked and none can be woken (deadlock)")
            delay = min(deadlines) - time.monotonic()
            if self.deadline is not None:
                delay = min(delay, self.deadline - time.monotonic())
            if delay > 0:
                with host_signals.interruptible():
                    time.sleep(min(delay, 0.05))
            self.check_deadline()

    def _next_runnable(self) -> Optional[Thread]:
        for _ in range(len(self.runq)):
            t = self.runq[0]
            self.runq.rotate(-1)
            if t.state is State.RUNNABLE:
                return t
        return None

    def poll_waits(self, skip: Optional[Thread] = None, every: bool = False) -> bool:
        """Re-try the calls of the blocked threads that may be able to finish: those whose
        wait queue was woken or that were sent a signal, those whose deadline has come, and
        those waiting for what has no queue (waitqueue.py); every blocked thread when
        `every` (before each switch). skip: the thread on the CPU, which may have blocked
        in the call being made. True if any woke."""
        if not self.blocked:
            return False                        # the common case: nobody waits
        self.wake_scans += 1
        now = time.monotonic()
        candidates = self._due(now, every)
        self.ready.clear()
        woke = False
        for t in candidates:
            if t is skip:
                self.ready[t] = None            # looked at once it is off the CPU
            elif t.state is State.BLOCKED:
                self.wait_polls += 1
                woke = self._retry(t, now) or woke
        if now >= self.next_deadline:
            self.next_deadline = min((t.wait.deadline for t in self.timed if t.wait and t.wait.deadline is not None),
                                     default=float("inf"))
        return woke

    def _due(self, now: float, every: bool) -> list[Thread]:
        if every:
            return [t for t in self.runq if t in self.blocked]
        due = dict(self.ready)
        due.update(self.unqueued)
        if now >= self.next_deadline:
            due.update(self.timed)
        return list(due)

    def _retry(self, t: Thread, now: float) -> bool:
        """A blocked thread's call once more: interrupted by a signal, finished, timed out,
        or still waiting (False)."""
        w = t.wait
        assert w is not None                    # a blocked thread waits for something
        if self.signals.deliverable(t):
            self.unblock(t)
            w.cancel()
            self._interrupt(t, w)
            return True
        result = w.poll()
        if result is None and w.deadline is not None and now >= w.deadline:
            w.cancel()
            result = w.on_timeout()
        if result is None:
            return False
        self.unblock(t)
        t.set_regs[C.X_REGS[0]] = result & ((1 << 64) - 1)
        return True

    def _interrupt(self, t: Thread, w: Wait) -> None:
        """A signal ends the wait: the call is made again after a SA_RESTART handler (the
        SVC re-issued), else it returns what an interrupted call returns (-EINTR)."""
        sig = self.signals.next_signal(t)
        assert sig is not None                  # deliverable
        act = t.proc.action(sig)
        if w.restartable and act.handler not in (S.SIG_DFL, S.SIG_IGN) and act.flags & S.SA_RESTART:
            # Re-issue the SVC. A thread still on the CPU (no saved context: the one
            # that blocked last, woken by a timer's signal) has its PC in the CPU.
            pc = self.cpu.context_reg(t.ctx, C.REG_PC) if t.ctx is not None else self.cpu.pc
            t.set_regs[C.REG_PC] = pc - 4
        else:
            t.set_regs[C.X_REGS[0]] = w.interrupted()

    def switch_to(self, t: Thread) -> None:
        self.cpu.sys.disarm_ids()                   # who runs, its signals and its faults may differ now
        if self.current is not t:
            if self.current is not None and self.current.state is not State.DEAD:
                self.current.ctx = self.cpu.save()
            self.cpu.restore(t.ctx)
            t.ctx = None
            self.current = t
            self.switches += 1
            self.cpu.set_mte(t.mte)
            self.cpu.set_pac(t.pac_keys, t.pac_enabled)
            self.cpu.allocs.set_current(t.proc.mm.alloc_history, t.tid)
            if self.on_cpu_mm is not t.proc.mm:
                self.on_cpu_mm = t.proc.mm
                self.cpu.flush_tlb()
        if t.set_regs:
            for reg, value in t.set_regs.items():
                self.cpu.set_reg(reg, value)
            t.set_regs = {}

    def block(self, t: Thread, wait: Wait) -> None:
        t.state = State.BLOCKED
        t.wait = wait
        self.blocked[t] = None
        if wait.queues is None:
            self.unqueued[t] = None             # re-tried after every call
        else:
            for q in wait.queues:
                q.add(t, self.ready)
        if wait.deadline is not None:
            self.timed[t] = None
            self.next_deadline = min(self.next_deadline, wait.deadline)

    def abandon_wait(self, t: Thread) -> None:
        """End a blocked call without an answer: the thread is exiting, or the syscall
        fuzzer, which never waits."""
        if t.wait is not None:
            t.wait.cancel()
        self.unblock(t)

    def unblock(self, t: Thread) -> None:
        """The thread's wait is over (finished, interrupted, or the thread is exiting): off
        every queue, runnable again."""
        w = t.wait
        if w is not None and w.queues:
            for q in w.queues:
                q.remove(t)
        for d in (self.blocked, self.unqueued, self.timed, self.ready):
            d.pop(t, None)
        t.wait = None
        if t.state is State.BLOCKED:
            t.state = State.RUNNABLE
