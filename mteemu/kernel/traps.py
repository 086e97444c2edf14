"""Traps: what the CPU hands the kernel — page faults (the TLB fill), system calls, and
every other exit (memory and alignment faults, tag-check faults and their report,
undefined instructions, BRK) turned into the signal Linux's arch/arm64/mm/fault.c and
traps.c would send.
"""
from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Callable, Optional

from mteemu import host_signals
from mteemu.kernel import mte
from mteemu.kernel import signals as S
from mteemu.kernel.fs.file import fd_path
from mteemu.kernel.mm.addrspace import FAULT_ACCERR, FAULT_BUS, FAULT_OOM, FAULT_RETRY, TOP_BYTE_MASK, Fault
from mteemu.kernel.mm.vma import PROT_MTE, Vma
from mteemu.kernel.process import State, Thread
from mteemu.kernel.syscalls.table import IDS, QUERIES, SYSCALL_NAMES
from mteemu.kernel.tasks import Tasks
from mteemu.kernel.uaccess import SyscallError
from mteemu.machine import arm64 as C
from mteemu.machine.arm64 import ExitKind
from mteemu.machine.decode import effective_address
from mteemu.machine.physmem import PAGE_SIZE
from mteemu.machine.tagcheck import Mismatch, Tcf

if TYPE_CHECKING:
    from mteemu.kernel.api import ExitsApi, SignalsApi
    from mteemu.kernel.mm import invariants
    from mteemu.kernel.ptrace import Tracer as Debugger
    from mteemu.kernel.run import RunOptions
    from mteemu.kernel.sched import Scheduler
    from mteemu.kernel.syscalls.table import SyscallTable
    from mteemu.machine.cpu import Cpu
    from mteemu.machine.physmem import PhysMem
    from mteemu.machine.tagstore import TagStore
    from mteemu.report.tagfault import TagFaultReport

ESR_EC_DABT_LOW, ESR_EC_IABT_LOW = 0x24, 0x20


class Traps:
    """The CPU's callbacks and exits, as signals."""

    def __init__(self, physmem: "PhysMem", tags: "TagStore", options: "RunOptions", tasks: Tasks,
                 checker: "Optional[invariants.Checker]", write_diag: Callable[[str], None]) -> None:
        self.physmem, self.tags, self.options, self.tasks = physmem, tags, options, tasks
        self.checker = checker
        self.write_diag = write_diag
        self.tracer: "Optional[Debugger]" = None
        self.fault_code = 0                         # why the last translation was refused (a Fault)
        self.syscall_count = 0                      # system calls made, and the time the kernel spent on them
        self.syscall_seconds = 0.0
        self.fatal_report: "Optional[TagFaultReport]" = None    # the last tag-check fault that killed a process

    def connect(self, cpu: "Cpu", sched: "Scheduler", signals: "SignalsApi", exits: "ExitsApi",
                syscalls: "SyscallTable") -> None:
        """The CPU calls this service's translate() and on_syscall(), which act through the
        CPU and the other services: those are given once all are built."""
        self.cpu, self.sched, self.signals, self.exits, self.syscalls = cpu, sched, signals, exits, syscalls

    def say(self, message: str) -> None:
        self.write_diag(f"mteemu: {message}\n")

    # -- the CPU's callbacks -----------------------------------------------------------------
    def translate(self, vaddr: int, access: int) -> Optional[C.Translation]:
        t = self.sched.current
        if t is None or t.state is not State.RUNNABLE:
            return None    # the thread left the CPU (exit, block); Unicorn is winding down
        res = t.proc.mm.fault(vaddr, access)
        if self.checker is not None:
            self.checker.maybe(f"a page fault at {vaddr:#x}")
        if isinstance(res, Fault):
            self.fault_code = res
            return None
        return res

    def on_syscall_timed(self) -> bool:
        """_on_syscall, also timing the Python kernel for --stats (the host's clock costs
        ~0.1 µs a read on these VMs: only when asked)."""
        start = time.perf_counter()
        try:
            return self.on_syscall()
        finally:
            self.syscall_seconds += time.perf_counter() - start

    def on_syscall(self) -> bool:
        """Called from inside the CPU for every SVC; True to leave the CPU. The path of
        every system call: each step here costs on all of them (getppid's Python round
        trip is ~3 µs, the C callback into it ~0.4)."""
        self.syscall_count += 1
        t = self.sched.current
        assert t is not None                    # an SVC runs on some thread
        if t.tfsr is not None:
            # el0_svc_common(): with an asynchronous tag-check fault pending (seen by
            # mte_check_tfsr_entry()) the call does not run: -ERESTARTNOINTR rewinds to the
            # SVC, do_notify_resume() sends SIGSEGV/SEGV_MTEAERR, and the call is made
            # again only if the handler returns.
            self.cpu.pc = self.cpu.pc - 4
            self._report_async(t, f"at system call {SYSCALL_NAMES.get(self.cpu.sys.args()[0], '?')}")
            return True
        mem = t.proc.mem
        mem.tagged_addr_abi = bool(t.tagged_addr_ctrl & mte.PR_TAGGED_ADDR_ENABLE)
        mem.check_reads = t.mte.tcf_read is Tcf.SYNC
        mem.check_writes = t.mte.tcf_write is Tcf.SYNC
        self.cpu.sys.disarm_ids()
        nr = self.syscalls.dispatch(t)
        if self.checker is not None:
            self.checker.maybe("a system call")
        if nr in IDS and t.state is State.RUNNABLE and t.tfsr is None and self.tracer is None \
                and not self.options.strace and not self.signals.deliverable(t):
            # Asked once, answered by C from now until anything could change the answers
            # or make something due at a call's return (Scheduler.switch_to, the next call).
            self.cpu.sys.answer_ids(t.proc.pid, self.tasks.ppid(t.proc), t.tid)
        if nr not in QUERIES and self.sched.poll_waits(skip=t):
            # The call woke another thread (a pipe written, a child's signal...): as Linux's
            # wake-up makes it runnable at once, leave the CPU so the scheduler sees it. A
            # thread spinning in system calls no longer starves the threads it unblocked,
            # and when that happens depends on the calls made, not on time.
            self.sched.need_resched = True
        return t.state is not State.RUNNABLE or self.signals.deliverable(t) or self.sched.need_resched

    def handle_exit(self, t: Thread, ex: C.Exit) -> None:
        kind = ex.kind
        # An asynchronous mismatch is no exception on the hardware (TFSR is set again and the
        # program runs on): only a real kernel entry (a tick, a fault, a system call)
        # reports the pending one. Before, a second async mismatch reported the first at
        # once, right after its store (the kernel's selftests: 44 faults at the store, 24 at
        # sched_yield under Linux).
        async_mismatch = kind is ExitKind.TAG_CHECK and ex.mismatch is not None and not ex.mismatch.sync
        if t.tfsr is not None and kind is not ExitKind.STOPPED and not async_mismatch:
            # any other kernel entry (a tick, a fault) reports it
            self._report_async(t, "at a timer tick" if kind in (ExitKind.INTERRUPTED, ExitKind.BUDGET)
                               else "at an exception")
        if kind in (ExitKind.STOPPED, ExitKind.BUDGET, ExitKind.DEBUG):
            return          # DEBUG: a debugger's stop (the tracer reports it), nothing executed
        if kind is ExitKind.INTERRUPTED:
            host_signals.check()
            self.sched.check_deadline()
            return
        if ex.pc & 3 and kind is not ExitKind.TAG_CHECK:
            # A PC alignment fault (Arm ARM: PC alignment checking, EC 0x22). Unicorn's
            # QEMU 5.0 does not check it, so what ran at the misaligned PC ends here:
            # Linux's do_sp_pc_abort() sends SIGBUS/BUS_ADRALN with si_addr = PC.
            self.signals.force(t, S.SigInfo(S.SIGBUS, S.BUS_ADRALN, addr=ex.pc, esr=(0x22 << 26) | (1 << 25)))
        elif kind is ExitKind.FAULT:
            self._memory_fault(t, ex)
        elif kind is ExitKind.TAG_CHECK:
            self._tag_check_fault(t, ex)
        elif kind is ExitKind.ALIGNMENT:
            addr = ex.addr
            if not addr:
                word = t.proc.mem.read(ex.pc, 4)
                addr = effective_address(word, ex.pc, self.cpu.reg_by_name) or 0
            esr = (ESR_EC_DABT_LOW << 26) | (1 << 25) | 0x21
            self.signals.force(t, S.SigInfo(S.SIGBUS, S.BUS_ADRALN, addr=addr, esr=esr))
        elif kind is ExitKind.UNDEFINED:
            self.signals.force(t, S.SigInfo(S.SIGILL, S.ILL_ILLOPC, addr=ex.pc, esr=0x0200_0000))
        elif kind is ExitKind.BREAKPOINT:
            self.signals.force(t, S.SigInfo(S.SIGTRAP, S.TRAP_BRKPT, addr=ex.pc))
        else:
            self.say(f"unexpected CPU exception {ex.intno} at pc {ex.pc:#x}; sending SIGILL")
            self.signals.force(t, S.SigInfo(S.SIGILL, S.ILL_ILLOPC, addr=ex.pc))

    def _memory_fault(self, t: Thread, ex: C.Exit) -> None:
        code = self.fault_code
        if code == FAULT_RETRY:
            return     # replay the access (a pending fatal signal ends the thread first)
        if code == FAULT_OOM:
            self.say(f"out of memory: killed process {t.proc.pid}")
            self.exits.kill_process(t.proc, S.SIGKILL)
            return
        addr = self.fault_address(t, ex)
        wnr = 1 << 6 if ex.access == C.ACCESS_WRITE else 0
        ec = ESR_EC_IABT_LOW if ex.access == C.ACCESS_FETCH else ESR_EC_DABT_LOW
        dfsc = 0x0F if code == FAULT_ACCERR else 0x07
        esr = (ec << 26) | (1 << 25) | wnr | dfsc
        if code == FAULT_BUS:
            info = S.SigInfo(S.SIGBUS, S.BUS_ADRERR, addr=addr, esr=esr)
        else:
            info = S.SigInfo(S.SIGSEGV, S.SEGV_ACCERR if code == FAULT_ACCERR else S.SEGV_MAPERR,
                             addr=addr, esr=esr)
        self.signals.force(t, info)

    def _tag_check_fault(self, t: Thread, ex: C.Exit) -> None:
        """do_tag_check_fault() for sync (a forced SIGSEGV/SEGV_MTESERR, FAR = the address);
        for async, Linux raises SEGV_MTEAERR with si_addr 0 when it next enters the kernel
        (send_sig_fault: it can be blocked or ignored like any signal)."""
        m = ex.mismatch
        assert m is not None                    # a TAG_CHECK exit carries its mismatch
        if m.sync:
            esr = (ESR_EC_DABT_LOW << 26) | (1 << 25) | (1 << 6 if m.write else 0) | 0x11
            self.signals.force(t, S.SigInfo(S.SIGSEGV, S.SEGV_MTESERR, addr=m.va, esr=esr,
                                           report=self._capture_report(t, m)))
        elif t.tfsr is None:
            # TFSRE0_EL1.TF0 is one sticky bit: the first fault is the one reported.
            t.tfsr = self._capture_report(t, m)

    def _report_async(self, t: Thread, entry: str) -> None:
        report, t.tfsr = t.tfsr, None
        if report is not None:
            report = dataclasses.replace(report, reported_at=entry)
        self.signals.send(t.proc, S.SigInfo(S.SIGSEGV, S.SEGV_MTEAERR, addr=0, report=report), thread=t)

    def _capture_report(self, t: Thread, m: Mismatch) -> "TagFaultReport":
        from mteemu.machine.decode import access_size, disassemble
        from mteemu.report import symbols, tagfault

        regs = {f"x{i}": v for i, v in enumerate(self.cpu.regs(C.X_REGS))}
        regs["sp"], regs["pc"] = self.cpu.reg(C.REG_SP), m.pc
        mm = t.proc.mm

        def read_u64(addr: int) -> Optional[int]:
            res = mm.fault(addr, C.ACCESS_READ) if mm.vmas.find(addr & TOP_BYTE_MASK) else None
            if not isinstance(res, C.Translation) or addr & 7:
                return None
            return int.from_bytes(self.physmem.view(res[0] | (addr & (PAGE_SIZE - 1)), 8), "little")

        def tag_at(addr: int) -> Optional[int]:
            vma = mm.vmas.find(addr)
            pte = mm.ptes.get(addr >> 12)
            if vma is None or pte is None or not pte.present or not vma.prot & PROT_MTE:
                return None
            return self.tags.get((pte.pfn << 12) | (addr & (PAGE_SIZE - 1)))

        size = m.size
        try:
            word = t.proc.mem.read(m.pc, 4)
            insn = disassemble(word, m.pc)
            size = max(size, access_size(word, m.pc) or 0)
        except SyscallError:
            insn = "??"
        view = tagfault.FaultView(regs=regs, read_u64=read_u64, tag_at=tag_at, instruction=insn,
                                  symbolize=symbols.for_process(t.proc.exe.source, t.proc.load_bias, [
                                      (v.start, v.end, v.name, v.pgoff, src) for v in mm.vmas
                                      if (src := _mapped_source(v)) is not None]),
                                  tid=t.tid,
                                  program=t.proc.exe.name, tagged_addr_ctrl=t.tagged_addr_ctrl,
                                  mode=mte.resolve_mode(t.tagged_addr_ctrl, self.options.mte_tcf_preferred),
                                  history=mm.alloc_history)
        return tagfault.capture(view, va=m.va, write=m.write, size=size, ptr_tag=m.ptr_tag,
                                mem_tag=m.mem_tag, sync=m.sync)

    def report_fatal(self, info: S.SigInfo) -> None:
        """A tag-check fault is killing the process: tell the person why, as it dies (the
        JSON form is the run's result: RunResult.tag_fault)."""
        from mteemu.report import tagfault

        assert info.report is not None
        self.write_diag(tagfault.format_text(info.report))
        self.fatal_report = info.report

    def fault_address(self, t: Thread, ex: C.Exit) -> int:
        """The exact faulting address (FAR): the first byte of the access in the refused page."""
        page = ex.fault_page
        if ex.access == C.ACCESS_FETCH:
            return ex.pc
        if ex.addr:
            return ex.addr
        try:
            word = t.proc.mem.read(ex.pc, 4)
        except SyscallError:
            return page
        ea = effective_address(word, ex.pc, self.cpu.reg_by_name)
        if ea is None:
            return page
        tag_and_page = page & ~0xFFF
        if (ea & ~0xFFF) & TOP_BYTE_MASK == tag_and_page & TOP_BYTE_MASK:
            return ea
        return (ea & ~TOP_BYTE_MASK) | (tag_and_page & TOP_BYTE_MASK)


def _mapped_source(vma: Vma) -> Optional[str]:
    """A host path that reads the file behind a mapping: the held program file a segment
    was loaded from, or the descriptor a file mapping's page cache keeps (never the name)."""
    held = getattr(vma.file, "source", None)
    if held is not None:
        return held
    fd = getattr(vma.obj, "host_fd", None)
    return fd_path(fd) if fd is not None and vma.name.startswith("/") else None
