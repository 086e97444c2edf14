"""The guest's path walk (Linux's fs/namei.c, redone for a guest that shares the host's
file system or lives in `--root DIR`).

Every path the guest names is walked here, component by component, with or without
`--root`:

* `..` stops at the guest's root; absolute paths start there.
* Every host symlink — whoever made it, wherever it points — is read and walked again
  inside the root, so the host path handed to a host syscall contains no symlink that
  could lead out (except a final one the caller promises not to follow: unlink, rename,
  readlink, lstat, O_NOFOLLOW). The guest's world is single threaded from the host's
  point of view, so nothing can swap a component between the walk and the use.
* `/proc` and `/sys` at the guest's root are the generated trees of the kernel model
  (procfs.py, sysfs.py), also when a host symlink leads there (`/dev/fd`, `/dev/stdin`).
  The host's are never reached: a host path that the walk ends on is also refused when
  it lies on a pseudo file system mounted elsewhere (a bind mount of proc, a cgroup fs…).

Positions are kept as guest paths ("/a/b"); the host path is the root joined with it.
"""
from __future__ import annotations

import ctypes
import errno
import os
from collections import deque
from dataclasses import dataclass
from typing import Optional, Union

from mteemu.kernel.pseudofs import Dir, Link, MagicLink, Node
from mteemu.kernel.uaccess import SyscallError

MAX_SYMLINKS = 40          # Linux's MAXSYMLINKS
PSEUDO_TOPS = ("proc", "sys")

PROC_SUPER_MAGIC, SYSFS_MAGIC, TMPFS_MAGIC = 0x9FA0, 0x62656572, 0x01021994   # statfs f_type (linux/magic.h)
# statfs f_type of the host's pseudo file systems: kernel state, never the guest's.
PSEUDO_FS_MAGIC = {
    PROC_SUPER_MAGIC: "proc", SYSFS_MAGIC: "sysfs", 0x64626720: "debugfs", 0x74726163: "tracefs",
    0x73636673: "securityfs", 0x27E0EB: "cgroup", 0x63677270: "cgroup2", 0xCAFE4A11: "bpf",
    0x62656570: "configfs", 0xDE5E81E4: "efivarfs", 0x6165676C: "pstore", 0x65735543: "fusectl",
    0x42494E4D: "binfmt_misc", 0x67596969: "rpc_pipefs", 0x19800202: "mqueue", 0x6E736673: "nsfs",
}


@dataclass(frozen=True)
class HostPath:
    """The walk ended on the host: `path` is safe to hand to a host syscall."""

    path: str
    gpath: str
    foreign: bool = False        # found in the sysroot (-L): read-only to the guest, never re-owned


@dataclass(frozen=True)
class Generated:
    """The walk ended on a generated node (a link itself only when not followed)."""

    node: Node
    gpath: str


@dataclass(frozen=True)
class Magic:
    """A followed magic link (/proc/<pid>/fd/N, /proc/<pid>/exe): the object itself."""

    link: MagicLink
    gpath: str


Resolved = Union[HostPath, Generated, Magic]


def host_of(root: str, gpath: str) -> str:
    return gpath if root == "/" else root + gpath if gpath != "/" else root


def guest_view(root: str, host: str) -> str:
    """A host path as the guest sees it (getcwd, readlink, /proc/<pid>/maps). A host path
    outside the root (the program file, inherited stdio) is shown as it is."""
    if root == "/":
        return host
    if host == root:
        return "/"
    if host.startswith(root + "/"):
        return host[len(root):]
    return host


def walk(root: str, base: str, path: str, follow: bool, tops: dict[str, Dir]) -> Resolved:
    """Resolve guest `path` relative to the guest directory `base`; `follow` says whether
    a final symlink is followed. `tops` are the generated trees at the guest's root."""
    comps: list[str] = [] if path.startswith("/") else [c for c in base.split("/") if c]
    node = _node_at(comps, tops)
    parts = deque(path.split("/"))
    links = 0
    while parts:
        c = parts.popleft()
        if c in ("", "."):
            continue
        final = all(x in ("", ".") for x in parts)
        if c == "..":
            if comps:
                comps.pop()
                node = _node_at(comps, tops)
            continue
        if node is None and not comps and c in tops:
            comps, node = [c], tops[c]
            continue
        if node is not None:
            if not isinstance(node, Dir):
                raise SyscallError(errno.ENOTDIR)
            child = node.lookup(c)
            if child is None:
                raise SyscallError(errno.ENOENT)
            if isinstance(child, Link) and (follow or not final):
                links += 1
                if links > MAX_SYMLINKS:
                    raise SyscallError(errno.ELOOP)
                if isinstance(child, MagicLink):
                    if final:
                        return Magic(child, "/" + "/".join(comps + [c]))
                    target = child.dir_path()
                    if target is None:
                        raise SyscallError(errno.ENOTDIR)
                else:
                    target = child.target()
                comps, node = _jump(comps, target, parts, tops)
                continue
            comps.append(c)
            node = child
            continue
        nxt = host_of(root, "/" + "/".join(comps + [c]))
        if (follow or not final) and os.path.islink(nxt):
            links += 1
            if links > MAX_SYMLINKS:
                raise SyscallError(errno.ELOOP)
            try:
                target = os.readlink(nxt)
            except OSError as e:
                raise SyscallError(e.errno or errno.EIO) from None
            comps, node = _jump(comps, target, parts, tops)
            continue
        comps.append(c)
    gpath = "/" + "/".join(comps)
    if node is not None:
        return Generated(node, gpath)
    host = host_of(root, gpath)
    # statfs() follows a final symlink the caller does not follow (unlink, lstat): ask
    # about the directory that holds the link then.
    kind = pseudo_fs(os.path.dirname(host) if os.path.islink(host) else host)
    if kind is not None:
        raise SyscallError(errno.ENOENT)     # the host's kernel state is not the guest's
    return HostPath(host, gpath)


def _jump(comps: list[str], target: str, parts: deque, tops: dict[str, Dir]) -> tuple[list[str], Optional[Node]]:
    """Continue the walk at a link's target: absolute targets restart at the root."""
    if target.startswith("/"):
        comps = []
    parts.extendleft(reversed(target.split("/")))
    return comps, _node_at(comps, tops)


def _node_at(comps: list[str], tops: dict[str, Dir]) -> Optional[Node]:
    """The generated node at a canonical guest path (no links in it), or None on the host."""
    if not comps or comps[0] not in tops:
        return None
    node: Optional[Node] = tops[comps[0]]
    for c in comps[1:]:
        if not isinstance(node, Dir):
            raise SyscallError(errno.ENOTDIR)
        node = node.lookup(c)
        if node is None:
            raise SyscallError(errno.ENOENT)      # e.g. the cwd's process has gone
    return node


class _Statfs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 112)]


_libc = ctypes.CDLL(None, use_errno=True)     # the C library mteemu already runs on


def fs_type(path_or_fd: Union[str, int]) -> Optional[int]:
    """statfs(2)'s f_type of a host path or descriptor (None when it cannot be asked)."""
    buf = _Statfs()
    if isinstance(path_or_fd, int):
        rc = _libc.fstatfs(path_or_fd, ctypes.byref(buf))
    else:
        rc = _libc.statfs(os.fsencode(path_or_fd), ctypes.byref(buf))
    return None if rc != 0 else buf.f_type & 0xFFFF_FFFF


def on_tmpfs(fd: int) -> bool:
    """Is an open host file on tmpfs? Linux tags shmem pages (VM_MTE_ALLOWED is set by
    shmem_mmap), so PROT_MTE works for files there and nowhere else on disk."""
    return fs_type(fd) == TMPFS_MAGIC


def pseudo_fs(host: Union[str, int]) -> Optional[str]:
    """The name of the host pseudo file system that `host` (a path, or the nearest existing
    directory above it, or a descriptor) lies on; None for ordinary files."""
    if isinstance(host, str):
        while True:
            t = fs_type(host)
            if t is not None or host in ("/", ""):
                break
            host = os.path.dirname(host)
    else:
        t = fs_type(host)
    return None if t is None else PSEUDO_FS_MAGIC.get(t)
