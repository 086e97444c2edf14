"""Signal syscalls (kernel/signal.c, arch/arm64/kernel/signal.c)."""
from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from mteemu.kernel import sigframe
from mteemu.kernel import signals as S
from mteemu.kernel.process import SS_AUTODISARM, SS_DISABLE, SS_ONSTACK, Process, Thread, Wait
from mteemu.kernel.syscalls.args import s32
from mteemu.kernel.syscalls.registry import NORETURN, Support, syscall
from mteemu.kernel.uaccess import SyscallError
from mteemu.machine.arm64 import REG_SP

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi

SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
MINSIGSTKSZ = sigframe.MINSIGSTKSZ


def _check_sig(sig: int) -> int:
    sig = s32(sig)
    if not 1 <= sig <= S.NSIG:
        raise SyscallError(errno.EINVAL)
    return sig


@syscall("rt_sigaction")
def sys_rt_sigaction(k: "KernelApi", t: Thread, sig: int, act: int, oact: int, size: int) -> int:
    if size != 8:
        raise SyscallError(errno.EINVAL)
    sig = _check_sig(sig)
    proc = t.proc
    new = None
    if act:
        if sig in (S.SIGKILL, S.SIGSTOP):
            raise SyscallError(errno.EINVAL)
        h, flags, restorer, mask = proc.mem.read_struct(S.SigAction.FMT, act)
        # Unknown flag bits are dropped, so a caller can detect them (SA_UNSUPPORTED).
        new = S.SigAction(h, flags & S.SA_KNOWN, restorer, mask & ~S.UNBLOCKABLE)
    if oact:
        proc.mem.write(oact, proc.action(sig).pack())
    if new is not None:
        proc.actions[sig] = new
        if k.signals.ignored(proc, sig):   # setting SIG_IGN discards pending instances
            proc.pending.discard(sig)
            for th in proc.threads:
                th.pending.discard(sig)
    return 0


@syscall("rt_sigprocmask")
def sys_rt_sigprocmask(k: "KernelApi", t: Thread, how: int, set_: int, oset: int, size: int) -> int:
    if size != 8:
        raise SyscallError(errno.EINVAL)
    old = t.sigmask
    if set_:
        new = t.proc.mem.u64(set_)
        if how == SIG_BLOCK:
            mask = old | new
        elif how == SIG_UNBLOCK:
            mask = old & ~new
        elif how == SIG_SETMASK:
            mask = new
        else:
            raise SyscallError(errno.EINVAL)
        t.sigmask = mask & ~S.UNBLOCKABLE
    if oset:
        t.proc.mem.put_u64(oset, old)
    return 0


@syscall("rt_sigpending")
def sys_rt_sigpending(k: "KernelApi", t: Thread, set_: int, size: int) -> int:
    if size > 8:
        raise SyscallError(errno.EINVAL)
    t.proc.mem.put_u64(set_, (t.pending.mask | t.proc.pending.mask) & t.sigmask)
    return 0


@syscall("rt_sigsuspend")
def sys_rt_sigsuspend(k: "KernelApi", t: Thread, set_: int, size: int) -> "int | Wait":
    if size != 8:
        raise SyscallError(errno.EINVAL)
    saved = t.sigmask
    t.sigmask = t.proc.mem.u64(set_) & ~S.UNBLOCKABLE
    # The handler's frame must save the *old* mask (Linux: TIF_RESTORE_SIGMASK).
    t.saved_sigmask = saved
    return Wait(poll=lambda: None, restartable=False, queues=())    # only a signal ends it


@syscall("rt_sigreturn")
def sys_rt_sigreturn(k: "KernelApi", t: Thread) -> object:
    sp = k.cpu.reg(REG_SP)
    try:
        if sp & 15:
            raise sigframe.BadFrame("misaligned")
        frame = t.proc.mem.read(sp, sigframe.FRAME_SIZE)
        state, mask = sigframe.parse(frame)
    except (SyscallError, sigframe.BadFrame):
        k.signals.force(t, S.SigInfo(S.SIGSEGV, S.SI_KERNEL))
        k.sched.need_resched = True
        return NORETURN
    k.signals.set_cpu_state(state)
    t.sigmask = mask & ~S.UNBLOCKABLE
    ss_sp, ss_flags, ss_size = sigframe.altstack_of(frame)
    try:
        _set_altstack(t, ss_sp, ss_flags & ~SS_ONSTACK, ss_size, state.sp)
    except SyscallError:
        pass
    k.sched.need_resched = True    # the restored mask may unblock something pending
    return NORETURN


def _set_altstack(t: Thread, ss_sp: int, flags: int, size: int, sp: int) -> None:
    if k_on_altstack(t, sp):
        raise SyscallError(errno.EPERM)
    mode = flags & ~SS_AUTODISARM
    if mode not in (0, SS_DISABLE, SS_ONSTACK):
        raise SyscallError(errno.EINVAL)
    if mode == SS_DISABLE:
        t.altstack = (0, SS_DISABLE, 0)
        return
    if size < MINSIGSTKSZ:
        raise SyscallError(errno.ENOMEM)
    t.altstack = (ss_sp, flags & SS_AUTODISARM, size)


def k_on_altstack(t: Thread, sp: int) -> bool:
    ss_sp, flags, size = t.altstack
    return not flags & SS_DISABLE and ss_sp < sp <= ss_sp + size


@syscall("sigaltstack")
def sys_sigaltstack(k: "KernelApi", t: Thread, ss: int, old: int) -> int:
    sp = k.cpu.reg(REG_SP)
    if old:
        ss_sp, flags, size = t.altstack
        cur = SS_ONSTACK if k_on_altstack(t, sp) else 0
        t.proc.mem.write_struct("<QiiQ", old, ss_sp, flags | cur, 0, size)
    if ss:
        ss_sp, flags, _pad, size = t.proc.mem.read_struct("<QiiQ", ss)
        _set_altstack(t, ss_sp, flags & 0xFFFF_FFFF, size, sp)
    return 0


def _info(t: Thread, sig: int, code: int) -> S.SigInfo:
    return S.SigInfo(sig, code, pid=t.proc.pid, uid=os.getuid())


def _kill(k: "KernelApi", t: Thread, targets: list[Process], sig: int) -> int:
    if not targets:
        raise SyscallError(errno.ESRCH)
    for p in targets:
        k.signals.send(p, _info(t, sig, S.SI_USER))
    return 0


@syscall("kill", support=Support.PARTIAL,
         note="job-control stops (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU) are ignored")
def sys_kill(k: "KernelApi", t: Thread, pid: int, sig: int) -> int:
    pid, sig = s32(pid), s32(sig)
    if not 0 <= sig <= S.NSIG:
        raise SyscallError(errno.EINVAL)
    live = [p for p in k.tasks.procs.values() if p.wait_status is None]
    if pid > 0:
        targets = [p for p in live if p.pid == pid]
    elif pid == 0:
        targets = [p for p in live if p.pgid == t.proc.pgid]
    elif pid == -1:
        # kill_something_info(): every process but init and the caller itself (there is no
        # pid 1 in the guest's world: its first process is an ordinary one).
        targets = [p for p in live if p is not t.proc]
    else:
        targets = [p for p in live if p.pgid == -pid]
    return _kill(k, t, targets, sig)


def _thread(k: "KernelApi", tid: int, tgid: int | None) -> Thread:
    th = k.tasks.threads.get(tid)
    if th is None or (tgid is not None and th.proc.pid != tgid):
        raise SyscallError(errno.ESRCH)
    return th


@syscall("tgkill", support=Support.PARTIAL,
         note="job-control stops are ignored")
def sys_tgkill(k: "KernelApi", t: Thread, tgid: int, tid: int, sig: int) -> int:
    tgid, tid, sig = s32(tgid), s32(tid), s32(sig)
    if tgid <= 0 or tid <= 0 or not 0 <= sig <= S.NSIG:
        raise SyscallError(errno.EINVAL)
    th = _thread(k, tid, tgid)
    k.signals.send(th.proc, _info(t, sig, S.SI_TKILL), thread=th)
    return 0


@syscall("tkill", support=Support.PARTIAL,
         note="job-control stops are ignored")
def sys_tkill(k: "KernelApi", t: Thread, tid: int, sig: int) -> int:
    tid, sig = s32(tid), s32(sig)
    if tid <= 0 or not 0 <= sig <= S.NSIG:
        raise SyscallError(errno.EINVAL)
    th = _thread(k, tid, None)
    k.signals.send(th.proc, _info(t, sig, S.SI_TKILL), thread=th)
    return 0


@syscall("rt_sigqueueinfo")
def sys_rt_sigqueueinfo(k: "KernelApi", t: Thread, pid: int, sig: int, uinfo: int) -> int:
    sig = _check_sig(sig)
    procs = [p for p in k.tasks.procs.values() if p.pid == s32(pid) and p.wait_status is None]
    if not procs:
        raise SyscallError(errno.ESRCH)
    raw = t.proc.mem.read(uinfo, 128)
    code = int.from_bytes(raw[8:12], "little", signed=True)
    if code >= 0 or code == S.SI_TKILL:
        raise SyscallError(errno.EPERM)
    info = S.SigInfo(sig, code, pid=t.proc.pid, uid=os.getuid(), value=int.from_bytes(raw[24:32], "little"))
    k.signals.send(procs[0], info)
    return 0
