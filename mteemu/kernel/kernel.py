"""The kernel: boots a board, runs guest threads on the CPU, and answers their exits.

One host process holds the whole emulated world (every guest process and thread,
one physical memory, one CPU), so scheduling and output order are deterministic:
the running thread keeps the CPU until it blocks, exits, or — only while another
thread is runnable — spends its instruction budget.
"""
from __future__ import annotations

import random
import sys
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Optional, Sequence, TextIO

from mteemu.board.model import Board
from mteemu.errors import HostSignal
from mteemu.kernel import mte
from mteemu.kernel import signals as S
from mteemu.kernel.allocwatch import AllocWatch
from mteemu.kernel.delivery import SignalDelivery
from mteemu.kernel.exits import Exits, GuestExit
from mteemu.kernel.fs import namei
from mteemu.kernel.fs.devfs import ShmDir
from mteemu.kernel.fs.hostfile import PageCache
from mteemu.kernel.fs.vfs import Vfs
from mteemu.kernel.futex import FutexTable
from mteemu.kernel.mm import invariants
from mteemu.kernel.mm.addrspace import Mm
from mteemu.kernel.mm.boot import boot_mm
from mteemu.kernel.mm.pagealloc import OutOfMemory
from mteemu.kernel.process import Process, State, Thread
from mteemu.kernel.programs import Programs
from mteemu.kernel.ptrace import Tracer
from mteemu.kernel.run import RunOptions, RunResult
from mteemu.kernel.sched import Scheduler
from mteemu.kernel.syscalls.table import SyscallTable
from mteemu.kernel.tasks import Tasks
from mteemu.kernel.traps import Traps
from mteemu.machine.cpu import Cpu
from mteemu.machine.physmem import PAGE_SIZE

if TYPE_CHECKING:
    from mteemu.report.tagfault import TagFaultReport


class Kernel:
    """The emulated world's kernel, composed of its services: the task list (tasks.py), the
    scheduler (sched.py), signals (delivery.py), exits (exits.py), the CPU's traps
    (traps.py), programs started and executed (programs.py), the namespace (fs/vfs.py) and
    the system call table (syscalls/table.py). Here: boot, the run loop and the run's end."""

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
        self.allocs = AllocWatch(self.cpu, options.alloc_history)
        self.programs = Programs(self.cpu, self.alloc, options, self.vfs, self.tasks, self.sched, self.exits,
                                 self.futex, self.pagecache, self.rng, self.pac_rng, self.allocs)
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
        self.programs.tracer = tracer

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
    def fatal_report(self) -> "Optional[TagFaultReport]":
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

    def spawn(self, path: str, argv: list[bytes], envp: list[bytes]) -> Process:
        """The first process, running the program mteemu's user named (programs.py)."""
        return self.programs.spawn(path, argv, envp)

    def new_mm(self) -> Mm:
        return self.programs.new_mm()


def min_pages_to_start(board: Board, options: RunOptions, program: str, argv: list[bytes], envp: list[bytes]) -> int:
    """The least RAM, in pages, that boots the board and loads the program (for the error
    of a --mem too small): a binary search over throw-away kernels, one at a time (each
    reserves ~2 GiB of address space), each dropped at once."""
    import gc

    def used_pages(pages: Optional[int]) -> Optional[int]:
        probe = Kernel(board, replace(options, mem_limit=pages and pages * PAGE_SIZE, swap=0, swap_file=None,
                                      check_invariants=False))
        try:
            probe.spawn(program, argv, envp)
            return probe.alloc.used_pages
        except OutOfMemory:
            return None
        finally:
            probe.discard()
            del probe
            gc.collect()     # the board's RAM (an mmap that views keep) goes with the last view

    lo = (options.mem_limit or 0) // PAGE_SIZE
    hi = used_pages(None) or 1                  # fails at lo, starts at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if used_pages(mid) is not None else (mid, hi)
    return hi
