"""Waiting for descriptors (fs/select.c): ppoll and pselect6.
"""
from __future__ import annotations

import errno
import struct
import time
from typing import TYPE_CHECKING

from mteemu.kernel.fs.file import (
    Would,
    wait_queues,
)
from mteemu.kernel.fs.pipe import PipeEnd
from mteemu.kernel.process import Thread, Wait, blocking
from mteemu.kernel.syscalls.args import s32
from mteemu.kernel.syscalls.registry import syscall
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi


def poll_ready(f, events: int) -> int:  # noqa: ANN001
    POLLIN, POLLOUT, POLLHUP = 1, 4, 0x10
    rev = 0
    if events & POLLIN and f.poll_in():
        rev |= POLLIN
    if events & POLLOUT and f.poll_out():
        rev |= POLLOUT
    if isinstance(f, PipeEnd) and not f.write_end and f.pipe.writers == 0:
        rev |= POLLHUP
    return rev


@syscall("ppoll")
def sys_ppoll(k: "KernelApi", t: Thread, fds_addr: int, nfds: int, tmo: int, sigmask: int,
              size: int) -> "int | Wait":
    if nfds > 1024:
        raise SyscallError(errno.EINVAL)
    raw = bytearray(t.proc.mem.read(fds_addr, 8 * nfds))
    deadline = None
    if tmo:
        sec, nsec = t.proc.mem.read_struct("<qq", tmo)
        deadline = time.monotonic() + sec + nsec / 1e9

    def attempt() -> int:
        ready = 0
        for i in range(nfds):
            fd, events, _ = struct.unpack_from("<ihh", raw, 8 * i)
            rev = 0
            if fd >= 0:
                f = t.proc.fds.files.get(fd)
                rev = 0x20 if f is None else poll_ready(f, events)   # POLLNVAL
            struct.pack_into("<h", raw, 8 * i + 6, rev)
            ready += bool(rev)
        if not ready and (deadline is None or time.monotonic() < deadline):
            raise Would()
        t.proc.mem.write(fds_addr, bytes(raw))
        return ready
    # -ERESTARTNOHAND: a handler that runs makes it EINTR, SA_RESTART or not (pause() too).
    files = [f for i in range(nfds) if (f := t.proc.fds.files.get(struct.unpack_from("<i", raw, 8 * i)[0]))]
    return blocking(attempt, Would, deadline=deadline, on_timeout=lambda: 0, restartable=False,
                    queues=wait_queues(files))


FD_SETSIZE = 1024


@syscall("pselect6")
def sys_pselect6(k: "KernelApi", t: Thread, nfds: int, rd: int, wr: int, ex: int, tmo: int,
                 sigmask: int) -> "int | Wait":
    """pselect6(): the fd_set bitmaps polled like ppoll (exceptional conditions never occur
    here); the sets are rewritten with what is ready."""
    nfds = s32(nfds)
    if not 0 <= nfds <= FD_SETSIZE:
        raise SyscallError(errno.EINVAL)
    size = (nfds + 63) // 64 * 8
    mem = t.proc.mem
    sets = [bytearray(mem.read(a, size)) if a and size else None for a in (rd, wr, ex)]
    wanted = [(fd, i) for i, s in enumerate(sets[:2]) if s is not None
              for fd in range(nfds) if s[fd >> 3] >> (fd & 7) & 1]
    for fd, _ in wanted:
        if fd not in t.proc.fds.files:
            raise SyscallError(errno.EBADF)
    deadline = None
    if tmo:
        sec, nsec = mem.read_struct("<qq", tmo)
        if sec < 0 or not 0 <= nsec < 1_000_000_000:
            raise SyscallError(errno.EINVAL)
        deadline = time.monotonic() + sec + nsec / 1e9

    def attempt() -> int:
        out = [bytearray(size) if s is not None else None for s in sets]
        ready = 0
        for fd, i in wanted:
            f = t.proc.fds.files.get(fd)
            bits = out[i]
            if f is not None and bits is not None and poll_ready(f, 1 if i == 0 else 4):
                bits[fd >> 3] |= 1 << (fd & 7)
                ready += 1
        if not ready and (deadline is None or time.monotonic() < deadline):
            raise Would()
        for addr, o in zip((rd, wr, ex), out):
            if addr and o is not None and size:
                mem.write(addr, bytes(o))
        return ready
    return blocking(attempt, Would, deadline=deadline, on_timeout=lambda: _clear(mem, (rd, wr, ex), size),
                    restartable=False,           # -ERESTARTNOHAND, as ppoll
                    queues=wait_queues(t.proc.fds.files[fd] for fd, _ in wanted))


def _clear(mem, addrs: tuple[int, ...], size: int) -> int:  # noqa: ANN001
    for a in addrs:
        if a and size:
            mem.write(a, bytes(size))
    return 0
