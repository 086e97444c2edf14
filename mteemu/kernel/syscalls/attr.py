"""Changing a file's attributes (fs/attr.c, fs/open.c, fs/utimes.c): size, mode, owner and
times.
"""
from __future__ import annotations

import errno
import os
import stat as stat_mod
import time
from typing import TYPE_CHECKING, Optional

from mteemu.kernel.fs.file import (
    OpenFile,
    fd_path,
)
from mteemu.kernel.fs.hostfile import HostFile
from mteemu.kernel.fs.memfd import MemFd
from mteemu.kernel.fs.namei import Generated, HostEntry, Magic
from mteemu.kernel.fs.pipe import PipeEnd
from mteemu.kernel.fs.vfs import AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, oserror
from mteemu.kernel.process import Thread
from mteemu.kernel.syscalls.args import fdget, s32, s64, user_path
from mteemu.kernel.syscalls.registry import Support, syscall
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi


def _may_change_attrs(f: OpenFile) -> None:
    """setattr on what the guest was handed, not given: a foreign host object (stdio, the
    program) behaves as a file the caller does not own (chmod/chown: EPERM), and a
    generated file refuses as procfs's proc_setattr() does (EPERM)."""
    if not isinstance(f, HostFile) or f.foreign:
        raise SyscallError(errno.EPERM)


def _truncate(f: OpenFile, length: int) -> int:
    """do_sys_ftruncate(): a regular file open for writing, else EINVAL."""
    if s64(length) < 0:
        raise SyscallError(errno.EINVAL)
    if isinstance(f, MemFd):
        f.obj.truncate(length)
        return 0
    if not isinstance(f, HostFile) or not f.writable() or f.is_dir or not stat_mod.S_ISREG(f.stat().st_mode):
        raise SyscallError(errno.EINVAL)
    try:
        os.ftruncate(f.fd, length)
    except OSError as e:
        raise oserror(e) from None
    return 0


def _chmod(f: OpenFile, mode: int) -> int:
    if isinstance(f, (PipeEnd, MemFd)):
        return 0             # anonymous inodes: nothing outside the guest's world sees the mode
    _may_change_attrs(f)
    try:
        os.fchmod(f.fd, mode & 0o7777)   # type: ignore[attr-defined]
    except OSError as e:
        raise oserror(e) from None
    return 0


def _with_reopened(r: "Generated | Magic", flags: int, action) -> int:  # noqa: ANN001
    """Apply an fd operation to what a path names when it is a magic link's object
    (`flags` O_PATH: a change of its metadata, which needs no access to its data)."""
    if isinstance(r, Generated):
        raise SyscallError(errno.EPERM if flags == os.O_PATH else errno.EACCES)
    f = r.link.reopen(flags)
    try:
        return action(f)
    finally:
        f.release()


@syscall("ftruncate")
def sys_ftruncate(k: "KernelApi", t: Thread, fd: int, length: int) -> int:
    if s64(length) < 0:
        raise SyscallError(errno.EINVAL)     # do_sys_ftruncate(): before the fd is looked up
    return _truncate(fdget(t, fd), length)


@syscall("truncate", strings=(0,))
def sys_truncate(k: "KernelApi", t: Thread, path: int, length: int) -> int:
    with k.vfs.lookup(t, AT_FDCWD, user_path(t, path)) as r:
        if not isinstance(r, HostEntry):
            return _with_reopened(r, os.O_WRONLY, lambda f: _truncate(f, length))
        if s64(length) < 0:
            raise SyscallError(errno.EINVAL)
        if r.st is None:
            raise SyscallError(errno.ENOENT)
        if stat_mod.S_ISDIR(r.st.st_mode):
            raise SyscallError(errno.EISDIR)
        if not stat_mod.S_ISREG(r.st.st_mode):
            raise SyscallError(errno.EINVAL)      # do_sys_truncate(): only regular files
        try:
            fd = r.open(os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            raise oserror(e) from None
        try:
            os.ftruncate(fd, s64(length))
        except OSError as e:
            raise oserror(e) from None
        finally:
            os.close(fd)
    return 0


@syscall("fchmod")
def sys_fchmod(k: "KernelApi", t: Thread, fd: int, mode: int) -> int:
    return _chmod(t.proc.fds.get(s32(fd)), mode)


@syscall("fchmodat", strings=(1,))
def sys_fchmodat(k: "KernelApi", t: Thread, dirfd: int, path: int, mode: int) -> int:
    with k.vfs.lookup(t, dirfd, user_path(t, path)) as r:
        if not isinstance(r, HostEntry):
            return _with_reopened(r, os.O_PATH, lambda f: _chmod(f, mode))
        try:
            # No fchmodat(AT_SYMLINK_NOFOLLOW) on Linux: chmod the object through an O_PATH
            # descriptor of it (a symlink there is refused by the host: EOPNOTSUPP).
            fd = r.open_path()
            try:
                os.chmod(fd_path(fd), mode & 0o7777)
            finally:
                os.close(fd)
        except OSError as e:
            raise oserror(e) from None
    return 0


def _chown_allowed(k: "KernelApi", t: Thread, st: os.stat_result, uid: int, gid: int) -> bool:
    """Whether a chown reaches the host file: False for one that changes nothing (it succeeds
    without touching the host, as on Linux for the owner or root). A real change is made
    only to what the guest may re-own: inside its own root (--root), or what a guest made
    in this run (tar x chowns what it extracted); any other host file is the host's, and
    the guest is refused as an unprivileged caller changing another's file would be
    (EPERM), even when mteemu runs as root."""
    uid, gid = s32(uid), s32(gid)
    if uid in (-1, st.st_uid) and gid in (-1, st.st_gid):
        return False
    if t.proc.root is None and not k.vfs.made_by_guest(st):
        raise SyscallError(errno.EPERM)
    return True


def _chown(k: "KernelApi", t: Thread, f: OpenFile, uid: int, gid: int) -> int:
    if isinstance(f, (PipeEnd, MemFd)):
        return 0             # anonymous inodes, as for _chmod
    _may_change_attrs(f)
    assert isinstance(f, HostFile)                # (_may_change_attrs)
    try:
        if _chown_allowed(k, t, os.fstat(f.fd), uid, gid):
            os.fchown(f.fd, s32(uid), s32(gid))
    except OSError as e:
        raise oserror(e) from None
    return 0


NOT_THE_HOSTS = ("without --root, a host file the guest did not make in this run keeps its owner (EPERM, even as "
                 "root); a chown to the owner it has succeeds")


@syscall("fchown", support=Support.PARTIAL, note=NOT_THE_HOSTS)
def sys_fchown(k: "KernelApi", t: Thread, fd: int, uid: int, gid: int) -> int:
    return _chown(k, t, t.proc.fds.get(s32(fd)), uid, gid)


@syscall("fchownat", strings=(1,), support=Support.PARTIAL, note=NOT_THE_HOSTS)
def sys_fchownat(k: "KernelApi", t: Thread, dirfd: int, path: int, uid: int, gid: int, flags: int) -> int:
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    raw = user_path(t, path)
    if not raw and flags & AT_EMPTY_PATH and s32(dirfd) != AT_FDCWD:
        return _chown(k, t, t.proc.fds.get(s32(dirfd)), uid, gid)
    with k.vfs.lookup(t, dirfd, raw or b".", follow=not flags & AT_SYMLINK_NOFOLLOW) as r:
        if not isinstance(r, HostEntry):
            return _with_reopened(r, os.O_PATH, lambda f: _chown(k, t, f, uid, gid))
        if r.st is None:
            raise SyscallError(errno.ENOENT)
        try:
            if _chown_allowed(k, t, r.st, uid, gid):
                os.chown(r.name, s32(uid), s32(gid), dir_fd=r.dirfd, follow_symlinks=False)
        except OSError as e:
            raise oserror(e) from None
    return 0


UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


@syscall("utimensat", strings=(1,))
def sys_utimensat(k: "KernelApi", t: Thread, dirfd: int, path: int, times: int, flags: int) -> int:
    """utimensat()/futimens(): set the access and modification times (touch). Foreign and
    generated files refuse as for a file the caller does not own (EPERM)."""
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    now = time.time_ns()
    stamps: list[Optional[int]] = [now, now]
    if times:
        pair = (t.proc.mem.read_struct("<qq", times), t.proc.mem.read_struct("<qq", times + 16))
        for i, (sec, nsec) in enumerate(pair):
            if nsec == UTIME_OMIT:
                stamps[i] = None
            elif nsec != UTIME_NOW:
                if not 0 <= nsec < 1_000_000_000:
                    raise SyscallError(errno.EINVAL)
                stamps[i] = sec * 1_000_000_000 + nsec

    def apply(fd: int, name: Optional[str] = None) -> int:
        """Set the times of `name` in the held directory fd, or of fd's own object."""
        atime, mtime = stamps
        try:
            if atime is None or mtime is None:          # UTIME_OMIT: keep the file's own
                st = os.fstat(fd) if name is None else os.stat(name, dir_fd=fd, follow_symlinks=False)
                atime = st.st_atime_ns if atime is None else atime
                mtime = st.st_mtime_ns if mtime is None else mtime
            if name is None:
                os.utime(fd, ns=(atime, mtime))
            else:
                os.utime(name, ns=(atime, mtime), dir_fd=fd, follow_symlinks=False)
        except OSError as e:
            raise oserror(e) from None
        return 0

    if not path:                                     # futimens(fd, times)
        f = t.proc.fds.get(s32(dirfd))
        _may_change_attrs(f)
        return apply(f.fd)                           # type: ignore[attr-defined]
    with k.vfs.lookup(t, dirfd, user_path(t, path), follow=not flags & AT_SYMLINK_NOFOLLOW) as r:
        if not isinstance(r, HostEntry):
            def on_reopened(f: "HostFile") -> int:
                _may_change_attrs(f)
                return apply(f.fd)
            return _with_reopened(r, os.O_PATH, on_reopened)
        return apply(r.dirfd, r.name)
