"""Moving data (fs/read_write.c): read, write, their vector and positional forms, lseek and
sendfile.
"""
from __future__ import annotations

import errno
import os
import stat as stat_mod
import struct
from typing import TYPE_CHECKING, Optional

from mteemu import host_signals
from mteemu.kernel.fs.file import (
    OpenFile,
    Would,
    wait_queues,
)
from mteemu.kernel.fs.hostfile import HostFile
from mteemu.kernel.fs.pipe import PipeEnd
from mteemu.kernel.fs.vfs import oserror
from mteemu.kernel.process import Thread, Wait, blocking
from mteemu.kernel.signals import SI_USER, SIGPIPE, SigInfo
from mteemu.kernel.syscalls.args import access_ok, fdget, s32, s64
from mteemu.kernel.syscalls.registry import Support, syscall
from mteemu.kernel.uaccess import SyscallError
from mteemu.machine.physmem import PAGE_SIZE

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi

MAX_IO = 0x7FFF_F000      # Linux caps one read/write at MAX_RW_COUNT
IOV_MAX = 1024


def _sigpipe(k: "KernelApi", t: Thread, e: SyscallError) -> SyscallError:
    """A write's error; EPIPE also sends SIGPIPE to the writer (pipe_write())."""
    if e.errno == errno.EPIPE:
        k.signals.send(t.proc, SigInfo(SIGPIPE, SI_USER, pid=t.proc.pid), thread=t)
    return e


def _write_result(k: "KernelApi", t: Thread, attempt, f: Optional[OpenFile] = None) -> "int | Wait":  # noqa: ANN001
    try:
        return blocking(attempt, Would, host=isinstance(f, HostFile), queues=None if f is None else wait_queues([f]))
    except SyscallError as e:
        raise _sigpipe(k, t, e) from None


CHUNK = 1 << 20           # data moves between the guest and a file at most this much at a time


def read_into(t: Thread, f: OpenFile, segments: list[tuple[int, int]], pos: Optional[int] = None) -> int:
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


def write_from(t: Thread, f: OpenFile, segments: list[tuple[int, int]], pos: Optional[int] = None) -> int:
    """Write guest buffers to f (at pos, for pwrite) a chunk at a time, as read_into."""
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


@syscall("read", support=Support.PARTIAL,
         note=("a read from a host terminal blocks every guest thread; a transfer that meets an error"
               " or a wait after its first MiB returns the short count"))
def sys_read(k: "KernelApi", t: Thread, fd: int, buf: int, count: int) -> "int | Wait":
    f = t.proc.fds.get(s32(fd))
    if not f.readable():
        raise SyscallError(errno.EBADF)
    access_ok(t, buf, count)
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
    return blocking(lambda: read_into(t, f, [(buf, count)]) if count else len(f.read(0)), Would,
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
    return read_into(t, f, [(buf, fits)])


@syscall("write")
def sys_write(k: "KernelApi", t: Thread, fd: int, buf: int, count: int) -> "int | Wait":
    f = t.proc.fds.get(s32(fd))
    if not f.writable():
        raise SyscallError(errno.EBADF)
    access_ok(t, buf, count)
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
    return _write_result(k, t, lambda: write_from(t, f, [(buf, count)]), f)


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
def sys_readv(k: "KernelApi", t: Thread, fd: int, iov: int, cnt: int) -> "int | Wait":
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
    return blocking(lambda: read_into(t, f, segments), Would, host=isinstance(f, HostFile), queues=wait_queues([f]))


@syscall("writev")
def sys_writev(k: "KernelApi", t: Thread, fd: int, iov: int, cnt: int) -> "int | Wait":
    f = t.proc.fds.get(s32(fd))
    if not f.writable():
        raise SyscallError(errno.EBADF)
    vecs = _iovecs(t, iov, cnt)
    return _write_result(k, t, lambda: write_from(t, f, vecs), f)


def _positional(t: Thread, fd: int, buf: int, count: int, off: int, write: bool) -> "tuple[OpenFile, int]":
    """ksys_pread64()/ksys_pwrite64() then vfs_read()/vfs_write(), in their order (the Linux
    oracle's fuzzer checked it): a negative offset, a file without positional I/O (a
    pipe...), the wrong access mode, the range (access_ok), a directory; then how many
    bytes of the buffer can be copied (a short count, EFAULT if none)."""
    if s64(off) < 0:
        raise SyscallError(errno.EINVAL)
    f = fdget(t, fd)
    positional = type(f).pwrite is not OpenFile.pwrite if write else type(f).pread is not OpenFile.pread
    if not positional:
        raise SyscallError(errno.ESPIPE)
    if not (f.writable() if write else f.readable()):
        raise SyscallError(errno.EBADF)
    access_ok(t, buf, count)
    if f.is_dir and not write:
        raise SyscallError(errno.EISDIR)
    count = min(count, MAX_IO)
    return f, t.proc.mem.accessible(buf, count, write=not write) if count else 0


@syscall("pread64")
def sys_pread64(k: "KernelApi", t: Thread, fd: int, buf: int, count: int, off: int) -> int:
    f, count = _positional(t, fd, buf, count, off, write=False)
    return read_into(t, f, [(buf, count)], pos=off) if count else len(f.pread(0, off))


@syscall("pwrite64")
def sys_pwrite64(k: "KernelApi", t: Thread, fd: int, buf: int, count: int, off: int) -> int:
    f, count = _positional(t, fd, buf, count, off, write=True)
    return write_from(t, f, [(buf, count)], pos=off) if count else f.pwrite(b"", off)


@syscall("lseek")
def sys_lseek(k: "KernelApi", t: Thread, fd: int, off: int, whence: int) -> int:
    f = fdget(t, fd)
    if whence > 4:
        raise SyscallError(errno.EINVAL)
    try:
        return f.lseek(s64(off), whence)
    except OSError as e:
        raise oserror(e) from None


@syscall("sendfile")
def sys_sendfile(k: "KernelApi", t: Thread, out_fd: int, in_fd: int, offset: int, count: int) -> "int | Wait":
    """sendfile(): copy between descriptors without user memory (cat, cp use it). With an
    offset pointer the input's file position is left alone and the pointer advanced."""
    fin, fout = t.proc.fds.get(s32(in_fd)), t.proc.fds.get(s32(out_fd))
    if not fin.readable() or not fout.writable():
        raise SyscallError(errno.EBADF)
    count = min(count, MAX_IO)
    start = _offset(t, offset)

    def attempt() -> int:
        data = fin.pread(count, start) if start is not None else fin.read(count)
        done = 0
        while done < len(data):
            done += fout.write(data[done:])
        if start is not None:
            t.proc.mem.put_u64(offset, start + done)
        return done
    return _write_result(k, t, attempt)


COPY_FILE_RANGE_FLAGS = 0          # none defined


@syscall("copy_file_range")
def sys_copy_file_range(k: "KernelApi", t: Thread, fd_in: int, off_in: int, fd_out: int, off_out: int,
                        length: int, flags: int) -> int:
    """copy_file_range() between regular files (cp, diff, sed -i use it): a chunk at a time
    through the page cache's files; an offset pointer is read and advanced instead of the
    file position. Linux's checks in its order (generic_copy_file_checks())."""
    if flags & ~COPY_FILE_RANGE_FLAGS:
        raise SyscallError(errno.EINVAL)
    fin, fout = fdget(t, fd_in), fdget(t, fd_out)
    _copy_checks(fin, fout)
    pin = _offset(t, off_in)
    pout = _offset(t, off_out)
    length = min(length, MAX_IO)
    if fin.stat()[1:3] == fout.stat()[1:3] and pin is not None and pout is not None \
            and pin < pout + length and pout < pin + length:
        raise SyscallError(errno.EINVAL)           # the same file, overlapping ranges
    done = _copy(fin, fout, pin, pout, length)
    for ptr, start in ((off_in, pin), (off_out, pout)):
        if start is not None:
            t.proc.mem.put_u64(ptr, start + done)
    return done


def _copy_checks(fin: OpenFile, fout: OpenFile) -> None:
    if not fin.readable() or not fout.writable() or fout.flags & os.O_APPEND:
        raise SyscallError(errno.EBADF)
    for f in (fin, fout):
        mode = f.stat().st_mode
        if stat_mod.S_ISDIR(mode):
            raise SyscallError(errno.EISDIR)
        if not stat_mod.S_ISREG(mode):
            raise SyscallError(errno.EINVAL)


def _copy(fin: OpenFile, fout: OpenFile, pin: Optional[int], pout: Optional[int], length: int) -> int:
    """Up to length bytes, a chunk at a time; short at the input's end or a short write."""
    done = 0
    while done < length:
        want = min(CHUNK, length - done)
        data = fin.pread(want, pin + done) if pin is not None else fin.read(want)
        if not data:
            break
        wrote = fout.pwrite(data, pout + done) if pout is not None else fout.write(data)
        done += wrote
        if wrote < len(data) or len(data) < want or host_signals.pending():
            break
    return done


def _offset(t: Thread, ptr: int) -> Optional[int]:
    """An loff_t the caller points at (NULL: use the file position); a negative one is EINVAL."""
    if not ptr:
        return None
    start = s64(t.proc.mem.u64(ptr))
    if start < 0:
        raise SyscallError(errno.EINVAL)
    return start
