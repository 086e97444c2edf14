"""System V shared memory: shmget, shmat, shmdt, shmctl (ipc/shm.c). A segment is a shared
memory object of the kernel model (the pages memfd and MAP_SHARED|MAP_ANONYMOUS use:
shmem, so PROT_MTE may be added with mprotect), attached as a shared VMA; attachments are
inherited by fork, and IPC_RMID destroys the segment once the last one is gone (checked
at the next shm call: a segment whose last attachment ended with its process stays
until then)."""
from __future__ import annotations

import errno
import os
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mteemu.kernel.mm.shared import SharedObject
from mteemu.kernel.mm.vma import PROT_EXEC, PROT_READ, PROT_WRITE, Vma
from mteemu.kernel.process import Thread
from mteemu.kernel.syscalls.args import s32
from mteemu.kernel.syscalls.registry import syscall
from mteemu.kernel.uaccess import SyscallError
from mteemu.machine.physmem import PAGE_SIZE

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi

IPC_PRIVATE, IPC_CREAT, IPC_EXCL = 0, 0o1000, 0o2000
IPC_RMID, IPC_SET, IPC_STAT, IPC_INFO = 0, 1, 2, 3
SHM_RDONLY, SHM_RND, SHM_REMAP, SHM_EXEC = 0o10000, 0o20000, 0o40000, 0o100000
SHMMNI, SHMMIN, SHMMAX = 4096, 1, (1 << 46)
SHMLBA = PAGE_SIZE


@dataclass(eq=False)
class Segment:
    key: int
    obj: SharedObject
    size: int
    mode: int
    cpid: int
    removed: bool = False
    lpid: int = 0
    atime: int = 0
    dtime: int = 0
    ctime: int = field(default_factory=lambda: int(time.time()))


def _segment(k: "KernelApi", shmid: int) -> Segment:
    seg = k.shm_segments.get(s32(shmid))
    if seg is None:
        raise SyscallError(errno.EINVAL)
    return seg


@syscall("shmget")
def sys_shmget(k: "KernelApi", t: Thread, key: int, size: int, flags: int) -> int:
    key, flags = s32(key), s32(flags)
    table = k.shm_segments
    if key != IPC_PRIVATE:
        for shmid, seg in table.items():
            if seg.key == key and not seg.removed:
                if flags & IPC_CREAT and flags & IPC_EXCL:
                    raise SyscallError(errno.EEXIST)
                if size > seg.size:
                    raise SyscallError(errno.EINVAL)
                return shmid
        if not flags & IPC_CREAT:
            raise SyscallError(errno.ENOENT)
    if not SHMMIN <= size <= SHMMAX:
        raise SyscallError(errno.EINVAL)
    if len(table) >= SHMMNI:
        raise SyscallError(errno.ENOSPC)
    shmid = max(table, default=-1) + 1
    obj = SharedObject(k.alloc, f"SYSV{key & 0xFFFFFFFF:08x} (deleted)", size=size)
    obj.hold()                              # the segment itself holds it until IPC_RMID
    table[shmid] = Segment(key, obj, size, flags & 0o777, t.proc.pid)
    return shmid


@syscall("shmat")
def sys_shmat(k: "KernelApi", t: Thread, shmid: int, addr: int, flags: int) -> int:
    seg = _segment(k, shmid)
    flags = s32(flags)
    mm = t.proc.mm
    length = (seg.size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    if addr:
        if flags & SHM_RND:
            addr &= ~(SHMLBA - 1)
        if addr & (PAGE_SIZE - 1):
            raise SyscallError(errno.EINVAL)
        if not flags & SHM_REMAP and not mm.vmas.is_free(addr, addr + length):
            raise SyscallError(errno.EINVAL)
    else:
        found = mm.get_unmapped_area(length)
        if found is None:
            raise SyscallError(errno.ENOMEM)
        addr = found
    prot = PROT_READ | (0 if flags & SHM_RDONLY else PROT_WRITE) | (PROT_EXEC if flags & SHM_EXEC else 0)
    mm.map(Vma(addr, addr + length, prot, shared=True, obj=seg.obj, name=seg.obj.name, mte_allowed=True))
    seg.lpid, seg.atime = t.proc.pid, int(time.time())
    return addr


@syscall("shmdt")
def sys_shmdt(k: "KernelApi", t: Thread, addr: int) -> int:
    mm = t.proc.mm
    vma = mm.vmas.find(addr)
    seg = next((s for s in k.shm_segments.values() if vma is not None and vma.obj is s.obj), None)
    if vma is None or seg is None or vma.start != addr:
        raise SyscallError(errno.EINVAL)
    mm.unmap(vma.start, vma.end)
    seg.lpid, seg.dtime = t.proc.pid, int(time.time())
    _reap(k)
    return 0


def _reap(k: "KernelApi") -> None:
    """A removed segment goes when nothing maps it any more (shm_destroy())."""
    for shmid, seg in list(k.shm_segments.items()):
        if seg.removed and seg.obj.users <= 1:
            seg.obj.drop()
            del k.shm_segments[shmid]


@syscall("shmctl")
def sys_shmctl(k: "KernelApi", t: Thread, shmid: int, cmd: int, buf: int) -> int:
    seg = _segment(k, shmid)
    cmd = s32(cmd) & 0xFF                   # IPC_64 is implied on arm64
    if cmd == IPC_RMID:
        seg.removed = True
        _reap(k)
        return 0
    if cmd == IPC_STAT:
        # struct shmid64_ds (asm-generic, 64-bit): ipc64_perm then the segment's fields.
        uid, gid = os.getuid(), os.getgid()
        perm = struct.pack("<iIIIIIHHIQQ", seg.key, uid, gid, uid, gid, seg.mode | (0o1000 if seg.removed else 0),
                           0, 0, 0, 0, 0)
        nattch = max(0, seg.obj.users - 1)
        t.proc.mem.write(buf, perm + struct.pack("<QqqqiiQQQ", seg.size, seg.atime, seg.dtime, seg.ctime, seg.cpid,
                                                 seg.lpid, nattch, 0, 0))
        return 0
    if cmd == IPC_SET:
        _, uid, gid, _, _, mode = struct.unpack_from("<iIIIII", t.proc.mem.read(buf, 24))
        seg.mode = mode & 0o777
        seg.ctime = int(time.time())
        return 0
    raise SyscallError(errno.EINVAL)
