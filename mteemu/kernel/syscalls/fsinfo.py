"""statfs/fstatfs, mknodat, sync/syncfs and pselect6 (fs/statfs.c, fs/namei.c, fs/sync.c,
fs/select.c), each with its effect: what df, stat -f, mkfifo and select-based programs use."""
from __future__ import annotations

import errno
import os
import stat as st
import struct
import time
from typing import TYPE_CHECKING

from mteemu.kernel import namei
from mteemu.kernel.files import HostFile, Would, wait_queues
from mteemu.kernel.namei import PROC_SUPER_MAGIC, SYSFS_MAGIC, TMPFS_MAGIC, HostEntry
from mteemu.kernel.process import Thread, Wait
from mteemu.kernel.pseudofs import GeneratedDir, GeneratedFile
from mteemu.kernel.syscalls import blocking, s32, syscall
from mteemu.kernel.syscalls.fs import AT_FDCWD, _oserror, _path, _poll_ready, lookup, resolve
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.kernel import Kernel

STATFS_FMT = "<qqQQQQQiiqqq4q"          # arm64 struct statfs (asm-generic, 64-bit): 120 bytes
ST_VALID = 0x20                          # statfs.f_flags: the flags are valid (Linux sets it)


def _pack_host(fd: int) -> bytes:
    try:
        v = os.statvfs(fd)
    except OSError as e:
        raise _oserror(e) from None
    ftype = namei.fs_type(fd) or 0
    return struct.pack(STATFS_FMT, ftype, v.f_bsize, v.f_blocks, v.f_bfree, v.f_bavail, v.f_files, v.f_ffree,
                       0, 0, v.f_namemax, v.f_frsize, v.f_flag | ST_VALID, 0, 0, 0, 0)


def _pack_generated(gpath: str) -> bytes:
    top = gpath.split("/")[1]
    magic = {"sys": SYSFS_MAGIC, "dev": TMPFS_MAGIC}.get(top, PROC_SUPER_MAGIC)   # devtmpfs is a tmpfs
    return struct.pack(STATFS_FMT, magic, 4096, 0, 0, 0, 0, 0, 0, 0, 255, 4096, ST_VALID | 0x1, 0, 0, 0, 0)


@syscall("statfs", strings=(0,))
def sys_statfs(k: "Kernel", t: Thread, path: int, buf: int) -> int:
    with lookup(k, t, AT_FDCWD, _path(t, path), reading=True) as r:
        if isinstance(r, HostEntry):
            try:
                fd = r.open_path()
            except OSError as e:
                raise _oserror(e) from None
            try:
                data = _pack_host(fd)
            finally:
                os.close(fd)
        else:
            data = _pack_generated(r.gpath)
    t.proc.mem.write(buf, data)
    return 0


@syscall("fstatfs")
def sys_fstatfs(k: "Kernel", t: Thread, fd: int, buf: int) -> int:
    f = t.proc.fds.get(s32(fd))
    if isinstance(f, HostFile):
        data = _pack_host(f.fd)
    elif isinstance(f, (GeneratedFile, GeneratedDir)):
        data = _pack_generated(f.path())
    else:
        data = struct.pack(STATFS_FMT, 0x50495045, 4096, 0, 0, 0, 0, 0, 0, 0, 255, 4096, ST_VALID, 0, 0, 0, 0)  # pipefs
    t.proc.mem.write(buf, data)
    return 0


@syscall("mknodat", strings=(1,))
def sys_mknodat(k: "Kernel", t: Thread, dirfd: int, path: int, mode: int, dev: int) -> int:
    """Regular files and FIFOs as Linux makes them; device nodes need CAP_MKNOD, which the
    emulated world never grants (EPERM, as for every privileged call); no sockets exist."""
    mode &= 0xFFFF_FFFF                   # umode_t: a wider value is the guest's garbage
    kind = st.S_IFMT(mode) or st.S_IFREG
    perm = (mode & 0o7777) & ~t.proc.umask
    with resolve(k, t, dirfd, _path(t, path), follow=False, creating=True) as e:
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
            raise _oserror(err) from None
    return 0


@syscall("sync")
def sys_sync(k: "Kernel", t: Thread) -> int:
    os.sync()                             # the guest's files are the host's: flush them
    return 0


@syscall("syncfs")
def sys_syncfs(k: "Kernel", t: Thread, fd: int) -> int:
    f = t.proc.fds.get(s32(fd))
    if isinstance(f, HostFile) and not f.is_dir:
        try:
            os.fsync(f.fd)
        except OSError:
            os.sync()                     # a pipe or terminal: the nearest effect is a full sync
    return 0


FD_SETSIZE = 1024


@syscall("pselect6")
def sys_pselect6(k: "Kernel", t: Thread, nfds: int, rd: int, wr: int, ex: int, tmo: int,
                 sigmask: int) -> "int | Wait":
    """pselect6(): the fd_set bitmaps polled like ppoll (exceptional conditions never occur
    here); the sets are rewritten with what is ready."""
    nfds = s32(nfds)
    if not 0 <= nfds <= FD_SETSIZE:
        raise SyscallError(errno.EINVAL)
    size = (nfds + 63) // 64 * 8
    mem = t.proc.mem
    sets = [bytearray(mem.read(a, size)) if a and size else None for a in (rd, wr, ex)]
    wanted = [(fd, i) for i, s in enumerate(sets[:2]) if s is not None
              for fd in range(nfds) if s[fd >> 3] >> (fd & 7) & 1]
    for fd, _ in wanted:
        if fd not in t.proc.fds.files:
            raise SyscallError(errno.EBADF)
    deadline = None
    if tmo:
        sec, nsec = mem.read_struct("<qq", tmo)
        if sec < 0 or not 0 <= nsec < 1_000_000_000:
            raise SyscallError(errno.EINVAL)
        deadline = time.monotonic() + sec + nsec / 1e9

    def attempt() -> int:
        out = [bytearray(size) if s is not None else None for s in sets]
        ready = 0
        for fd, i in wanted:
            f = t.proc.fds.files.get(fd)
            bits = out[i]
            if f is not None and bits is not None and _poll_ready(f, 1 if i == 0 else 4):
                bits[fd >> 3] |= 1 << (fd & 7)
                ready += 1
        if not ready and (deadline is None or time.monotonic() < deadline):
            raise Would()
        for addr, o in zip((rd, wr, ex), out):
            if addr and o is not None and size:
                mem.write(addr, bytes(o))
        return ready
    return blocking(attempt, Would, deadline=deadline, on_timeout=lambda: _clear(mem, (rd, wr, ex), size),
                    restartable=False,           # -ERESTARTNOHAND, as ppoll
                    queues=wait_queues(t.proc.fds.files[fd] for fd, _ in wanted))


def _clear(mem, addrs: tuple[int, ...], size: int) -> int:  # noqa: ANN001
    for a in addrs:
        if a and size:
            mem.write(a, bytes(size))
    return 0
