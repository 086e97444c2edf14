"""Names in directories (fs/namei.c, fs/d_path.c): the cwd, making and removing names,
renames, links, symlinks and device nodes, and the umask they are made with.
"""
from __future__ import annotations

import ctypes
import errno
import os
import stat as st
import stat as stat_mod
from typing import TYPE_CHECKING

from mteemu.kernel.fs.namei import Generated, HostEntry, Magic, Resolved
from mteemu.kernel.fs.pseudofs import Dir, Link
from mteemu.kernel.fs.vfs import AT_FDCWD, AT_REMOVEDIR, oserror
from mteemu.kernel.process import Thread
from mteemu.kernel.syscalls.args import s32, user_path
from mteemu.kernel.syscalls.registry import Support, syscall
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi


@syscall("getcwd")
def sys_getcwd(k: "KernelApi", t: Thread, buf: int, size: int) -> int:
    data = os.fsencode(t.proc.cwd) + b"\0"
    if len(data) > size:
        raise SyscallError(errno.ERANGE)
    t.proc.mem.write(buf, data)
    return len(data)


def _enter(t: Thread, r: Resolved) -> None:
    """Make a resolved directory the cwd, kept as the guest names it (namei.py)."""
    if isinstance(r, Magic):
        raise SyscallError(errno.ENOTDIR)      # a magic link to a directory was walked already
    if isinstance(r, Generated):
        if not isinstance(r.node, Dir):
            raise SyscallError(errno.ENOTDIR)
        if not r.node.may(os.geteuid(), 1):
            raise SyscallError(errno.EACCES)
    else:
        if r.st is None:
            raise SyscallError(errno.ENOENT)
        if not stat_mod.S_ISDIR(r.st.st_mode):
            raise SyscallError(errno.ENOTDIR)
        if not os.access(r.name, os.X_OK, dir_fd=r.dirfd, follow_symlinks=False):
            raise SyscallError(errno.EACCES)
    t.proc.cwd = r.gpath


@syscall("chdir", strings=(0,), support=Support.PARTIAL,
         note="the cwd is kept as the path the guest knows: a directory renamed since is followed by name")
def sys_chdir(k: "KernelApi", t: Thread, path: int) -> int:
    raw = user_path(t, path)
    with k.vfs.lookup(t, AT_FDCWD, raw) as r:
        if isinstance(r, Magic):                   # chdir("/proc/self/fd/3"): where that directory is
            target = r.link.dir_path()
            if target is None:
                raise SyscallError(errno.ENOTDIR)
            with k.vfs.lookup(t, AT_FDCWD, os.fsencode(target)) as there:
                _enter(t, there)
        else:
            _enter(t, r)
    return 0


@syscall("fchdir", support=Support.PARTIAL,
         note="as chdir")
def sys_fchdir(k: "KernelApi", t: Thread, fd: int) -> int:
    f = t.proc.fds.get(s32(fd))
    if not f.is_dir:
        raise SyscallError(errno.ENOTDIR)
    t.proc.cwd = f.path()
    return 0


@syscall("unlinkat", strings=(1,))
def sys_unlinkat(k: "KernelApi", t: Thread, dirfd: int, path: int, flags: int) -> int:
    if flags & ~AT_REMOVEDIR:
        raise SyscallError(errno.EINVAL)
    raw = user_path(t, path)
    last = raw.rstrip(b"/").rsplit(b"/", 1)[-1]
    if last in (b".", b"..") and raw.strip(b"/"):
        # do_rmdir()/do_unlinkat() judge the last component by its name, before any lookup:
        # rmdir "." is EINVAL and ".." ENOTEMPTY; unlink of either is EISDIR.
        if not flags & AT_REMOVEDIR:
            raise SyscallError(errno.EISDIR)
        raise SyscallError(errno.EINVAL if last == b"." else errno.ENOTEMPTY)
    with k.vfs.resolve(t, dirfd, raw, follow=False) as e:
        if e.is_root:
            raise SyscallError(errno.EBUSY)        # the guest's "/" is a mount point (do_rmdir)
        try:
            (os.rmdir if flags & AT_REMOVEDIR else os.unlink)(e.name, dir_fd=e.dirfd)
        except OSError as err:
            raise oserror(err) from None
    return 0


@syscall("mkdirat", strings=(1,))
def sys_mkdirat(k: "KernelApi", t: Thread, dirfd: int, path: int, mode: int) -> int:
    with k.vfs.resolve(t, dirfd, user_path(t, path), follow=False, creating=True) as e:
        try:
            os.mkdir(e.name, (mode & 0o7777) & ~t.proc.umask, dir_fd=e.dirfd)
        except OSError as err:
            raise oserror(err) from None
        k.vfs.note_made(e.dirfd, e.name)
    return 0


RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
_libc = ctypes.CDLL(None, use_errno=True)      # renameat2(): Python's os.rename takes no flags


def _rename(k: "KernelApi", t: Thread, olddir: int, old: int, newdir: int, new: int, flags: int) -> int:
    if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == RENAME_NOREPLACE | RENAME_EXCHANGE:
        raise SyscallError(errno.EINVAL)
    with k.vfs.resolve(t, olddir, user_path(t, old), follow=False) as src, \
            k.vfs.resolve(t, newdir, user_path(t, new), follow=False) as dst:
        if src.is_root or dst.is_root:
            raise SyscallError(errno.EBUSY)
        if _libc.renameat2(src.dirfd, os.fsencode(src.name), dst.dirfd, os.fsencode(dst.name), flags) != 0:
            raise SyscallError(ctypes.get_errno() or errno.EIO)
    return 0


@syscall("renameat", strings=(1, 3))
def sys_renameat(k: "KernelApi", t: Thread, olddir: int, old: int, newdir: int, new: int) -> int:
    return _rename(k, t, olddir, old, newdir, new, 0)


@syscall("renameat2", strings=(1, 3))
def sys_renameat2(k: "KernelApi", t: Thread, olddir: int, old: int, newdir: int, new: int, flags: int) -> int:
    return _rename(k, t, olddir, old, newdir, new, flags)


@syscall("symlinkat", strings=(0, 2))
def sys_symlinkat(k: "KernelApi", t: Thread, target: int, dirfd: int, path: int) -> int:
    text = os.fsdecode(user_path(t, target))
    if not text:
        raise SyscallError(errno.ENOENT)     # getname(""): before the new name is read
    with k.vfs.resolve(t, dirfd, user_path(t, path), follow=False, creating=True) as e:
        try:
            os.symlink(text, e.name, dir_fd=e.dirfd)
        except OSError as err:
            raise oserror(err) from None
        k.vfs.note_made(e.dirfd, e.name)
    return 0


@syscall("linkat", strings=(1, 3))
def sys_linkat(k: "KernelApi", t: Thread, olddir: int, old: int, newdir: int, new: int, flags: int) -> int:
    follow = bool(flags & 0x400)           # AT_SYMLINK_FOLLOW
    with k.vfs.lookup(t, olddir, user_path(t, old), follow=follow) as src:
        if not isinstance(src, HostEntry):
            raise SyscallError(errno.EXDEV)    # a generated file cannot be linked onto the host
        try:                                   # do_linkat(): the old name is looked up before the new is read
            os.stat(src.name, dir_fd=src.dirfd, follow_symlinks=follow)
        except OSError as err:
            raise oserror(err) from None
        with k.vfs.resolve(t, newdir, user_path(t, new), follow=False, creating=True) as dst:
            try:
                os.link(src.name, dst.name, src_dir_fd=src.dirfd, dst_dir_fd=dst.dirfd, follow_symlinks=False)
            except OSError as err:
                raise oserror(err) from None
    return 0


@syscall("readlinkat", strings=(1,))
def sys_readlinkat(k: "KernelApi", t: Thread, dirfd: int, path: int, buf: int, size: int) -> int:
    if s32(size) <= 0:
        raise SyscallError(errno.EINVAL)
    with k.vfs.lookup(t, dirfd, user_path(t, path), follow=False, reading=True) as r:
        if isinstance(r, Generated):
            if not isinstance(r.node, Link):
                raise SyscallError(errno.EINVAL)
            target = r.node.target()
        elif isinstance(r, Magic):
            raise SyscallError(errno.EINVAL)
        else:
            try:
                target = os.readlink(r.name, dir_fd=r.dirfd)
            except OSError as e:
                raise oserror(e) from None
    data = os.fsencode(target)[:size]
    t.proc.mem.write(buf, data)
    return len(data)


@syscall("umask")
def sys_umask(k: "KernelApi", t: Thread, mask: int) -> int:
    old = t.proc.umask
    t.proc.umask = mask & 0o777
    return old


@syscall("mknodat", strings=(1,), support=Support.PARTIAL,
         note="under --root, names cannot be made in /dev except under /dev/shm (EPERM)")
def sys_mknodat(k: "KernelApi", t: Thread, dirfd: int, path: int, mode: int, dev: int) -> int:
    """Regular files and FIFOs as Linux makes them; device nodes need CAP_MKNOD, which the
    emulated world never grants (EPERM, as for every privileged call); no sockets exist."""
    mode &= 0xFFFF_FFFF                   # umode_t: a wider value is the guest's garbage
    kind = st.S_IFMT(mode) or st.S_IFREG
    perm = (mode & 0o7777) & ~t.proc.umask
    with k.vfs.resolve(t, dirfd, user_path(t, path), follow=False, creating=True) as e:
        try:
            if kind == st.S_IFREG:
                os.close(e.open(os.O_WRONLY | os.O_CREAT | os.O_EXCL, perm))
            elif kind == st.S_IFIFO:
                os.mkfifo(e.name, perm, dir_fd=e.dirfd)
            elif kind in (st.S_IFCHR, st.S_IFBLK, st.S_IFSOCK):
                raise SyscallError(errno.EPERM)
            else:
                raise SyscallError(errno.EINVAL)
        except OSError as err:
            raise oserror(err) from None
        k.vfs.note_made(e.dirfd, e.name)
    return 0
