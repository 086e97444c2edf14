"""A program file held open (Linux's mm->exe_file, and the file an ELF interpreter was
read from): opened once, by descriptor, and reached through that descriptor ever after.

/proc/<pid>/exe, the fault report's symbols and a later exec of /proc/self/exe all read
the object that was executed, never a path that the guest (or anyone) could have pointed
elsewhere since: a guest that replaces its program file with a symlink to a host file
still sees its program.
"""
from __future__ import annotations

import os

from mteemu.kernel.fs.file import fd_path, reopen


class ExeFile:
    """`fd` is an O_RDONLY descriptor of a regular file; `name` is what the guest calls it
    (/proc/<pid>/exe's text, the report's program), never opened again by name."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd, self.name = fd, name

    def reopen(self, flags: int) -> int:
        return reopen(self.fd, flags)

    def stat(self) -> os.stat_result:
        return os.fstat(self.fd)

    def head(self, n: int) -> bytes:
        return os.pread(self.fd, n, 0)

    @property
    def source(self) -> str:
        """A host name that reaches this very file (for readers that want a path)."""
        return fd_path(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # Forked processes share one ExeFile (as they share mm->exe_file), and a mapping of an
    # interpreter keeps its own: the descriptor lives as long as anything refers to it.
    def __del__(self) -> None:
        self.close()
