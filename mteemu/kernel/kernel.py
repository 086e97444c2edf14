"""The kernel: boots a board, runs guest threads on the CPU, and answers their exits.

One host process holds the whole emulated world (every guest process and thread,
one physical memory, one CPU), so scheduling and output order are deterministic:
the running thread keeps the CPU until it blocks, exits, or — only while another
thread is runnable — spends its instruction budget.
"""
from __future__ import annotations

import errno
import os
import random
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Optional, Sequence, TextIO

from mteemu import host_signals
from mteemu.board.model import Board
from mteemu.errors import (EXIT_SIGNAL_BASE, Deadlock, GuestTimeout, HostSignal, InputError, MteEmuError,
                           NoInterpreter)
from mteemu.kernel import loader, mte, namei, pauth, sigframe
from mteemu.kernel import signals as S
from mteemu.kernel.files import FdTable, HostFile, PageCache
from mteemu.kernel.futex import FutexTable, exit_robust_list
from mteemu.kernel.mm.boot import boot_mm
from mteemu.kernel.mm.addrspace import FAULT_ACCERR, FAULT_BUS, FAULT_OOM, FAULT_RETRY, Fault, Mm
from mteemu.kernel.mm import invariants
from mteemu.kernel.mm.fixes import FIXES
from mteemu.kernel.mm.pagealloc import OutOfMemory
from mteemu.kernel.mm.vma import PROT_EXEC, PROT_MTE, PROT_READ, Vma
from mteemu.kernel.ptrace import Tracer
from mteemu.kernel.process import (SS_AUTODISARM, SS_DISABLE, SS_ONSTACK, THREAD_ORDER, Process, State, Thread,
                                   Wait)
from mteemu.kernel.uaccess import SyscallError, UserMemory
from mteemu.machine import cpu as C
from mteemu.machine.cpu import Cpu, ExitKind
from mteemu.machine.decode import effective_address
from mteemu.machine.physmem import PAGE_SIZE
from mteemu.machine.tagcheck import MteState, Tcf

FIRST_PID = 1000
QUANTUM = 200_000           # instructions a thread may run while another one waits for the CPU
# An asynchronous tag-check fault is reported at the next kernel entry; without a
# syscall, the "timer tick" comes after this many instructions.
ASYNC_WINDOW = 100_000
SIGRETURN_TRAMPOLINE = bytes.fromhex("681180d2" "010000d4")   # mov x8, #139; svc #0

ESR_EC_DABT_LOW, ESR_EC_IABT_LOW = 0x24, 0x20


@dataclass
class RunOptions:
    seed: int = 0
    timeout: Optional[float] = None
    strace: bool = False
    mem_limit: Optional[int] = None        # bytes of RAM the guest may use (default: the board's)
    mte_tcf_preferred: str = "async"       # the CPU's preferred tag-check mode, as Linux's sysfs knob
    report_json: Optional[str] = None      # where to write the tag-check fault report as JSON
    root: Optional[str] = None             # confine the guest's paths to this host directory
    swap: int = 0                          # bytes of swap (0: none)
    swap_file: Optional[str] = None        # keep swap in this new file instead of host memory
    tag_storage_policy: str = "metadata"   # RFC v1 MIGRATE_METADATA, or "cma" (v2/v3)
    check_invariants: bool = False         # check the memory manager's invariants as it runs
    stats: bool = False                    # print the memory counters at exit
    kmsg: bool = False                     # print the kernel log at exit
    fixes: tuple[str, ...] = FIXES         # the RFC's race fixes in force (all, unless --without)
    sysroot: Optional[str] = None          # -L: where a dynamic program's absolute paths are tried first
    diag: Optional[TextIO] = None          # where "mteemu:" lines go (default stderr)
    closed_stdio: tuple[int, ...] = ()     # of fds 0-2, those mteemu was started without


class GuestExit(Exception):
    """The first process is gone: mteemu's exit status is known."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Kernel:
    def __init__(self, board: Board, options: RunOptions) -> None:
        self.board = board
        self.options = options
        ms = boot_mm(board, options.tag_storage_policy, options.mem_limit // PAGE_SIZE if options.mem_limit else None,
                     fixes=options.fixes, swap_pages=options.swap // PAGE_SIZE, swap_file=options.swap_file)
        self.physmem, self.tags, self.alloc, self.kmsg = ms.physmem, ms.tags, ms.alloc, ms.kmsg
        self.cpu = Cpu(self.physmem, self.tags, self._translate, self._on_syscall)
        self._fresh_regs = self.cpu.save()     # every register zero: a new program's start (start_thread())
        self.alloc.on_remap = self.cpu.flush_tlb
        self.cpu.sync_native()         # guarded tag writes (boot_mm) are the Python path's
        self.checker = invariants.Checker(self.alloc) if options.check_invariants else None
        self.rng = random.Random(options.seed)
        self.irg_rng = random.Random(f"irg-{options.seed}")    # IRG's tags: reproducible per seed
        self.pac_rng = random.Random(f"pac-{options.seed}")    # pointer-authentication keys, likewise
        self.pagecache = PageCache(self.alloc)
        self.futex = FutexTable(self)
        self.procs: dict[int, Process] = {}
        self.threads: dict[int, Thread] = {}
        self.runq: deque[Thread] = deque()
        self.current: Optional[Thread] = None
        self._on_cpu_mm: Optional[Mm] = None
        self._next_pid = FIRST_PID
        self._fault_code = 0
        self.init: Optional[Process] = None
        self.start_time = time.monotonic()
        self.boot_wall = time.time()
        self.switches = 0          # context switches (/proc/stat ctxt)
        self.shm_segments: dict = {}   # System V shared memory: shmid -> syscalls.shm.Segment
        self.forks = 0             # processes created (/proc/stat processes)
        self.deadline = self.start_time + options.timeout if options.timeout else None
        self.diag: TextIO = options.diag or sys.stderr
        self.tracer: Optional[Tracer] = None      # a debugger's session (ptrace.py), if any
        from mteemu.kernel.syscalls import SyscallTable
        self.syscalls = SyscallTable(self)

    # -- diagnostics ---------------------------------------------------------------------------
    def say(self, message: str) -> None:
        self._write_diag(f"mteemu: {message}\n")

    def _write_diag(self, text: str) -> None:
        try:
            self.diag.write(text)
            self.diag.flush()
        except (OSError, ValueError):
            pass          # an unwritable stderr never changes how the run ends

    # -- processes ---------------------------------------------------------------------------
    def new_pid(self) -> int:
        pid = self._next_pid
        self._next_pid += 1
        return pid

    def ppid(self, proc: Process) -> int:
        """getppid(): the first process's parent is outside the emulated world (shown as the
        pid before it); an orphan's is init's reaper (1)."""
        if proc.parent is not None:
            return proc.parent.pid
        return proc.pid - 1 if proc is self.init else 1

    @property
    def last_pid(self) -> int:
        return self._next_pid - 1

    def set_mte_tcf_preferred(self, mode: str) -> None:
        """Writing sysfs mte_tcf_preferred: every thread's tag-check mode is resolved again
        (Linux does it at the next context switch, mte_update_sctlr_user())."""
        self.options.mte_tcf_preferred = mode
        for t in self.threads.values():
            t.mte = mte.state_for(t.tagged_addr_ctrl, mode, t.mte)
        if self.current is not None:
            self.cpu.set_mte(self.current.mte)

    def open_exe(self, proc: Process, flags: int) -> HostFile:
        """Opening /proc/<pid>/exe: a read-only view of the program. Writing a running
        program is ETXTBSY on Linux (deny_write_access()), whoever owns it."""
        if flags & 3 or flags & os.O_TRUNC:
            raise SyscallError(errno.ETXTBSY)
        try:
            fd = os.open(proc.exe, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise SyscallError(e.errno or errno.EIO) from None
        return HostFile(fd, proc.exe, os.O_RDONLY, self.pagecache, foreign=True)

    def new_mm(self) -> Mm:
        mm = Mm(self.alloc)
        mm.flush = self.cpu.flush_tlb
        return mm

    def read_images(self, host: str, root: str) -> tuple[loader.ElfImage, Optional[loader.ElfImage]]:
        """The program and, for a dynamically linked one, its interpreter: looked up in the
        sysroot (-L) first, then in the guest's world, as qemu-user does."""
        image = loader.read_program(host)
        if image.interp is None:
            return image, None
        interp = image.interp if image.interp.startswith("/") else "/" + image.interp
        for base in (self.options.sysroot, root):
            if base:
                try:
                    found = namei.walk(base, "/", interp, True, {})
                except SyscallError:
                    continue
                if isinstance(found, namei.HostPath) and os.path.isfile(found.path):
                    return image, loader.read_program(found.path)
        raise NoInterpreter(f"{host}: dynamically linked, and its interpreter {image.interp} is in no sysroot "
                         "(-L DIR, QEMU_LD_PREFIX, /usr/aarch64-linux-gnu) nor under the guest's root")

    def spawn(self, path: str, argv: list[bytes], envp: list[bytes]) -> Process:
        root = os.path.realpath(self.options.root) if self.options.root else None
        image, interp = self.read_images(path, root or "/")
        mm = self.new_mm()
        exe = os.path.abspath(path)
        proc = Process(pid=self.new_pid(), parent=None, mm=mm, fds=self._stdio_fds(), cwd=root or os.getcwd(),
                       exe=exe, root=root, exe_gpath=namei.guest_view(root or "/", exe))
        proc.pgid = proc.sid = proc.pid
        mm.owner_name = f"pid {proc.pid} ({os.path.basename(path)[:15]})"
        prog = loader.load(mm, image, argv, envp, path.encode(), self.rng.randbytes(16), interp)
        proc.load_bias = prog.bias
        proc.auxv, proc.arg_range, proc.env_range = prog.auxv, prog.arg_range, prog.env_range
        self._map_trampoline(mm)
        t = Thread(tid=proc.pid, proc=proc, name=os.path.basename(path).encode()[:15],
                   mte=mte.state_for(0, self.options.mte_tcf_preferred, MteState(rng=self.irg_rng)),
                   pac_keys=pauth.new_keys(self.pac_rng))
        t.kernel_stack = self.alloc.alloc_kernel(THREAD_ORDER)
        t.set_regs = {C.REG_PC: prog.entry, C.REG_SP: prog.sp}
        self.cpu.restore(self.cpu.save())
        t.ctx = self.cpu.save()
        proc.threads.append(t)
        self.procs[proc.pid] = proc
        self.threads[t.tid] = t
        self.runq.append(t)
        self.init = self.init or proc
        return proc

    def exec_image(self, t: Thread, image: loader.ElfImage, host: str, gpath: str, argv: list[bytes],
                   envp: list[bytes], execfn: bytes, interp: Optional[loader.ElfImage] = None) -> None:
        """execve()'s second half (begin_new_exec() and load_elf_binary()): the program is
        loaded into a fresh address space first — a failure there is still an errno —
        then the process gives up its old one and the rest of its old program's state."""
        proc = t.proc
        mm = self.new_mm()
        try:
            prog = loader.load(mm, image, argv, envp, execfn, self.rng.randbytes(16), interp)
            self._map_trampoline(mm)
        except (OutOfMemory, InputError) as e:
            mm.destroy()
            raise SyscallError(errno.ENOEXEC if isinstance(e, InputError) else errno.ENOMEM) from None
        # -- the point of no return --
        for other in list(proc.live_threads):      # de_thread(): the other threads die
            if other is not t:
                self.exit_thread(other)
        exit_robust_list(self.futex, t)            # exec_mm_release(): the old mm is told, then forgotten
        if t.clear_child_tid:
            try:
                proc.mem.put_u32(t.clear_child_tid, 0)
                self.futex.wake_address(proc, t.clear_child_tid, 1)
            except SyscallError:
                pass
            t.clear_child_tid = 0
        old_mm = proc.mm
        proc.mm, proc.mem = mm, UserMemory(mm)
        mm.owner_name = f"pid {proc.pid} ({os.path.basename(gpath)[:15]})"
        if proc.vfork_parent is not None:
            proc.vfork_parent = None               # the parent's mm was only borrowed: wake it
        else:
            old_mm.destroy()
        proc.exe, proc.exe_gpath, proc.load_bias = host, gpath, prog.bias
        proc.dumpable = 1                          # begin_new_exec(): set_dumpable(SUID_DUMP_USER)
        proc.auxv, proc.arg_range, proc.env_range = prog.auxv, prog.arg_range, prog.env_range
        # unshare_files() and do_close_on_exec(): a table of its own, without FD_CLOEXEC files.
        old_fds, proc.fds = proc.fds, proc.fds.fork()
        for f in old_fds.files.values():
            f.refs -= 1
            if f.refs == 0:
                f.release()
        for fd in list(proc.fds.cloexec):
            proc.fds.close(fd)
        # flush_signal_handlers(): caught signals go back to SIG_DFL; ignored ones stay ignored.
        for sig, act in list(proc.actions.items()):
            if act.handler != S.SIG_IGN:
                proc.actions[sig] = S.SigAction()
        t.altstack = (0, SS_DISABLE, 0)
        t.robust_list, t.rseq, t.saved_sigmask = (0, 0), 0, None
        # The MTE state of a new program: no tagged address ABI, no tag checks, TCO clear.
        t.tagged_addr_ctrl = 0
        t.mte = mte.state_for(0, self.options.mte_tcf_preferred, replace(t.mte, tco=False))
        t.tfsr = None
        t.pac_keys, t.pac_enabled = pauth.new_keys(self.pac_rng), pauth.ADDRESS_KEYS   # ptrauth_thread_init_user()
        self.cpu.set_pac(t.pac_keys, t.pac_enabled)
        t.name = os.path.basename(gpath).encode()[:15]
        t.set_regs = {}
        if self.tracer is not None and self.tracer.traces(proc):
            self.tracer.execed(t)
        self.cpu.restore(self._fresh_regs)
        self.cpu.set_reg(C.REG_PC, prog.entry)
        self.cpu.set_reg(C.REG_SP, prog.sp)
        self.cpu.set_mte(t.mte)
        self.cpu.flush_tlb()                       # another address space on the CPU
        self.cpu.invalidate_code()
        self._on_cpu_mm = mm
        self.need_resched = True                   # leave the CPU: resume in the new program

    def _stdio_fds(self) -> FdTable:
        fds = FdTable()
        for fd in (0, 1, 2):
            if fd in self.options.closed_stdio:
                continue
            try:
                host = os.dup(fd)
            except OSError:
                continue
            flags = os.O_RDONLY if fd == 0 else os.O_WRONLY
            try:
                name = os.readlink(f"/proc/self/fd/{fd}")     # mteemu's own stdio, named once
            except OSError:
                name = f"/dev/fd/{fd}"
            # The host's objects behind stdio: readable and writable, never re-owned (foreign).
            fds.install(HostFile(host, name, flags, self.pagecache, foreign=True), fd=fd)
        return fds

    def _map_trampoline(self, mm: Mm) -> None:
        """A one-page stand-in for the vDSO's sigreturn trampoline (x30 of a handler)."""
        addr = mm.get_unmapped_area(PAGE_SIZE)
        if addr is None:
            raise OutOfMemory("no room for the sigreturn trampoline")
        mm.map(Vma(addr, addr + PAGE_SIZE, PROT_READ | PROT_EXEC, name="[vdso]"))
        loader.poke(mm, addr, SIGRETURN_TRAMPOLINE)
        mm.sigreturn_trampoline = addr

    # -- the CPU's callbacks -----------------------------------------------------------------
    def _translate(self, vaddr: int, access: int) -> Optional[C.Translation]:
        t = self.current
        if t is None or t.state is not State.RUNNABLE:
            return None    # the thread left the CPU (exit, block); Unicorn is winding down
        res = t.proc.mm.fault(vaddr, access)
        if self.checker is not None:
            self.checker.maybe(f"a page fault at {vaddr:#x}")
        if isinstance(res, Fault):
            self._fault_code = res
            return None
        return res

    def _on_syscall(self) -> bool:
        """Called from inside the CPU for every SVC; True to leave the CPU."""
        t = self.current
        assert t is not None                    # an SVC runs on some thread
        if t.tfsr is not None:
            # el0_svc_common(): with an asynchronous tag-check fault pending (seen by
            # mte_check_tfsr_entry()) the call does not run: -ERESTARTNOINTR rewinds to the
            # SVC, do_notify_resume() sends SIGSEGV/SEGV_MTEAERR, and the call is made
            # again only if the handler returns.
            self.cpu.pc = self.cpu.pc - 4
            self._report_async(t)
            return True
        mem = t.proc.mem
        mem.tagged_addr_abi = bool(t.tagged_addr_ctrl & mte.PR_TAGGED_ADDR_ENABLE)
        mem.check_reads = t.mte.tcf_read is Tcf.SYNC
        mem.check_writes = t.mte.tcf_write is Tcf.SYNC
        self.syscalls.dispatch(t)
        if self.checker is not None:
            self.checker.maybe("a system call")
        if self._poll_waits(skip=t):
            # The call woke another thread (a pipe written, a child's signal...): as Linux's
            # wake-up makes it runnable at once, leave the CPU so the scheduler sees it. A
            # thread spinning in system calls no longer starves the threads it unblocked,
            # and when that happens depends on the calls made, not on time.
            self.need_resched = True
        return t.state is not State.RUNNABLE or self._signal_deliverable(t) or self.need_resched

    need_resched = False

    def syscall(self, t: Thread, nr: int, args: Sequence[int]) -> int:
        """Make system call nr with args as thread t, exactly as its SVC would (the entry
        point of the syscall fuzzer); x0 after it."""
        self._switch_to(t)
        self.cpu.set_x(8, nr)
        for i, value in enumerate(args[:6]):
            self.cpu.set_x(i, value)
        self._on_syscall()
        return self.cpu.x(0)

    # -- running ---------------------------------------------------------------------------------
    def run(self) -> int:
        watchdog = None
        if self.options.timeout:
            watchdog = threading.Timer(self.options.timeout, self._expire)
            watchdog.daemon = True
            watchdog.start()
        try:
            if self.tracer is not None and self.init is not None:
                self.tracer.start(self.init.threads[0])
            while True:
                self._fire_timers()
                t = self._pick()
                self._switch_to(t)
                self._deliver_signals(t)
                if t.state is not State.RUNNABLE or self.current is not t:
                    continue
                others = any(o.state is State.RUNNABLE for o in self.runq if o is not t)
                self.need_resched = False
                budget = QUANTUM if others else 0
                if t.tfsr is not None:
                    budget = min(budget or ASYNC_WINDOW, ASYNC_WINDOW)
                if self.tracer is not None:
                    budget = self.tracer.budget(t, budget)
                timer = self._timer_deadline()
                exit_ = self.cpu.run(budget, None if timer is None else max(timer - time.monotonic(), 1e-4))
                self._handle_exit(t, exit_)
                if self.tracer is not None:
                    self.tracer.after_run(t, exit_)
        except GuestExit as e:
            if self.checker is not None:
                self.checker.now("the run")
            self.shutdown()
            return e.status
        except HostSignal:
            self.close()      # the model may be mid-operation: release only what the host holds
            raise
        except BaseException:
            self.shutdown()
            raise
        finally:
            if watchdog is not None:
                watchdog.cancel()

    def _timer_deadline(self) -> Optional[float]:
        """The earliest armed interval timer of any process (time.monotonic())."""
        expiries = [e for p in self.procs.values() if p.wait_status is None for e, _ in p.itimers.values()]
        return min(expiries) if expiries else None

    def _fire_timers(self) -> bool:
        """it_real_fn(): each expired timer sends its signal and re-arms by its interval;
        True if any fired."""
        fired = False
        now = time.monotonic()
        for proc in list(self.procs.values()):
            if proc.wait_status is not None:
                continue
            for which, (expiry, interval) in list(proc.itimers.items()):
                if expiry > now:
                    continue
                if interval:
                    proc.itimers[which] = (max(expiry + interval, now), interval)
                else:
                    del proc.itimers[which]
                self.send_signal(proc, S.SigInfo(S.ITIMER_SIGNALS[which], S.SI_KERNEL))
                fired = True
        return fired

    def _expire(self) -> None:
        self.cpu.interrupt()

    def _check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise GuestTimeout(f"guest did not finish within {self.options.timeout:g} s (--timeout)")

    def _pick(self) -> Thread:
        """Round-robin over runnable threads; wait (really) when all are blocked."""
        while True:
            if self.cpu.interrupted:
                host_signals.check()
                self._check_deadline()
            self._poll_waits()
            for _ in range(len(self.runq)):
                t = self.runq[0]
                self.runq.rotate(-1)
                if t.state is State.RUNNABLE:
                    return t
            if self._fire_timers():
                continue                            # a signal may wake a waiting thread
            if self.tracer is not None:
                self.tracer.idle()                  # a debugger's interrupt stops a blocked process too
            deadlines = [t.wait.deadline for t in self.runq if t.state is State.BLOCKED
                         and t.wait and t.wait.deadline is not None]
            timer = self._timer_deadline()
            if timer is not None:
                deadlines.append(timer)             # an interval timer will wake someone
            if not deadlines:
                raise Deadlock("every guest thread is blocked and none can be woken (deadlock)")
            delay = min(deadlines) - time.monotonic()
            if self.deadline is not None:
                delay = min(delay, self.deadline - time.monotonic())
            if delay > 0:
                with host_signals.interruptible():
                    time.sleep(min(delay, 0.05))
            self._check_deadline()

    def _poll_waits(self, skip: Optional[Thread] = None) -> bool:
        """Wake the blocked threads whose wait is over (skip: the thread on the CPU, which
        may have blocked in the call being made); True if any woke."""
        now = time.monotonic()
        woke = False
        for t in list(self.runq):
            if t.state is not State.BLOCKED or t is skip:
                continue
            w = t.wait
            assert w is not None                # a blocked thread waits for something
            if self._signal_deliverable(t):
                w.cancel()
                t.wait = None
                t.state = State.RUNNABLE
                sig = self._next_signal(t)
                assert sig is not None          # deliverable
                act = t.proc.action(sig)
                if w.restartable and act.handler not in (S.SIG_DFL, S.SIG_IGN) and act.flags & S.SA_RESTART:
                    # Re-issue the SVC. A thread still on the CPU (no saved context: the one
                    # that blocked last, woken by a timer's signal) has its PC in the CPU.
                    pc = self.cpu.context_reg(t.ctx, C.REG_PC) if t.ctx is not None else self.cpu.pc
                    t.set_regs[C.REG_PC] = pc - 4
                else:
                    t.set_regs[C.X_REGS[0]] = w.interrupted()
                woke = True
                continue
            result = w.poll()
            if result is None and w.deadline is not None and now >= w.deadline:
                w.cancel()
                result = w.on_timeout()
            if result is not None:
                t.wait = None
                t.state = State.RUNNABLE
                t.set_regs[C.X_REGS[0]] = result & ((1 << 64) - 1)
                woke = True
        return woke

    def _switch_to(self, t: Thread) -> None:
        if self.current is not t:
            if self.current is not None and self.current.state is not State.DEAD:
                self.current.ctx = self.cpu.save()
            self.cpu.restore(t.ctx)
            t.ctx = None
            self.current = t
            self.switches += 1
            self.cpu.set_mte(t.mte)
            self.cpu.set_pac(t.pac_keys, t.pac_enabled)
            if self._on_cpu_mm is not t.proc.mm:
                self._on_cpu_mm = t.proc.mm
                self.cpu.flush_tlb()
        if t.set_regs:
            for reg, value in t.set_regs.items():
                self.cpu.set_reg(reg, value)
            t.set_regs = {}

    def block(self, t: Thread, wait: Wait) -> None:
        t.state = State.BLOCKED
        t.wait = wait

    def _handle_exit(self, t: Thread, ex: C.Exit) -> None:
        kind = ex.kind
        if t.tfsr is not None and kind is not ExitKind.STOPPED:
            self._report_async(t)     # any other kernel entry (a tick, a fault) reports it
        if kind in (ExitKind.STOPPED, ExitKind.BUDGET, ExitKind.DEBUG):
            return          # DEBUG: a debugger's stop (the tracer reports it), nothing executed
        if kind is ExitKind.INTERRUPTED:
            host_signals.check()
            self._check_deadline()
            return
        if ex.pc & 3 and kind is not ExitKind.TAG_CHECK:
            # A PC alignment fault (Arm ARM: PC alignment checking, EC 0x22). Unicorn's
            # QEMU 5.0 does not check it, so what ran at the misaligned PC ends here:
            # Linux's do_sp_pc_abort() sends SIGBUS/BUS_ADRALN with si_addr = PC.
            self.force_signal(t, S.SigInfo(S.SIGBUS, S.BUS_ADRALN, addr=ex.pc, esr=(0x22 << 26) | (1 << 25)))
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
            self.force_signal(t, S.SigInfo(S.SIGBUS, S.BUS_ADRALN, addr=addr, esr=esr))
        elif kind is ExitKind.UNDEFINED:
            self.force_signal(t, S.SigInfo(S.SIGILL, S.ILL_ILLOPC, addr=ex.pc, esr=0x0200_0000))
        elif kind is ExitKind.BREAKPOINT:
            self.force_signal(t, S.SigInfo(S.SIGTRAP, S.TRAP_BRKPT, addr=ex.pc))
        else:
            self.say(f"unexpected CPU exception {ex.intno} at pc {ex.pc:#x}; sending SIGILL")
            self.force_signal(t, S.SigInfo(S.SIGILL, S.ILL_ILLOPC, addr=ex.pc))

    def _memory_fault(self, t: Thread, ex: C.Exit) -> None:
        code = self._fault_code
        if code == FAULT_RETRY:
            return     # replay the access (a pending fatal signal ends the thread first)
        if code == FAULT_OOM:
            self.say(f"out of memory: killed process {t.proc.pid}")
            self.kill_process(t.proc, S.SIGKILL)
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
        self.force_signal(t, info)

    def _tag_check_fault(self, t: Thread, ex: C.Exit) -> None:
        """do_tag_check_fault() for sync (a forced SIGSEGV/SEGV_MTESERR, FAR = the address);
        for async, Linux raises SEGV_MTEAERR with si_addr 0 when it next enters the kernel
        (send_sig_fault: it can be blocked or ignored like any signal)."""
        m = ex.mismatch
        assert m is not None                    # a TAG_CHECK exit carries its mismatch
        report = self._capture_report(t, m)
        if m.sync:
            esr = (ESR_EC_DABT_LOW << 26) | (1 << 25) | (1 << 6 if m.write else 0) | 0x11
            self.force_signal(t, S.SigInfo(S.SIGSEGV, S.SEGV_MTESERR, addr=m.va, esr=esr, report=report))
        elif t.tfsr is None:
            t.tfsr = report           # TFSRE0_EL1.TF0 is one sticky bit: the first fault is reported

    def _report_async(self, t: Thread) -> None:
        report, t.tfsr = t.tfsr, None
        self.send_signal(t.proc, S.SigInfo(S.SIGSEGV, S.SEGV_MTEAERR, addr=0, report=report), thread=t)

    def _capture_report(self, t: Thread, m) -> dict:  # noqa: ANN001 - a tagcheck.Mismatch
        from mteemu.machine.decode import access_size, disassemble
        from mteemu.report import symbols, tagfault

        regs = {f"x{i}": v for i, v in enumerate(self.cpu.regs(C.X_REGS))}
        regs["sp"], regs["pc"] = self.cpu.reg(C.REG_SP), m.pc
        mm = t.proc.mm

        def read_u64(addr: int) -> Optional[int]:
            res = mm.fault(addr, C.ACCESS_READ) if mm.vmas.find(addr & ((1 << 56) - 1)) else None
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
                                  symbolize=symbols.for_process(t.proc.exe, t.proc.load_bias, [
                                      (v.start, v.end, v.name, v.pgoff) for v in mm.vmas if v.name.startswith("/")]),
                                  tid=t.tid,
                                  program=t.proc.exe, tagged_addr_ctrl=t.tagged_addr_ctrl,
                                  mode=mte.resolve_mode(t.tagged_addr_ctrl, self.options.mte_tcf_preferred))
        return tagfault.capture(view, va=m.va, write=m.write, size=size, ptr_tag=m.ptr_tag,
                                mem_tag=m.mem_tag, sync=m.sync)

    def _report_fatal(self, info: S.SigInfo) -> None:
        """A tag-check fault is killing the process: tell the person why."""
        from mteemu.report import tagfault

        assert info.report is not None
        self._write_diag(tagfault.format_text(info.report))
        if self.options.report_json:
            import json

            from mteemu.atomicfile import write_text

            try:
                write_text(self.options.report_json, json.dumps(info.report, indent=2) + "\n")
            except OSError as e:
                self.say(f"cannot write --report-json {self.options.report_json}: {e.strerror}")
            except MteEmuError as e:
                self.say(e.message)

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
        if (ea & ~0xFFF) & ((1 << 56) - 1) == tag_and_page & ((1 << 56) - 1):
            return ea
        return (ea & ~((1 << 56) - 1)) | (tag_and_page & ((1 << 56) - 1))

    # -- signals -------------------------------------------------------------------------------------
    def _next_signal(self, t: Thread) -> Optional[int]:
        a = t.pending.first(t.sigmask)
        b = t.proc.pending.first(t.sigmask)
        cands = [s for s in (a, b) if s is not None]
        return min(cands) if cands else None

    def _signal_deliverable(self, t: Thread) -> bool:
        return bool((t.pending.queue or t.proc.pending.queue) and self._next_signal(t) is not None)

    def _ignored(self, proc: Process, sig: int) -> bool:
        act = proc.action(sig)
        return act.handler == S.SIG_IGN or (act.handler == S.SIG_DFL and not S.default_kills(sig))

    def send_signal(self, proc: Process, info: S.SigInfo, thread: Optional[Thread] = None) -> None:
        """Generate a signal for a process (or one of its threads)."""
        if proc.wait_status is not None or info.signo == 0:
            return
        sig = info.signo
        if sig == S.SIGKILL:
            self.kill_process(proc, S.SIGKILL)
            return
        targets = [thread] if thread else proc.live_threads
        if self._ignored(proc, sig) and all(not (t.sigmask & S.bit(sig)) for t in targets):
            return   # discarded at generation, as Linux does for ignored, unblocked signals
        if thread is not None:
            thread.pending.add(info)
        else:
            proc.pending.add(info)
        if self.current is not None and self.current.proc is proc:
            self.need_resched = True

    def force_signal(self, t: Thread, info: S.SigInfo) -> None:
        """A synchronous fault: if blocked or ignored, Linux resets it to the default (fatal)."""
        sig = info.signo
        act = t.proc.action(sig)
        if t.sigmask & S.bit(sig) or act.handler == S.SIG_IGN:
            t.proc.actions[sig] = S.SigAction()
            t.sigmask &= ~S.bit(sig)
        t.pending.add(info)

    def _deliver_signals(self, t: Thread) -> None:
        proc = t.proc
        while t.state is State.RUNNABLE and self.current is t:
            sig = self._next_signal(t)
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
                    self.kill_process(proc, S.SIGKILL)
                    return
            act = proc.action(sig)
            if act.handler == S.SIG_IGN:
                continue
            if act.handler == S.SIG_DFL:
                if S.default_kills(sig):
                    if info.report is not None:
                        self._report_fatal(info)
                    fault = sig in S.FAULT_SIGNALS and 0 < info.code < 0x80
                    self.kill_process(proc, sig, info.code if fault else None)
                    return
                continue
            if not self._setup_frame(t, info, act):
                self.force_signal(t, S.SigInfo(S.SIGSEGV, S.SI_KERNEL))
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

    # -- process and thread exit -------------------------------------------------------------------
    def exit_thread(self, t: Thread) -> None:
        if t.state is State.DEAD:
            return
        if t.wait is not None:
            t.wait.cancel()
            t.wait = None
        t.state = State.DEAD
        exit_robust_list(self.futex, t)            # mm_release(): robust futexes first, then the TID
        if t.clear_child_tid and t.proc.wait_status is None:
            try:
                t.proc.mem.put_u32(t.clear_child_tid, 0)
                self.futex.wake_address(t.proc, t.clear_child_tid, 1)
            except SyscallError:
                pass
        if t in self.runq:
            self.runq.remove(t)
        self.threads.pop(t.tid, None)
        if t.kernel_stack is not None:
            self.alloc.free_kernel(t.kernel_stack)
            t.kernel_stack = None
        if self.current is t:
            self.current = None
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
            proc.vfork_parent = None       # the parent's mm was only borrowed: wake the parent
        else:
            proc.mm.destroy()
            if self._on_cpu_mm is proc.mm:
                self._on_cpu_mm = None
        if proc is self.init:
            self._init_exited(proc)
        for child in proc.children:
            child.parent = None
            if child.pdeath_signal and child.wait_status is None:
                # forget_original_parent(): the orphan gets its parent-death signal.
                self.send_signal(child, S.SigInfo(child.pdeath_signal, S.SI_USER, pid=proc.pid, uid=os.getuid()))
        parent = proc.parent
        if parent is None or parent.wait_status is not None:
            self.procs.pop(proc.pid, None)
            return
        status = proc.wait_status or 0
        sig = status & 0x7F
        code = S.CLD_KILLED if sig else S.CLD_EXITED
        if proc.exit_signal:        # clone's exit signal (0: the parent is not told)
            self.send_signal(parent, S.SigInfo(proc.exit_signal, code, pid=proc.pid, uid=os.getuid(),
                                               status=sig if sig else status >> 8))
        if parent.action(S.SIGCHLD).handler == S.SIG_IGN or parent.action(S.SIGCHLD).flags & S.SA_NOCLDWAIT:
            parent.children.remove(proc)       # auto-reaped, as Linux does
            self.procs.pop(proc.pid, None)

    def _init_exited(self, proc: Process) -> None:
        status = proc.wait_status or 0
        sig = status & 0x7F
        if sig:
            code = f", si_code {proc.kill_code}" if proc.kill_code is not None else ""
            self.say(f"guest terminated by signal {sig} ({S.name(sig)}){code}")
            raise GuestExit(EXIT_SIGNAL_BASE + sig)
        raise GuestExit(status >> 8)

    def close(self) -> None:
        """Give back what the run holds on the host (the swap file); safe to repeat."""
        if self.alloc.swap is not None:
            self.alloc.swap.close()

    def shutdown(self) -> None:
        """End the world: every process killed, its files closed, its memory freed; the
        host resources the run holds given back (also for a kernel dropped unfinished)."""
        for proc in list(self.procs.values()):
            if proc.wait_status is None:
                proc.wait_status = S.SIGKILL
                proc.fds.close_all()
                if proc.vfork_parent is None:      # a vfork child borrows its parent's mm
                    proc.mm.destroy()
        self.close()
        if self.options.kmsg:
            for line in self.kmsg.lines:
                self.say(f"kmsg: {line}")
        if self.options.stats:
            from mteemu.kernel import procfs

            for line in procfs.stats_lines(self):
                self.say(f"stats: {line}")

