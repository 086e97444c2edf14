"""Process and thread syscalls: clone/fork, exit, wait4, futex, ids, prctl, limits."""
from __future__ import annotations

import errno
from dataclasses import replace
import os
from typing import TYPE_CHECKING, Callable

from mteemu.kernel import futex as F
from mteemu.kernel import mte, pauth
from mteemu.kernel import signals as S
from mteemu.kernel.mm.pagealloc import OutOfMemory
from mteemu.kernel.procpid import host_capabilities
from mteemu.kernel.process import THREAD_ORDER, Process, Thread, Wait
from mteemu.kernel.syscalls import NORETURN, _NoReturn, s32, syscall, unmodelled
from mteemu.kernel.uaccess import SyscallError
from mteemu.machine import cpu as C

if TYPE_CHECKING:
    from mteemu.kernel.kernel import Kernel

CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_PIDFD, CLONE_PTRACE, CLONE_VFORK, CLONE_PARENT, CLONE_THREAD = 0x1000, 0x2000, 0x4000, 0x8000, 0x10000
CLONE_NEWNS, CLONE_SYSVSEM, CLONE_SETTLS, CLONE_PARENT_SETTID = 0x20000, 0x40000, 0x80000, 0x100000
CLONE_CHILD_CLEARTID, CLONE_DETACHED, CLONE_UNTRACED, CLONE_CHILD_SETTID = 0x200000, 0x400000, 0x800000, 0x1000000
CLONE_NEW_ANY = 0x7E020000 & ~CLONE_SETTLS & ~CLONE_PARENT_SETTID & ~CLONE_SYSVSEM | CLONE_NEWNS
MAX_THREADS = 4096      # a bound on guest tasks, like RLIMIT_NPROC: fork bombs get EAGAIN


def _clone(k: "Kernel", t: Thread, flags: int, stack: int, ptid: int, tls: int, ctid: int) -> "int | _NoReturn":
    if flags & CLONE_NEW_ANY & ~CLONE_SYSVSEM:
        raise SyscallError(errno.EPERM)        # namespaces: not in the emulated world
    if flags & CLONE_THREAD and not (flags & CLONE_SIGHAND and flags & CLONE_VM):
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_SIGHAND and not flags & CLONE_VM:
        raise SyscallError(errno.EINVAL)
    if len(k.threads) >= MAX_THREADS:
        raise SyscallError(errno.EAGAIN)
    try:
        kernel_stack = k.alloc.alloc_kernel(THREAD_ORDER)     # dup_task_struct(): the stack first
    except OutOfMemory:
        raise SyscallError(errno.ENOMEM) from None
    try:
        return _copy_process(k, t, flags, stack, ptid, tls, ctid, kernel_stack)
    except (OutOfMemory, SyscallError) as e:
        if not any(th.kernel_stack == kernel_stack for th in k.threads.values()):
            k.alloc.free_kernel(kernel_stack)        # no thread got it: the clone failed early
        if isinstance(e, OutOfMemory):
            raise SyscallError(errno.ENOMEM) from None
        raise


def _copy_process(k: "Kernel", t: Thread, flags: int, stack: int, ptid: int, tls: int, ctid: int,
                  kernel_stack: int) -> "int | _NoReturn":
    parent = t.proc
    ctx = k.cpu.save()
    if flags & CLONE_THREAD:
        proc = parent
        tid = k.new_pid()
    else:
        if flags & CLONE_VM and not flags & CLONE_VFORK:
            raise SyscallError(errno.EINVAL)   # shared-VM processes without vfork: not modelled
        tid = k.new_pid()
        shares_vm = bool(flags & CLONE_VM)
        mm = parent.mm if shares_vm else parent.mm.fork()
        proc = Process(pid=tid, parent=parent, mm=mm,
                       fds=parent.fds if flags & CLONE_FILES else parent.fds.fork(),
                       cwd=parent.cwd, exe=parent.exe, load_bias=parent.load_bias, root=parent.root,
                       actions=dict(parent.actions), umask=parent.umask, pgid=parent.pgid, sid=parent.sid,
                       dumpable=parent.dumpable, rlimits=dict(parent.rlimits), nice=parent.nice,
                       auxv=parent.auxv, arg_range=parent.arg_range,
                       env_range=parent.env_range)
        if flags & CLONE_FILES:
            for f in proc.fds.files.values():
                f.refs += 1
        proc.exit_signal = flags & 0xFF
        if not shares_vm:
            mm.owner_name = f"pid {tid} ({t.name.decode(errors='replace')})"
        parent.children.append(proc)
        k.procs[proc.pid] = proc
        k.forks += 1
    # copy_thread(): the tagged-address control and the tag-check state are inherited.
    child = Thread(tid=tid, proc=proc, ctx=ctx, sigmask=t.sigmask, name=t.name,
                   tagged_addr_ctrl=t.tagged_addr_ctrl, mte=replace(t.mte),
                   pac_keys=t.pac_keys, pac_enabled=t.pac_enabled)     # keys_user copied with the task
    if flags & CLONE_THREAD:
        child.altstack = (0, 2, 0)     # a new thread starts without an alternate stack
    else:
        child.altstack = t.altstack
    regs = {C.X_REGS[0]: 0}
    if stack:
        regs[C.REG_SP] = stack
    if flags & CLONE_SETTLS:
        regs[C.REG_TPIDR] = tls
    child.set_regs = regs
    if flags & CLONE_PARENT_SETTID:
        parent.mem.put_u32(ptid, tid)
    if flags & CLONE_CHILD_SETTID:
        proc.mem.put_u32(ctid, tid)
    if flags & CLONE_CHILD_CLEARTID:
        child.clear_child_tid = ctid
    child.kernel_stack = kernel_stack
    proc.threads.append(child)
    k.threads[tid] = child
    k.runq.append(child)
    if flags & CLONE_VFORK:
        proc.vfork_parent = t
        k.block(t, Wait(poll=lambda: tid if proc.vfork_parent is None else None, restartable=False,
                        interrupted=lambda: tid, queues=(t.proc.child_wq,)))
        return NORETURN
    return tid


@syscall("clone")
def sys_clone(k: "Kernel", t: Thread, flags: int, stack: int, ptid: int, tls: int, ctid: int) -> "int | _NoReturn":
    return _clone(k, t, flags, stack, ptid, tls, ctid)


@syscall("clone3")
def sys_clone3(k: "Kernel", t: Thread, args: int, size: int) -> "int | _NoReturn":
    if size < 64 or size > 4096:
        raise SyscallError(errno.EINVAL)
    flags, pidfd, ctid, ptid, exit_signal, stack, stack_size, tls = t.proc.mem.read_struct("<8Q", args)
    if exit_signal & ~0xFF or flags & 0xFF or (flags & CLONE_THREAD and exit_signal):
        raise SyscallError(errno.EINVAL)
    if size > 64 and any(t.proc.mem.read(args + 64, min(size, 88) - 64)):
        raise SyscallError(errno.EINVAL)    # set_tid / cgroup: not modelled
    if flags & CLONE_PIDFD:
        raise SyscallError(errno.EINVAL)
    if (stack == 0) != (stack_size == 0):
        raise SyscallError(errno.EINVAL)
    return _clone(k, t, flags | exit_signal, stack + stack_size if stack else 0, ptid, tls, ctid)


@syscall("exit")
def sys_exit(k: "Kernel", t: Thread, code: int) -> object:
    proc = t.proc
    if len(proc.live_threads) == 1:
        proc.wait_status = (code & 0xFF) << 8
    k.exit_thread(t)
    return NORETURN


@syscall("exit_group")
def sys_exit_group(k: "Kernel", t: Thread, code: int) -> object:
    k.exit_process(t.proc, code)
    return NORETURN


WNOHANG, WUNTRACED, WCONTINUED, WALL, WCLONE = 1, 2, 8, 0x40000000, 0x80000000


@syscall("wait4")
def sys_wait4(k: "Kernel", t: Thread, pid: int, wstatus: int, options: int, rusage: int) -> "int | Wait":
    pid = s32(pid)
    if options & ~(WNOHANG | WUNTRACED | WCONTINUED | WALL | WCLONE | 0x20000000):
        raise SyscallError(errno.EINVAL)
    proc = t.proc

    def matching() -> list[Process]:
        kids = proc.children
        if pid > 0:
            return [c for c in kids if c.pid == pid]
        if pid == 0:
            return [c for c in kids if c.pgid == proc.pgid]
        if pid < -1:
            return [c for c in kids if c.pgid == -pid]
        return list(kids)

    if not matching():
        raise SyscallError(errno.ECHILD)

    def attempt() -> int | None:
        kids = matching()
        if not kids:
            return -errno.ECHILD
        for c in kids:
            if c.wait_status is not None and not c.live_threads:
                if wstatus:
                    proc.mem.put_u32(wstatus, c.wait_status)
                if rusage:
                    proc.mem.write(rusage, bytes(144))
                proc.children.remove(c)
                k.procs.pop(c.pid, None)
                proc.child_wq.wake()            # another waiter may now find none (ECHILD)
                return c.pid
        return None

    r = attempt()
    if r is not None:
        if r < 0:
            raise SyscallError(-r)
        return r
    if options & WNOHANG:
        return 0
    return Wait(poll=attempt, queues=(proc.child_wq,))


@syscall("set_tid_address")
def sys_set_tid_address(k: "Kernel", t: Thread, addr: int) -> int:
    t.clear_child_tid = addr
    return t.tid


@syscall("set_robust_list")
def sys_set_robust_list(k: "Kernel", t: Thread, head: int, length: int) -> int:
    if length != 24:
        raise SyscallError(errno.EINVAL)
    t.robust_list = (head, length)
    return 0


@syscall("get_robust_list")
def sys_get_robust_list(k: "Kernel", t: Thread, pid: int, head_ptr: int, len_ptr: int) -> int:
    th = t if s32(pid) == 0 else k.threads.get(s32(pid))
    if th is None:
        raise SyscallError(errno.ESRCH)
    t.proc.mem.put_u64(head_ptr, th.robust_list[0])
    t.proc.mem.put_u64(len_ptr, th.robust_list[1])
    return 0


RSEQ_SIG_FLAGS_UNREGISTER = 1


@syscall("rseq")
def sys_rseq(k: "Kernel", t: Thread, addr: int, length: int, flags: int, sig: int) -> int:
    if flags & RSEQ_SIG_FLAGS_UNREGISTER:
        if t.rseq != addr:
            raise SyscallError(errno.EINVAL)
        t.rseq = 0
        return 0
    if flags or length < 32 or addr & 31:
        raise SyscallError(errno.EINVAL)
    if t.rseq:
        raise SyscallError(errno.EBUSY if t.rseq == addr else errno.EINVAL)
    # One emulated CPU: cpu_id_start = cpu_id = 0, node_id = 0.
    t.proc.mem.write_struct("<II", addr, 0, 0)
    t.rseq = addr
    return 0


@syscall("futex")
def sys_futex(k: "Kernel", t: Thread, addr: int, op: int, val: int, tmo: int, addr2: int,
              val3: int) -> "int | Wait":
    cmd = op & ~(F.FUTEX_PRIVATE_FLAG | F.FUTEX_CLOCK_REALTIME)
    realtime = bool(op & F.FUTEX_CLOCK_REALTIME)
    if cmd == F.FUTEX_WAIT:
        return k.futex.wait(t, addr, val, F.deadline_from_timespec(t, tmo, False, realtime), F.FUTEX_BITSET_MATCH_ANY)
    if cmd == F.FUTEX_WAIT_BITSET:
        return k.futex.wait(t, addr, val, F.deadline_from_timespec(t, tmo, True, realtime), val3 & 0xFFFF_FFFF)
    if cmd == F.FUTEX_WAKE:
        return k.futex.wake_address(t.proc, addr, s32(val))
    if cmd == F.FUTEX_WAKE_BITSET:
        if not val3 & 0xFFFF_FFFF:
            raise SyscallError(errno.EINVAL)
        return k.futex.wake_address(t.proc, addr, s32(val), val3 & 0xFFFF_FFFF)
    if cmd in (F.FUTEX_REQUEUE, F.FUTEX_CMP_REQUEUE):
        if cmd == F.FUTEX_CMP_REQUEUE and t.proc.mem.u32(addr) != val3 & 0xFFFF_FFFF:
            raise SyscallError(errno.EAGAIN)
        return k.futex.requeue(t.proc, addr, s32(val), addr2, s32(tmo))
    raise SyscallError(errno.ENOSYS)


@syscall("getpid")
def sys_getpid(k: "Kernel", t: Thread) -> int:
    return t.proc.pid


@syscall("getppid")
def sys_getppid(k: "Kernel", t: Thread) -> int:
    return k.ppid(t.proc)


@syscall("gettid")
def sys_gettid(k: "Kernel", t: Thread) -> int:
    return t.tid


def _id_getter(host_call: Callable[[], int]) -> Callable:
    # A closure, not a default argument: the table counts a handler's parameters.
    def handler(k: "Kernel", t: Thread) -> int:
        return host_call()
    return handler


for _name, _value in (("getuid", os.getuid), ("geteuid", os.geteuid), ("getgid", os.getgid),
                      ("getegid", os.getegid)):
    syscall(_name)(_id_getter(_value))


@syscall("getresuid")
def sys_getresuid(k: "Kernel", t: Thread, r: int, e: int, s: int) -> int:
    for a in (r, e, s):
        t.proc.mem.put_u32(a, os.getuid())
    return 0


@syscall("getresgid")
def sys_getresgid(k: "Kernel", t: Thread, r: int, e: int, s: int) -> int:
    for a in (r, e, s):
        t.proc.mem.put_u32(a, os.getgid())
    return 0


@syscall("getgroups")
def sys_getgroups(k: "Kernel", t: Thread, size: int, lst: int) -> int:
    return 0


def _same_id(*ids: int) -> int:
    """setuid and friends: only a no-op change is allowed; the guest never gains or drops host rights."""
    for i in ids:
        if s32(i) not in (-1, os.getuid(), os.getgid()):
            raise SyscallError(errno.EPERM)
    return 0


for _name, _n in (("setuid", 1), ("setgid", 1), ("setreuid", 2), ("setregid", 2), ("setresuid", 3),
                  ("setresgid", 3), ("setfsuid", 1), ("setfsgid", 1)):
    syscall(_name)({1: lambda k, t, a: _same_id(a), 2: lambda k, t, a, b: _same_id(a, b),
                    3: lambda k, t, a, b, c: _same_id(a, b, c)}[_n])


@syscall("getpgid")
def sys_getpgid(k: "Kernel", t: Thread, pid: int) -> int:
    p = t.proc if s32(pid) == 0 else k.procs.get(s32(pid))
    if p is None:
        raise SyscallError(errno.ESRCH)
    return p.pgid


@syscall("setpgid")
def sys_setpgid(k: "Kernel", t: Thread, pid: int, pgid: int) -> int:
    p = t.proc if s32(pid) == 0 else k.procs.get(s32(pid))
    if p is None:
        raise SyscallError(errno.ESRCH)
    if s32(pgid) < 0:
        raise SyscallError(errno.EINVAL)
    p.pgid = s32(pgid) or p.pid
    return 0


@syscall("getsid")
def sys_getsid(k: "Kernel", t: Thread, pid: int) -> int:
    p = t.proc if s32(pid) == 0 else k.procs.get(s32(pid))
    if p is None:
        raise SyscallError(errno.ESRCH)
    return p.sid


@syscall("setsid")
def sys_setsid(k: "Kernel", t: Thread) -> int:
    p = t.proc
    if p.pgid == p.pid:
        raise SyscallError(errno.EPERM)
    p.sid = p.pgid = p.pid
    return p.sid


PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_DUMPABLE = 1, 2, 3, 4
PR_SET_NAME, PR_GET_NAME = 15, 16


@syscall("prctl")
def sys_prctl(k: "Kernel", t: Thread, option: int, a2: int, a3: int, a4: int, a5: int) -> int:
    option = s32(option)
    if option == PR_SET_NAME:
        t.name = t.proc.mem.read(a2, 16).split(b"\0")[0][:15]
        return 0
    if option == PR_GET_NAME:
        t.proc.mem.write(a2, t.name.ljust(16, b"\0"))
        return 0
    if option == PR_GET_DUMPABLE:
        return t.proc.dumpable
    if option == PR_SET_DUMPABLE:
        if a2 not in (0, 1):                 # SUID_DUMP_ROOT (2) may not be set this way
            raise SyscallError(errno.EINVAL)
        t.proc.dumpable = a2
        return 0
    if option == PR_SET_PDEATHSIG:
        if not 0 <= a2 <= S.NSIG:
            raise SyscallError(errno.EINVAL)
        t.proc.pdeath_signal = a2
        return 0
    if option == PR_GET_PDEATHSIG:
        t.proc.mem.put_u32(a2, t.proc.pdeath_signal)
        return 0
    if option == mte.PR_SET_TAGGED_ADDR_CTRL:
        if a3 or a4 or a5:
            raise SyscallError(errno.EINVAL)
        mte.check_ctrl(a2)
        t.tagged_addr_ctrl = a2
        t.mte = mte.state_for(a2, k.options.mte_tcf_preferred, t.mte)
        k.cpu.set_mte(t.mte)
        return 0
    if option == pauth.PR_PAC_RESET_KEYS:
        if a3 or a4 or a5:
            raise SyscallError(errno.EINVAL)
        t.pac_keys = pauth.reset_keys(t.pac_keys, a2, k.pac_rng)
        k.cpu.set_pac(t.pac_keys, t.pac_enabled)
        return 0
    if option == pauth.PR_PAC_SET_ENABLED_KEYS:
        if a4 or a5:
            raise SyscallError(errno.EINVAL)
        t.pac_enabled = pauth.set_enabled(t.pac_enabled, a2, a3)
        k.cpu.set_pac(t.pac_keys, t.pac_enabled)
        return 0
    if option == pauth.PR_PAC_GET_ENABLED_KEYS:
        if a2 or a3 or a4 or a5:
            raise SyscallError(errno.EINVAL)
        return t.pac_enabled
    if option == mte.PR_GET_TAGGED_ADDR_CTRL:
        if a2 or a3 or a4 or a5:
            raise SyscallError(errno.EINVAL)
        return t.tagged_addr_ctrl
    raise SyscallError(errno.EINVAL)


@syscall("sched_yield")
def sys_sched_yield(k: "Kernel", t: Thread) -> int:
    k.need_resched = True
    return 0


@syscall("sched_getaffinity")
def sys_sched_getaffinity(k: "Kernel", t: Thread, pid: int, size: int, mask: int) -> int:
    if size < 8 or size & 7:
        raise SyscallError(errno.EINVAL)
    t.proc.mem.write(mask, (1).to_bytes(8, "little"))   # one emulated CPU
    return 8


@syscall("sched_setaffinity")
def sys_sched_setaffinity(k: "Kernel", t: Thread, pid: int, size: int, mask: int) -> int:
    if not any(t.proc.mem.read(mask, min(size, 128))):
        raise SyscallError(errno.EINVAL)
    return 0


@syscall("getcpu")
def sys_getcpu(k: "Kernel", t: Thread, cpu: int, node: int) -> int:
    if cpu:
        t.proc.mem.put_u32(cpu, 0)
    if node:
        t.proc.mem.put_u32(node, 0)
    return 0


RLIM_INFINITY = (1 << 64) - 1
RLIMIT_NOFILE = 7
NR_OPEN = 1 << 20                             # fs.nr_open
CAP_SYS_RESOURCE = 24
RLIMITS = {3: (8 << 20, RLIM_INFINITY),       # STACK
           7: (1024, 4096),                   # NOFILE: INR_OPEN_CUR/INR_OPEN_MAX, init's on Linux
           6: (MAX_THREADS, MAX_THREADS),     # NPROC
           4: (0, RLIM_INFINITY)}             # CORE


def _capable(cap: int) -> bool:
    """capable(): whether the guest holds the capability (the host process's effective set)."""
    try:
        return bool(int(dict(host_capabilities())["CapEff"], 16) >> cap & 1)
    except ValueError:
        return False


@syscall("prlimit64")
def sys_prlimit64(k: "Kernel", t: Thread, pid: int, resource: int, new: int, old: int) -> int:
    if s32(pid) not in (0, t.proc.pid) and s32(pid) not in k.procs:
        raise SyscallError(errno.ESRCH)
    if resource >= 16:
        raise SyscallError(errno.EINVAL)
    proc = t.proc if s32(pid) in (0, t.proc.pid) else k.procs[s32(pid)]
    cur = proc.rlimits.get(resource) or RLIMITS.get(resource, (RLIM_INFINITY, RLIM_INFINITY))
    if new:
        soft, hard = t.proc.mem.read_struct("<QQ", new)
        if soft > hard:
            raise SyscallError(errno.EINVAL)
        if hard > cur[1] and not _capable(CAP_SYS_RESOURCE):
            raise SyscallError(errno.EPERM)    # raising a hard limit needs CAP_SYS_RESOURCE
        if resource == RLIMIT_NOFILE and hard > NR_OPEN:
            raise SyscallError(errno.EPERM)    # do_prlimit(): never above fs.nr_open
    if old:
        t.proc.mem.write_struct("<QQ", old, *cur)
    if new:
        proc.rlimits[resource] = (soft, hard)
        if resource == RLIMIT_NOFILE:
            proc.fds.limit = soft                  # the hard limit is fs.nr_open, never raised
        else:
            unmodelled(k, "the limit is kept and reported, not enforced")
    return 0


@syscall("getrlimit")
def sys_getrlimit(k: "Kernel", t: Thread, resource: int, old: int) -> int:
    return sys_prlimit64(k, t, 0, resource, 0, old)


@syscall("setrlimit")
def sys_setrlimit(k: "Kernel", t: Thread, resource: int, new: int) -> int:
    return sys_prlimit64(k, t, 0, resource, new, 0)


@syscall("getrusage")
def sys_getrusage(k: "Kernel", t: Thread, who: int, usage: int) -> int:
    if s32(who) not in (0, -1, 1):
        raise SyscallError(errno.EINVAL)
    t.proc.mem.write(usage, bytes(144))
    return 0


PRIO_PROCESS, PRIO_PGRP, PRIO_USER = 0, 1, 2
CAP_SYS_NICE = 23


def _prio_targets(k: "Kernel", t: Thread, which: int, who: int) -> list[Process]:
    which, who = s32(which), s32(who)
    if which == PRIO_PROCESS:
        procs = [t.proc] if who == 0 else [p for p in k.procs.values() if p.pid == who]
    elif which == PRIO_PGRP:
        pgid = t.proc.pgid if who == 0 else who
        procs = [p for p in k.procs.values() if p.pgid == pgid]
    elif which == PRIO_USER:
        procs = list(k.procs.values()) if who in (0, os.getuid()) else []   # every guest process is the user's
    else:
        raise SyscallError(errno.EINVAL)
    procs = [p for p in procs if p.wait_status is None]
    if not procs:
        raise SyscallError(errno.ESRCH)
    return procs


@syscall("getpriority")
def sys_getpriority(k: "Kernel", t: Thread, which: int, who: int) -> int:
    """The best (lowest) nice value among the targets, as 20 - nice (glibc undoes it)."""
    return 20 - min(p.nice for p in _prio_targets(k, t, which, who))


@syscall("setpriority")
def sys_setpriority(k: "Kernel", t: Thread, which: int, who: int, niceval: int) -> int:
    """set_one_prio(): nice is clamped to -20..19; lowering it needs CAP_SYS_NICE (EACCES).
    Kept and inherited; the emulated CPU has one queue and does not weigh it."""
    nice = max(-20, min(19, s32(niceval)))
    for p in _prio_targets(k, t, which, who):
        if nice < p.nice and not _capable(CAP_SYS_NICE):
            raise SyscallError(errno.EACCES)
        p.nice = nice
    return 0
