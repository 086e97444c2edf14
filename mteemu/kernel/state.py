"""What the kernel's rooms (sched.py, traps.py, delivery.py, exits.py, kernel.py) share,
declared once with its types; Kernel.__init__ sets it all at boot."""
from __future__ import annotations

import random
from collections import deque
from typing import TYPE_CHECKING, Optional, TextIO

if TYPE_CHECKING:
    from mteemu.board.model import Board
    from mteemu.kernel.fs.devfs import ShmDir
    from mteemu.kernel.fs.hostfile import PageCache
    from mteemu.kernel.fs.namei import HostDir
    from mteemu.kernel.futex import FutexTable
    from mteemu.kernel.kernel import RunOptions
    from mteemu.kernel.kmsg import KernelLog
    from mteemu.kernel.mm import invariants
    from mteemu.kernel.mm.addrspace import Mm
    from mteemu.kernel.mm.pagealloc import PageAllocator
    from mteemu.kernel.process import Process, Thread
    from mteemu.kernel.ptrace import Tracer
    from mteemu.kernel.signals import SigInfo
    from mteemu.kernel.syscalls.table import SyscallTable
    from mteemu.machine.cpu import Cpu, Exit
    from mteemu.machine.physmem import PhysMem
    from mteemu.machine.tagstore import TagStore


class KernelState:
    board: Board
    options: RunOptions
    physmem: PhysMem
    tags: TagStore
    alloc: PageAllocator
    kmsg: KernelLog
    cpu: Cpu
    checker: Optional[invariants.Checker]
    rng: random.Random
    pac_rng: random.Random
    pagecache: PageCache
    futex: FutexTable
    procs: dict[int, Process]
    threads: dict[int, Thread]
    runq: deque[Thread]
    blocked: dict[Thread, None]         # blocked threads (sched.py's wake scan is skipped without any)
    ready: dict[Thread, None]           # blocked threads to re-try: their queue was woken, or a signal came
    unqueued: dict[Thread, None]        # blocked threads whose wait has no queue: re-tried after every call
    timed: dict[Thread, None]           # blocked threads whose wait has a deadline
    next_deadline: float                # the earliest of those deadlines (time.monotonic())
    wait_polls: int                     # calls of blocked threads re-tried (--stats)
    current: Optional[Thread]           # the thread on the CPU
    init: Optional[Process]             # the first process: its end is mteemu's exit
    start_time: float
    boot_wall: float
    switches: int                       # context switches (/proc/stat ctxt)
    forks: int                          # processes created (/proc/stat processes)
    shm_segments: dict                  # System V shared memory: shmid -> syscalls.shm.Segment
    deadline: Optional[float]           # --timeout, on time.monotonic()
    diag: TextIO                        # where "mteemu:" lines go
    tracer: Optional[Tracer]            # a debugger's session (ptrace.py), if any
    syscalls: SyscallTable
    root_dir: HostDir                   # the guest's "/", held (namei.py)
    sysroot_dir: Optional[HostDir]      # -L, held
    syscall_count: int                  # system calls made, and the time the kernel spent on them
    syscall_seconds: float
    wake_scans: int                     # polls of every blocked thread (sched._poll_waits)
    devshm: ShmDir                      # the guest's /dev/shm under --root (devfs.py)
    need_resched: bool = False          # leave the CPU at the next chance
    _on_cpu_mm: Optional[Mm]            # whose translations the CPU caches
    _next_pid: int
    _fault_code: int                    # why the last translation was refused (a Fault)

    # How the rooms call one another (each is defined in the room named; these are the
    # contracts between them, never run).
    def say(self, message: str) -> None:                                   # kernel.py
        raise NotImplementedError

    def _write_diag(self, text: str) -> None:                              # kernel.py
        raise NotImplementedError

    def ppid(self, proc: Process) -> int:                                  # kernel.py
        raise NotImplementedError

    def send_signal(self, proc: Process, info: SigInfo, thread: Optional[Thread] = None) -> None:  # delivery.py
        raise NotImplementedError

    def abandon_wait(self, t: Thread) -> None:                             # sched.py
        raise NotImplementedError

    def force_signal(self, t: Thread, info: SigInfo) -> None:              # delivery.py
        raise NotImplementedError

    def _deliver_signals(self, t: Thread) -> None:                         # delivery.py
        raise NotImplementedError

    def _next_signal(self, t: Thread) -> Optional[int]:                    # delivery.py
        raise NotImplementedError

    def _signal_deliverable(self, t: Thread) -> bool:                      # delivery.py
        raise NotImplementedError

    def kill_process(self, proc: Process, sig: int, code: Optional[int] = None) -> None:  # exits.py
        raise NotImplementedError

    def close(self) -> None:                                               # exits.py
        raise NotImplementedError

    def shutdown(self) -> None:                                            # exits.py
        raise NotImplementedError

    def _on_syscall(self) -> bool:                                         # traps.py
        raise NotImplementedError

    def _handle_exit(self, t: Thread, ex: Exit) -> None:                   # traps.py
        raise NotImplementedError

    def _report_fatal(self, info: SigInfo) -> None:                        # traps.py
        raise NotImplementedError

    def _check_deadline(self) -> None:                                     # sched.py
        raise NotImplementedError

    def _poll_waits(self, skip: Optional[Thread] = None) -> bool:          # sched.py
        raise NotImplementedError
