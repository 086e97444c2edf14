"""Signal generation and delivery (kernel/signal.c, arch/arm64/kernel/signal.c): queueing,
the forced faults, get_signal()'s dispositions (and a tracer's signal-delivery stop), and
the rt_sigframe a handler runs on.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from mteemu.kernel import sigframe
from mteemu.kernel import signals as S
from mteemu.kernel.process import SS_AUTODISARM, SS_DISABLE, SS_ONSTACK, Process, State, Thread
from mteemu.kernel.uaccess import SyscallError
from mteemu.machine import arm64 as C

if TYPE_CHECKING:
    from mteemu.kernel.api import ExitsApi
    from mteemu.kernel.ptrace import Tracer as Debugger
    from mteemu.kernel.sched import Scheduler
    from mteemu.machine.cpu import Cpu


class SignalDelivery:
    """Signals, from generation to the handler's frame."""

    def __init__(self, cpu: "Cpu", sched: "Scheduler", on_fatal_report: Callable[[S.SigInfo], None]) -> None:
        self.cpu = cpu
        self.sched = sched
        self.on_fatal_report = on_fatal_report      # a tag-check fault is killing a process: tell the person
        self.exits: "ExitsApi"                      # set by the kernel: a fatal signal ends the process
        self.tracer: "Optional[Debugger]" = None

    # -- signals -------------------------------------------------------------------------------------
    def next_signal(self, t: Thread) -> Optional[int]:
        a = t.pending.first(t.sigmask)
        b = t.proc.pending.first(t.sigmask)
        cands = [s for s in (a, b) if s is not None]
        return min(cands) if cands else None

    def deliverable(self, t: Thread) -> bool:
        return bool((t.pending.queue or t.proc.pending.queue) and self.next_signal(t) is not None)

    def ignored(self, proc: Process, sig: int) -> bool:
        act = proc.action(sig)
        return act.handler == S.SIG_IGN or (act.handler == S.SIG_DFL and not S.default_kills(sig))

    def send(self, proc: Process, info: S.SigInfo, thread: Optional[Thread] = None) -> None:
        """Generate a signal for a process (or one of its threads)."""
        if proc.wait_status is not None or info.signo == 0:
            return
        sig = info.signo
        if sig == S.SIGKILL:
            self.exits.kill_process(proc, S.SIGKILL)
            return
        targets = [thread] if thread else proc.live_threads
        if self.ignored(proc, sig) and all(not (t.sigmask & S.bit(sig)) for t in targets):
            return   # discarded at generation, as Linux does for ignored, unblocked signals
        if thread is not None:
            thread.pending.add(info)
        else:
            proc.pending.add(info)
        self.sched.signal_wake(proc, targets)

    def force(self, t: Thread, info: S.SigInfo) -> None:
        """A synchronous fault: if blocked or ignored, Linux resets it to the default (fatal)."""
        sig = info.signo
        act = t.proc.action(sig)
        if t.sigmask & S.bit(sig) or act.handler == S.SIG_IGN:
            t.proc.actions[sig] = S.SigAction()
            t.sigmask &= ~S.bit(sig)
        t.pending.add(info)

    def deliver(self, t: Thread) -> None:
        proc = t.proc
        while t.state is State.RUNNABLE and self.sched.current is t:
            sig = self.next_signal(t)
            if sig is None:
                return
            info = t.pending.take(sig) if sig in t.pending.queue else proc.pending.take(sig)
            if self.tracer is not None and self.tracer.traces(proc):
                # ptrace_signal(): the debugger sees the signal first and says what is delivered.
                delivered = self.tracer.signal_stop(t, info)
                if delivered is None or t.state is not State.RUNNABLE:
                    continue
                info, sig = delivered, delivered.signo
                if sig == S.SIGKILL:
                    self.exits.kill_process(proc, S.SIGKILL)
                    return
            act = proc.action(sig)
            if act.handler == S.SIG_IGN:
                continue
            if act.handler == S.SIG_DFL:
                if S.default_kills(sig):
                    if info.report is not None:
                        self.on_fatal_report(info)
                    fault = sig in S.FAULT_SIGNALS and 0 < info.code < 0x80
                    self.exits.kill_process(proc, sig, info.code if fault else None)
                    return
                continue
            if not self._setup_frame(t, info, act):
                self.force(t, S.SigInfo(S.SIGSEGV, S.SI_KERNEL))
                proc.actions[S.SIGSEGV] = S.SigAction()
                continue
            t.saved_sigmask = None
            if act.flags & S.SA_RESETHAND:
                proc.actions[sig] = S.SigAction()
            mask = act.mask | (0 if act.flags & S.SA_NODEFER else S.bit(sig))
            t.sigmask = (t.sigmask | mask) & ~S.UNBLOCKABLE

    def cpu_state(self) -> sigframe.CpuState:
        cpu = self.cpu
        x = cpu.regs(C.X_REGS)
        v = [cpu.reg(q) for q in C.Q_REGS]
        sp, pc, nzcv, fpsr, fpcr = cpu.regs([C.REG_SP, C.REG_PC, C.REG_NZCV, C.REG_FPSR, C.REG_FPCR])
        pstate = (nzcv & sigframe.PSTATE_NZCV_MASK) | (sigframe.PSTATE_TCO if self.cpu.mte.tco else 0)
        return sigframe.CpuState(x, sp, pc, pstate, v, fpsr, fpcr)

    def set_cpu_state(self, s: sigframe.CpuState) -> None:
        cpu = self.cpu
        for reg, value in zip(C.X_REGS, s.x):
            cpu.set_reg(reg, value)
        for reg, value in zip(C.Q_REGS, s.v):
            cpu.set_reg(reg, value)
        cpu.set_reg(C.REG_SP, s.sp)
        cpu.set_reg(C.REG_PC, s.pc)
        cpu.set_reg(C.REG_NZCV, s.pstate & sigframe.PSTATE_NZCV_MASK)
        self.cpu.set_tco(bool(s.pstate & sigframe.PSTATE_TCO))
        cpu.set_reg(C.REG_FPSR, s.fpsr)
        cpu.set_reg(C.REG_FPCR, s.fpcr)

    @staticmethod
    def on_altstack(t: Thread, sp: int) -> bool:
        ss_sp, flags, size = t.altstack
        return not flags & SS_DISABLE and ss_sp < sp <= ss_sp + size

    def _setup_frame(self, t: Thread, info: S.SigInfo, act: S.SigAction) -> bool:
        """setup_rt_frame(): push an rt_sigframe and enter the handler; False if the stack is bad."""
        state = self.cpu_state()
        sp = state.sp
        ss_sp, ss_flags, ss_size = t.altstack
        if act.flags & S.SA_ONSTACK and not ss_flags & SS_DISABLE and not self.on_altstack(t, sp):
            sp = ss_sp + ss_size
        on_stack = SS_ONSTACK if self.on_altstack(t, sp) else 0
        record = (sp - 16) & ~15
        frame_addr = (record - sigframe.FRAME_SIZE) & ~15
        siginfo = info.pack(bool(act.flags & S.SA_EXPOSE_TAGBITS)) if act.flags & S.SA_SIGINFO else bytes(128)
        fault_address = info.addr if info.addr is not None and info.esr else 0
        altstack = (ss_sp, (ss_flags & ~SS_ONSTACK) | on_stack if not ss_flags & SS_DISABLE else ss_flags, ss_size)
        frame_mask = t.sigmask if t.saved_sigmask is None else t.saved_sigmask
        frame = sigframe.build(siginfo, state, frame_mask, altstack, fault_address, info.esr)
        try:
            t.proc.mem.write(frame_addr, frame)
            t.proc.mem.write(record, state.x[29].to_bytes(8, "little") + state.pc.to_bytes(8, "little"))
        except SyscallError:
            return False
        tramp = act.restorer if act.flags & S.SA_RESTORER else t.proc.mm.sigreturn_trampoline
        regs = {C.X_REGS[0]: info.signo, C.X_REGS[29]: record, C.X_REGS[30]: tramp,
                C.REG_SP: frame_addr, C.REG_PC: act.handler}
        if act.flags & S.SA_SIGINFO:
            regs[C.X_REGS[1]] = frame_addr
            regs[C.X_REGS[2]] = frame_addr + sigframe.UC_OFF
        for reg, value in regs.items():
            self.cpu.set_reg(reg, value)
        self.cpu.set_tco(False)        # setup_return(): handlers start with tag checks on
        if ss_flags & SS_AUTODISARM and on_stack:
            t.altstack = (0, SS_DISABLE, 0)
        return True
