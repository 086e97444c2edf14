"""/proc/<pid>/ and /proc/<pid>/task/<tid>/: a guest process as Linux's fs/proc/base.c,
array.c and task_mmu.c show it, generated from the kernel model's own state.

`mem` reads and writes the guest's memory as access_remote_vm() does: no tag checks
(the kernel's access is not a tag-checked user access), faults paged in, EIO when
nothing at the position can be reached.
"""
from __future__ import annotations

import errno
import functools
import os
import stat as st
import struct
from functools import partial
from typing import TYPE_CHECKING, Callable, Optional

from mteemu.kernel.fs import devfs, namei
from mteemu.kernel.fs.file import OpenFile, fake_stat
from mteemu.kernel.fs.hostfile import HostFile
from mteemu.kernel.fs.memfd import MemFd
from mteemu.kernel.fs.pipe import PipeEnd
from mteemu.kernel.fs.pseudofs import PROC_DEV, Dir, File, Link, MagicLink, Node, ino_of
from mteemu.kernel.mm.vma import PROT_EXEC, PROT_MTE, PROT_READ, PROT_WRITE, Vma
from mteemu.kernel.process import Process, State, Thread
from mteemu.kernel.signals import SIG_DFL, SIG_IGN
from mteemu.kernel.uaccess import RemoteMemory, SyscallError
from mteemu.machine.physmem import PAGE_SIZE

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi

MAPS_PAD = 73        # show_map_vma(): the name starts in column 74 (seq_pad to 25 + 6 * sizeof(long) - 1)


def uuid(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[raw[8] & 3]}{h[17:20]}-{h[20:32]}"


def parse_uint(data: bytes) -> int:
    """kstrtoul() of what a program writes to a knob: EINVAL for anything but a number."""
    try:
        value = int(data.strip().decode("ascii"), 0)
    except (UnicodeDecodeError, ValueError):
        raise SyscallError(errno.EINVAL) from None
    if value < 0:
        raise SyscallError(errno.EINVAL)
    return value


def _state(proc: Process, t: Optional[Thread], k: "KernelApi") -> str:
    if proc.wait_status is not None:
        return "Z (zombie)"
    threads = [t] if t is not None else proc.live_threads
    if any(th is k.sched.current or th.state is State.RUNNABLE for th in threads):
        return "R (running)"
    return "S (sleeping)"


def _vma_dev_ino(vma: Vma) -> tuple[int, int]:
    key = getattr(vma.obj, "key", None) if vma.obj is not None else None
    return (key[0], key[1]) if key else (0, 0)


def _map_line(proc: Process, vma: Vma) -> str:
    perms = ("r" if vma.prot & PROT_READ else "-") + ("w" if vma.prot & PROT_WRITE else "-") + \
            ("x" if vma.prot & PROT_EXEC else "-") + ("s" if vma.shared else "p")
    dev, ino = _vma_dev_ino(vma)
    head = f"{vma.start:08x}-{vma.end:08x} {perms} {vma.pgoff * PAGE_SIZE:08x} " \
           f"{os.major(dev):02x}:{os.minor(dev):02x} {ino} "
    name = vma.name
    # seq_pad(m, ' '): pad to the column, then one more space, then the name.
    return f"{head.ljust(MAPS_PAD)} {name}\n" if name else head + "\n"


def maps(proc: Process) -> bytes:
    if proc.wait_status is not None:
        return b""
    return "".join(_map_line(proc, v) for v in proc.mm.vmas).encode()


def _vma_pages(proc: Process, vma: Vma) -> tuple[int, int]:
    """(resident, swapped) pages of a VMA."""
    rss = swap = 0
    ptes = proc.mm.ptes
    for vpn in range(vma.start >> 12, vma.end >> 12):
        pte = ptes.get(vpn)
        if pte is not None:
            if pte.present:
                rss += 1
            else:
                swap += 1
    return rss, swap


def _vm_flags(vma: Vma) -> str:
    """show_smap_vma_flags(): two-letter names; `mt` marks a PROT_MTE (VM_MTE) mapping."""
    flags = [("rd", vma.prot & PROT_READ), ("wr", vma.prot & PROT_WRITE), ("ex", vma.prot & PROT_EXEC),
             ("sh", vma.shared), ("mr", True), ("mw", True), ("me", True), ("gd", vma.growsdown),
             ("ac", not vma.shared and vma.obj is None), ("mt", vma.prot & PROT_MTE)]
    return " ".join(name for name, on in flags if on)


def _smap_block(rss: int, swap: int, anon: bool, shared: bool, anonymous: Optional[int] = None) -> list[str]:
    """The page counts of one smaps entry; `anonymous`: the Anonymous pages when they are
    not simply all of rss or none (the rollup of a whole process)."""
    kb = PAGE_SIZE // 1024
    if anonymous is None:
        anonymous = rss if anon else 0
    rows = [("Rss", rss), ("Pss", rss), ("Pss_Dirty", rss if anon else 0), ("Shared_Clean", 0),
            ("Shared_Dirty", rss if shared else 0), ("Private_Clean", 0 if anon or shared else rss),
            ("Private_Dirty", rss if anon and not shared else 0), ("Referenced", rss),
            ("Anonymous", anonymous), ("KSM", 0), ("LazyFree", 0), ("AnonHugePages", 0),
            ("ShmemPmdMapped", 0), ("FilePmdMapped", 0), ("Shared_Hugetlb", 0), ("Private_Hugetlb", 0),
            ("Swap", swap), ("SwapPss", swap), ("Locked", 0)]
    return [f"{name + ':':<16}{n * kb:>8} kB\n" for name, n in rows]


def smaps(proc: Process) -> bytes:
    if proc.wait_status is not None:
        return b""
    out = []
    for vma in proc.mm.vmas:
        rss, swap = _vma_pages(proc, vma)
        size_kb = (vma.end - vma.start) // 1024
        out.append(_map_line(proc, vma))
        out += [f"{'Size:':<16}{size_kb:>8} kB\n", f"{'KernelPageSize:':<16}{4:>8} kB\n",
                f"{'MMUPageSize:':<16}{4:>8} kB\n"]
        out += _smap_block(rss, swap, vma.obj is None or vma.shared and vma.name.startswith("/dev/zero"),
                           vma.shared)
        out += ["THPeligible:    0\n", f"VmFlags: {_vm_flags(vma)} \n"]
    return "".join(out).encode()


def smaps_rollup(proc: Process) -> bytes:
    if proc.wait_status is not None:
        return b""
    vmas = list(proc.mm.vmas)
    if not vmas:
        return b""
    rss = swap = anon = 0
    for vma in vmas:
        r, s = _vma_pages(proc, vma)
        rss, swap = rss + r, swap + s
        anon += r if vma.obj is None else 0
    head = f"{vmas[0].start:08x}-{vmas[-1].end:08x} ---p 00000000 00:00 0 ".ljust(MAPS_PAD) + " [rollup]\n"
    return (head + "".join(_smap_block(rss, swap, True, False, anonymous=anon))).encode()


def _vm_sizes(proc: Process) -> dict[str, int]:
    """Pages: size, rss, data, stack, exe, swap (task_mem())."""
    out = dict.fromkeys(("size", "rss", "anon", "file", "data", "stk", "exe", "swap"), 0)
    if proc.wait_status is not None:
        return out
    for vma in proc.mm.vmas:
        pages = (vma.end - vma.start) // PAGE_SIZE
        rss, swap = _vma_pages(proc, vma)
        out["size"] += pages
        out["rss"] += rss
        out["swap"] += swap
        out["anon" if vma.obj is None else "file"] += rss
        if vma.growsdown:
            out["stk"] += pages
        elif vma.prot & PROT_EXEC and vma.name.startswith("/"):
            out["exe"] += pages
        elif vma.prot & PROT_WRITE and not vma.shared:
            out["data"] += pages
    return out


def _sigmask_hex(mask: int) -> str:
    return f"{mask & ((1 << 64) - 1):016x}"


def status(k: "KernelApi", proc: Process, t: Optional[Thread]) -> bytes:
    lead = t or (proc.threads[0] if proc.threads else None)
    name = (lead.name if lead else b"").decode(errors="replace")
    uid, gid = os.getuid(), os.getgid()
    v = _vm_sizes(proc)
    kb = PAGE_SIZE // 1024
    ign = sum(1 << (s - 1) for s, a in proc.actions.items() if a.handler == SIG_IGN)
    cgt = sum(1 << (s - 1) for s, a in proc.actions.items() if a.handler not in (SIG_DFL, SIG_IGN))
    pend = sum(1 << (s - 1) for s in (lead.pending.queue if lead else {}))
    shd = sum(1 << (s - 1) for s in proc.pending.queue)
    ppid = k.tasks.ppid(proc)
    tid = lead.tid if lead else proc.pid
    rows = [("Name", name), ("Umask", f"{proc.umask:04o}"), ("State", _state(proc, t, k)),
            ("Tgid", proc.pid), ("Ngid", 0), ("Pid", tid), ("PPid", ppid), ("TracerPid", 0),
            ("Uid", f"{uid}\t{uid}\t{uid}\t{uid}"), ("Gid", f"{gid}\t{gid}\t{gid}\t{gid}"),
            ("FDSize", 64 if len(proc.fds.files) <= 64 else 1024), ("Groups", ""),
            ("NStgid", proc.pid), ("NSpid", tid), ("NSpgid", proc.pgid), ("NSsid", proc.sid),
            ("VmPeak", f"{v['size'] * kb:8} kB"), ("VmSize", f"{v['size'] * kb:8} kB"), ("VmLck", f"{0:8} kB"),
            ("VmPin", f"{0:8} kB"), ("VmHWM", f"{v['rss'] * kb:8} kB"), ("VmRSS", f"{v['rss'] * kb:8} kB"),
            ("RssAnon", f"{v['anon'] * kb:8} kB"), ("RssFile", f"{v['file'] * kb:8} kB"),
            ("RssShmem", f"{0:8} kB"), ("VmData", f"{v['data'] * kb:8} kB"), ("VmStk", f"{v['stk'] * kb:8} kB"),
            ("VmExe", f"{v['exe'] * kb:8} kB"), ("VmLib", f"{0:8} kB"),
            ("VmPTE", f"{len(proc.mm.pt_pages) * kb if proc.wait_status is None else 0:8} kB"),
            ("VmSwap", f"{v['swap'] * kb:8} kB"), ("HugetlbPages", f"{0:8} kB"), ("CoreDumping", 0),
            ("THP_enabled", 0), ("Threads", len(proc.live_threads)), ("SigQ", "0/63504"),
            ("SigPnd", _sigmask_hex(pend)), ("ShdPnd", _sigmask_hex(shd)),
            ("SigBlk", _sigmask_hex(lead.sigmask if lead else 0)), ("SigIgn", _sigmask_hex(ign)),
            ("SigCgt", _sigmask_hex(cgt)), *host_capabilities(),
            ("NoNewPrivs", 0), ("Seccomp", 0), ("Seccomp_filters", 0), ("Speculation_Store_Bypass", "not vulnerable"),
            ("Cpus_allowed", "1"), ("Cpus_allowed_list", "0"), ("Mems_allowed", "1"),
            ("Mems_allowed_list", "0"), ("voluntary_ctxt_switches", 0), ("nonvoluntary_ctxt_switches", 0)]
    return "".join(f"{key}:\t{value}\n" for key, value in rows).encode()


def stat_line(k: "KernelApi", proc: Process, t: Optional[Thread]) -> bytes:
    """do_task_stat(): 52 fields."""
    lead = t or (proc.threads[0] if proc.threads else None)
    name = (lead.name if lead else b"").decode(errors="replace")
    state = _state(proc, t, k)[0]
    v = _vm_sizes(proc)
    ppid = k.tasks.ppid(proc)
    mm = proc.mm
    alive = proc.wait_status is None
    sp = pc = 0
    start_code = end_code = 0
    if alive:
        code = [vma for vma in mm.vmas if vma.prot & PROT_EXEC and vma.name.startswith("/")]
        if code:
            start_code, end_code = code[0].start, code[-1].end
    arg_s, arg_e = proc.arg_range
    env_s, env_e = proc.env_range
    exit_code = proc.wait_status or 0
    fields = [proc.pid if t is None else t.tid, f"({name})", state, ppid, proc.pgid, proc.sid, 0, -1, 0x400000,
              0, 0, 0, 0, 0, 0, 0, 0, 20, 0, len(proc.live_threads), 0, 0,
              v["size"] * PAGE_SIZE, v["rss"], (1 << 64) - 1, start_code, end_code, mm.stack_top if alive else 0,
              sp, pc, 0, 0, 0, 0, 0, 0, 0, getattr(proc, "exit_signal", 17), 0, 0, 0, 0, 0, 0,
              0, 0, mm.brk_start if alive else 0, arg_s, arg_e, env_s, env_e, exit_code]
    return (" ".join(str(f) for f in fields) + "\n").encode()


def statm(proc: Process) -> bytes:
    v = _vm_sizes(proc)
    return f"{v['size']} {v['rss']} {v['file']} {v['exe']} 0 {v['data'] + v['stk']} 0\n".encode()


def _read_range(proc: Process, rng: tuple[int, int]) -> bytes:
    """The argument or environment strings, read from the process's memory as
    get_mm_cmdline() does (so a program that rewrites its argv is seen rewritten)."""
    start, end = rng
    if proc.wait_status is not None or end <= start:
        return b""
    try:
        return RemoteMemory(proc.mm).read(start, end - start)
    except SyscallError:
        return b""


class ProcMem(OpenFile):
    """An open /proc/<pid>/mem: the file position is a guest virtual address."""

    def __init__(self, proc: Process, gpath: str, flags: int, code_changed: Callable[[], None]) -> None:
        super().__init__(flags)
        self.proc, self.gpath, self.code_changed = proc, gpath, code_changed

    def _mem(self) -> RemoteMemory:
        if self.proc.wait_status is not None:
            raise SyscallError(errno.EIO)       # the mm is gone (mem_rw: !mmget_not_zero)
        return RemoteMemory(self.proc.mm)

    def _reachable(self, mem: RemoteMemory, off: int, n: int, write: bool) -> int:
        """How many bytes access_remote_vm() copies; EIO when none (mem_rw())."""
        try:
            n = mem.accessible(off, n, write=write) if n else 0
        except SyscallError:
            n = 0
        if n == 0:
            raise SyscallError(errno.EIO)
        return n

    def pread(self, n: int, off: int) -> bytes:
        mem = self._mem()
        return mem.read(off, self._reachable(mem, off, n, write=False))

    def pwrite(self, data: bytes, off: int) -> int:
        mem = self._mem()
        n = self._reachable(mem, off, len(data), write=True)
        mem.write(off, data[:n])
        self.code_changed()       # it may have been code (a breakpoint): drop translated blocks
        return n

    def read(self, n: int) -> bytes:
        data = self.pread(n, self.pos)
        self.pos += len(data)
        return data

    def write(self, data: bytes) -> int:
        n = self.pwrite(data, self.pos)
        self.pos += n
        return n

    def lseek(self, off: int, whence: int) -> int:
        if whence == os.SEEK_SET:
            self.pos = off & ((1 << 64) - 1)
        elif whence == os.SEEK_CUR:
            self.pos = (self.pos + off) & ((1 << 64) - 1)
        else:
            raise SyscallError(errno.EINVAL)
        return self.pos

    def stat(self) -> os.stat_result:
        return fake_stat(st.S_IFREG | 0o600, 0, ino_of(self.gpath), dev=PROC_DEV)

    def path(self) -> str:
        return self.gpath


def reopen(proc: Process, f: OpenFile, flags: int) -> OpenFile:
    """Opening /proc/<pid>/fd/N: a new open file description of the same object, as
    Linux's proc_fd_link() + do_open() give (a pipe's end by the requested mode)."""
    acc = flags & 3
    if isinstance(f, PipeEnd):
        return PipeEnd(f.pipe, write_end=acc == os.O_WRONLY or (acc == os.O_RDWR and f.write_end), flags=flags)
    if isinstance(f, MemFd):
        m = MemFd(f.obj, f.name)
        m.flags = flags
        return m
    if isinstance(f, HostFile):
        return f.reopen(flags)
    if isinstance(f, ProcMem):
        return ProcMem(f.proc, f.gpath, flags, f.code_changed)
    raise SyscallError(errno.ENXIO)


def fd_dir(proc: Process) -> Dir:
    def children() -> dict[str, Node]:
        out: dict[str, Node] = {}
        for fd, f in sorted(proc.fds.files.items()):
            def dir_path(f: OpenFile = f) -> Optional[str]:
                """The directory an fd names, as the guest sees it (for the link's target)."""
                if not f.is_dir:
                    return None
                return f.path()
            out[str(fd)] = MagicLink(f.path, partial(reopen, proc, f), f.stat, dir_path,
                                     uid=os.getuid())
        return out
    return Dir(children, mode=0o500, uid=os.getuid())


def fdinfo_dir(proc: Process) -> Dir:
    def info(fd: int, f: OpenFile) -> bytes:
        pos = f.pos
        if isinstance(f, HostFile) and not f.is_dir:
            try:
                pos = os.lseek(f.fd, 0, os.SEEK_CUR)
            except OSError:
                pos = 0
        flags = f.flags | (0o2000000 if fd in proc.fds.cloexec else 0)
        return f"pos:\t{pos}\nflags:\t0{flags:o}\nmnt_id:\t1\nino:\t{f.stat().st_ino}\n".encode()
    return Dir(lambda: {str(fd): File(partial(info, fd, f), mode=0o444, uid=os.getuid())
                        for fd, f in sorted(proc.fds.files.items())}, mode=0o500, uid=os.getuid())


# statfs f_type -> name, for the root's line in /proc/<pid>/mounts (linux/magic.h)
_FS_NAMES = {0xEF53: "ext4", 0x01021994: "tmpfs", 0x794C7630: "overlay", 0x9123683E: "btrfs",
             0x58465342: "xfs", 0x6969: "nfs", 0x65735546: "fuse"}


def mounts(k: "KernelApi") -> bytes:
    """/proc/<pid>/mounts (show_vfsmnt()): the guest's root, then what the model mounts on
    it: /proc and /sys always, /dev and /dev/shm under --root (devfs.py)."""
    kind = _FS_NAMES.get(namei.fs_type(k.vfs.root_dir.fd) or 0, "rootfs")
    lines = [("/dev/root", "/", kind, "rw,relatime"),
             ("proc", "/proc", "proc", "rw,nosuid,nodev,noexec,relatime"),
             ("sysfs", "/sys", "sysfs", "rw,nosuid,nodev,noexec,relatime")]
    if k.options.root:
        lines += devfs.MOUNTS
    return "".join(f"{src} {where} {kind} {opts} 0 0\n" for src, where, kind, opts in lines).encode()


def _comm_writer(proc: Process, t: Optional[Thread]):  # noqa: ANN202
    def write(data: bytes) -> None:
        name = data.split(b"\n", 1)[0][:15]
        for th in ([t] if t is not None else proc.threads[:1]):
            th.name = name
    return write


def _common(k: "KernelApi", proc: Process, t: Optional[Thread]) -> dict[str, Node]:
    """The files a process directory and its task directories share."""
    uid = os.getuid()
    lead = t or (proc.threads[0] if proc.threads else None)
    return {
        "stat": File(lambda: stat_line(k, proc, t), uid=uid),
        "status": File(lambda: status(k, proc, t), uid=uid),
        "statm": File(lambda: statm(proc), uid=uid),
        "comm": File(lambda: (lead.name if lead else b"") + b"\n", _comm_writer(proc, t), mode=0o644, uid=uid),
        "cmdline": File(lambda: _read_range(proc, proc.arg_range), uid=uid),
        "environ": File(lambda: _read_range(proc, proc.env_range), mode=0o400, uid=uid),
        "auxv": File(lambda: proc.auxv, mode=0o400, uid=uid),
        "maps": File(lambda: maps(proc), uid=uid),
        "mounts": File(lambda: mounts(k)),
        "smaps": File(lambda: smaps(proc), uid=uid),
        "smaps_rollup": File(lambda: smaps_rollup(proc), uid=uid),
        "mem": File(lambda: b"", mode=0o600, uid=uid,
                    opener=lambda gpath, flags: ProcMem(proc, gpath, flags, k.cpu.invalidate_code)),
        "exe": MagicLink(lambda: proc.exe.name, lambda flags: k.programs.open_exe(proc, flags), lambda: proc.exe.stat(),
                         uid=uid),
        "cwd": Link(lambda: proc.cwd, uid=uid),
        "root": Link(lambda: "/", uid=uid),
        "fd": fd_dir(proc),
        "fdinfo": fdinfo_dir(proc),
    }


def process_dir(k: "KernelApi", caller: Thread, proc: Process) -> Dir:
    def children() -> dict[str, Node]:
        out = _common(k, proc, None)
        out["task"] = Dir(lambda: {str(th.tid): Dir(partial(_common, k, proc, th), uid=os.getuid())
                                   for th in proc.live_threads}, uid=os.getuid())
        return out
    return Dir(children, uid=os.getuid())


def auxv_bytes(pairs: list[tuple[int, int]]) -> bytes:
    return b"".join(struct.pack("<QQ", a, v) for a, v in pairs)


@functools.lru_cache(maxsize=1)
def host_capabilities() -> tuple[tuple[str, str], ...]:
    """The Cap* lines: mteemu's own (a guest has the host process's rights, no more; what
    the kernel model allows by capability, such as raising a hard rlimit, follows them)."""
    caps = {"CapInh": "0" * 16, "CapPrm": "0" * 16, "CapEff": "0" * 16, "CapBnd": "0" * 16, "CapAmb": "0" * 16}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in caps:
                    caps[key] = value.strip()
    except OSError:
        pass
    return tuple(caps.items())
