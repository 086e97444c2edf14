"""File syscalls: host files as qemu-user shows them, plus in-guest pipes and memfds."""
from __future__ import annotations

import errno
import os
import struct
from typing import TYPE_CHECKING

from mteemu.kernel.files import (O_CLOEXEC, O_DIRECTORY_GUEST, O_NOFOLLOW_GUEST, O_NONBLOCK, O_TMPFILE_GUEST,
                                 HostFile, MemFd,
                                 Pipe, PipeEnd, Would, guest_status_flags, host_open_flags, pack_stat)
from mteemu.kernel import confine, procfs
from mteemu.kernel.mm.shared import SharedObject
from mteemu.kernel.process import Thread
from mteemu.kernel.signals import SIGPIPE, SI_USER, SigInfo
from mteemu.kernel.syscalls import blocking, s32, s64, syscall
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.kernel import Kernel

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR, AT_EMPTY_PATH = 0x100, 0x200, 0x1000
MAX_IO = 0x7FFF_F000      # Linux caps one read/write at MAX_RW_COUNT
IOV_MAX = 1024


def _path(t: Thread, addr: int) -> bytes:
    if not addr:
        raise SyscallError(errno.EFAULT)
    return t.proc.mem.read_cstr(addr, 4096)


def resolve(t: Thread, dirfd: int, path: bytes, empty_ok: bool = False, follow: bool = True) -> str:
    """A guest path (relative to dirfd or the cwd) as a host path. Under --root the walk
    stays inside the root (confine.py); `follow`: whether a final symlink is followed
    (callers that pass False use host calls that do not follow one either)."""
    p = os.fsdecode(path)
    if not p:
        if empty_ok:
            return ""
        raise SyscallError(errno.ENOENT)
    proc = t.proc
    for self_ in ("/proc/self/", f"/proc/{proc.pid}/", "/proc/thread-self/"):
        if p.startswith(self_):
            rest = p[len(self_):]
            if rest == "exe":
                return proc.exe
            if proc.root is not None and (rest == "root" or rest.startswith("root/")):
                p = "/" + rest[4:]                  # the guest's root is its own
    if os.path.isabs(p) and proc.root is None:
        return p
    dirfd = s32(dirfd)
    if dirfd == AT_FDCWD or os.path.isabs(p):
        base = proc.cwd
    else:
        f = proc.fds.get(dirfd)
        if not isinstance(f, HostFile) or not f.is_dir:
            raise SyscallError(errno.ENOTDIR)
        base = f.path()
    if proc.root is None:
        return os.path.join(base, p)
    return confine.walk(proc.root, base, p, follow)


def _oserror(e: OSError) -> SyscallError:
    return SyscallError(e.errno or errno.EIO)


def _write_result(k: "Kernel", t: Thread, attempt) -> "int":  # noqa: ANN001
    try:
        return blocking(attempt, Would)
    except SyscallError as e:
        if e.errno == errno.EPIPE:
            k.send_signal(t.proc, SigInfo(SIGPIPE, SI_USER, pid=t.proc.pid), thread=t)
        raise


@syscall("read")
def sys_read(k: "Kernel", t: Thread, fd: int, buf: int, count: int) -> int:
    f = t.proc.fds.get(s32(fd))
    if not f.readable():
        raise SyscallError(errno.EBADF)
    count = min(count, MAX_IO)
    if count:
        # Never consume data that cannot be copied out (a short count, as Linux).
        count = t.proc.mem.accessible(buf, count, write=True)

    def attempt() -> int:
        data = f.read(count)
        t.proc.mem.write(buf, data)
        return len(data)
    return blocking(attempt, Would)


@syscall("write")
def sys_write(k: "Kernel", t: Thread, fd: int, buf: int, count: int) -> int:
    f = t.proc.fds.get(s32(fd))
    if not f.writable():
        raise SyscallError(errno.EBADF)
    mem = t.proc.mem
    data = mem.read(buf, mem.accessible(buf, min(count, MAX_IO), write=False)) if count else b""
    return _write_result(k, t, lambda: f.write(data))


def _iovecs(t: Thread, iov: int, cnt: int) -> list[tuple[int, int]]:
    cnt = s32(cnt)
    if cnt < 0 or cnt > IOV_MAX:
        raise SyscallError(errno.EINVAL)
    raw = t.proc.mem.read(iov, 16 * cnt)
    vecs = [struct.unpack_from("<QQ", raw, 16 * i) for i in range(cnt)]
    if any(n > MAX_IO for _, n in vecs) or sum(n for _, n in vecs) > (1 << 63):
        raise SyscallError(errno.EINVAL)
    return vecs


@syscall("readv")
def sys_readv(k: "Kernel", t: Thread, fd: int, iov: int, cnt: int) -> int:
    f = t.proc.fds.get(s32(fd))
    vecs = _iovecs(t, iov, cnt)
    total = 0
    for base, n in vecs:            # only as much as the buffers can take (a short count)
        ok = t.proc.mem.accessible(base, n, write=True) if n else 0
        total += ok
        if ok < n:
            break
    if any(n for _, n in vecs) and total == 0:
        raise SyscallError(errno.EFAULT)

    def attempt() -> int:
        data = f.read(total)
        pos = 0
        for base, n in vecs:
            chunk = data[pos:pos + n]
            t.proc.mem.write(base, chunk)
            pos += len(chunk)
        return len(data)
    return blocking(attempt, Would)


@syscall("writev")
def sys_writev(k: "Kernel", t: Thread, fd: int, iov: int, cnt: int) -> int:
    f = t.proc.fds.get(s32(fd))
    if not f.writable():
        raise SyscallError(errno.EBADF)
    data = b"".join(t.proc.mem.read(base, n) for base, n in _iovecs(t, iov, cnt))
    return _write_result(k, t, lambda: f.write(data))


@syscall("pread64")
def sys_pread64(k: "Kernel", t: Thread, fd: int, buf: int, count: int, off: int) -> int:
    f = t.proc.fds.get(s32(fd))
    if s64(off) < 0:
        raise SyscallError(errno.EINVAL)
    count = min(count, MAX_IO)
    if count:
        count = t.proc.mem.accessible(buf, count, write=True)   # never read more than fits
    data = f.pread(count, off)
    t.proc.mem.write(buf, data)
    return len(data)


@syscall("pwrite64")
def sys_pwrite64(k: "Kernel", t: Thread, fd: int, buf: int, count: int, off: int) -> int:
    f = t.proc.fds.get(s32(fd))
    if s64(off) < 0:
        raise SyscallError(errno.EINVAL)
    return f.pwrite(t.proc.mem.read(buf, min(count, MAX_IO)), off)


@syscall("openat", strings=(1,))
def sys_openat(k: "Kernel", t: Thread, dirfd: int, path: int, flags: int, mode: int) -> int:
    flags &= 0xFFFF_FFFF
    guest_path = os.fsdecode(_path(t, path))
    generated = procfs.open_generated(k, guest_path) if guest_path.startswith("/proc/") else None
    if generated is not None:
        if flags & 3 != 0:                      # O_WRONLY / O_RDWR
            raise SyscallError(errno.EACCES)
        return t.proc.fds.install(generated, cloexec=bool(flags & O_CLOEXEC))
    host = resolve(t, dirfd, _path(t, path), follow=not flags & O_NOFOLLOW_GUEST)
    if flags & O_TMPFILE_GUEST == O_TMPFILE_GUEST:
        raise SyscallError(errno.EOPNOTSUPP)
    try:
        fd = os.open(host, host_open_flags(flags) | os.O_CLOEXEC, (mode & 0o7777) & ~t.proc.umask)
    except OSError as e:
        raise _oserror(e) from None
    f = HostFile(fd, os.path.abspath(host), flags & ~O_CLOEXEC, k.pagecache)
    if flags & O_DIRECTORY_GUEST and not f.is_dir:
        f.release()
        raise SyscallError(errno.ENOTDIR)
    return t.proc.fds.install(f, cloexec=bool(flags & O_CLOEXEC))


@syscall("close")
def sys_close(k: "Kernel", t: Thread, fd: int) -> int:
    t.proc.fds.close(s32(fd))
    return 0


@syscall("close_range")
def sys_close_range(k: "Kernel", t: Thread, first: int, last: int, flags: int) -> int:
    first, last = first & 0xFFFF_FFFF, last & 0xFFFF_FFFF
    if first > last or flags & ~0x6:
        raise SyscallError(errno.EINVAL)
    for fd in [fd for fd in t.proc.fds.files if first <= fd <= last]:
        if flags & 0x4:      # CLOSE_RANGE_CLOEXEC
            t.proc.fds.cloexec.add(fd)
        else:
            t.proc.fds.close(fd)
    return 0


@syscall("lseek")
def sys_lseek(k: "Kernel", t: Thread, fd: int, off: int, whence: int) -> int:
    f = t.proc.fds.get(s32(fd))
    if whence > 4:
        raise SyscallError(errno.EINVAL)
    try:
        return f.lseek(s64(off), whence)
    except OSError as e:
        raise _oserror(e) from None


def _stat_of(t: Thread, dirfd: int, path: int, flags: int) -> os.stat_result:
    p = _path(t, path)
    if not p and flags & AT_EMPTY_PATH:
        if s32(dirfd) == AT_FDCWD:
            return os.stat(t.proc.cwd)
        return t.proc.fds.get(s32(dirfd)).stat()
    try:
        follow = not flags & AT_SYMLINK_NOFOLLOW
        return os.stat(resolve(t, dirfd, p, follow=follow), follow_symlinks=follow)
    except OSError as e:
        raise _oserror(e) from None


@syscall("fstat")
def sys_fstat(k: "Kernel", t: Thread, fd: int, buf: int) -> int:
    t.proc.mem.write(buf, pack_stat(t.proc.fds.get(s32(fd)).stat()))
    return 0


@syscall("newfstatat", strings=(1,))
def sys_newfstatat(k: "Kernel", t: Thread, dirfd: int, path: int, buf: int, flags: int) -> int:
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | 0x800):
        raise SyscallError(errno.EINVAL)
    t.proc.mem.write(buf, pack_stat(_stat_of(t, dirfd, path, flags)))
    return 0


@syscall("statx", strings=(1,))
def sys_statx(k: "Kernel", t: Thread, dirfd: int, path: int, flags: int, mask: int, buf: int) -> int:
    s = _stat_of(t, dirfd, path, flags)
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


@syscall("ioctl")
def sys_ioctl(k: "Kernel", t: Thread, fd: int, req: int, arg: int) -> int:
    f = t.proc.fds.get(s32(fd))
    req &= 0xFFFF_FFFF
    if req == 0x5421:        # FIONBIO
        on = t.proc.mem.u32(arg)
        f.flags = (f.flags | O_NONBLOCK) if on else (f.flags & ~O_NONBLOCK)
        return 0
    return f.ioctl(req, arg, t.proc.mem)


F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_GETLK, F_SETLK, F_SETLKW = 0, 1, 2, 3, 4, 5, 6, 7
F_DUPFD_CLOEXEC, F_SETPIPE_SZ, F_GETPIPE_SZ, F_ADD_SEALS, F_GET_SEALS = 1030, 1031, 1032, 1033, 1034


@syscall("fcntl")
def sys_fcntl(k: "Kernel", t: Thread, fd: int, cmd: int, arg: int) -> int:
    fds = t.proc.fds
    fd = s32(fd)
    f = fds.get(fd)
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        if s32(arg) < 0 or s32(arg) >= fds.MAX_FDS:
            raise SyscallError(errno.EINVAL)
        return fds.install(f, cloexec=cmd == F_DUPFD_CLOEXEC, lowest=s32(arg))
    if cmd == F_GETFD:
        return 1 if fd in fds.cloexec else 0
    if cmd == F_SETFD:
        (fds.cloexec.add if arg & 1 else fds.cloexec.discard)(fd)
        return 0
    if cmd == F_GETFL:
        if isinstance(f, HostFile):
            host = guest_status_flags(f.flags)
            return host | (f.flags & O_NONBLOCK)
        return f.flags | 0o400000
    if cmd == F_SETFL:
        settable = os.O_APPEND | O_NONBLOCK
        f.flags = (f.flags & ~settable) | (arg & settable)
        if isinstance(f, HostFile):
            os.set_blocking(f.fd, not arg & O_NONBLOCK) if not f.is_dir else None
        return 0
    if cmd in (F_SETLK, F_SETLKW):
        return 0             # one emulated machine: record locks always succeed
    if cmd == F_GETLK:
        t.proc.mem.write(arg, struct.pack("<h", 2))   # l_type = F_UNLCK
        return 0
    if cmd == F_GETPIPE_SZ and isinstance(f, PipeEnd):
        return Pipe.CAPACITY
    if cmd == F_SETPIPE_SZ and isinstance(f, PipeEnd):
        return Pipe.CAPACITY
    if cmd == F_GET_SEALS and isinstance(f, MemFd):
        return 0
    if cmd == F_ADD_SEALS and isinstance(f, MemFd):
        return 0
    raise SyscallError(errno.EINVAL)


@syscall("dup")
def sys_dup(k: "Kernel", t: Thread, fd: int) -> int:
    return t.proc.fds.install(t.proc.fds.get(s32(fd)))


@syscall("dup3")
def sys_dup3(k: "Kernel", t: Thread, old: int, new: int, flags: int) -> int:
    old, new = s32(old), s32(new)
    f = t.proc.fds.get(old)
    if old == new or flags & ~O_CLOEXEC or not 0 <= new < t.proc.fds.MAX_FDS:
        raise SyscallError(errno.EINVAL)
    return t.proc.fds.install(f, cloexec=bool(flags & O_CLOEXEC), fd=new)


@syscall("pipe2")
def sys_pipe2(k: "Kernel", t: Thread, fds_addr: int, flags: int) -> int:
    if flags & ~(O_CLOEXEC | O_NONBLOCK | 0o40000):
        raise SyscallError(errno.EINVAL)
    t.proc.mem.check(fds_addr, 8, write=True)
    pipe = Pipe()
    cloexec = bool(flags & O_CLOEXEC)
    r = t.proc.fds.install(PipeEnd(pipe, False, flags), cloexec=cloexec)
    w = t.proc.fds.install(PipeEnd(pipe, True, flags), cloexec=cloexec)
    t.proc.mem.write_struct("<ii", fds_addr, r, w)
    return 0


@syscall("getcwd")
def sys_getcwd(k: "Kernel", t: Thread, buf: int, size: int) -> int:
    cwd = t.proc.cwd if t.proc.root is None else confine.guest_view(t.proc.root, t.proc.cwd)
    data = os.fsencode(cwd) + b"\0"
    if len(data) > size:
        raise SyscallError(errno.ERANGE)
    t.proc.mem.write(buf, data)
    return len(data)


@syscall("chdir", strings=(0,))
def sys_chdir(k: "Kernel", t: Thread, path: int) -> int:
    host = os.path.normpath(os.path.abspath(resolve(t, AT_FDCWD, _path(t, path))))
    if not os.path.isdir(host):
        raise SyscallError(errno.ENOENT if not os.path.exists(host) else errno.ENOTDIR)
    if not os.access(host, os.X_OK):
        raise SyscallError(errno.EACCES)
    t.proc.cwd = host
    return 0


@syscall("fchdir")
def sys_fchdir(k: "Kernel", t: Thread, fd: int) -> int:
    f = t.proc.fds.get(s32(fd))
    if not isinstance(f, HostFile) or not f.is_dir:
        raise SyscallError(errno.ENOTDIR)
    t.proc.cwd = f.path()
    return 0


@syscall("unlinkat", strings=(1,))
def sys_unlinkat(k: "Kernel", t: Thread, dirfd: int, path: int, flags: int) -> int:
    host = resolve(t, dirfd, _path(t, path), follow=False)
    if flags & ~AT_REMOVEDIR:
        raise SyscallError(errno.EINVAL)
    try:
        (os.rmdir if flags & AT_REMOVEDIR else os.unlink)(host)
    except OSError as e:
        raise _oserror(e) from None
    return 0


@syscall("mkdirat", strings=(1,))
def sys_mkdirat(k: "Kernel", t: Thread, dirfd: int, path: int, mode: int) -> int:
    try:
        os.mkdir(resolve(t, dirfd, _path(t, path), follow=False), (mode & 0o7777) & ~t.proc.umask)
    except OSError as e:
        raise _oserror(e) from None
    return 0


def _rename(t: Thread, olddir: int, old: int, newdir: int, new: int, flags: int) -> int:
    src, dst = resolve(t, olddir, _path(t, old), follow=False), resolve(t, newdir, _path(t, new), follow=False)
    if flags & ~1:            # only RENAME_NOREPLACE
        raise SyscallError(errno.EINVAL)
    if flags & 1 and os.path.lexists(dst):
        raise SyscallError(errno.EEXIST)
    try:
        os.rename(src, dst)
    except OSError as e:
        raise _oserror(e) from None
    return 0


@syscall("renameat", strings=(1, 3))
def sys_renameat(k: "Kernel", t: Thread, olddir: int, old: int, newdir: int, new: int) -> int:
    return _rename(t, olddir, old, newdir, new, 0)


@syscall("renameat2", strings=(1, 3))
def sys_renameat2(k: "Kernel", t: Thread, olddir: int, old: int, newdir: int, new: int, flags: int) -> int:
    return _rename(t, olddir, old, newdir, new, flags)


@syscall("symlinkat", strings=(0, 2))
def sys_symlinkat(k: "Kernel", t: Thread, target: int, dirfd: int, path: int) -> int:
    try:
        os.symlink(os.fsdecode(_path(t, target)), resolve(t, dirfd, _path(t, path), follow=False))
    except OSError as e:
        raise _oserror(e) from None
    return 0


@syscall("linkat", strings=(1, 3))
def sys_linkat(k: "Kernel", t: Thread, olddir: int, old: int, newdir: int, new: int, flags: int) -> int:
    try:
        follow = bool(flags & 0x400)           # AT_SYMLINK_FOLLOW
        os.link(resolve(t, olddir, _path(t, old), follow=follow), resolve(t, newdir, _path(t, new), follow=False),
                follow_symlinks=follow)
    except OSError as e:
        raise _oserror(e) from None
    return 0


@syscall("readlinkat", strings=(1,))
def sys_readlinkat(k: "Kernel", t: Thread, dirfd: int, path: int, buf: int, size: int) -> int:
    p = os.fsdecode(_path(t, path))
    if s32(size) <= 0:
        raise SyscallError(errno.EINVAL)
    proc = t.proc
    target = None
    for prefix in ("/proc/self/", f"/proc/{proc.pid}/", "/proc/thread-self/"):
        if p.startswith(prefix):
            rest = p[len(prefix):]
            if rest == "exe":
                target = proc.exe
            elif rest.startswith("fd/") and rest[3:].isdigit():
                target = proc.fds.get(int(rest[3:])).path()
            elif rest == "cwd":
                target = proc.cwd
            elif rest == "root" and proc.root is not None:
                target = proc.root
            if target is not None and proc.root is not None:
                target = confine.guest_view(proc.root, target)
    if target is None:
        try:
            target = os.readlink(resolve(t, dirfd, os.fsencode(p), follow=False))
        except OSError as e:
            raise _oserror(e) from None
    data = os.fsencode(target)[:size]
    t.proc.mem.write(buf, data)
    return len(data)


def _access(t: Thread, dirfd: int, path: int, mode: int, flags: int) -> int:
    if mode & ~7 or flags & ~(0x200 | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    host = resolve(t, dirfd, _path(t, path), follow=not flags & AT_SYMLINK_NOFOLLOW)
    if not os.path.lexists(host):
        raise SyscallError(errno.ENOENT)
    if not os.access(host, mode, follow_symlinks=not flags & AT_SYMLINK_NOFOLLOW):
        raise SyscallError(errno.EACCES)
    return 0


@syscall("faccessat", strings=(1,))
def sys_faccessat(k: "Kernel", t: Thread, dirfd: int, path: int, mode: int) -> int:
    return _access(t, dirfd, path, mode, 0)


@syscall("faccessat2", strings=(1,))
def sys_faccessat2(k: "Kernel", t: Thread, dirfd: int, path: int, mode: int, flags: int) -> int:
    return _access(t, dirfd, path, mode, flags)


@syscall("getdents64")
def sys_getdents64(k: "Kernel", t: Thread, fd: int, buf: int, count: int) -> int:
    f = t.proc.fds.get(s32(fd))
    if not isinstance(f, HostFile) or not f.is_dir:
        raise SyscallError(errno.ENOTDIR)
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


@syscall("ftruncate")
def sys_ftruncate(k: "Kernel", t: Thread, fd: int, length: int) -> int:
    f = t.proc.fds.get(s32(fd))
    if s64(length) < 0:
        raise SyscallError(errno.EINVAL)
    if isinstance(f, MemFd):
        f.obj.truncate(length)
        return 0
    if not isinstance(f, HostFile) or not f.writable():
        raise SyscallError(errno.EINVAL)
    try:
        os.ftruncate(f.fd, length)
    except OSError as e:
        raise _oserror(e) from None
    return 0


@syscall("truncate", strings=(0,))
def sys_truncate(k: "Kernel", t: Thread, path: int, length: int) -> int:
    try:
        os.truncate(resolve(t, AT_FDCWD, _path(t, path)), s64(length))
    except OSError as e:
        raise _oserror(e) from None
    return 0


@syscall("fsync")
def sys_fsync(k: "Kernel", t: Thread, fd: int) -> int:
    t.proc.fds.get(s32(fd))
    return 0


@syscall("fdatasync")
def sys_fdatasync(k: "Kernel", t: Thread, fd: int) -> int:
    t.proc.fds.get(s32(fd))
    return 0


@syscall("fchmod")
def sys_fchmod(k: "Kernel", t: Thread, fd: int, mode: int) -> int:
    f = t.proc.fds.get(s32(fd))
    if isinstance(f, HostFile):
        try:
            os.fchmod(f.fd, mode & 0o7777)
        except OSError as e:
            raise _oserror(e) from None
    return 0


@syscall("fchmodat", strings=(1,))
def sys_fchmodat(k: "Kernel", t: Thread, dirfd: int, path: int, mode: int) -> int:
    try:
        os.chmod(resolve(t, dirfd, _path(t, path)), mode & 0o7777)
    except OSError as e:
        raise _oserror(e) from None
    return 0


MFD_CLOEXEC, MFD_ALLOW_SEALING, MFD_HUGETLB = 1, 2, 4


@syscall("memfd_create", strings=(0,))
def sys_memfd_create(k: "Kernel", t: Thread, name: int, flags: int) -> int:
    label = t.proc.mem.read_cstr(name, 250)
    if flags & ~(MFD_CLOEXEC | MFD_ALLOW_SEALING | 0x8 | 0x10):
        raise SyscallError(errno.EINVAL)
    obj = SharedObject(k.alloc, "memfd:" + os.fsdecode(label))
    return t.proc.fds.install(MemFd(obj, os.fsdecode(label)), cloexec=bool(flags & MFD_CLOEXEC))


@syscall("umask")
def sys_umask(k: "Kernel", t: Thread, mask: int) -> int:
    old = t.proc.umask
    t.proc.umask = mask & 0o777
    return old


def _poll_ready(f, events: int) -> int:  # noqa: ANN001
    POLLIN, POLLOUT, POLLHUP = 1, 4, 0x10
    rev = 0
    if events & POLLIN and f.poll_in():
        rev |= POLLIN
    if events & POLLOUT and f.poll_out():
        rev |= POLLOUT
    if isinstance(f, PipeEnd) and not f.write_end and f.pipe.writers == 0:
        rev |= POLLHUP
    return rev


@syscall("ppoll")
def sys_ppoll(k: "Kernel", t: Thread, fds_addr: int, nfds: int, tmo: int, sigmask: int, size: int) -> int:
    import time
    if nfds > 1024:
        raise SyscallError(errno.EINVAL)
    raw = bytearray(t.proc.mem.read(fds_addr, 8 * nfds))
    deadline = None
    if tmo:
        sec, nsec = t.proc.mem.read_struct("<qq", tmo)
        deadline = time.monotonic() + sec + nsec / 1e9

    def attempt() -> int:
        ready = 0
        for i in range(nfds):
            fd, events, _ = struct.unpack_from("<ihh", raw, 8 * i)
            rev = 0
            if fd >= 0:
                f = t.proc.fds.files.get(fd)
                rev = 0x20 if f is None else _poll_ready(f, events)   # POLLNVAL
            struct.pack_into("<h", raw, 8 * i + 6, rev)
            ready += bool(rev)
        if not ready and (deadline is None or time.monotonic() < deadline):
            raise Would()
        t.proc.mem.write(fds_addr, bytes(raw))
        return ready
    return blocking(attempt, Would, deadline=deadline, on_timeout=lambda: 0)
