"""Open file descriptions and file-descriptor tables (Linux's struct file / fdtable).

Host files are opened on the host, as with qemu-user. Pipes and memfds live inside
the emulated world, so a guest thread blocked on a pipe blocks only itself, and the
other end can be another guest process of the same run.
"""
from __future__ import annotations

import errno
import os
import resource
import select
import stat as st
import struct
from typing import Iterable, Optional

from mteemu import host_signals
from mteemu.kernel.mm.shared import SharedObject
from mteemu.kernel.uaccess import SyscallError
from mteemu.kernel.waitqueue import WaitQueue

# arm64 open(2) flags that differ from x86-64 (the host): translate them.
_GUEST_TO_HOST_FLAGS = (
    (0o40000, os.O_DIRECTORY),
    (0o100000, os.O_NOFOLLOW),
    (0o200000, getattr(os, "O_DIRECT", 0)),
    (0o400000, 0),                          # O_LARGEFILE: always on for 64-bit
)
_COMMON_FLAGS = (os.O_ACCMODE | os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_TRUNC | os.O_APPEND
                 | os.O_NONBLOCK | os.O_DSYNC | os.O_SYNC | os.O_CLOEXEC | getattr(os, "O_PATH", 0)
                 | getattr(os, "O_NOATIME", 0))
_O_PATH = getattr(os, "O_PATH", 0o10000000)   # the same value on arm64 and x86-64
O_DIRECTORY_GUEST = 0o40000
O_NOFOLLOW_GUEST = 0o100000         # arm64's values differ from x86's
O_CLOEXEC = 0o2000000
O_NONBLOCK = os.O_NONBLOCK
O_APPEND = os.O_APPEND
O_TMPFILE_GUEST = 0o20000000 | O_DIRECTORY_GUEST


def host_open_flags(guest_flags: int) -> int:
    flags = guest_flags & _COMMON_FLAGS
    for g, h in _GUEST_TO_HOST_FLAGS:
        if guest_flags & g:
            flags |= h
    return flags


def guest_status_flags(host_flags: int) -> int:
    flags = host_flags & (os.O_ACCMODE | os.O_APPEND | os.O_NONBLOCK | os.O_DSYNC | os.O_SYNC)
    for g, h in _GUEST_TO_HOST_FLAGS:
        if h and host_flags & h:
            flags |= g
    return flags | 0o400000   # Linux reports O_LARGEFILE on 64-bit


# struct stat for arm64 (asm-generic): 128 bytes.
STAT_FMT = "<QQIIIIQQqiiqqQqQqQII"


def pack_stat(s: os.stat_result) -> bytes:
    def ts(t_ns: Optional[int], seconds: float) -> tuple[int, int]:
        t_ns = int(seconds) * 1_000_000_000 if t_ns is None else t_ns
        return t_ns // 1_000_000_000, t_ns % 1_000_000_000
    # A host stat has every field; fake_stat() below fills only the first ten.
    a, m, c = ts(s.st_atime_ns, s[7]), ts(s.st_mtime_ns, s[8]), ts(s.st_ctime_ns, s[9])
    return struct.pack(STAT_FMT, s.st_dev, s.st_ino, s.st_mode, s.st_nlink, s.st_uid, s.st_gid,
                       s.st_rdev or 0, 0, s.st_size, s.st_blksize or 4096, 0, s.st_blocks or 0,
                       a[0], a[1], m[0], m[1], c[0], c[1], 0, 0)


def fake_stat(mode: int, size: int = 0, ino: int = 1, dev: int = 0xE, uid: Optional[int] = None,
              nlink: int = 1, rdev: int = 0) -> os.stat_result:
    """A stat result, every field set, for objects that only exist inside the emulated world."""
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if uid == os.getuid() else uid
    return os.stat_result((mode, ino, dev, nlink, uid, gid, size, 0, 0, 0),
                          {"st_atime": 0.0, "st_mtime": 0.0, "st_ctime": 0.0, "st_atime_ns": 0, "st_mtime_ns": 0,
                           "st_ctime_ns": 0, "st_blksize": 4096, "st_blocks": (size + 511) // 512, "st_rdev": rdev})


# The host descriptors the guest's files hold, all its processes together, stop this many
# short of mteemu's own RLIMIT_NOFILE: the rest stay mteemu's, so a guest that opens all it
# can still gets its fault report (which imports a disassembler and opens the program).
# Past the line the guest sees ENFILE, as from Linux's fs.file-max.
HOST_FD_RESERVE = 64
_host_fd_ceiling: Optional[int] = None


def raise_host_fd_limit() -> None:
    """Let mteemu hold as many descriptors as its hard limit allows (up to 65,536): its own
    process limit only, so that the guest's 1,024 per process are the bound a guest meets."""
    global _host_fd_ceiling
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1 << 16 if hard == resource.RLIM_INFINITY else min(hard, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (OSError, ValueError):
            pass
    _host_fd_ceiling = None


def host_fd(fd: int) -> int:
    """fd, just opened on the guest's behalf, if the host can spare it; OSError(ENFILE) when
    it is within HOST_FD_RESERVE of the limit. The host gives the lowest free number, so a
    number that high means that many are in use."""
    global _host_fd_ceiling
    if _host_fd_ceiling is None:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        _host_fd_ceiling = (1 << 30 if soft == resource.RLIM_INFINITY else soft) - HOST_FD_RESERVE
    if fd >= _host_fd_ceiling:
        os.close(fd)
        raise OSError(errno.ENFILE, os.strerror(errno.ENFILE))
    return fd


def host_dup(fd: int) -> int:
    """dup(2) for the guest: SyscallError(ENFILE or EMFILE) when the host cannot spare one."""
    try:
        return host_fd(os.dup(fd))
    except OSError as e:
        raise SyscallError(e.errno or errno.EMFILE) from None


def fd_path(fd: int) -> str:
    """The name by which a descriptor mteemu holds is opened again: /proc/self/fd/N reaches
    the very object behind it (never a name the guest could have changed since)."""
    return f"/proc/self/fd/{fd}"


def reopen(fd: int, flags: int) -> int:
    """A new open file description of the object behind a held descriptor."""
    return host_fd(os.open(fd_path(fd), flags | os.O_CLOEXEC))


class Would(Exception):
    """The operation would block; the syscall layer turns this into a thread wait."""


class OpenFile:
    """An open file description; several fds (and processes, after fork) may share one."""

    kind = "file"
    is_dir = False

    def __init__(self, flags: int) -> None:
        self.flags = flags        # guest O_* status flags
        self.refs = 0
        self.pos = 0

    # Each operation raises SyscallError for an errno, Would when it would block.
    def read(self, n: int) -> bytes:
        raise SyscallError(errno.EINVAL)

    def write(self, data: bytes) -> int:
        raise SyscallError(errno.EINVAL)

    def pread(self, n: int, off: int) -> bytes:
        raise SyscallError(errno.ESPIPE)

    def pwrite(self, data: bytes, off: int) -> int:
        raise SyscallError(errno.ESPIPE)

    def lseek(self, off: int, whence: int) -> int:
        raise SyscallError(errno.ESPIPE)

    def stat(self) -> os.stat_result:
        raise SyscallError(errno.EBADF)

    def ioctl(self, req: int, arg: int, mem) -> int:  # noqa: ANN001
        raise SyscallError(errno.ENOTTY)

    def getdents(self) -> list[tuple[int, int, str]]:
        """(inode, d_type, name) of a directory's entries."""
        raise SyscallError(errno.ENOTDIR)

    def readable(self) -> bool:
        # An O_PATH description has neither FMODE_READ nor FMODE_WRITE.
        return (self.flags & os.O_ACCMODE) in (os.O_RDONLY, os.O_RDWR) and not self.flags & _O_PATH

    def writable(self) -> bool:
        return (self.flags & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR) and not self.flags & _O_PATH

    def poll_in(self) -> bool:
        return True

    def poll_out(self) -> bool:
        return True

    def wait_queue(self) -> Optional[WaitQueue]:
        """What a call blocked on this file sleeps on (waitqueue.py); None: a change the
        kernel does not see (a host file), so such a call is re-tried after every call."""
        return None

    def path(self) -> str:
        return "anon_inode:[unknown]"

    def release(self) -> None:
        pass


def wait_queues(files: "Iterable[OpenFile]") -> Optional[tuple[WaitQueue, ...]]:
    """The queues a call blocked on these files sleeps on; None if one of them has none."""
    queues: list[WaitQueue] = []
    for f in files:
        q = f.wait_queue()
        if q is None:
            return None
        if q not in queues:
            queues.append(q)
    return tuple(queues)


class HostFile(OpenFile):
    """A file (or directory, or terminal) opened on the host."""

    def __init__(self, fd: int, path: str, flags: int, pagecache: "PageCache", foreign: bool = False) -> None:
        super().__init__(flags)
        self.fd = fd
        self._path = path
        self.pagecache = pagecache
        # A host object the guest was handed (stdio, the program itself) rather than one it
        # opened in its own world: its data may be read and written, its metadata
        # (mode, owner, size of a non-regular file, times) never changes.
        self.foreign = foreign
        self._dirents: Optional[list[tuple[int, int, str]]] = None
        self._st = os.fstat(fd)
        self.is_dir = st.S_ISDIR(self._st.st_mode)
        self.key = (self._st.st_dev, self._st.st_ino)

    def _coherent_read(self) -> None:
        obj = self.pagecache.objects.get(self.key)
        if obj is not None:
            obj.writeback()

    def _written(self, off: int, n: int) -> None:
        obj = self.pagecache.objects.get(self.key)
        if obj is not None:
            obj.refresh(off, n)

    def _nonblocking_ready(self, write: bool) -> None:
        """The guest's O_NONBLOCK on a foreign description (whose host flags are the host's
        to keep): a read or write that would block is EAGAIN, not a wait."""
        if self.foreign and self.flags & O_NONBLOCK and not st.S_ISREG(self._st.st_mode):
            if not (self.poll_out() if write else self.poll_in()):
                raise SyscallError(errno.EAGAIN)

    def read(self, n: int) -> bytes:
        if self.is_dir:
            raise SyscallError(errno.EISDIR)
        self._coherent_read()
        self._nonblocking_ready(write=False)
        try:
            with host_signals.interruptible():     # a terminal may make this wait for long
                return os.read(self.fd, n)
        except BlockingIOError:
            if self.flags & O_NONBLOCK:
                raise SyscallError(errno.EAGAIN) from None
            raise Would() from None

    def write(self, data: bytes) -> int:
        try:
            off = os.lseek(self.fd, 0, os.SEEK_CUR) if self.pagecache.objects.get(self.key) else 0
        except OSError:
            off = 0
        self._nonblocking_ready(write=True)
        try:
            with host_signals.interruptible():
                n = os.write(self.fd, data)
        except BlockingIOError:
            if self.flags & O_NONBLOCK:
                raise SyscallError(errno.EAGAIN) from None
            raise Would() from None
        except OSError as e:          # EPIPE among them: the caller raises SIGPIPE, as Linux
            raise SyscallError(e.errno or errno.EIO) from None
        self._written(off, n)
        return n

    def reopen(self, flags: int) -> "HostFile":
        """A new open file description of the same host object (opening /proc/<pid>/fd/N).
        A regular file or directory the guest opened is opened again through the descriptor
        held (/proc/self/fd/<ours>: the very inode, never a name the guest could have
        changed since); anything else (a pipe, a FIFO, a terminal, a foreign object) shares
        this description, so no access beyond it is ever gained."""
        if flags & os.O_PATH:           # the object, for its metadata: this description will do
            return HostFile(host_dup(self.fd), self._path, self.flags, self.pagecache, self.foreign)
        acc = flags & 3
        if acc != os.O_RDONLY and not self.writable():
            raise SyscallError(errno.EACCES)
        if (st.S_ISREG(self._st.st_mode) or self.is_dir) and not self.foreign:
            host = host_open_flags(flags & ~(os.O_CREAT | os.O_TRUNC | O_NOFOLLOW_GUEST))
            try:
                fd = reopen(self.fd, host)
            except OSError as e:
                raise SyscallError(e.errno or errno.EIO) from None
            return HostFile(fd, self._path, flags, self.pagecache, self.foreign)
        if acc != os.O_WRONLY and not self.readable():
            raise SyscallError(errno.EACCES)     # a shared description reads only if it could
        return HostFile(host_dup(self.fd), self._path, flags, self.pagecache, self.foreign)

    @property
    def is_fifo(self) -> bool:
        """A host FIFO: its descriptor stays non-blocking on the host (a reader or writer
        that waits is a blocked guest thread, never a blocked emulator)."""
        return st.S_ISFIFO(self._st.st_mode)

    def _ready(self, event: int) -> bool:
        if st.S_ISREG(self._st.st_mode) or self.is_dir:
            return True
        p = select.poll()
        p.register(self.fd, event)
        return bool(p.poll(0))

    def poll_in(self) -> bool:
        return self._ready(select.POLLIN)

    def poll_out(self) -> bool:
        return self._ready(select.POLLOUT)

    def pread(self, n: int, off: int) -> bytes:
        if self.is_dir:
            raise SyscallError(errno.EISDIR)
        self._coherent_read()
        return os.pread(self.fd, n, off)

    def pwrite(self, data: bytes, off: int) -> int:
        n = os.pwrite(self.fd, data, off)
        self._written(off, n)
        return n

    def lseek(self, off: int, whence: int) -> int:
        if self.is_dir:
            # dcache_dir_lseek(): SEEK_SET and SEEK_CUR over the entries, nothing else (the
            # Linux oracle's fuzzer: SEEK_CUR on a tmpfs directory works).
            if whence == os.SEEK_CUR:
                off += self.pos
            elif whence != os.SEEK_SET:
                raise SyscallError(errno.EINVAL)
            if off < 0:
                raise SyscallError(errno.EINVAL)
            self.pos = off
            return off
        return os.lseek(self.fd, off, whence)

    def stat(self) -> os.stat_result:
        return os.fstat(self.fd)

    def ioctl(self, req: int, arg: int, mem) -> int:  # noqa: ANN001
        import fcntl
        import termios

        sizes = {termios.TCGETS: 36, termios.TIOCGWINSZ: 8}
        if req in sizes:
            if not os.isatty(self.fd):
                raise SyscallError(errno.ENOTTY)
            buf = bytearray(sizes[req])
            fcntl.ioctl(self.fd, req, buf)
            mem.write(arg, bytes(buf))
            return 0
        if req == termios.FIONREAD and not self.is_dir:
            s = os.fstat(self.fd)
            left = max(0, s.st_size - os.lseek(self.fd, 0, os.SEEK_CUR)) if st.S_ISREG(s.st_mode) else 0
            mem.put_u32(arg, left)
            return 0
        raise SyscallError(errno.ENOTTY)

    def getdents(self) -> list[tuple[int, int, str]]:
        if self._dirents is None:
            names = [".", ".."] + sorted(os.listdir(self.fd))
            out = []
            for name in names:
                try:
                    s = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
                    out.append((s.st_ino, file_dtype(s.st_mode), name))
                except OSError:
                    continue
            self._dirents = out
        return self._dirents

    def path(self) -> str:
        return self._path

    def release(self) -> None:
        os.close(self.fd)


def file_dtype(mode: int) -> int:
    for test, t in ((st.S_ISDIR, 4), (st.S_ISREG, 8), (st.S_ISLNK, 10), (st.S_ISFIFO, 1),
                    (st.S_ISCHR, 2), (st.S_ISBLK, 6), (st.S_ISSOCK, 12)):
        if test(mode):
            return t
    return 0


class Pipe:
    CAPACITY = 65536
    _next_ino = 1000

    def __init__(self) -> None:
        self.buf = bytearray()
        self.readers = 0
        self.writers = 0
        self.ino = Pipe._next_ino
        Pipe._next_ino += 1
        self.wq = WaitQueue()       # pipe_wait(): readers and writers both (one queue, as wr_wait/rd_wait merged)


class PipeEnd(OpenFile):
    kind = "pipe"

    def __init__(self, pipe: Pipe, write_end: bool, flags: int) -> None:
        super().__init__((os.O_WRONLY if write_end else os.O_RDONLY) | (flags & O_NONBLOCK))
        self.pipe = pipe
        self.write_end = write_end
        if write_end:
            pipe.writers += 1
        else:
            pipe.readers += 1

    def read(self, n: int) -> bytes:
        p = self.pipe
        if self.write_end:
            raise SyscallError(errno.EBADF)
        if n == 0:
            return b""                        # pipe_read(): nothing asked, nothing to wait for
        if not p.buf:
            if p.writers == 0:
                return b""
            if self.flags & O_NONBLOCK:
                raise SyscallError(errno.EAGAIN)
            raise Would()
        data = bytes(p.buf[:n])
        del p.buf[:n]
        p.wq.wake()                 # room for a writer
        return data

    def write(self, data: bytes) -> int:
        p = self.pipe
        if not self.write_end:
            raise SyscallError(errno.EBADF)
        if not data:
            return 0                          # pipe_write(): nothing to write, before any reader check
        if p.readers == 0:
            raise SyscallError(errno.EPIPE)   # the caller also raises SIGPIPE
        room = Pipe.CAPACITY - len(p.buf)
        if room <= 0 or (len(data) <= 4096 and room < len(data)):   # PIPE_BUF atomicity
            if self.flags & O_NONBLOCK:
                raise SyscallError(errno.EAGAIN)
            raise Would()
        p.buf += data[:room]
        p.wq.wake()                 # data for a reader
        return min(room, len(data))

    def poll_in(self) -> bool:
        return bool(self.pipe.buf) or self.pipe.writers == 0

    def poll_out(self) -> bool:
        return len(self.pipe.buf) < Pipe.CAPACITY or self.pipe.readers == 0

    def stat(self) -> os.stat_result:
        return fake_stat(st.S_IFIFO | 0o600, len(self.pipe.buf), self.pipe.ino)

    def ioctl(self, req: int, arg: int, mem) -> int:  # noqa: ANN001
        import termios

        if req == termios.FIONREAD:
            mem.put_u32(arg, len(self.pipe.buf))
            return 0
        raise SyscallError(errno.ENOTTY)

    def path(self) -> str:
        return f"pipe:[{self.pipe.ino}]"

    def release(self) -> None:
        if self.write_end:
            self.pipe.writers -= 1
        else:
            self.pipe.readers -= 1
        self.pipe.wq.wake()         # a reader sees EOF, a writer EPIPE

    def wait_queue(self) -> Optional[WaitQueue]:
        return self.pipe.wq


class MemFd(OpenFile):
    """memfd_create(2): an anonymous file in RAM, backed by guest physical pages."""

    _next_ino = 5000

    def __init__(self, obj: SharedObject, name: str) -> None:
        super().__init__(os.O_RDWR)
        self.obj = obj
        obj.hold()
        self.name = name
        self.ino = MemFd._next_ino
        MemFd._next_ino += 1

    def read(self, n: int) -> bytes:
        data = self.obj.read(self.pos, n)
        self.pos += len(data)
        return data

    def write(self, data: bytes) -> int:
        if self.flags & O_APPEND:
            self.pos = self.obj.size
        self.obj.write(self.pos, data)
        self.pos += len(data)
        return len(data)

    def pread(self, n: int, off: int) -> bytes:
        return self.obj.read(off, n)

    def pwrite(self, data: bytes, off: int) -> int:
        self.obj.write(off, data)
        return len(data)

    def lseek(self, off: int, whence: int) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.obj.size}.get(whence)
        if base is None or base + off < 0:
            raise SyscallError(errno.EINVAL)
        self.pos = base + off
        return self.pos

    def stat(self) -> os.stat_result:
        return fake_stat(st.S_IFREG | 0o777, self.obj.size, self.ino)

    def path(self) -> str:
        return f"/memfd:{self.name} (deleted)"

    def release(self) -> None:
        self.obj.drop()


class PageCache:
    """SharedObjects of host files by (device, inode), so all mappings of a file share pages."""

    def __init__(self, alloc) -> None:  # noqa: ANN001
        self.alloc = alloc
        self.objects: dict[tuple[int, int], SharedObject] = {}

    def object_for(self, f: HostFile, want_write: bool) -> SharedObject:
        obj = self.objects.get(f.key)
        if obj is None:
            obj = SharedObject(self.alloc, f.path(), host_fd=host_dup(f.fd))
            key = obj.key = f.key
            obj.on_release = lambda _o: self.objects.pop(key, None)
            self.objects[f.key] = obj
        elif want_write and obj.host_fd is not None and f.writable():
            os.dup2(f.fd, obj.host_fd)   # make sure writeback can write
        return obj


class FdTable:
    MAX_FDS = 1024   # RLIMIT_NOFILE's soft limit by default

    def __init__(self, limit: int = MAX_FDS) -> None:
        self.files: dict[int, OpenFile] = {}
        self.cloexec: set[int] = set()
        # The owner's RLIMIT_NOFILE (set by setrlimit/prlimit64): Linux checks the caller's
        # limit at each allocation; a table shared by processes with different limits is
        # the one case this differs.
        self.limit = limit

    def get(self, fd: int) -> OpenFile:
        f = self.files.get(fd)
        if f is None:
            raise SyscallError(errno.EBADF)
        return f

    def install(self, f: OpenFile, cloexec: bool = False, lowest: int = 0, fd: Optional[int] = None) -> int:
        if fd is None:
            if lowest >= self.limit:
                raise SyscallError(errno.EINVAL)      # fcntl(F_DUPFD) past RLIMIT_NOFILE
            fd = lowest
            while fd in self.files:
                fd += 1
            if fd >= self.limit:
                raise SyscallError(errno.EMFILE)
        else:
            if fd >= self.limit:
                raise SyscallError(errno.EBADF)       # dup2/dup3: ksys_dup3()
            self.close(fd, missing_ok=True)
        f.refs += 1
        self.files[fd] = f
        if cloexec:
            self.cloexec.add(fd)
        else:
            self.cloexec.discard(fd)
        return fd

    def close(self, fd: int, missing_ok: bool = False) -> None:
        f = self.files.pop(fd, None)
        self.cloexec.discard(fd)
        if f is None:
            if missing_ok:
                return
            raise SyscallError(errno.EBADF)
        f.refs -= 1
        if f.refs == 0:
            f.release()

    def fork(self) -> "FdTable":
        t = FdTable(self.limit)
        for fd, f in self.files.items():
            f.refs += 1
            t.files[fd] = f
        t.cloexec = set(self.cloexec)
        return t

    def close_all(self) -> None:
        for fd in list(self.files):
            self.close(fd)
