"""What a file is (fs/stat.c, fs/statfs.c, fs/open.c's access): stat, statx, access and
statfs.
"""
from __future__ import annotations

import errno
import os
import struct
from typing import TYPE_CHECKING

from mteemu.kernel.fs import namei
from mteemu.kernel.fs.file import (
    pack_stat,
)
from mteemu.kernel.fs.hostfile import HostFile
from mteemu.kernel.fs.namei import PROC_SUPER_MAGIC, SYSFS_MAGIC, TMPFS_MAGIC, Generated, HostEntry, Magic
from mteemu.kernel.fs.pseudofs import GeneratedDir, GeneratedFile
from mteemu.kernel.fs.vfs import AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, oserror
from mteemu.kernel.process import Thread
from mteemu.kernel.syscalls.args import s32, user_path
from mteemu.kernel.syscalls.registry import syscall
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi


def _stat_of(k: "KernelApi", t: Thread, dirfd: int, path: int, flags: int) -> os.stat_result:
    p = user_path(t, path)
    if not p and flags & AT_EMPTY_PATH:
        if s32(dirfd) == AT_FDCWD:
            p = b"."
        else:
            return t.proc.fds.get(s32(dirfd)).stat()
    with k.vfs.lookup(t, dirfd, p, follow=not flags & AT_SYMLINK_NOFOLLOW, reading=True) as r:
        if isinstance(r, Magic):
            return r.link.target_stat()
        if isinstance(r, Generated):
            return r.node.stat(r.gpath)
        if r.st is None:
            raise SyscallError(errno.ENOENT)
        return r.st                 # the walk's lstat: a followed link was resolved already


@syscall("fstat")
def sys_fstat(k: "KernelApi", t: Thread, fd: int, buf: int) -> int:
    t.proc.mem.write(buf, pack_stat(t.proc.fds.get(s32(fd)).stat()))
    return 0


@syscall("newfstatat", strings=(1,))
def sys_newfstatat(k: "KernelApi", t: Thread, dirfd: int, path: int, buf: int, flags: int) -> int:
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | 0x800):
        raise SyscallError(errno.EINVAL)
    t.proc.mem.write(buf, pack_stat(_stat_of(k, t, dirfd, path, flags)))
    return 0


@syscall("statx", strings=(1,))
def sys_statx(k: "KernelApi", t: Thread, dirfd: int, path: int, flags: int, mask: int, buf: int) -> int:
    s = _stat_of(k, t, dirfd, path, flags)
    out = bytearray(256)

    def ts(off: int, ns: int) -> None:
        struct.pack_into("<qI", out, off, ns // 1_000_000_000, ns % 1_000_000_000)
    struct.pack_into("<IIQIIIH", out, 0, 0x7FF, s.st_blksize, 0, s.st_nlink, s.st_uid, s.st_gid, s.st_mode)
    struct.pack_into("<QQQ", out, 32, s.st_ino, s.st_size, s.st_blocks)
    ts(64, s.st_atime_ns)
    ts(96, s.st_ctime_ns)
    ts(112, s.st_mtime_ns)
    struct.pack_into("<IIII", out, 128, os.major(s.st_rdev), os.minor(s.st_rdev),
                     os.major(s.st_dev), os.minor(s.st_dev))
    t.proc.mem.write(buf, bytes(out))
    return 0


def _access(k: "KernelApi", t: Thread, dirfd: int, path: int, mode: int, flags: int) -> int:
    if mode & ~7 or flags & ~(0x200 | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    follow = not flags & AT_SYMLINK_NOFOLLOW
    with k.vfs.lookup(t, dirfd, user_path(t, path), follow=follow, reading=not mode & 2) as r:
        if isinstance(r, Generated):
            if not r.node.may(os.geteuid(), mode):
                raise SyscallError(errno.EACCES)
            return 0
        if isinstance(r, Magic):
            if mode & 2:                  # the object behind the link, e.g. the read-only program
                f = r.link.reopen(os.O_RDONLY)
                try:
                    if isinstance(f, HostFile) and f.foreign:
                        raise SyscallError(errno.EACCES)
                finally:
                    f.release()
            return 0
        if r.st is None:
            raise SyscallError(errno.ENOENT)
        if not os.access(r.name, mode, dir_fd=r.dirfd, follow_symlinks=False):
            raise SyscallError(errno.EACCES)
    return 0


@syscall("faccessat", strings=(1,))
def sys_faccessat(k: "KernelApi", t: Thread, dirfd: int, path: int, mode: int) -> int:
    return _access(k, t, dirfd, path, mode, 0)


@syscall("faccessat2", strings=(1,))
def sys_faccessat2(k: "KernelApi", t: Thread, dirfd: int, path: int, mode: int, flags: int) -> int:
    return _access(k, t, dirfd, path, mode, flags)


STATFS_FMT = "<qqQQQQQiiqqq4q"          # arm64 struct statfs (asm-generic, 64-bit): 120 bytes
ST_VALID = 0x20                          # statfs.f_flags: the flags are valid (Linux sets it)


def _pack_host(fd: int) -> bytes:
    try:
        v = os.statvfs(fd)
    except OSError as e:
        raise oserror(e) from None
    ftype = namei.fs_type(fd) or 0
    return struct.pack(STATFS_FMT, ftype, v.f_bsize, v.f_blocks, v.f_bfree, v.f_bavail, v.f_files, v.f_ffree,
                       0, 0, v.f_namemax, v.f_frsize, v.f_flag | ST_VALID, 0, 0, 0, 0)


def _pack_generated(gpath: str) -> bytes:
    top = gpath.split("/")[1]
    magic = {"sys": SYSFS_MAGIC, "dev": TMPFS_MAGIC}.get(top, PROC_SUPER_MAGIC)   # devtmpfs is a tmpfs
    return struct.pack(STATFS_FMT, magic, 4096, 0, 0, 0, 0, 0, 0, 0, 255, 4096, ST_VALID | 0x1, 0, 0, 0, 0)


@syscall("statfs", strings=(0,))
def sys_statfs(k: "KernelApi", t: Thread, path: int, buf: int) -> int:
    with k.vfs.lookup(t, AT_FDCWD, user_path(t, path), reading=True) as r:
        if isinstance(r, HostEntry):
            try:
                fd = r.open_path()
            except OSError as e:
                raise oserror(e) from None
            try:
                data = _pack_host(fd)
            finally:
                os.close(fd)
        else:
            data = _pack_generated(r.gpath)
    t.proc.mem.write(buf, data)
    return 0


@syscall("fstatfs")
def sys_fstatfs(k: "KernelApi", t: Thread, fd: int, buf: int) -> int:
    f = t.proc.fds.get(s32(fd))
    if isinstance(f, HostFile):
        data = _pack_host(f.fd)
    elif isinstance(f, (GeneratedFile, GeneratedDir)):
        data = _pack_generated(f.path())
    else:
        data = struct.pack(STATFS_FMT, 0x50495045, 4096, 0, 0, 0, 0, 0, 0, 0, 255, 4096, ST_VALID, 0, 0, 0, 0)  # pipefs
    t.proc.mem.write(buf, data)
    return 0
