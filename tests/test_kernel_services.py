"""The kernel's services in-process (tests/kernel_world.py): each behaviour as Linux has it,
checked through system calls or the service's own methods, without running guest code."""
from __future__ import annotations

import errno
import struct

import pytest

from mteemu.errors import Deadlock
from mteemu.kernel import signals as S
from mteemu.kernel.process import State, Wait
from mteemu.kernel.waitqueue import WaitQueue

AT_FDCWD = -100
O_RDONLY, O_WRONLY, O_CREAT, O_CLOEXEC = 0, 1, 0o100, 0o2000000
F_GETFD, FD_CLOEXEC = 1, 1
SIGCHLD = 17


# -- the system call table -------------------------------------------------------------------
def test_an_unimplemented_call_is_enosys_and_said_once(world) -> None:
    assert world.call("io_setup", 1, world.buf(8)) == -errno.ENOSYS
    assert world.call("io_setup", 1, world.buf(8)) == -errno.ENOSYS
    assert world.diag.getvalue().count("unimplemented syscall io_setup") == 1


def test_strace_shows_what_a_partial_call_left_out(tmp_path) -> None:
    from kernel_world import KernelWorld

    w = KernelWorld(tmp_path, strace=True)
    try:
        assert w.call("mlock", w.scratch, 4096) == 0
        assert w.call("getpid") == w.proc.pid
    finally:
        w.close()
    lines = w.diag.getvalue().splitlines()
    assert any("mlock(" in ln and "= 0 (not modelled: locked pages are not kept from swap)" in ln for ln in lines)
    assert any(ln.endswith(f"getpid() = {w.proc.pid}") for ln in lines)


# -- files -------------------------------------------------------------------------------------
def test_a_pipe_carries_bytes_and_eof(world) -> None:
    fds = world.buf(8)
    assert world.call("pipe2", fds, 0) == 0
    r, w = struct.unpack("<ii", world.read(fds, 8))
    assert world.call("write", w, world.put(b"hello"), 5) == 5
    buf = world.buf(16)
    assert world.call("read", r, buf, 16) == 5
    assert world.read(buf, 5) == b"hello"
    assert world.call("close", w) == 0
    assert world.call("read", r, buf, 16) == 0                     # no writer: end of file


def test_descriptors_dup_cloexec_and_the_nofile_limit(world) -> None:
    path = world.cstr("f")
    fd = world.call("openat", AT_FDCWD, path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
    assert fd >= 3
    assert world.call("fcntl", fd, F_GETFD, 0) == FD_CLOEXEC
    assert world.call("dup3", fd, 50, 0) == 50
    assert world.call("fcntl", 50, F_GETFD, 0) == 0                # dup3 without O_CLOEXEC clears it
    assert world.call("dup3", fd, fd, 0) == -errno.EINVAL
    assert world.call("close", 50) == 0 and world.call("close", 50) == -errno.EBADF
    # RLIMIT_NOFILE (enforced): no descriptor at or above the soft limit
    assert world.call("prlimit64", 0, 7, world.put(struct.pack("<QQ", 10, 10)), 0) == 0
    assert world.call("dup3", fd, 10, 0) == -errno.EBADF
    while (got := world.call("dup", fd)) >= 0:
        assert got < 10
    assert got == -errno.EMFILE


def test_a_file_made_by_the_guest_is_in_its_root(world, tmp_path) -> None:
    fd = world.call("openat", AT_FDCWD, world.cstr("/made"), O_WRONLY | O_CREAT, 0o644)
    assert world.call("write", fd, world.put(b"x"), 1) == 1
    assert (tmp_path / "root" / "made").read_bytes() == b"x"


def test_proc_self_is_the_calling_process(world) -> None:
    fd = world.call("openat", AT_FDCWD, world.cstr("/proc/self/status"), O_RDONLY, 0)
    buf = world.buf(4096)
    n = world.call("read", fd, buf, 4096)
    assert f"\nPid:\t{world.proc.pid}\n" in world.read(buf, n).decode()


# -- the scheduler -----------------------------------------------------------------------------
def test_a_blocked_call_is_retried_only_when_its_queue_is_woken(world) -> None:
    sched, t = world.k.sched, world.t
    q, done, tries = WaitQueue(), [], []

    def poll() -> "int | None":
        tries.append(1)
        return 7 if done else None

    sched.block(t, Wait(poll=poll, queues=(q,)))
    assert t.state is State.BLOCKED
    assert not sched.poll_waits() and tries == []                  # nobody woke its queue
    done.append(1)
    q.wake()
    assert sched.poll_waits() and tries == [1]
    assert t.state is State.RUNNABLE and t.set_regs and 7 in t.set_regs.values()


def test_a_wait_past_its_deadline_times_out(world) -> None:
    sched, t = world.k.sched, world.t
    sched.block(t, Wait(poll=lambda: None, deadline=0.0, on_timeout=lambda: -errno.ETIMEDOUT, queues=()))
    assert sched.poll_waits()
    assert t.state is State.RUNNABLE and (-errno.ETIMEDOUT) & (1 << 64) - 1 in t.set_regs.values()


def test_every_thread_blocked_for_good_is_a_deadlock(world) -> None:
    world.k.sched.block(world.t, Wait(poll=lambda: None, queues=()))
    with pytest.raises(Deadlock):
        world.k.sched.pick()


def test_a_signal_ends_a_blocked_wait_with_eintr(world) -> None:
    sched, t = world.k.sched, world.t
    cancelled = []
    sched.block(t, Wait(poll=lambda: None, queues=(), restartable=False, cancel=lambda: cancelled.append(1)))
    world.proc.actions[S.SIGUSR1] = S.SigAction(handler=0x1000)
    world.k.signals.send(world.proc, S.SigInfo(S.SIGUSR1, S.SI_USER))
    assert sched.poll_waits()
    assert t.state is State.RUNNABLE and cancelled == [1]
    assert -errno.EINTR in t.set_regs.values()           # wait.interrupted(): -EINTR


# -- signals -----------------------------------------------------------------------------------
def test_an_ignored_signal_is_discarded_and_a_blocked_one_waits(world) -> None:
    signals, t = world.k.signals, world.t
    world.proc.actions[S.SIGUSR1] = S.SigAction(handler=S.SIG_IGN)
    signals.send(world.proc, S.SigInfo(S.SIGUSR1, S.SI_USER))
    assert signals.next_signal(t) is None
    world.proc.actions[S.SIGUSR2] = S.SigAction(handler=0x1000)
    t.sigmask |= S.bit(S.SIGUSR2)
    signals.send(world.proc, S.SigInfo(S.SIGUSR2, S.SI_USER))
    assert not signals.deliverable(t)
    t.sigmask = 0
    assert signals.deliverable(t) and signals.next_signal(t) == S.SIGUSR2


def test_a_fault_blocked_or_ignored_is_reset_to_its_default(world) -> None:
    signals, t = world.k.signals, world.t
    world.proc.actions[S.SIGSEGV] = S.SigAction(handler=S.SIG_IGN)
    t.sigmask |= S.bit(S.SIGSEGV)
    signals.force(t, S.SigInfo(S.SIGSEGV, S.SEGV_MAPERR, addr=0))
    assert world.proc.action(S.SIGSEGV).handler == S.SIG_DFL       # force_sig_info_to_task()
    assert signals.next_signal(t) == S.SIGSEGV


# -- processes ---------------------------------------------------------------------------------
def test_a_child_exit_is_told_to_the_parent_and_reaped_by_wait4(world) -> None:
    world.proc.actions[SIGCHLD] = S.SigAction(handler=0x1000)     # by default SIGCHLD is discarded
    pid = world.call("clone", SIGCHLD, 0, 0, 0, 0)
    assert pid > world.proc.pid
    child = world.k.tasks.procs[pid]
    assert child.parent is world.proc and world.k.tasks.forks == 1
    world.k.exits.exit_process(child, 3)
    assert world.k.signals.next_signal(world.t) == SIGCHLD
    status = world.buf(4)
    assert world.call("wait4", pid, status, 0, 0) == pid
    assert struct.unpack("<i", world.read(status, 4))[0] == 3 << 8
    assert pid not in world.k.tasks.procs
    assert world.call("wait4", -1, status, 0, 0) == -errno.ECHILD


def test_a_futex_wait_sleeps_until_woken(world) -> None:
    FUTEX_WAIT, FUTEX_WAKE = 0, 1
    word = world.put(struct.pack("<I", 5))
    assert world.call("futex", word, FUTEX_WAIT, 4, 0, 0, 0) == -errno.EAGAIN   # the value changed
    assert world.call("futex", word, FUTEX_WAKE, 1, 0, 0, 0) == 0               # nobody waits
    world.call("futex", word, FUTEX_WAIT, 5, 0, 0, 0)
    assert world.t.state is State.BLOCKED
    assert world.k.futex.wake_address(world.proc, word, 1) == 1
    assert world.k.sched.poll_waits() and world.t.state is State.RUNNABLE
