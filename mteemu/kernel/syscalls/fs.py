"""File syscalls: host files as qemu-user shows them, plus in-guest pipes and memfds."""
from __future__ import annotations

import ctypes
import errno
import os
import stat as stat_mod
import struct
import time
from typing import TYPE_CHECKING, Callable, Optional

from mteemu import host_signals
from mteemu.kernel.files import (O_CLOEXEC, fd_path, O_DIRECTORY_GUEST, O_NOFOLLOW_GUEST, O_NONBLOCK, O_TMPFILE_GUEST,
                                 HostFile, MemFd, OpenFile,
                                 Pipe, PipeEnd, Would, guest_status_flags, host_dup, host_open_flags, pack_stat,
                                 wait_queues)
from mteemu.kernel import namei
from mteemu.kernel.namei import PSEUDO_TOPS, Generated, HostEntry, Magic, Resolved
from mteemu.kernel.pseudofs import Dir, Link, open_node
from mteemu.kernel.mm.shared import SharedObject
from mteemu.kernel.process import Thread, Wait
from mteemu.kernel.signals import SIGPIPE, SI_USER, SigInfo
from mteemu.kernel.syscalls import blocking, s32, s64, syscall
from mteemu.kernel.uaccess import SyscallError
from mteemu.kernel.mm.addrspace import TASK_SIZE, untag
from mteemu.machine.physmem import PAGE_SIZE

if TYPE_CHECKING:
    from mteemu.kernel.kernel import Kernel

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR, AT_EMPTY_PATH = 0x100, 0x200, 0x1000
MAX_IO = 0x7FFF_F000      # Linux caps one read/write at MAX_RW_COUNT
IOV_MAX = 1024


def _fdget(t: Thread, fd: int) -> OpenFile:
    """fdget(): the open file, where an O_PATH descriptor does not count (EBADF) - calls that
    act on the file itself (lseek, ftruncate, fsync, pread, getdents...), as opposed to
    those that only name it (fstat, close, dup, *at)."""
    f = t.proc.fds.get(s32(fd))
    if f.flags & os.O_PATH:
        raise SyscallError(errno.EBADF)
    return f


def _access_ok(t: Thread, buf: int, count: int) -> None:
    """access_ok(): the whole range must lie in user space, whatever is mapped there; checked
    by vfs_read()/vfs_write() before anything happens (a write of 2^64-1 bytes to a broken
    pipe is EFAULT, not SIGPIPE; a tagged pointer without the tagged address ABI is EFAULT
    even for 0 bytes: the Linux oracle)."""
    addr = untag(buf) if t.proc.mem.tagged_addr_abi else buf
    if addr + count > TASK_SIZE:
        raise SyscallError(errno.EFAULT)


def _path(t: Thread, addr: int) -> bytes:
    # getname(): a NULL pointer is read like any other (EFAULT unless page 0 is mapped,
    # which root may do: then it names "", ENOENT; found by the Linux oracle).
    return t.proc.mem.read_cstr(addr, 4096)


def lookup(k: "Kernel", t: Thread, dirfd: int, path: bytes, follow: bool = True, reading: bool = False) -> Resolved:
    """Walk a guest path (relative to dirfd or the cwd) in the guest's world (namei.py): a
    held host entry, a generated /proc or /sys node, or a followed magic link. `follow`:
    whether a final symlink is followed. `reading`: the caller only reads (open O_RDONLY,
    stat, readlink, exec), so an absolute path is looked up in the sysroot (-L) first, as
    qemu-user does — that is how a dynamic program's loader finds its libraries. What
    changes files never goes there: the sysroot is read-only to guests. A HostEntry holds
    a descriptor: use the result in a `with` block."""
    p = os.fsdecode(path)
    if not p:
        raise SyscallError(errno.ENOENT)
    sysroot = k.sysroot_dir
    if reading and sysroot is not None and p.startswith("/") and p.split("/")[1] not in PSEUDO_TOPS:
        try:
            found = namei.walk(sysroot, "/", p, follow, {})
        except SyscallError:
            found = None
        if isinstance(found, HostEntry):
            if found.exists:
                return found.as_foreign()
            found.close()
    proc = t.proc
    dirfd = s32(dirfd)
    if p.startswith("/") or dirfd == AT_FDCWD:
        base = proc.cwd
    else:
        f = proc.fds.get(dirfd)
        if not f.is_dir:
            raise SyscallError(errno.ENOTDIR)
        base = f.path()
    from mteemu.kernel import devfs, procfs, sysfs      # the generated trees: loaded when first walked

    tops = {"proc": procfs.root(k, t), "sys": sysfs.root(k)}
    if k.options.root:
        tops["dev"] = devfs.root(k)                      # without --root, the host's /dev
    return namei.walk(k.root_dir, base, p, follow, tops)


def _deny_entry() -> SyscallError:
    """Adding or removing a name in a generated directory: may_create()/may_delete() refuse
    a user without write permission (EACCES); root passes them and finds no such
    operation (EPERM)."""
    return SyscallError(errno.EPERM if os.geteuid() == 0 else errno.EACCES)


def resolve(k: "Kernel", t: Thread, dirfd: int, path: bytes, follow: bool = True, creating: bool = False) -> HostEntry:
    """The held host entry of a guest path that a host call will change (create, remove,
    rename, link): generated names refuse it as Linux's procfs does."""
    try:
        r = lookup(k, t, dirfd, path, follow)
    except SyscallError as e:
        if e.errno == errno.ENOENT and _in_generated_dir(k, t, dirfd, path):
            raise _deny_entry() from None
        raise
    if isinstance(r, HostEntry):
        return r
    if creating:
        raise SyscallError(errno.EEXIST)
    raise _deny_entry()


def _in_generated_dir(k: "Kernel", t: Thread, dirfd: int, path: bytes) -> bool:
    parent = os.path.dirname(os.fsdecode(path).rstrip("/")) or ("/" if path.startswith(b"/") else ".")
    try:
        with lookup(k, t, dirfd, os.fsencode(parent)) as r:
            return isinstance(r, Generated)
    except SyscallError:
        return False


def _oserror(e: OSError) -> SyscallError:
    return SyscallError(e.errno or errno.EIO)


def _sigpipe(k: "Kernel", t: Thread, e: SyscallError) -> SyscallError:
    """A write's error; EPIPE also sends SIGPIPE to the writer (pipe_write())."""
    if e.errno == errno.EPIPE:
        k.send_signal(t.proc, SigInfo(SIGPIPE, SI_USER, pid=t.proc.pid), thread=t)
    return e


def _write_result(k: "Kernel", t: Thread, attempt, f: Optional[OpenFile] = None) -> "int | Wait":  # noqa: ANN001
    try:
        return blocking(attempt, Would, host=isinstance(f, HostFile), queues=None if f is None else wait_queues([f]))
    except SyscallError as e:
        raise _sigpipe(k, t, e) from None


CHUNK = 1 << 20           # data moves between the guest and a file at most this much at a time


def _read_into(t: Thread, f: OpenFile, segments: list[tuple[int, int]], pos: Optional[int] = None) -> int:
    """Read from f (at pos, for pread) into guest buffers, a chunk at a time: never one
    host object the size of the request. Only the first chunk may block (Would) or fail;
    after that a short read, a wait, an error or a stop signal sent to mteemu ends the
    call with what was done."""
    done = 0
    for base, n in segments:
        off = 0
        while off < n:
            want = min(CHUNK, n - off)
            try:
                data = f.read(want) if pos is None else f.pread(want, pos + done)
            except (Would, SyscallError, OSError):
                if done:
                    return done
                raise
            t.proc.mem.write(base + off, data)
            done += len(data)
            off += len(data)
            if len(data) < want or host_signals.pending():
                return done                  # a stop signal: what was done (the run then ends)
    return done


def _write_from(t: Thread, f: OpenFile, segments: list[tuple[int, int]], pos: Optional[int] = None) -> int:
    """Write guest buffers to f (at pos, for pwrite) a chunk at a time, as _read_into."""
    done = 0
    for base, n in segments:
        off = 0
        while off < n:
            want = min(CHUNK, n - off)
            try:
                data = t.proc.mem.read(base + off, want)
                w = f.write(data) if pos is None else f.pwrite(data, pos + done)
            except (Would, SyscallError, OSError):
                if done:
                    return done
                raise
            done += w
            off += w
            if w < want or host_signals.pending():
                return done
    return done


@syscall("read")
def sys_read(k: "Kernel", t: Thread, fd: int, buf: int, count: int) -> "int | Wait":
    f = t.proc.fds.get(s32(fd))
    if not f.readable():
        raise SyscallError(errno.EBADF)
    _access_ok(t, buf, count)
    if f.is_dir:
        raise SyscallError(errno.EISDIR)     # the directory's read op, before any copy
    view = t.proc.mem.span(buf, count, write=True)
    if view is not None:
        # A buffer in one page that takes the whole count: one read, one copy (the
        # general path below does the same in more steps, and waits if it would block).
        try:
            data = f.read(count)
        except Would:
            pass
        else:
            view[:len(data)] = data
            return len(data)
    if count:
        # Never consume data that cannot be copied out (a short count, as Linux).
        asked = count
        try:
            count = t.proc.mem.accessible(buf, count, write=True)
        except SyscallError:
            # Nothing to copy, so no fault (the Linux oracle): a pipe with no data waits or
            # says EAGAIN as any read would (below), a file at its end returns 0.
            if not isinstance(f, PipeEnd):
                if _at_end(f):
                    return 0
                raise
            count = 0
        if isinstance(f, PipeEnd) and count < asked:
            return blocking(lambda: _pipe_read_short(t, f, buf, asked, count), Would, queues=wait_queues([f]))
    return blocking(lambda: _read_into(t, f, [(buf, count)]) if count else len(f.read(0)), Would,
                    host=isinstance(f, HostFile), queues=wait_queues([f]))


def _at_end(f: OpenFile) -> bool:
    """A read would return nothing now: a regular file at or past its end."""
    if isinstance(f, HostFile) and not f.is_dir:
        try:
            st = os.fstat(f.fd)
        except OSError:
            return False
        return stat_mod.S_ISREG(st.st_mode) and f.lseek(0, os.SEEK_CUR) >= st.st_size
    return False


def _pipe_read_short(t: Thread, f: PipeEnd, buf: int, asked: int, fits: int) -> int:
    """pipe_read() into a buffer that faults `fits` bytes in: the pipe's data is copied
    out a pipe buffer at a time, and a copy that comes up short is EFAULT with nothing
    consumed (found with the Linux oracle; other files give the short count)."""
    if not f.pipe.buf and f.pipe.writers:
        f.read(asked)                        # empty: wait (or EAGAIN) as any read would
    if fits < min(asked, len(f.pipe.buf), PAGE_SIZE):
        raise SyscallError(errno.EFAULT)
    return _read_into(t, f, [(buf, fits)])


@syscall("write")
def sys_write(k: "Kernel", t: Thread, fd: int, buf: int, count: int) -> "int | Wait":
    f = t.proc.fds.get(s32(fd))
    if not f.writable():
        raise SyscallError(errno.EBADF)
    _access_ok(t, buf, count)
    view = t.proc.mem.span(buf, count, write=False)
    if view is not None:
        # As sys_read: a buffer in one page, written in one go unless it would block.
        try:
            return f.write(bytes(view))
        except Would:
            pass
        except SyscallError as e:
            raise _sigpipe(k, t, e) from None
    asked = min(count, MAX_IO)
    count = t.proc.mem.accessible(buf, asked, write=False) if count else 0
    if isinstance(f, PipeEnd) and count < asked:
        # pipe_write() copies a page at a time and a page that comes up short ends the
        # call, EFAULT when nothing was written (found with the Linux oracle).
        count -= count % PAGE_SIZE
        if not count:
            raise SyscallError(errno.EFAULT)
    if not count:
        return _write_result(k, t, lambda: f.write(b""), f)
    return _write_result(k, t, lambda: _write_from(t, f, [(buf, count)]), f)


def _iovecs(t: Thread, iov: int, cnt: int) -> list[tuple[int, int]]:
    """The iovec array, with its total cut to MAX_RW_COUNT as import_iovec() does."""
    cnt = s32(cnt)
    if cnt < 0 or cnt > IOV_MAX:
        raise SyscallError(errno.EINVAL)
    raw = t.proc.mem.read(iov, 16 * cnt)
    vecs = [struct.unpack_from("<QQ", raw, 16 * i) for i in range(cnt)]
    if any(n >= 1 << 63 for _, n in vecs):
        raise SyscallError(errno.EINVAL)
    out, left = [], MAX_IO
    for base, n in vecs:
        out.append((base, min(n, left)))
        left -= out[-1][1]
    return out


@syscall("readv")
def sys_readv(k: "Kernel", t: Thread, fd: int, iov: int, cnt: int) -> "int | Wait":
    f = t.proc.fds.get(s32(fd))
    vecs = _iovecs(t, iov, cnt)
    segments = []
    for base, n in vecs:            # only as much as the buffers can take (a short count)
        ok = t.proc.mem.accessible(base, n, write=True) if n else 0
        segments.append((base, ok))
        if ok < n:
            break
    if any(n for _, n in vecs) and not any(n for _, n in segments):
        raise SyscallError(errno.EFAULT)
    return blocking(lambda: _read_into(t, f, segments), Would, host=isinstance(f, HostFile), queues=wait_queues([f]))


@syscall("writev")
def sys_writev(k: "Kernel", t: Thread, fd: int, iov: int, cnt: int) -> "int | Wait":
    f = t.proc.fds.get(s32(fd))
    if not f.writable():
        raise SyscallError(errno.EBADF)
    vecs = _iovecs(t, iov, cnt)
    return _write_result(k, t, lambda: _write_from(t, f, vecs), f)


def _positional(t: Thread, fd: int, buf: int, count: int, off: int, write: bool) -> "tuple[OpenFile, int]":
    """ksys_pread64()/ksys_pwrite64() then vfs_read()/vfs_write(), in their order (the Linux
    oracle's fuzzer checked it): a negative offset, a file without positional I/O (a
    pipe...), the wrong access mode, the range (access_ok), a directory; then how many
    bytes of the buffer can be copied (a short count, EFAULT if none)."""
    if s64(off) < 0:
        raise SyscallError(errno.EINVAL)
    f = _fdget(t, fd)
    positional = type(f).pwrite is not OpenFile.pwrite if write else type(f).pread is not OpenFile.pread
    if not positional:
        raise SyscallError(errno.ESPIPE)
    if not (f.writable() if write else f.readable()):
        raise SyscallError(errno.EBADF)
    _access_ok(t, buf, count)
    if f.is_dir and not write:
        raise SyscallError(errno.EISDIR)
    count = min(count, MAX_IO)
    return f, t.proc.mem.accessible(buf, count, write=not write) if count else 0


@syscall("pread64")
def sys_pread64(k: "Kernel", t: Thread, fd: int, buf: int, count: int, off: int) -> int:
    f, count = _positional(t, fd, buf, count, off, write=False)
    return _read_into(t, f, [(buf, count)], pos=off) if count else len(f.pread(0, off))


@syscall("pwrite64")
def sys_pwrite64(k: "Kernel", t: Thread, fd: int, buf: int, count: int, off: int) -> int:
    f, count = _positional(t, fd, buf, count, off, write=True)
    return _write_from(t, f, [(buf, count)], pos=off) if count else f.pwrite(b"", off)


@syscall("openat", strings=(1,))
def sys_openat(k: "Kernel", t: Thread, dirfd: int, path: int, flags: int, mode: int) -> "int | Wait":
    flags &= 0xFFFF_FFFF
    if flags & os.O_PATH:
        # build_open_how(): O_PATH keeps only O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC.
        flags &= os.O_PATH | O_DIRECTORY_GUEST | O_NOFOLLOW_GUEST | O_CLOEXEC
    if flags & os.O_CREAT and flags & O_DIRECTORY_GUEST:
        raise SyscallError(errno.EINVAL)     # build_open_flags(): never both (before the path or dirfd)
    raw = _path(t, path)
    reading = flags & 3 == os.O_RDONLY and not flags & (os.O_CREAT | os.O_TRUNC)
    try:
        r = lookup(k, t, dirfd, raw, follow=not flags & O_NOFOLLOW_GUEST, reading=reading)
    except SyscallError as e:
        if e.errno == errno.ENOENT and flags & os.O_CREAT and _in_generated_dir(k, t, dirfd, raw):
            raise SyscallError(errno.EACCES) from None    # procfs has no create(): may_o_create
        raise
    with r:
        if not isinstance(r, HostEntry):
            if flags & os.O_CREAT and flags & os.O_EXCL:
                raise SyscallError(errno.EEXIST)
            f: OpenFile = _open_generated(r, flags)
        else:
            if flags & O_TMPFILE_GUEST == O_TMPFILE_GUEST:
                raise SyscallError(errno.EOPNOTSUPP)
            if r.st is not None and stat_mod.S_ISFIFO(r.st.st_mode) and not flags & (O_NONBLOCK | os.O_PATH):
                return _FifoOpen(k, t, r, flags).wait()
            f = _open_host(k, r, flags, (mode & 0o7777) & ~t.proc.umask)
    if flags & O_DIRECTORY_GUEST and not f.is_dir:
        f.release()
        raise SyscallError(errno.ENOTDIR)
    return t.proc.fds.install(f, cloexec=bool(flags & O_CLOEXEC))


def _open_host(k: "Kernel", r: HostEntry, flags: int, mode: int) -> HostFile:
    """openat() relative to the held directory, never following a final symlink: the walk
    followed the one it was asked to, and any other is ELOOP (or, with O_PATH, the link).
    A FIFO is opened non-blocking on the host: waiting for its peer is _FifoOpen's."""
    if r.trailing_slash and flags & os.O_CREAT:
        raise SyscallError(errno.EISDIR)             # open_last_lookups(): "name/" is no file
    fifo = r.st is not None and stat_mod.S_ISFIFO(r.st.st_mode)
    try:
        fd = r.open(host_open_flags(flags) | (os.O_NONBLOCK if fifo else 0), mode)
    except OSError as e:
        raise _oserror(e) from None
    if namei.pseudo_fs(fd) is not None:          # reached the host's kernel state after all
        os.close(fd)
        raise SyscallError(errno.ENOENT)
    return HostFile(fd, r.gpath, flags & ~O_CLOEXEC, k.pagecache, foreign=r.foreign)


class _FifoOpen:
    """A blocking open of a host FIFO (fifo_open()): a reader waits for a writer, a writer
    for a reader, as a blocked guest thread that signals and --timeout can end and that
    another guest process can wake by opening the other end. A reader holds its end while
    it waits (so that the writer's open succeeds) and is done when data or a hang-up shows
    a writer came; Linux wakes it when the writer opens (a writer that opens and neither
    writes nor closes keeps this reader waiting: a documented difference)."""

    def __init__(self, k: "Kernel", t: Thread, r: HostEntry, flags: int) -> None:
        self.k, self.t, self.entry, self.flags = k, t, r, flags
        self.file: Optional[HostFile] = None

    def wait(self) -> "int | Wait":
        self.entry = _keep(self.entry)
        return blocking(self.attempt, Would, host=True)

    def attempt(self) -> int:
        acc = self.flags & 3
        if self.file is None:
            try:
                self.file = _open_host(self.k, self.entry, self.flags, 0)
            except SyscallError as e:
                if e.errno == errno.ENXIO and acc == os.O_WRONLY:
                    raise Would() from None           # no reader yet
                raise
        if acc == os.O_RDONLY and not self.file.poll_in():
            raise Would()                             # no writer has come yet
        f, self.file = self.file, None
        return self.t.proc.fds.install(f, cloexec=bool(self.flags & O_CLOEXEC))

    def __del__(self) -> None:                        # abandoned (a signal, the run's end)
        if self.file is not None:
            self.file.release()


def _keep(r: HostEntry) -> HostEntry:
    """A HostEntry that outlives the `with` that walked it (its own held directory)."""
    return HostEntry(host_dup(r.dirfd), r.name, r.gpath, r.st, r.foreign)


def open_for_reading(k: "Kernel", t: Thread, path: bytes) -> OpenFile:
    """openat(AT_FDCWD, path, O_RDONLY) as t would make it, without an fd: a debugger
    reads the tracee's files (GDB's vFile:open) in the tracee's world."""
    with lookup(k, t, AT_FDCWD, path, follow=True, reading=True) as r:
        if isinstance(r, HostEntry):
            return _open_host(k, r, os.O_RDONLY, 0)
        return _open_generated(r, os.O_RDONLY)


def _open_generated(r: "Generated | Magic", flags: int) -> OpenFile:
    if isinstance(r, Magic):
        return r.link.reopen(flags)
    if isinstance(r.node, Link):                 # O_NOFOLLOW on a link: ELOOP, as Linux
        raise SyscallError(errno.ELOOP)
    return open_node(r.node, r.gpath, flags, os.geteuid())


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
    f = _fdget(t, fd)
    if whence > 4:
        raise SyscallError(errno.EINVAL)
    try:
        return f.lseek(s64(off), whence)
    except OSError as e:
        raise _oserror(e) from None


def _stat_of(k: "Kernel", t: Thread, dirfd: int, path: int, flags: int) -> os.stat_result:
    p = _path(t, path)
    if not p and flags & AT_EMPTY_PATH:
        if s32(dirfd) == AT_FDCWD:
            p = b"."
        else:
            return t.proc.fds.get(s32(dirfd)).stat()
    with lookup(k, t, dirfd, p, follow=not flags & AT_SYMLINK_NOFOLLOW, reading=True) as r:
        if isinstance(r, Magic):
            return r.link.target_stat()
        if isinstance(r, Generated):
            return r.node.stat(r.gpath)
        if r.st is None:
            raise SyscallError(errno.ENOENT)
        return r.st                 # the walk's lstat: a followed link was resolved already


@syscall("fstat")
def sys_fstat(k: "Kernel", t: Thread, fd: int, buf: int) -> int:
    t.proc.mem.write(buf, pack_stat(t.proc.fds.get(s32(fd)).stat()))
    return 0


@syscall("newfstatat", strings=(1,))
def sys_newfstatat(k: "Kernel", t: Thread, dirfd: int, path: int, buf: int, flags: int) -> int:
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | 0x800):
        raise SyscallError(errno.EINVAL)
    t.proc.mem.write(buf, pack_stat(_stat_of(k, t, dirfd, path, flags)))
    return 0


@syscall("statx", strings=(1,))
def sys_statx(k: "Kernel", t: Thread, dirfd: int, path: int, flags: int, mask: int, buf: int) -> int:
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
        if isinstance(f, HostFile):
            host = guest_status_flags(f.flags)
            return host | (f.flags & O_NONBLOCK)
        # O_LARGEFILE comes from open() (force_o_largefile()); a pipe's description has none.
        return f.flags if isinstance(f, PipeEnd) else f.flags | 0o400000
    if cmd == F_SETFL:
        settable = os.O_APPEND | O_NONBLOCK
        f.flags = (f.flags & ~settable) | (arg & settable)
        if isinstance(f, HostFile) and not f.is_dir and not f.foreign and not f.is_fifo:
            os.set_blocking(f.fd, not arg & O_NONBLOCK)
        # A foreign description (stdio) is shared with the host: its O_NONBLOCK stays the
        # host's, and the guest's is emulated (HostFile.read/write answer EAGAIN).
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
    if old == new or flags & ~O_CLOEXEC:
        raise SyscallError(errno.EINVAL)     # ksys_dup3(): before either descriptor is looked at
    f = t.proc.fds.get(old)
    return t.proc.fds.install(f, cloexec=bool(flags & O_CLOEXEC), fd=new & 0xFFFFFFFF)


@syscall("pipe2")
def sys_pipe2(k: "Kernel", t: Thread, fds_addr: int, flags: int) -> int:
    if flags & ~(O_CLOEXEC | O_NONBLOCK | 0o200000):    # O_DIRECT is 0o200000 on arm64 (0o40000: O_DIRECTORY)
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


@syscall("chdir", strings=(0,))
def sys_chdir(k: "Kernel", t: Thread, path: int) -> int:
    raw = _path(t, path)
    with lookup(k, t, AT_FDCWD, raw) as r:
        if isinstance(r, Magic):                   # chdir("/proc/self/fd/3"): where that directory is
            target = r.link.dir_path()
            if target is None:
                raise SyscallError(errno.ENOTDIR)
            with lookup(k, t, AT_FDCWD, os.fsencode(target)) as there:
                _enter(t, there)
        else:
            _enter(t, r)
    return 0


@syscall("fchdir")
def sys_fchdir(k: "Kernel", t: Thread, fd: int) -> int:
    f = t.proc.fds.get(s32(fd))
    if not f.is_dir:
        raise SyscallError(errno.ENOTDIR)
    t.proc.cwd = f.path()
    return 0


@syscall("unlinkat", strings=(1,))
def sys_unlinkat(k: "Kernel", t: Thread, dirfd: int, path: int, flags: int) -> int:
    if flags & ~AT_REMOVEDIR:
        raise SyscallError(errno.EINVAL)
    raw = _path(t, path)
    last = raw.rstrip(b"/").rsplit(b"/", 1)[-1]
    if last in (b".", b"..") and raw.strip(b"/"):
        # do_rmdir()/do_unlinkat() judge the last component by its name, before any lookup:
        # rmdir "." is EINVAL and ".." ENOTEMPTY; unlink of either is EISDIR.
        if not flags & AT_REMOVEDIR:
            raise SyscallError(errno.EISDIR)
        raise SyscallError(errno.EINVAL if last == b"." else errno.ENOTEMPTY)
    with resolve(k, t, dirfd, raw, follow=False) as e:
        if e.is_root:
            raise SyscallError(errno.EBUSY)        # the guest's "/" is a mount point (do_rmdir)
        try:
            (os.rmdir if flags & AT_REMOVEDIR else os.unlink)(e.name, dir_fd=e.dirfd)
        except OSError as err:
            raise _oserror(err) from None
    return 0


@syscall("mkdirat", strings=(1,))
def sys_mkdirat(k: "Kernel", t: Thread, dirfd: int, path: int, mode: int) -> int:
    with resolve(k, t, dirfd, _path(t, path), follow=False, creating=True) as e:
        try:
            os.mkdir(e.name, (mode & 0o7777) & ~t.proc.umask, dir_fd=e.dirfd)
        except OSError as err:
            raise _oserror(err) from None
    return 0


RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
_libc = ctypes.CDLL(None, use_errno=True)      # renameat2(): Python's os.rename takes no flags


def _rename(k: "Kernel", t: Thread, olddir: int, old: int, newdir: int, new: int, flags: int) -> int:
    if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == RENAME_NOREPLACE | RENAME_EXCHANGE:
        raise SyscallError(errno.EINVAL)
    with resolve(k, t, olddir, _path(t, old), follow=False) as src, \
            resolve(k, t, newdir, _path(t, new), follow=False) as dst:
        if src.is_root or dst.is_root:
            raise SyscallError(errno.EBUSY)
        if _libc.renameat2(src.dirfd, os.fsencode(src.name), dst.dirfd, os.fsencode(dst.name), flags) != 0:
            raise SyscallError(ctypes.get_errno() or errno.EIO)
    return 0


@syscall("renameat", strings=(1, 3))
def sys_renameat(k: "Kernel", t: Thread, olddir: int, old: int, newdir: int, new: int) -> int:
    return _rename(k, t, olddir, old, newdir, new, 0)


@syscall("renameat2", strings=(1, 3))
def sys_renameat2(k: "Kernel", t: Thread, olddir: int, old: int, newdir: int, new: int, flags: int) -> int:
    return _rename(k, t, olddir, old, newdir, new, flags)


@syscall("symlinkat", strings=(0, 2))
def sys_symlinkat(k: "Kernel", t: Thread, target: int, dirfd: int, path: int) -> int:
    text = os.fsdecode(_path(t, target))
    if not text:
        raise SyscallError(errno.ENOENT)     # getname(""): before the new name is read
    with resolve(k, t, dirfd, _path(t, path), follow=False, creating=True) as e:
        try:
            os.symlink(text, e.name, dir_fd=e.dirfd)
        except OSError as err:
            raise _oserror(err) from None
    return 0


@syscall("linkat", strings=(1, 3))
def sys_linkat(k: "Kernel", t: Thread, olddir: int, old: int, newdir: int, new: int, flags: int) -> int:
    follow = bool(flags & 0x400)           # AT_SYMLINK_FOLLOW
    with lookup(k, t, olddir, _path(t, old), follow=follow) as src:
        if not isinstance(src, HostEntry):
            raise SyscallError(errno.EXDEV)    # a generated file cannot be linked onto the host
        try:                                   # do_linkat(): the old name is looked up before the new is read
            os.stat(src.name, dir_fd=src.dirfd, follow_symlinks=follow)
        except OSError as err:
            raise _oserror(err) from None
        with resolve(k, t, newdir, _path(t, new), follow=False, creating=True) as dst:
            try:
                os.link(src.name, dst.name, src_dir_fd=src.dirfd, dst_dir_fd=dst.dirfd, follow_symlinks=False)
            except OSError as err:
                raise _oserror(err) from None
    return 0


@syscall("readlinkat", strings=(1,))
def sys_readlinkat(k: "Kernel", t: Thread, dirfd: int, path: int, buf: int, size: int) -> int:
    if s32(size) <= 0:
        raise SyscallError(errno.EINVAL)
    with lookup(k, t, dirfd, _path(t, path), follow=False, reading=True) as r:
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
                raise _oserror(e) from None
    data = os.fsencode(target)[:size]
    t.proc.mem.write(buf, data)
    return len(data)


def _access(k: "Kernel", t: Thread, dirfd: int, path: int, mode: int, flags: int) -> int:
    if mode & ~7 or flags & ~(0x200 | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    follow = not flags & AT_SYMLINK_NOFOLLOW
    with lookup(k, t, dirfd, _path(t, path), follow=follow, reading=not mode & 2) as r:
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
def sys_faccessat(k: "Kernel", t: Thread, dirfd: int, path: int, mode: int) -> int:
    return _access(k, t, dirfd, path, mode, 0)


@syscall("faccessat2", strings=(1,))
def sys_faccessat2(k: "Kernel", t: Thread, dirfd: int, path: int, mode: int, flags: int) -> int:
    return _access(k, t, dirfd, path, mode, flags)


@syscall("getdents64")
def sys_getdents64(k: "Kernel", t: Thread, fd: int, buf: int, count: int) -> int:
    f = _fdget(t, fd)
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
        raise _oserror(e) from None
    return 0


def _chmod(f: OpenFile, mode: int) -> int:
    if isinstance(f, (PipeEnd, MemFd)):
        return 0             # anonymous inodes: nothing outside the guest's world sees the mode
    _may_change_attrs(f)
    try:
        os.fchmod(f.fd, mode & 0o7777)   # type: ignore[attr-defined]
    except OSError as e:
        raise _oserror(e) from None
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
def sys_ftruncate(k: "Kernel", t: Thread, fd: int, length: int) -> int:
    if s64(length) < 0:
        raise SyscallError(errno.EINVAL)     # do_sys_ftruncate(): before the fd is looked up
    return _truncate(_fdget(t, fd), length)


@syscall("truncate", strings=(0,))
def sys_truncate(k: "Kernel", t: Thread, path: int, length: int) -> int:
    with lookup(k, t, AT_FDCWD, _path(t, path)) as r:
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
            raise _oserror(e) from None
        try:
            os.ftruncate(fd, s64(length))
        except OSError as e:
            raise _oserror(e) from None
        finally:
            os.close(fd)
    return 0


@syscall("fsync")
def sys_fsync(k: "Kernel", t: Thread, fd: int) -> int:
    return _sync(_fdget(t, fd), os.fsync)


@syscall("fdatasync")
def sys_fdatasync(k: "Kernel", t: Thread, fd: int) -> int:
    return _sync(_fdget(t, fd), os.fdatasync)


def _sync(f: OpenFile, flush: Callable[[int], None]) -> int:
    """vfs_fsync(): a host file's data reaches its disk; a pipe or socket has no fsync
    (EINVAL); generated and in-memory files have nothing to write."""
    if isinstance(f, PipeEnd):
        raise SyscallError(errno.EINVAL)
    if isinstance(f, HostFile) and not f.is_dir:
        try:
            flush(f.fd)
        except OSError as e:
            raise _oserror(e) from None
    return 0


@syscall("fchmod")
def sys_fchmod(k: "Kernel", t: Thread, fd: int, mode: int) -> int:
    return _chmod(t.proc.fds.get(s32(fd)), mode)


@syscall("fchmodat", strings=(1,))
def sys_fchmodat(k: "Kernel", t: Thread, dirfd: int, path: int, mode: int) -> int:
    with lookup(k, t, dirfd, _path(t, path)) as r:
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
            raise _oserror(e) from None
    return 0


def _chown_allowed(t: Thread) -> None:
    """chown changes who owns a host file: only inside the guest's own root. Without --root
    every host file is the host's, and the guest is refused as an unprivileged caller
    changing another's file would be (EPERM), even when mteemu runs as root."""
    if t.proc.root is None:
        raise SyscallError(errno.EPERM)


def _chown(t: Thread, f: OpenFile, uid: int, gid: int) -> int:
    if isinstance(f, (PipeEnd, MemFd)):
        return 0             # anonymous inodes, as for _chmod
    _may_change_attrs(f)
    _chown_allowed(t)
    try:
        os.fchown(f.fd, s32(uid), s32(gid))   # type: ignore[attr-defined]
    except OSError as e:
        raise _oserror(e) from None
    return 0


@syscall("fchown")
def sys_fchown(k: "Kernel", t: Thread, fd: int, uid: int, gid: int) -> int:
    return _chown(t, t.proc.fds.get(s32(fd)), uid, gid)


@syscall("fchownat", strings=(1,))
def sys_fchownat(k: "Kernel", t: Thread, dirfd: int, path: int, uid: int, gid: int, flags: int) -> int:
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    raw = _path(t, path)
    if not raw and flags & AT_EMPTY_PATH and s32(dirfd) != AT_FDCWD:
        return _chown(t, t.proc.fds.get(s32(dirfd)), uid, gid)
    with lookup(k, t, dirfd, raw or b".", follow=not flags & AT_SYMLINK_NOFOLLOW) as r:
        if not isinstance(r, HostEntry):
            return _with_reopened(r, os.O_PATH, lambda f: _chown(t, f, uid, gid))
        _chown_allowed(t)
        try:
            os.chown(r.name, s32(uid), s32(gid), dir_fd=r.dirfd, follow_symlinks=False)
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
def sys_ppoll(k: "Kernel", t: Thread, fds_addr: int, nfds: int, tmo: int, sigmask: int,
              size: int) -> "int | Wait":
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
    # -ERESTARTNOHAND: a handler that runs makes it EINTR, SA_RESTART or not (pause() too).
    files = [f for i in range(nfds) if (f := t.proc.fds.files.get(struct.unpack_from("<i", raw, 8 * i)[0]))]
    return blocking(attempt, Would, deadline=deadline, on_timeout=lambda: 0, restartable=False,
                    queues=wait_queues(files))


@syscall("sendfile")
def sys_sendfile(k: "Kernel", t: Thread, out_fd: int, in_fd: int, offset: int, count: int) -> "int | Wait":
    """sendfile(): copy between descriptors without user memory (cat, cp use it). With an
    offset pointer the input's file position is left alone and the pointer advanced."""
    fin, fout = t.proc.fds.get(s32(in_fd)), t.proc.fds.get(s32(out_fd))
    if not fin.readable() or not fout.writable():
        raise SyscallError(errno.EBADF)
    count = min(count, MAX_IO)
    start = None
    if offset:
        start = s64(t.proc.mem.u64(offset))
        if start < 0:
            raise SyscallError(errno.EINVAL)

    def attempt() -> int:
        data = fin.pread(count, start) if start is not None else fin.read(count)
        done = 0
        while done < len(data):
            done += fout.write(data[done:])
        if start is not None:
            t.proc.mem.put_u64(offset, start + done)
        return done
    return _write_result(k, t, attempt)


UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


@syscall("utimensat", strings=(1,))
def sys_utimensat(k: "Kernel", t: Thread, dirfd: int, path: int, times: int, flags: int) -> int:
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
            raise _oserror(e) from None
        return 0

    if not path:                                     # futimens(fd, times)
        f = t.proc.fds.get(s32(dirfd))
        _may_change_attrs(f)
        return apply(f.fd)                           # type: ignore[attr-defined]
    with lookup(k, t, dirfd, _path(t, path), follow=not flags & AT_SYMLINK_NOFOLLOW) as r:
        if not isinstance(r, HostEntry):
            def on_reopened(f: "HostFile") -> int:
                _may_change_attrs(f)
                return apply(f.fd)
            return _with_reopened(r, os.O_PATH, on_reopened)
        return apply(r.dirfd, r.name)


@syscall("fadvise64")
def sys_fadvise64(k: "Kernel", t: Thread, fd: int, offset: int, length: int, advice: int) -> int:
    """ksys_fadvise64_64(): advice only (the page cache is the host's): EBADF, ESPIPE for a
    pipe, EINVAL for a negative length or an unknown advice, else 0."""
    f = _fdget(t, fd)
    if isinstance(f, PipeEnd) or getattr(f, "is_fifo", False):
        raise SyscallError(errno.ESPIPE)
    if s64(length) < 0 or not 0 <= s32(advice) <= 5:
        raise SyscallError(errno.EINVAL)
    return 0
