"""Processes and threads (Linux's task_struct, split the way Linux shares it)."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from mteemu.kernel.fs.fdtable import FdTable
from mteemu.kernel.mm.addrspace import Mm
from mteemu.kernel.signals import Pending, SigAction
from mteemu.kernel.uaccess import SyscallError, UserMemory
from mteemu.kernel.waitqueue import WaitQueue
from mteemu.machine.tagcheck import MteState

if TYPE_CHECKING:
    from mteemu.kernel.fs.exefile import ExeFile
    from mteemu.report.tagfault import TagFaultReport

SS_ONSTACK, SS_DISABLE, SS_AUTODISARM = 1, 2, 1 << 31


class State(enum.Enum):
    RUNNABLE = "runnable"
    BLOCKED = "blocked"
    DEAD = "dead"


@dataclass
class Wait:
    """A syscall that cannot finish yet. poll() returns its result once it can."""

    poll: Callable[[], Optional[int]]
    deadline: Optional[float] = None      # time.monotonic() at which it gives up
    on_timeout: Callable[[], int] = lambda: 0
    cancel: Callable[[], None] = lambda: None   # undo side effects (e.g. leave a futex queue)
    restartable: bool = True              # SA_RESTART may re-issue the syscall
    interrupted: Callable[[], int] = lambda: -4  # result when a signal interrupts it (-EINTR)
    host: bool = False                    # a host object (a FIFO's other end) may finish it: never a deadlock
    # The wait queues whose wake-up may finish it (waitqueue.py); () when only a signal or
    # the deadline can; None: unknown, re-tried after every system call.
    queues: Optional[tuple[WaitQueue, ...]] = None


def blocking(attempt: Callable[[], int], would: type[Exception], **wait_args: Any) -> "int | Wait":
    """Run attempt(); if it would block, return a Wait that retries it until it can finish
    (attempt raises `would` while it cannot; any other error ends the call)."""
    try:
        return attempt()
    except would:
        pass

    def poll() -> "int | None":
        try:
            return attempt()
        except would:
            return None
        except SyscallError as e:
            return -e.errno

    return Wait(poll=poll, **wait_args)


THREAD_ORDER = 2        # arm64 THREAD_SIZE: a 16 KiB kernel stack per thread, physically contiguous


@dataclass(eq=False)
class Thread:
    tid: int
    proc: "Process"
    ctx: Any = None                       # saved registers (a UcContext) while not on the CPU
    set_regs: dict[int, int] = field(default_factory=dict)   # applied when next put on the CPU
    sigmask: int = 0
    saved_sigmask: Optional[int] = None    # rt_sigsuspend's mask to restore after the handler
    pending: Pending = field(default_factory=Pending)
    altstack: tuple[int, int, int] = (0, SS_DISABLE, 0)      # ss_sp, ss_flags, ss_size
    clear_child_tid: int = 0
    kernel_stack: Optional[int] = None     # first pfn of its THREAD_SIZE kernel stack
    robust_list: tuple[int, int] = (0, 0)
    rseq: int = 0
    state: State = State.RUNNABLE
    wait: Optional[Wait] = None
    name: bytes = b""
    tagged_addr_ctrl: int = 0             # PR_SET_TAGGED_ADDR_CTRL, exactly as set
    pac_keys: tuple[int, ...] = (0, 0, 0, 0, 0)   # APIA, APIB, APDA, APDB, APGA (pauth.py)
    pac_enabled: int = 0xF                # PR_PAC_APIAKEY... bits of the enabled address keys
    mte: MteState = field(default_factory=MteState)   # what the CPU checks for this thread
    # TFSRE0_EL1.TF0: an asynchronous tag-check fault not yet reported (its report); the
    # next kernel entry reports it (a system call does not run while it is pending).
    tfsr: Optional["TagFaultReport"] = None


@dataclass(eq=False)
class Process:
    pid: int
    parent: Optional["Process"]
    mm: Mm
    fds: FdTable
    cwd: str
    exe: "ExeFile"                        # the program, held open (mm->exe_file)
    mem: UserMemory = None                # type: ignore[assignment]
    actions: dict[int, SigAction] = field(default_factory=dict)
    pending: Pending = field(default_factory=Pending)
    threads: list[Thread] = field(default_factory=list)
    children: list["Process"] = field(default_factory=list)
    wait_status: Optional[int] = None     # set when it has exited (a zombie until reaped)
    umask: int = 0o022
    pgid: int = 0
    sid: int = 0
    vfork_parent: Optional[Thread] = None  # released when this child exits
    load_bias: int = 0                    # where the program was loaded (static-PIE)
    kill_code: Optional[int] = None       # si_code of the fault signal that killed it
    root: Optional[str] = None            # --root: the host directory that is the guest's "/"
    auxv: bytes = b""                     # what /proc/<pid>/auxv shows
    arg_range: tuple[int, int] = (0, 0)   # where argv's strings are (/proc/<pid>/cmdline)
    env_range: tuple[int, int] = (0, 0)   # where envp's strings are (/proc/<pid>/environ)
    exit_signal: int = 17                 # sent to the parent at exit (clone's low byte; SIGCHLD)
    # setitimer(): which -> (expiry on time.monotonic(), interval in seconds; 0: one-shot).
    # Not inherited by fork (copy_signal() starts them disarmed); kept across execve.
    itimers: dict[int, tuple[float, float]] = field(default_factory=dict)
    # PR_SET_PDEATHSIG: sent to this process when its parent exits (0: none); not inherited.
    # Linux keeps it per thread and means the creating thread; here the parent is a process.
    pdeath_signal: int = 0
    dumpable: int = 1                     # PR_SET_DUMPABLE (SUID_DUMP_USER); inherited, reset by exec
    # setrlimit()/prlimit64(): resource -> (soft, hard), where set; inherited, kept by exec.
    rlimits: dict[int, tuple[int, int]] = field(default_factory=dict)
    nice: int = 0                         # setpriority(PRIO_PROCESS): inherited; the scheduler ignores it
    # Woken when a child exits, is reaped, or gives back a vfork'd mm (wait4, vfork wait here).
    child_wq: WaitQueue = field(default_factory=WaitQueue)

    def __post_init__(self) -> None:
        if self.mem is None:
            self.mem = UserMemory(self.mm)

    def action(self, sig: int) -> SigAction:
        return self.actions.get(sig) or SigAction()

    @property
    def live_threads(self) -> list[Thread]:
        return [t for t in self.threads if t.state is not State.DEAD]


def release_vfork(child: Process) -> None:
    """mm_release(): a vfork child gave the parent's mm back (it exec'd or exited); the
    parent's clone() returns."""
    parent = child.vfork_parent
    child.vfork_parent = None
    if parent is not None:
        parent.proc.child_wq.wake()
