"""Open file descriptions (Linux's struct file): the base class every kind of file extends,
the open(2) flags translated between arm64 and the host, stat packing, and the host
descriptors mteemu keeps for the guest.
"""
from __future__ import annotations

import errno
import os
import resource
import struct
from typing import Iterable, Optional

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
