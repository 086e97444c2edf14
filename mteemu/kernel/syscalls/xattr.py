"""Extended attributes (fs/xattr.c): the host file's own, read through a descriptor mteemu
holds (never a name the guest could swap), so `ls -l`, `cp -a` and `sed -i` see what Linux
would show them. Changing them is changing the file's metadata: as chmod, allowed on host
files the guest was not merely handed (stdio, the program: EPERM), and never in the
privileged namespaces (trusted.*, security.*: EPERM, as for an unprivileged caller).
Generated files (/proc, /sys) have none (EOPNOTSUPP, as procfs)."""
from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Callable, TypeVar

from mteemu.kernel.fs.file import OpenFile, fd_path
from mteemu.kernel.fs.hostfile import HostFile
from mteemu.kernel.fs.namei import HostEntry
from mteemu.kernel.fs.vfs import AT_FDCWD, oserror
from mteemu.kernel.process import Thread
from mteemu.kernel.syscalls.args import s32, user_path
from mteemu.kernel.syscalls.registry import Support, syscall
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi

XATTR_NAME_MAX, XATTR_SIZE_MAX, XATTR_LIST_MAX = 255, 65536, 65536
XATTR_CREATE, XATTR_REPLACE = 1, 2
PRIVILEGED = ("trusted.", "security.")
R = TypeVar("R")
PRIVILEGED_REFUSED = "trusted.* and security.* attributes are refused (EPERM), even when mteemu runs as root"


def _name(t: Thread, addr: int) -> str:
    raw = t.proc.mem.read_cstr(addr, XATTR_NAME_MAX + 1)
    if not raw or len(raw) > XATTR_NAME_MAX:
        raise SyscallError(errno.ERANGE)              # strncpy_from_user(): "" or too long
    return os.fsdecode(raw)


def _on_path(k: "KernelApi", t: Thread, path: int, follow: bool, action: Callable[[str], R],
             changes: bool = False) -> R:
    """action(host path of the object) for a path the guest names; the walk follows a final
    symlink or not (`follow`: getxattr, or lgetxattr and friends)."""
    with k.vfs.lookup(t, AT_FDCWD, user_path(t, path), follow=follow, reading=not changes) as r:
        if not isinstance(r, HostEntry):
            raise SyscallError(errno.EOPNOTSUPP)
        if r.st is None:
            raise SyscallError(errno.ENOENT)
        if changes and r.foreign:
            raise SyscallError(errno.EPERM)
        try:
            fd = r.open_path()
        except OSError as e:
            raise oserror(e) from None
    try:
        # The magic link reaches the held object itself, a symlink too (Linux does not
        # follow a link a magic link leads to): the walk already chose what to follow.
        return action(fd_path(fd))
    finally:
        os.close(fd)


def _on_fd(t: Thread, fd: int, action: Callable[[str], R], changes: bool = False) -> R:
    f: OpenFile = t.proc.fds.get(s32(fd))
    if not isinstance(f, HostFile):
        raise SyscallError(errno.EOPNOTSUPP)
    if changes and f.foreign:
        raise SyscallError(errno.EPERM)
    return action(fd_path(f.fd))


def _value_out(t: Thread, data: bytes, buf: int, size: int) -> int:
    """getxattr()'s size rule: 0 asks for the length; a smaller buffer is ERANGE."""
    if size == 0:
        return len(data)
    if len(data) > size:
        raise SyscallError(errno.ERANGE)
    t.proc.mem.write(buf, data)
    return len(data)


def _get(t: Thread, name_addr: int, buf: int, size: int) -> Callable[[str], int]:
    name = _name(t, name_addr)

    def action(path: str) -> int:
        try:
            value = os.getxattr(path, name)
        except OSError as e:
            raise oserror(e) from None
        return _value_out(t, value, buf, size)
    return action


def _list(t: Thread, buf: int, size: int) -> Callable[[str], int]:
    def action(path: str) -> int:
        try:
            names = os.listxattr(path)
        except OSError as e:
            raise oserror(e) from None
        return _value_out(t, b"".join(os.fsencode(n) + b"\0" for n in names), buf, size)
    return action


def _set(t: Thread, name_addr: int, value: int, size: int, flags: int) -> Callable[[str], int]:
    if flags & ~(XATTR_CREATE | XATTR_REPLACE):
        raise SyscallError(errno.EINVAL)
    name = _name(t, name_addr)
    if size > XATTR_SIZE_MAX:
        raise SyscallError(errno.E2BIG)
    data = t.proc.mem.read(value, size) if size else b""
    if name.startswith(PRIVILEGED):
        raise SyscallError(errno.EPERM)

    def action(path: str) -> int:
        try:
            os.setxattr(path, name, data, flags)
        except OSError as e:
            raise oserror(e) from None
        return 0
    return action


def _remove(t: Thread, name_addr: int) -> Callable[[str], int]:
    name = _name(t, name_addr)
    if name.startswith(PRIVILEGED):
        raise SyscallError(errno.EPERM)

    def action(path: str) -> int:
        try:
            os.removexattr(path, name)
        except OSError as e:
            raise oserror(e) from None
        return 0
    return action


@syscall("getxattr", strings=(0, 1))
def sys_getxattr(k: "KernelApi", t: Thread, path: int, name: int, buf: int, size: int) -> int:
    return _on_path(k, t, path, True, _get(t, name, buf, size))


@syscall("lgetxattr", strings=(0, 1))
def sys_lgetxattr(k: "KernelApi", t: Thread, path: int, name: int, buf: int, size: int) -> int:
    return _on_path(k, t, path, False, _get(t, name, buf, size))


@syscall("fgetxattr", strings=(1,))
def sys_fgetxattr(k: "KernelApi", t: Thread, fd: int, name: int, buf: int, size: int) -> int:
    return _on_fd(t, fd, _get(t, name, buf, size))


@syscall("listxattr", strings=(0,))
def sys_listxattr(k: "KernelApi", t: Thread, path: int, buf: int, size: int) -> int:
    return _on_path(k, t, path, True, _list(t, buf, size))


@syscall("llistxattr", strings=(0,))
def sys_llistxattr(k: "KernelApi", t: Thread, path: int, buf: int, size: int) -> int:
    return _on_path(k, t, path, False, _list(t, buf, size))


@syscall("flistxattr")
def sys_flistxattr(k: "KernelApi", t: Thread, fd: int, buf: int, size: int) -> int:
    return _on_fd(t, fd, _list(t, buf, size))


@syscall("setxattr", strings=(0, 1), support=Support.PARTIAL, note=PRIVILEGED_REFUSED)
def sys_setxattr(k: "KernelApi", t: Thread, path: int, name: int, value: int, size: int, flags: int) -> int:
    return _on_path(k, t, path, True, _set(t, name, value, size, flags), changes=True)


@syscall("lsetxattr", strings=(0, 1), support=Support.PARTIAL, note=PRIVILEGED_REFUSED)
def sys_lsetxattr(k: "KernelApi", t: Thread, path: int, name: int, value: int, size: int, flags: int) -> int:
    return _on_path(k, t, path, False, _set(t, name, value, size, flags), changes=True)


@syscall("fsetxattr", strings=(1,), support=Support.PARTIAL, note=PRIVILEGED_REFUSED)
def sys_fsetxattr(k: "KernelApi", t: Thread, fd: int, name: int, value: int, size: int, flags: int) -> int:
    return _on_fd(t, fd, _set(t, name, value, size, flags), changes=True)


@syscall("removexattr", strings=(0, 1), support=Support.PARTIAL, note=PRIVILEGED_REFUSED)
def sys_removexattr(k: "KernelApi", t: Thread, path: int, name: int) -> int:
    return _on_path(k, t, path, True, _remove(t, name), changes=True)


@syscall("lremovexattr", strings=(0, 1), support=Support.PARTIAL, note=PRIVILEGED_REFUSED)
def sys_lremovexattr(k: "KernelApi", t: Thread, path: int, name: int) -> int:
    return _on_path(k, t, path, False, _remove(t, name), changes=True)


@syscall("fremovexattr", strings=(1,), support=Support.PARTIAL, note=PRIVILEGED_REFUSED)
def sys_fremovexattr(k: "KernelApi", t: Thread, fd: int, name: int) -> int:
    return _on_fd(t, fd, _remove(t, name), changes=True)
