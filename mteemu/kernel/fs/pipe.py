"""Pipes inside the emulated world (Linux's fs/pipe.c): a guest thread blocked on one blocks
only itself, and the other end can be another guest process of the same run.
"""
from __future__ import annotations

import errno
import os
import stat as st
from typing import Optional

from mteemu.kernel.fs.file import O_NONBLOCK, OpenFile, Would, fake_stat
from mteemu.kernel.uaccess import SyscallError
from mteemu.kernel.waitqueue import WaitQueue


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
