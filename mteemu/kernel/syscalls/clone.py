"""Making processes and threads (kernel/fork.c): clone, clone3 (fork and vfork are clone
with flags on arm64).
"""
from __future__ import annotations

import errno
from dataclasses import replace
from typing import TYPE_CHECKING

from mteemu.kernel.mm.pagealloc import OutOfMemory
from mteemu.kernel.process import THREAD_ORDER, Process, Thread, Wait
from mteemu.kernel.syscalls.registry import NORETURN, NoReturnResult, Support, syscall
from mteemu.kernel.uaccess import SyscallError
from mteemu.machine import arm64 as C

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi


CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_PIDFD, CLONE_PTRACE, CLONE_VFORK, CLONE_PARENT, CLONE_THREAD = 0x1000, 0x2000, 0x4000, 0x8000, 0x10000


CLONE_NEWNS, CLONE_SYSVSEM, CLONE_SETTLS, CLONE_PARENT_SETTID = 0x20000, 0x40000, 0x80000, 0x100000
CLONE_CHILD_CLEARTID, CLONE_DETACHED, CLONE_UNTRACED, CLONE_CHILD_SETTID = 0x200000, 0x400000, 0x800000, 0x1000000


CLONE_NEW_ANY = 0x7E020000 & ~CLONE_SETTLS & ~CLONE_PARENT_SETTID & ~CLONE_SYSVSEM | CLONE_NEWNS
MAX_THREADS = 4096      # a bound on guest tasks, like RLIMIT_NPROC: fork bombs get EAGAIN


def _clone(k: "KernelApi", t: Thread, flags: int, stack: int, ptid: int, tls: int, ctid: int) -> "int | NoReturnResult":
    if flags & CLONE_NEW_ANY & ~CLONE_SYSVSEM:
        raise SyscallError(errno.EPERM)        # namespaces: not in the emulated world
    if flags & CLONE_THREAD and not (flags & CLONE_SIGHAND and flags & CLONE_VM):
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_SIGHAND and not flags & CLONE_VM:
        raise SyscallError(errno.EINVAL)
    if len(k.tasks.threads) >= MAX_THREADS:
        raise SyscallError(errno.EAGAIN)
    try:
        kernel_stack = k.alloc.alloc_kernel(THREAD_ORDER)     # dup_task_struct(): the stack first
    except OutOfMemory:
        raise SyscallError(errno.ENOMEM) from None
    try:
        return _copy_process(k, t, flags, stack, ptid, tls, ctid, kernel_stack)
    except (OutOfMemory, SyscallError) as e:
        if not any(th.kernel_stack == kernel_stack for th in k.tasks.threads.values()):
            k.alloc.free_kernel(kernel_stack)        # no thread got it: the clone failed early
        if isinstance(e, OutOfMemory):
            raise SyscallError(errno.ENOMEM) from None
        raise


def _copy_process(k: "KernelApi", t: Thread, flags: int, stack: int, ptid: int, tls: int, ctid: int,
                  kernel_stack: int) -> "int | NoReturnResult":
    parent = t.proc
    ctx = k.cpu.save()
    if flags & CLONE_THREAD:
        proc = parent
        tid = k.tasks.new_pid()
    else:
        if flags & CLONE_VM and not flags & CLONE_VFORK:
            raise SyscallError(errno.EINVAL)   # shared-VM processes without vfork: not modelled
        tid = k.tasks.new_pid()
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
        k.tasks.procs[proc.pid] = proc
        k.tasks.forks += 1
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
    k.tasks.threads[tid] = child
    k.sched.enqueue(child)
    if flags & CLONE_VFORK:
        proc.vfork_parent = t
        k.sched.block(t, Wait(poll=lambda: tid if proc.vfork_parent is None else None, restartable=False,
                        interrupted=lambda: tid, queues=(t.proc.child_wq,)))
        return NORETURN
    return tid


@syscall("clone", support=Support.PARTIAL,
         note="namespaces are refused (EPERM); a process sharing the address space without CLONE_VFORK is EINVAL")
def sys_clone(k: "KernelApi", t: Thread, flags: int, stack: int, ptid: int, tls: int,
              ctid: int) -> "int | NoReturnResult":
    return _clone(k, t, flags, stack, ptid, tls, ctid)


@syscall("clone3", support=Support.PARTIAL,
         note="as clone; set_tid and cgroup are EINVAL")
def sys_clone3(k: "KernelApi", t: Thread, args: int, size: int) -> "int | NoReturnResult":
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
