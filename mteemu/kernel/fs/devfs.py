"""The guest's /dev under `--root` (Linux's devtmpfs as a Debian system populates it):
the memory devices of drivers/char/mem.c, the terminal, the /proc/self/fd links, and
/dev/shm. Without `--root` the guest sees the host's /dev, as with qemu-user.

* null, zero, full, random, urandom behave as drivers/char/mem.c and random.c make them:
  /dev/null reads end of file and swallows writes, /dev/zero reads zeros and maps as
  anonymous memory, /dev/full reads zeros and fails writes with ENOSPC, the random devices
  read the kernel model's generator (reproducible under `--seed`, as getrandom).
* tty is the controlling terminal: opened on the host when mteemu's stdin is a terminal,
  otherwise ENXIO (tty_open() without a controlling tty).
* fd, stdin, stdout, stderr are links into /proc/self/fd (udev's static nodes).
* shm is a tmpfs: a private directory mteemu makes on the host's tmpfs (/dev/shm, else the
  temporary directory) and removes at exit, mounted there, so shm_open(), POSIX
  semaphores and PROT_MTE mappings of its files work as Linux's shmem does.
"""
from __future__ import annotations

import errno
import os
from functools import partial
from typing import TYPE_CHECKING, Callable, Optional

from mteemu.kernel.fs.file import OpenFile, host_fd, host_open_flags
from mteemu.kernel.fs.hostfile import HostFile
from mteemu.kernel.fs.pseudofs import Device, Dir, Link, Mount, Node
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi

DEVTMPFS_DEV = 0x5            # st_dev of devtmpfs (the first anonymous device after proc's)
MOUNTS = (("devtmpfs", "/dev", "devtmpfs", "rw,nosuid,relatime,mode=755"),
          ("tmpfs", "/dev/shm", "tmpfs", "rw,nosuid,nodev"))


class MemDevice(OpenFile):
    """An open memory device: `fill(n)` is what a read of n bytes gives (None: end of
    file); `sink` is the errno of a write (0: the write is swallowed)."""

    def __init__(self, node: Device, gpath: str, flags: int, fill: Callable[[int], Optional[bytes]],
                 sink: int = 0) -> None:
        super().__init__(flags)
        self.node, self.gpath, self.fill, self.sink = node, gpath, fill, sink

    def read(self, n: int) -> bytes:
        return self.fill(n) or b""

    def pread(self, n: int, off: int) -> bytes:
        return self.read(n)

    def write(self, data: bytes) -> int:
        if self.sink:
            raise SyscallError(self.sink)
        return len(data)

    def pwrite(self, data: bytes, off: int) -> int:
        return self.write(data)

    def lseek(self, off: int, whence: int) -> int:
        return 0                   # null_lseek()/memory_lseek(): the position stays 0

    def stat(self) -> os.stat_result:
        return self.node.stat(self.gpath)

    def path(self) -> str:
        return self.gpath


class ShmDir:
    """The host directory behind the guest's /dev/shm, made when first looked up."""

    def __init__(self) -> None:
        self.path: Optional[str] = None
        self.fd = -1

    def held(self) -> int:
        if self.fd < 0:
            base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
            import tempfile

            self.path = tempfile.mkdtemp(prefix="mteemu-shm-", dir=base)
            self.fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.path is not None:
            import shutil  # only a run that used /dev/shm

            shutil.rmtree(self.path, ignore_errors=True)    # never follows a guest's symlinks
            self.path = None


def _tty(k: "KernelApi") -> Callable[[str, int], OpenFile]:
    def open_tty(gpath: str, flags: int) -> OpenFile:
        if not os.isatty(0):
            raise SyscallError(errno.ENXIO)
        host = host_open_flags(flags) & ~(os.O_CREAT | os.O_TRUNC | os.O_EXCL)
        try:
            fd = host_fd(os.open("/dev/tty", host | os.O_NOCTTY | os.O_CLOEXEC))
        except OSError as e:
            raise SyscallError(e.errno or errno.ENXIO) from None
        return HostFile(fd, gpath, flags, k.pagecache, foreign=True)
    return open_tty


def root(k: "KernelApi") -> Dir:
    def mem(minor: int, fill: Callable[[int], Optional[bytes]], sink: int = 0) -> Device:
        def opener(gpath: str, flags: int) -> OpenFile:
            return MemDevice(node, gpath, flags, fill, sink)
        node = Device(1, minor, opener, dev=DEVTMPFS_DEV)
        return node

    def zeros(n: int) -> bytes:
        return bytes(n)

    def children() -> dict[str, Node]:
        out: dict[str, Node] = {
            "null": mem(3, lambda n: None), "zero": mem(5, zeros), "full": mem(7, zeros, errno.ENOSPC),
            "random": mem(8, k.rng.randbytes), "urandom": mem(9, k.rng.randbytes),
            "tty": Device(5, 0, _tty(k), dev=DEVTMPFS_DEV),
            "fd": Link(lambda: "/proc/self/fd"),
            "shm": Mount(k.devshm.held),
        }
        for n, name in enumerate(("stdin", "stdout", "stderr")):
            out[name] = Link(partial(str.format, "/proc/self/fd/{}", n))
        return out
    return Dir(children, mode=0o755, dev=DEVTMPFS_DEV)

