"""Generated file systems (Linux's kernfs/procfs style): directories, files and links
whose contents the kernel model computes when they are looked up or opened.

The guest's `/proc` and `/sys` are trees of these nodes (procfs.py, sysfs.py); nothing
under the host's `/proc` or `/sys` is ever opened on a guest's behalf. A node knows its
mode and owner, so permission answers are Linux's: a read-only file refuses writers with
EACCES, a root-owned knob refuses other users with EACCES, and a knob the model does
not have refuses even root (EPERM: Linux's answer when an operation is not supported).
"""
from __future__ import annotations

import errno
import os
import stat as st
import zlib
from typing import Callable, Optional

from mteemu.kernel.fs.file import OpenFile, fake_stat
from mteemu.kernel.fs.hostfile import file_dtype
from mteemu.kernel.uaccess import SyscallError

PROC_DEV = 0x16      # st_dev of every generated file (procfs's anonymous device)
O_ACCMODE = 3


def ino_of(gpath: str) -> int:
    """Stable inode numbers, so `find` and `ls -i` see the same file twice."""
    return zlib.crc32(gpath.encode()) | 0x1000


class Node:
    """A name in a generated tree. `uid` owns it (0: root); `mode` has its type bits."""

    mode = st.S_IFREG | 0o444
    rdev = 0                 # a device node's major:minor
    dev = PROC_DEV           # the file system's st_dev

    def __init__(self, mode: Optional[int] = None, uid: int = 0) -> None:
        if mode is not None:
            self.mode = mode
        self.uid = uid

    def stat(self, gpath: str, size: int = 0) -> os.stat_result:
        return fake_stat(self.mode, size, ino_of(gpath), dev=self.dev, uid=self.uid,
                         nlink=2 if st.S_ISDIR(self.mode) else 1, rdev=self.rdev)

    def may(self, euid: int, want: int) -> bool:
        """Unix permission bits as generic_permission() checks them (want: 4 r, 2 w, 1 x)."""
        if euid == 0:     # CAP_DAC_OVERRIDE, but read-only files stay read-only (as sysctl's)
            return (not want & 2 or bool(self.mode & 0o222)) and \
                (not want & 1 or bool(self.mode & 0o111) or st.S_ISDIR(self.mode))
        bits = (self.mode >> 6) & 7 if euid == self.uid else self.mode & 7
        return bits & want == want


class File(Node):
    """Contents generated on open (a snapshot, as seq_file gives one per open); `write`
    applies what the guest writes, when the kernel model has the knob. `opener` replaces
    the snapshot with a file of its own (/proc/<pid>/mem)."""

    def __init__(self, read: Callable[[], bytes], write: Optional[Callable[[bytes], None]] = None,
                 mode: int = 0o444, uid: int = 0,
                 opener: Optional[Callable[[str, int], OpenFile]] = None) -> None:
        super().__init__(st.S_IFREG | mode, uid)
        self.read, self.write, self.opener = read, write, opener

    @property
    def writable(self) -> bool:
        return self.write is not None or self.opener is not None

    def open(self, gpath: str, flags: int) -> OpenFile:
        return self.opener(gpath, flags) if self.opener else GeneratedFile(self, gpath, flags)


class Device(File):
    """A character device node (devtmpfs's /dev/null...): `opener` gives its open file."""

    def __init__(self, major: int, minor: int, opener: Callable[[str, int], OpenFile], mode: int = 0o666,
                 dev: int = PROC_DEV) -> None:
        super().__init__(lambda: b"", mode=mode, opener=opener)
        self.mode = st.S_IFCHR | mode
        self.rdev = os.makedev(major, minor)
        self.dev = dev


class Dir(Node):
    def __init__(self, children: Callable[[], dict[str, Node]], mode: int = 0o555, uid: int = 0,
                 dev: int = PROC_DEV) -> None:
        super().__init__(st.S_IFDIR | mode, uid)
        self.children = children
        self.dev = dev

    def lookup(self, name: str) -> Optional[Node]:
        return self.children().get(name)

    def open(self, gpath: str, flags: int) -> OpenFile:
        return GeneratedDir(self, gpath, flags)


class Link(Node):
    """A symbolic link whose target is a guest path (/proc/self, /proc/<pid>/cwd)."""

    def __init__(self, target: Callable[[], str], uid: int = 0) -> None:
        super().__init__(st.S_IFLNK | 0o777, uid)
        self.target = target


class MagicLink(Link):
    """Linux's "magic" links (/proc/<pid>/fd/N, /proc/<pid>/exe): readlink shows a name,
    following one reaches the object itself, not a path. `reopen(flags)` opens it;
    `dir_path()` is where a walk continues when the object is a directory (else None);
    `target_stat()` is what stat() of the followed link shows."""

    def __init__(self, text: Callable[[], str], reopen: Callable[[int], OpenFile],
                 target_stat: Callable[[], os.stat_result], dir_path: Callable[[], Optional[str]] = lambda: None,
                 uid: int = 0) -> None:
        super().__init__(text, uid)
        self.reopen, self.target_stat, self.dir_path = reopen, target_stat, dir_path


class Mount(Node):
    """A host directory mounted inside a generated tree (the guest's /dev/shm): the walk
    continues on the host from the descriptor `hostdir()` gives, as from the root."""

    mode = st.S_IFDIR | 0o1777

    def __init__(self, hostdir: Callable[[], int]) -> None:
        super().__init__()
        self.hostdir = hostdir


def static(text: str) -> Callable[[], bytes]:
    data = text.encode()
    return lambda: data


class GeneratedFile(OpenFile):
    """An open generated file: reads come from one snapshot, writes go to the knob."""

    def __init__(self, node: File, gpath: str, flags: int) -> None:
        super().__init__(flags)
        self.node, self.gpath = node, gpath
        self.content = node.read() if self.readable() else b""

    def read(self, n: int) -> bytes:
        data = self.content[self.pos:self.pos + n]
        self.pos += len(data)
        return data

    def pread(self, n: int, off: int) -> bytes:
        return self.content[off:off + n]

    def write(self, data: bytes) -> int:
        if self.node.write is None:
            raise SyscallError(errno.EINVAL)
        self.node.write(data)
        return len(data)

    def pwrite(self, data: bytes, off: int) -> int:
        return self.write(data)

    def lseek(self, off: int, whence: int) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: len(self.content)}.get(whence)
        if base is None or base + off < 0:
            raise SyscallError(errno.EINVAL)
        self.pos = base + off
        return self.pos

    def stat(self) -> os.stat_result:
        return self.node.stat(self.gpath)        # procfs files report size 0

    def path(self) -> str:
        return self.gpath


class GeneratedDir(OpenFile):
    is_dir = True

    def __init__(self, node: Dir, gpath: str, flags: int) -> None:
        super().__init__(flags)
        self.node, self.gpath = node, gpath
        self._dirents: Optional[list[tuple[int, int, str]]] = None

    def read(self, n: int) -> bytes:
        raise SyscallError(errno.EISDIR)

    def lseek(self, off: int, whence: int) -> int:
        if whence != os.SEEK_SET or off < 0:
            raise SyscallError(errno.EINVAL)
        self.pos = off
        return off

    def getdents(self) -> list[tuple[int, int, str]]:
        if self._dirents is None:
            parent = os.path.dirname(self.gpath)
            out = [(ino_of(self.gpath), 4, "."), (ino_of(parent), 4, "..")]
            for name, node in self.node.children().items():
                out.append((ino_of(f"{self.gpath}/{name}"), file_dtype(node.mode), name))
            self._dirents = out
        return self._dirents

    def stat(self) -> os.stat_result:
        return self.node.stat(self.gpath)

    def path(self) -> str:
        return self.gpath


def open_node(node: Node, gpath: str, flags: int, euid: int) -> OpenFile:
    """may_open() and the open itself for a generated node (not a link: links are followed
    by the walk before this)."""
    acc = flags & O_ACCMODE
    if isinstance(node, Dir):
        if acc != os.O_RDONLY:
            raise SyscallError(errno.EISDIR)
        return node.open(gpath, flags)
    want = {os.O_RDONLY: 4, os.O_WRONLY: 2, os.O_RDWR: 6}.get(acc, 6)
    if not node.may(euid, want):
        raise SyscallError(errno.EACCES)
    if not isinstance(node, File):
        raise SyscallError(errno.ENXIO)
    if want & 2 and not node.writable:
        raise SyscallError(errno.EPERM)          # a knob the kernel model does not have
    return node.open(gpath, flags)
