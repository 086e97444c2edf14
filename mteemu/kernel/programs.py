"""Programs started and replaced (fs/exec.c and fs/binfmt_elf.c): the first process from
the program mteemu's user named, execve()'s second half, the program interpreter found in
a sysroot or the guest's world, /proc/PID/exe reopened, and a new address space with the
sigreturn trampoline."""
from __future__ import annotations

import errno
import fcntl
import os
import random
import stat
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Optional

from mteemu.errors import InputError, NoInterpreter
from mteemu.inputs import open_regular
from mteemu.kernel import loader, mte, pauth
from mteemu.kernel import signals as S
from mteemu.kernel.allocwatch import AllocWatch
from mteemu.kernel.fs import namei
from mteemu.kernel.fs.exefile import ExeFile
from mteemu.kernel.fs.fdtable import FdTable
from mteemu.kernel.fs.hostfile import HostFile, PageCache
from mteemu.kernel.fs.vfs import Vfs
from mteemu.kernel.futex import FutexTable, exit_robust_list
from mteemu.kernel.mm.addrspace import Mm
from mteemu.kernel.mm.pagealloc import OutOfMemory, PageAllocator
from mteemu.kernel.mm.vma import PROT_EXEC, PROT_READ, Vma
from mteemu.kernel.process import SS_DISABLE, THREAD_ORDER, Process, Thread, release_vfork
from mteemu.kernel.run import RunOptions
from mteemu.kernel.tasks import Tasks
from mteemu.kernel.uaccess import SyscallError, UserMemory
from mteemu.machine import arm64 as C
from mteemu.machine.cpu import Cpu
from mteemu.machine.physmem import PAGE_SIZE
from mteemu.machine.tagcheck import MteState

if TYPE_CHECKING:
    from mteemu.kernel.exits import Exits
    from mteemu.kernel.ptrace import Tracer
    from mteemu.kernel.sched import Scheduler

# The [vdso] stand-in's code: the sigreturn trampoline (mov x8, #139; svc #0), and the
# `ret` allocator calls return through (allocwatch.TRAMPOLINE_OFFSET).
VDSO_CODE = bytes.fromhex("681180d2" "010000d4" "c0035fd6")


class Programs:
    def __init__(self, cpu: Cpu, alloc: PageAllocator, options: RunOptions, vfs: Vfs, tasks: Tasks,
                 sched: "Scheduler", exits: "Exits", futex: FutexTable, pagecache: PageCache,
                 rng: random.Random, pac_rng: random.Random, allocs: AllocWatch) -> None:
        self.cpu, self.alloc, self.options, self.vfs, self.tasks = cpu, alloc, options, vfs, tasks
        self.allocs = allocs
        self.sched, self.exits, self.futex, self.pagecache = sched, exits, futex, pagecache
        self.rng, self.pac_rng = rng, pac_rng
        self.tracer: "Optional[Tracer]" = None
        self._fresh_regs: Any = cpu.save()     # every register zero: a new program's start (start_thread())

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
        self.allocs.new_program(mm, exe.source, prog.bias, static=interp is None)
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
            self.allocs.new_program(mm, exe.source, prog.bias, static=interp is None)
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
        self.cpu.allocs.set_current(mm.alloc_history, t.tid)
        self.cpu.flush_tlb()                       # another address space on the CPU
        self.cpu.invalidate_code()
        self.sched.on_cpu_mm = mm
        self.sched.need_resched = True                   # leave the CPU: resume in the new program

    def _stdio_fds(self, root: Optional[str]) -> FdTable:
        """The first process's descriptors: mteemu's stdio and every descriptor it was handed
        without FD_CLOEXEC, under the same numbers, as a program exec'd on Linux gets them."""
        fds = FdTable()
        for fd in (0, 1, 2):
            if fd not in self.options.closed_stdio:
                self._inherit(fds, fd, os.O_RDONLY if fd == 0 else os.O_WRONLY, root)
        for fd in self.options.inherited_fds:
            if fd < fds.limit:
                try:
                    flags = fcntl.fcntl(fd, fcntl.F_GETFL) & (os.O_ACCMODE | os.O_APPEND)
                except OSError:
                    continue
                self._inherit(fds, fd, flags, root)
        return fds

    def _inherit(self, fds: FdTable, fd: int, flags: int, root: Optional[str]) -> None:
        try:
            host = os.dup(fd)
        except OSError:
            return
        try:
            # the host's name of it, once, as the guest would see that name
            name = namei.guest_view(root or "/", os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            name = f"/dev/fd/{fd}"
        # The host's objects behind them: readable and writable as opened, never re-owned
        # (foreign: no metadata changes through them).
        fds.install(HostFile(host, name, flags, self.pagecache, foreign=True), fd=fd)

    def _map_trampoline(self, mm: Mm) -> None:
        """A one-page stand-in for the vDSO's sigreturn trampoline (x30 of a handler)."""
        addr = mm.get_unmapped_area(PAGE_SIZE)
        if addr is None:
            raise OutOfMemory("no room for the sigreturn trampoline")
        mm.map(Vma(addr, addr + PAGE_SIZE, PROT_READ | PROT_EXEC, name="[vdso]"))
        loader.poke(mm, addr, VDSO_CODE)
        mm.sigreturn_trampoline = addr
