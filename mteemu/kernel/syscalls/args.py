"""Arguments as a handler reads them: raw 64-bit registers made into signed ints, descriptors,
user-space ranges and path names, with the checks Linux makes when it takes them."""
from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from mteemu.kernel.fs.file import OpenFile
from mteemu.kernel.mm.addrspace import TASK_SIZE, untag
from mteemu.kernel.process import Process, Thread
from mteemu.kernel.uaccess import SyscallError
from mteemu.kernel.uaccess import s32 as s32  # re-exported: handlers read their arguments here
from mteemu.kernel.uaccess import s64 as s64

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi


def process(k: "KernelApi", t: Thread, pid: int) -> Process:
    """The process a pid argument names, 0 being the caller's own (find_task_by_vpid():
    ESRCH when there is none)."""
    proc = t.proc if s32(pid) == 0 else k.tasks.procs.get(s32(pid))
    if proc is None:
        raise SyscallError(errno.ESRCH)
    return proc


def fdget(t: Thread, fd: int) -> OpenFile:
    """fdget(): the open file, where an O_PATH descriptor does not count (EBADF) - calls that
    act on the file itself (lseek, ftruncate, fsync, pread, getdents...), as opposed to
    those that only name it (fstat, close, dup, *at)."""
    f = t.proc.fds.get(s32(fd))
    if f.flags & os.O_PATH:
        raise SyscallError(errno.EBADF)
    return f


def access_ok(t: Thread, buf: int, count: int) -> None:
    """access_ok(): the whole range must lie in user space, whatever is mapped there; checked
    by vfs_read()/vfs_write() before anything happens (a write of 2^64-1 bytes to a broken
    pipe is EFAULT, not SIGPIPE; a tagged pointer without the tagged address ABI is EFAULT
    even for 0 bytes: the Linux oracle)."""
    addr = untag(buf) if t.proc.mem.tagged_addr_abi else buf
    if addr + count > TASK_SIZE:
        raise SyscallError(errno.EFAULT)


def user_path(t: Thread, addr: int) -> bytes:
    """getname(): a NULL pointer is read like any other (EFAULT unless page 0 is mapped,
    which root may do: then it names "", ENOENT; found by the Linux oracle)."""
    return t.proc.mem.read_cstr(addr, 4096)
