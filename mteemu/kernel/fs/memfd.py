"""memfd_create's files: anonymous shared memory with a file descriptor (mm/memfd.c).
"""
from __future__ import annotations

import errno
import os
import stat as st

from mteemu.kernel.fs.file import O_APPEND, OpenFile, fake_stat
from mteemu.kernel.mm.shared import SharedObject
from mteemu.kernel.uaccess import SyscallError


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
