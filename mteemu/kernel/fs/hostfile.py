"""Files on the host, opened on the host as qemu-user does (a HostFile is one open file
description), and the page cache that lets every mapping of one host file share pages.
"""
from __future__ import annotations

import errno
import os
import select
import stat as st
from typing import Optional

from mteemu import host_signals
from mteemu.kernel.fs.file import O_NOFOLLOW_GUEST, O_NONBLOCK, OpenFile, Would, host_dup, host_open_flags, reopen
from mteemu.kernel.mm.shared import SharedObject
from mteemu.kernel.uaccess import SyscallError


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
