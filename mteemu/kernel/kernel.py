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
import stat
import sys
import threading
import time
from dataclasses import replace
from typing import Optional, Sequence, TextIO

from mteemu.board.model import Board
from mteemu.errors import HostSignal, InputError, NoInterpreter
from mteemu.inputs import open_regular
from mteemu.kernel import loader, mte, pauth
from mteemu.kernel import signals as S
from mteemu.kernel.delivery import SignalDelivery
from mteemu.kernel.exits import Exits, GuestExit
from mteemu.kernel.fs import namei
from mteemu.kernel.fs.devfs import ShmDir
from mteemu.kernel.fs.exefile import ExeFile
from mteemu.kernel.fs.fdtable import FdTable
from mteemu.kernel.fs.hostfile import HostFile, PageCache
from mteemu.kernel.fs.vfs import Vfs
from mteemu.kernel.futex import FutexTable, exit_robust_list
from mteemu.kernel.mm import invariants
from mteemu.kernel.mm.addrspace import Mm
from mteemu.kernel.mm.boot import boot_mm
from mteemu.kernel.mm.pagealloc import OutOfMemory
from mteemu.kernel.mm.vma import PROT_EXEC, PROT_READ, Vma
from mteemu.kernel.process import SS_DISABLE, THREAD_ORDER, Process, State, Thread, release_vfork
from mteemu.kernel.ptrace import Tracer
from mteemu.kernel.run import RunOptions, RunResult
from mteemu.kernel.sched import Scheduler
from mteemu.kernel.syscalls.table import SyscallTable
from mteemu.kernel.tasks import Tasks
from mteemu.kernel.traps import Traps
from mteemu.kernel.uaccess import SyscallError, UserMemory
from mteemu.machine import arm64 as C
from mteemu.machine.cpu import Cpu
from mteemu.machine.physmem import PAGE_SIZE
from mteemu.machine.tagcheck import MteState

SIGRETURN_TRAMPOLINE = bytes.fromhex("681180d2" "010000d4")   # mov x8, #139; svc #0


class Kernel:
    """The emulated world's kernel, composed of its services: the task list (tasks.py), the
    scheduler (sched.py), signals (delivery.py), exits (exits.py), the CPU's traps
    (traps.py), the namespace (fs/vfs.py) and the system call table (syscalls/table.py).
    Here: boot, the run loop, and programs started and executed."""

    def __init__(self, board: Board, options: RunOptions) -> None:
        self.board = board
        self.options = options
        ms = boot_mm(board, options.tag_storage_policy, options.mem_limit // PAGE_SIZE if options.mem_limit else None,
                     fixes=options.fixes, swap_pages=options.swap // PAGE_SIZE, swap_file=options.swap_file)
        self.physmem, self.tags, self.alloc, self.kmsg = ms.physmem, ms.tags, ms.alloc, ms.kmsg
        self.diag: TextIO = options.diag or sys.stderr
        self.checker = invariants.Checker(self.alloc) if options.check_invariants else None
        self.rng = random.Random(options.seed)
        self.pac_rng = random.Random(f"pac-{options.seed}")    # pointer-authentication keys, likewise
        self.start_time = time.monotonic()
        self.boot_wall = time.time()
        self.pagecache = PageCache(self.alloc)
        self.devshm = ShmDir()             # the guest's /dev/shm under --root, made when first used
        self.futex = FutexTable()
        self.shm_segments: dict = {}       # System V shared memory: shmid -> syscalls.shm.Segment
        self.tracer: Optional[Tracer] = None      # a debugger's session (ptrace.py), if any: attach()
        # The services, each given what it uses. Some name each other (the CPU and its traps;
        # a fatal signal exits a process and an exit signals the parent; the scheduler polls
        # for signals): those links are set once all are built.
        self.tasks = Tasks()
        self.traps = Traps(self.physmem, self.tags, options, self.tasks, self.checker, self.write_diag)
        self.cpu = Cpu(self.physmem, self.tags, self.traps.translate,
                       self.traps.on_syscall_timed if options.stats else self.traps.on_syscall)
        self.sched = Scheduler(self.cpu, self.tasks, options.timeout, self.start_time)
        self.signals = SignalDelivery(self.cpu, self.sched, self.traps.report_fatal)
        self.exits = Exits(self.tasks, self.sched, self.signals, self.futex, self.alloc, self.say)
        self.sched.signals = self.signals
        self.signals.exits = self.exits
        self.syscalls = SyscallTable(self)
        self.traps.connect(self.cpu, self.sched, self.signals, self.exits, self.syscalls)
        # The guest's "/" and the sysroot, held for the run: every guest path is walked from
        # these descriptors (namei.py), never re-joined into a host path.
        self.vfs = Vfs(namei.HostDir(options.root or "/"), namei.HostDir(options.sysroot) if options.sysroot else None,
                       self._generated_trees, self.pagecache)
        self.cpu.seed_irg(options.seed)          # IRG's tags: reproducible per seed
        self._fresh_regs = self.cpu.save()     # every register zero: a new program's start (start_thread())
        self.alloc.on_remap = self.cpu.flush_tlb
        self.cpu.sync_native()         # guarded tag writes (boot_mm) are the Python path's

    def _generated_trees(self, t: Thread) -> dict:
        """What is mounted over the root, as t sees it: /proc, /sys, and /dev under --root
        (without it, the host's /dev). Loaded when first walked."""
        from mteemu.kernel.fs import devfs, procfs, sysfs

        tops = {"proc": procfs.root(self, t), "sys": sysfs.root(self)}
        if self.options.root:
            tops["dev"] = devfs.root(self)
        return tops

    def attach(self, tracer: Tracer) -> None:
        """A debugger's session: every service that stops or reports for it is told."""
        self.tracer = self.sched.tracer = self.signals.tracer = self.exits.tracer = self.traps.tracer = tracer

    @property
    def init(self) -> Optional[Process]:
        return self.tasks.init

    @property
    def current(self) -> Optional[Thread]:
        return self.sched.current

    def syscall(self, t: Thread, nr: int, args: Sequence[int]) -> int:
        """Make system call nr with args as thread t, exactly as its SVC would (the entry
        point of the syscall fuzzer and of the in-process kernel tests); x0 after it."""
        self.sched.switch_to(t)
        self.cpu.sys.svc(nr, args[:6], self.traps.on_syscall)
        return self.cpu.x(0)

    # -- running ---------------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Run until the first process exits: its status, and the report of the last tag-check
        fault that killed a process (the CLI writes --report-json from it)."""
        sched, cpu, traps, tracer = self.sched, self.cpu, self.traps, self.tracer
        watchdog = None
        if self.options.timeout:
            watchdog = threading.Timer(self.options.timeout, cpu.interrupt)
            watchdog.daemon = True
            watchdog.start()
        try:
            if tracer is not None and self.tasks.init is not None:
                tracer.start(self.tasks.init.threads[0])
            while True:
                sched.fire_timers()
                t = sched.pick()
                sched.switch_to(t)
                self.signals.deliver(t)
                if t.state is not State.RUNNABLE or sched.current is not t:
                    continue
                budget = sched.budget(t)
                if tracer is not None:
                    budget = tracer.budget(t, budget)
                timer = sched.timer_deadline()
                exit_ = cpu.run(budget, None if timer is None else max(timer - time.monotonic(), 1e-4))
                traps.handle_exit(t, exit_)
                if tracer is not None:
                    tracer.after_run(t, exit_)
        except GuestExit as e:
            if self.checker is not None:
                self.checker.now("the run")
            self.shutdown()
            return RunResult(e.status, traps.fatal_report)
        except HostSignal:
            self.close()      # the model may be mid-operation: release only what the host holds
            raise
        except BaseException:
            self.shutdown()
            raise
        finally:
            if watchdog is not None:
                watchdog.cancel()
                watchdog.join()             # its thread holds the kernel until it has ended

    @property
    def fatal_report(self) -> Optional[dict]:
        """The report of the last tag-check fault that killed a process, also when the run
        ended otherwise (a timeout, a deadlock)."""
        return self.traps.fatal_report

    # -- the end -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Give back what the run holds on the host (the swap file, the held root and
        sysroot, the guest's /dev/shm); safe to repeat."""
        if self.alloc.swap is not None:
            self.alloc.swap.close()
        self.vfs.close()
        self.devshm.close()

    def discard(self) -> None:
        """Drop a kernel that will not run (a probe, a failed start): the world shut down
        and the CPU's engine released at once, not when the collector gets to it."""
        self.shutdown()
        self.cpu.close()

    def shutdown(self) -> None:
        """End the world: every process killed, its files closed, its memory freed; the
        host resources the run holds given back (also for a kernel dropped unfinished)."""
        for proc in list(self.tasks.procs.values()):
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
            from mteemu.kernel.fs import procfs

            for line in procfs.stats_lines(self):
                self.say(f"stats: {line}")
            traps, sched = self.traps, self.sched
            per_call = 1e6 * traps.syscall_seconds / traps.syscall_count if traps.syscall_count else 0.0
            self.say(f"stats: {self.cpu.hot_path().line()}")
            self.say(f"stats: kernel syscalls={traps.syscall_count} python-seconds={traps.syscall_seconds:.3f} "
                     f"per-call={per_call:.1f}us answered-in-C={self.cpu.sys.ids_answered()} "
                     f"wake-scans={sched.wake_scans} wait-polls={sched.wait_polls}")

    # -- diagnostics ---------------------------------------------------------------------------
    def say(self, message: str) -> None:
        self.write_diag(f"mteemu: {message}\n")

    def write_diag(self, text: str) -> None:
        try:
            self.diag.write(text)
            self.diag.flush()
        except (OSError, ValueError):
            pass          # an unwritable stderr never changes how the run ends

    # -- processes ---------------------------------------------------------------------------
    def set_mte_tcf_preferred(self, mode: str) -> None:
        """Writing sysfs mte_tcf_preferred: every thread's tag-check mode is resolved again
        (Linux does it at the next context switch, mte_update_sctlr_user())."""
        self.options.mte_tcf_preferred = mode
        for t in self.tasks.threads.values():
            t.mte = mte.state_for(t.tagged_addr_ctrl, mode, t.mte)
        if self.sched.current is not None:
            self.cpu.set_mte(self.sched.current.mte)

    def open_exe(self, proc: Process, flags: int) -> HostFile:
        """Opening /proc/<pid>/exe: a read-only view of the program, reopened through the
        descriptor held since it was executed. Writing a running program is ETXTBSY on
        Linux (deny_write_access()), whoever owns it."""
        if flags & 3 or flags & os.O_TRUNC:
            raise SyscallError(errno.ETXTBSY)
        try:
            fd = proc.exe.reopen(os.O_RDONLY)
        except OSError as e:
            raise SyscallError(e.errno or errno.EIO) from None
        return HostFile(fd, proc.exe.name, os.O_RDONLY, self.pagecache, foreign=True)

    def new_mm(self) -> Mm:
        mm = Mm(self.alloc)
        mm.flush = self.cpu.flush_tlb
        return mm

    def read_images(self, exe: ExeFile) -> tuple[loader.ElfImage, Optional[loader.ElfImage]]:
        """The program and, for a dynamically linked one, its interpreter: walked for in
        the sysroot (-L) first, then in the guest's world, as qemu-user does, and read
        through a descriptor (the host's /proc is never walked: namei refuses it)."""
        image = loader.read_program(exe)
        if image.interp is None:
            return image, None
        interp = image.interp if image.interp.startswith("/") else "/" + image.interp
        for base in (self.vfs.sysroot_dir, self.vfs.root_dir):
            if base is None:
                continue
            try:
                found = namei.walk(base, "/", interp, True, {})
            except SyscallError:
                continue
            with found:
                if not isinstance(found, namei.HostEntry) or found.st is None \
                        or not stat.S_ISREG(found.st.st_mode):
                    continue
                try:
                    fd = found.open(os.O_RDONLY | os.O_NONBLOCK)
                except OSError:
                    continue
            return image, loader.read_program(ExeFile(fd, interp))
        raise NoInterpreter(f"{exe.name}: dynamically linked, and its interpreter {image.interp} is in no sysroot "
                            "(-L DIR, QEMU_LD_PREFIX, /usr/aarch64-linux-gnu) nor under the guest's root")

    def spawn(self, path: str, argv: list[bytes], envp: list[bytes]) -> Process:
        """The first process runs the program mteemu's user named (a host path, opened once
        here); the guest sees it by its place under the root, or by its host path."""
        root = self.vfs.root_dir.path if self.options.root else None
        name = namei.guest_view(root or "/", os.path.abspath(path))
        exe = ExeFile(open_regular(path, "a program"), name)
        image, interp = self.read_images(exe)
        mm = self.new_mm()
        cwd = "/" if root else os.getcwd()
        proc = Process(pid=self.tasks.new_pid(), parent=None, mm=mm, fds=self._stdio_fds(root), cwd=cwd,
                       exe=exe, root=root)
        proc.pgid = proc.sid = proc.pid
        mm.owner_name = f"pid {proc.pid} ({os.path.basename(path)[:15]})"
        prog = loader.load(mm, image, argv, envp, path.encode(), self.rng.randbytes(16), interp)
        proc.load_bias = prog.bias
        proc.auxv, proc.arg_range, proc.env_range = prog.auxv, prog.arg_range, prog.env_range
        self._map_trampoline(mm)
        t = Thread(tid=proc.pid, proc=proc, name=os.path.basename(path).encode()[:15],
                   mte=mte.state_for(0, self.options.mte_tcf_preferred, MteState()),
                   pac_keys=pauth.new_keys(self.pac_rng))
        t.kernel_stack = self.alloc.alloc_kernel(THREAD_ORDER)
        t.set_regs = {C.REG_PC: prog.entry, C.REG_SP: prog.sp}
        self.cpu.restore(self.cpu.save())
        t.ctx = self.cpu.save()
        proc.threads.append(t)
        self.tasks.add_process(proc)
        self.tasks.add_thread(t)
        self.sched.enqueue(t)
        return proc

    def exec_image(self, t: Thread, image: loader.ElfImage, exe: ExeFile, argv: list[bytes],
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
                self.exits.exit_thread(other)
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
        mm.owner_name = f"pid {proc.pid} ({os.path.basename(exe.name)[:15]})"
        if proc.vfork_parent is not None:
            release_vfork(proc)                    # the parent's mm was only borrowed: wake it
        else:
            old_mm.destroy()
        proc.exe, proc.load_bias = exe, prog.bias
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
        t.name = os.path.basename(exe.name).encode()[:15]
        t.set_regs = {}
        if self.tracer is not None and self.tracer.traces(proc):
            self.tracer.execed(t)
        self.cpu.restore(self._fresh_regs)
        self.cpu.set_reg(C.REG_PC, prog.entry)
        self.cpu.set_reg(C.REG_SP, prog.sp)
        self.cpu.set_mte(t.mte)
        self.cpu.flush_tlb()                       # another address space on the CPU
        self.cpu.invalidate_code()
        self.sched.on_cpu_mm = mm
        self.sched.need_resched = True                   # leave the CPU: resume in the new program

    def _stdio_fds(self, root: Optional[str]) -> FdTable:
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
                # mteemu's own stdio, named once, as the guest would see that name
                name = namei.guest_view(root or "/", os.readlink(f"/proc/self/fd/{fd}"))
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
