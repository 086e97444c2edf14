"""A process's file-descriptor table (Linux's struct files_struct / fdtable): numbers to open
file descriptions, close-on-exec, and RLIMIT_NOFILE.
"""
from __future__ import annotations

import errno
from typing import Optional

from mteemu.kernel.fs.file import OpenFile
from mteemu.kernel.uaccess import SyscallError


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
