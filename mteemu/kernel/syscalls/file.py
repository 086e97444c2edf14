"""Descriptors and open files (fs/open.c, fs/fcntl.c, fs/file.c): open, close, dup, fcntl,
ioctl, pipes, memfds, directory reading, fsync and advice.
"""
from __future__ import annotations

import errno
import os
import stat as stat_mod
import struct
from typing import TYPE_CHECKING, Callable

from mteemu.kernel.fs.file import (
    O_CLOEXEC,
    O_DIRECTORY_GUEST,
    O_NOFOLLOW_GUEST,
    O_NONBLOCK,
    O_TMPFILE_GUEST,
    OpenFile,
    guest_status_flags,
)
from mteemu.kernel.fs.hostfile import HostFile
from mteemu.kernel.fs.memfd import MemFd
from mteemu.kernel.fs.namei import HostEntry
from mteemu.kernel.fs.pipe import Pipe, PipeEnd
from mteemu.kernel.fs.vfs import FifoOpen, open_generated, oserror
from mteemu.kernel.mm.shared import SharedObject
from mteemu.kernel.process import Thread, Wait
from mteemu.kernel.syscalls.args import fdget, s32, s64, user_path
from mteemu.kernel.syscalls.registry import Support, syscall
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi


@syscall("openat", strings=(1,), support=Support.PARTIAL,
         note=("/proc/<pid>/fd/N of a pipe, FIFO or foreign stdio shares the open file description; a"
               " blocking FIFO reader is let go when the writer writes or closes, not when it opens"))
def sys_openat(k: "KernelApi", t: Thread, dirfd: int, path: int, flags: int, mode: int) -> "int | Wait":
    flags &= 0xFFFF_FFFF
    if flags & os.O_PATH:
        # build_open_how(): O_PATH keeps only O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC.
        flags &= os.O_PATH | O_DIRECTORY_GUEST | O_NOFOLLOW_GUEST | O_CLOEXEC
    if flags & os.O_CREAT and flags & O_DIRECTORY_GUEST:
        raise SyscallError(errno.EINVAL)     # build_open_flags(): never both (before the path or dirfd)
    raw = user_path(t, path)
    reading = flags & 3 == os.O_RDONLY and not flags & (os.O_CREAT | os.O_TRUNC)
    try:
        r = k.vfs.lookup(t, dirfd, raw, follow=not flags & O_NOFOLLOW_GUEST, reading=reading)
    except SyscallError as e:
        if e.errno == errno.ENOENT and flags & os.O_CREAT and k.vfs.in_generated_dir(t, dirfd, raw):
            raise SyscallError(errno.EACCES) from None    # procfs has no create(): may_o_create
        raise
    with r:
        if not isinstance(r, HostEntry):
            if flags & os.O_CREAT and flags & os.O_EXCL:
                raise SyscallError(errno.EEXIST)
            f: OpenFile = open_generated(r, flags)
        else:
            if flags & O_TMPFILE_GUEST == O_TMPFILE_GUEST:
                raise SyscallError(errno.EOPNOTSUPP)
            if r.st is not None and stat_mod.S_ISFIFO(r.st.st_mode) and not flags & (O_NONBLOCK | os.O_PATH):
                return FifoOpen(k.vfs, t, r, flags).wait()
            f = k.vfs.open_host(r, flags, (mode & 0o7777) & ~t.proc.umask)
    if flags & O_DIRECTORY_GUEST and not f.is_dir:
        f.release()
        raise SyscallError(errno.ENOTDIR)
    return t.proc.fds.install(f, cloexec=bool(flags & O_CLOEXEC))


@syscall("close")
def sys_close(k: "KernelApi", t: Thread, fd: int) -> int:
    t.proc.fds.close(s32(fd))
    return 0


@syscall("close_range")
def sys_close_range(k: "KernelApi", t: Thread, first: int, last: int, flags: int) -> int:
    first, last = first & 0xFFFF_FFFF, last & 0xFFFF_FFFF
    if first > last or flags & ~0x6:
        raise SyscallError(errno.EINVAL)
    for fd in [fd for fd in t.proc.fds.files if first <= fd <= last]:
        if flags & 0x4:      # CLOSE_RANGE_CLOEXEC
            t.proc.fds.cloexec.add(fd)
        else:
            t.proc.fds.close(fd)
    return 0


@syscall("ioctl")
def sys_ioctl(k: "KernelApi", t: Thread, fd: int, req: int, arg: int) -> int:
    f = t.proc.fds.get(s32(fd))
    req &= 0xFFFF_FFFF
    if req == 0x5421:        # FIONBIO
        on = t.proc.mem.u32(arg)
        f.flags = (f.flags | O_NONBLOCK) if on else (f.flags & ~O_NONBLOCK)
        return 0
    return f.ioctl(req, arg, t.proc.mem)


F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_GETLK, F_SETLK, F_SETLKW = 0, 1, 2, 3, 4, 5, 6, 7
F_DUPFD_CLOEXEC, F_SETPIPE_SZ, F_GETPIPE_SZ, F_ADD_SEALS, F_GET_SEALS = 1030, 1031, 1032, 1033, 1034


@syscall("fcntl", support=Support.PARTIAL,
         note=("record locks always succeed (F_GETLK: unlocked), also on host files other host processes "
               "lock; a pipe keeps its size; memfd seals are accepted, not enforced"))
def sys_fcntl(k: "KernelApi", t: Thread, fd: int, cmd: int, arg: int) -> int:
    fds = t.proc.fds
    fd = s32(fd)
    f = fds.get(fd)
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        if s32(arg) < 0:
            raise SyscallError(errno.EINVAL)
        return fds.install(f, cloexec=cmd == F_DUPFD_CLOEXEC, lowest=s32(arg))
    if f.flags & os.O_PATH and cmd not in (F_GETFD, F_SETFD, F_GETFL):
        raise SyscallError(errno.EBADF)      # check_fcntl_cmd(): what an O_PATH descriptor allows
    if cmd == F_GETFD:
        return 1 if fd in fds.cloexec else 0
    if cmd == F_SETFD:
        (fds.cloexec.add if arg & 1 else fds.cloexec.discard)(fd)
        return 0
    if cmd == F_GETFL:
        return _status_flags(f)
    if cmd == F_SETFL:
        return _set_status_flags(f, arg)
    return _fcntl_other(t, f, cmd, arg)


def _status_flags(f: OpenFile) -> int:
    if isinstance(f, HostFile):
        return guest_status_flags(f.flags) | (f.flags & O_NONBLOCK)
    # O_LARGEFILE comes from open() (force_o_largefile()); a pipe's description has none.
    return f.flags if isinstance(f, PipeEnd) else f.flags | 0o400000


def _set_status_flags(f: OpenFile, arg: int) -> int:
    settable = os.O_APPEND | O_NONBLOCK
    f.flags = (f.flags & ~settable) | (arg & settable)
    if isinstance(f, HostFile) and not f.is_dir and not f.foreign and not f.is_fifo:
        os.set_blocking(f.fd, not arg & O_NONBLOCK)
    # A foreign description (stdio) is shared with the host: its O_NONBLOCK stays the
    # host's, and the guest's is emulated (HostFile.read/write answer EAGAIN).
    return 0


def _fcntl_other(t: Thread, f: OpenFile, cmd: int, arg: int) -> int:
    """Record locks, pipe sizes and memfd seals."""
    if cmd in (F_SETLK, F_SETLKW):
        return 0             # one emulated machine: record locks always succeed
    if cmd == F_GETLK:
        t.proc.mem.write(arg, struct.pack("<h", 2))   # l_type = F_UNLCK
        return 0
    if cmd in (F_GETPIPE_SZ, F_SETPIPE_SZ) and isinstance(f, PipeEnd):
        return Pipe.CAPACITY
    if cmd in (F_GET_SEALS, F_ADD_SEALS) and isinstance(f, MemFd):
        return 0
    raise SyscallError(errno.EINVAL)


@syscall("dup")
def sys_dup(k: "KernelApi", t: Thread, fd: int) -> int:
    return t.proc.fds.install(t.proc.fds.get(s32(fd)))


@syscall("dup3")
def sys_dup3(k: "KernelApi", t: Thread, old: int, new: int, flags: int) -> int:
    old, new = s32(old), s32(new)
    if old == new or flags & ~O_CLOEXEC:
        raise SyscallError(errno.EINVAL)     # ksys_dup3(): before either descriptor is looked at
    f = t.proc.fds.get(old)
    return t.proc.fds.install(f, cloexec=bool(flags & O_CLOEXEC), fd=new & 0xFFFFFFFF)


@syscall("pipe2")
def sys_pipe2(k: "KernelApi", t: Thread, fds_addr: int, flags: int) -> int:
    if flags & ~(O_CLOEXEC | O_NONBLOCK | 0o200000):    # O_DIRECT is 0o200000 on arm64 (0o40000: O_DIRECTORY)
        raise SyscallError(errno.EINVAL)
    t.proc.mem.check(fds_addr, 8, write=True)
    pipe = Pipe()
    cloexec = bool(flags & O_CLOEXEC)
    r = t.proc.fds.install(PipeEnd(pipe, False, flags), cloexec=cloexec)
    w = t.proc.fds.install(PipeEnd(pipe, True, flags), cloexec=cloexec)
    t.proc.mem.write_struct("<ii", fds_addr, r, w)
    return 0


@syscall("getdents64")
def sys_getdents64(k: "KernelApi", t: Thread, fd: int, buf: int, count: int) -> int:
    f = fdget(t, fd)
    entries = f.getdents()
    out = bytearray()
    while f.pos < len(entries):
        ino, dtype, name = entries[f.pos]
        raw = os.fsencode(name) + b"\0"
        reclen = (19 + len(raw) + 7) & ~7
        if len(out) + reclen > count:
            if not out:
                raise SyscallError(errno.EINVAL)
            break
        rec = struct.pack("<QqHB", ino, f.pos + 1, reclen, dtype) + raw
        out += rec.ljust(reclen, b"\0")
        f.pos += 1
    t.proc.mem.write(buf, bytes(out))
    return len(out)


@syscall("fsync")
def sys_fsync(k: "KernelApi", t: Thread, fd: int) -> int:
    return _sync(fdget(t, fd), os.fsync)


@syscall("fdatasync")
def sys_fdatasync(k: "KernelApi", t: Thread, fd: int) -> int:
    return _sync(fdget(t, fd), os.fdatasync)


def _sync(f: OpenFile, flush: Callable[[int], None]) -> int:
    """vfs_fsync(): a host file's data reaches its disk; a pipe or socket has no fsync
    (EINVAL); generated and in-memory files have nothing to write."""
    if isinstance(f, PipeEnd):
        raise SyscallError(errno.EINVAL)
    if isinstance(f, HostFile) and not f.is_dir:
        try:
            flush(f.fd)
        except OSError as e:
            raise oserror(e) from None
    return 0


MFD_CLOEXEC, MFD_ALLOW_SEALING, MFD_HUGETLB = 1, 2, 4


@syscall("memfd_create", strings=(0,))
def sys_memfd_create(k: "KernelApi", t: Thread, name: int, flags: int) -> int:
    label = t.proc.mem.read_cstr(name, 250)
    if flags & ~(MFD_CLOEXEC | MFD_ALLOW_SEALING | 0x8 | 0x10):
        raise SyscallError(errno.EINVAL)
    obj = SharedObject(k.alloc, "memfd:" + os.fsdecode(label))
    return t.proc.fds.install(MemFd(obj, os.fsdecode(label)), cloexec=bool(flags & MFD_CLOEXEC))


@syscall("fadvise64")
def sys_fadvise64(k: "KernelApi", t: Thread, fd: int, offset: int, length: int, advice: int) -> int:
    """ksys_fadvise64_64(): advice only (the page cache is the host's): EBADF, ESPIPE for a
    pipe, EINVAL for a negative length or an unknown advice, else 0."""
    f = fdget(t, fd)
    if isinstance(f, PipeEnd) or getattr(f, "is_fifo", False):
        raise SyscallError(errno.ESPIPE)
    if s64(length) < 0 or not 0 <= s32(advice) <= 5:
        raise SyscallError(errno.EINVAL)
    return 0


@syscall("sync")
def sys_sync(k: "KernelApi", t: Thread) -> int:
    os.sync()                             # the guest's files are the host's: flush them
    return 0


@syscall("syncfs")
def sys_syncfs(k: "KernelApi", t: Thread, fd: int) -> int:
    f = t.proc.fds.get(s32(fd))
    if isinstance(f, HostFile) and not f.is_dir:
        try:
            os.fsync(f.fd)
        except OSError:
            os.sync()                     # a pipe or terminal: the nearest effect is a full sync
    return 0
