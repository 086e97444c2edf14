"""The guest's path walk (Linux's fs/namei.c, redone for a guest that shares the host's
file system or lives in `--root DIR`), by held descriptors.

Every path the guest names is walked here, component by component, with or without
`--root`, and **no host call ever receives a host path built from guest input**:

* The walk starts at a held descriptor of the guest's root (`HostDir`, opened once) and
  descends with `openat(dir, name, O_PATH|O_NOFOLLOW|O_DIRECTORY)`, one component at a
  time, holding each directory. A host symlink is never followed by the host: the walk
  reads it (`readlinkat`) and walks its target again inside the root; `..` is taken on
  the guest path and stops at the root. So a component that another process swaps for a
  symlink between our check and our use cannot lead out: the next step is relative to a
  descriptor we hold, never to a re-joined string (what Linux's RESOLVE_IN_ROOT gives,
  done in user space; the guest's /proc and /sys have to be spliced into the walk anyway).
* The walk ends on `HostEntry`: a held directory and one final name. The caller performs
  its operation relative to that descriptor with the `*at` call and no following of a
  final symlink (`openat(O_NOFOLLOW)`, `fstatat(AT_SYMLINK_NOFOLLOW)`, `unlinkat`,
  `renameat2`, ...). A final symlink the walk followed was already resolved; one that
  appears afterwards (a race) makes the operation see the link itself (ELOOP for open),
  never its target.
* `/proc` and `/sys` at the guest's root are the generated trees of the kernel model
  (procfs.py, sysfs.py), also when a host symlink leads there (`/dev/fd`, `/dev/stdin`).
  The host's are never reached: a directory the walk enters, or a final object, that lies
  on a pseudo file system mounted anywhere (a bind mount of proc, a cgroup fs...) is ENOENT.

Positions are guest paths ("/a/b"): the cwd and a directory descriptor's place are kept
as the guest names them, and relative walks start again from the root descriptor.
"""
from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections import deque
from dataclasses import dataclass
from typing import Optional, Self, Union

from mteemu.kernel.fs.file import host_dup, host_fd
from mteemu.kernel.fs.pseudofs import Dir, Link, MagicLink, Mount, Node
from mteemu.kernel.uaccess import SyscallError

MAX_SYMLINKS = 40          # Linux's MAXSYMLINKS
PSEUDO_TOPS = ("proc", "sys", "dev")
_DIR_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_OBJ_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC

PROC_SUPER_MAGIC, SYSFS_MAGIC, TMPFS_MAGIC = 0x9FA0, 0x62656572, 0x01021994   # statfs f_type (linux/magic.h)
# statfs f_type of the host's pseudo file systems: kernel state, never the guest's.
PSEUDO_FS_MAGIC = {
    PROC_SUPER_MAGIC: "proc", SYSFS_MAGIC: "sysfs", 0x64626720: "debugfs", 0x74726163: "tracefs",
    0x73636673: "securityfs", 0x27E0EB: "cgroup", 0x63677270: "cgroup2", 0xCAFE4A11: "bpf",
    0x62656570: "configfs", 0xDE5E81E4: "efivarfs", 0x6165676C: "pstore", 0x65735543: "fusectl",
    0x42494E4D: "binfmt_misc", 0x67596969: "rpc_pipefs", 0x19800202: "mqueue", 0x6E736673: "nsfs",
}


class HostDir:
    """A host directory held open for the run: the guest's root (`--root`, else the host's
    "/") or the sysroot (-L). The path is named once, by mteemu's user, never by the guest."""

    def __init__(self, path: str) -> None:
        self.path = os.path.realpath(path)
        self.fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Result:
    """Every walk result is a context manager, so callers release a HostEntry's descriptor
    with `with` whatever the walk found."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass


class HostEntry(_Result):
    """The walk ended on the host: `name` (one component, or "." for the directory itself)
    inside the held directory `dirfd`, which this entry owns. `st` is what lstat showed at
    the walk (None: no such name yet, e.g. for a create). Every operation on it is relative
    to `dirfd` and never follows a final symlink."""

    def __init__(self, dirfd: int, name: str, gpath: str, st: Optional[os.stat_result],
                 foreign: bool = False, trailing_slash: bool = False, is_root: bool = False) -> None:
        self.dirfd, self.name, self.gpath, self.st = dirfd, name, gpath, st
        self.foreign = foreign               # found in the sysroot (-L): read-only to the guest
        self.trailing_slash = trailing_slash  # "name/": it must be a directory
        self.is_root = is_root               # the guest's "/" itself (rmdir, rename: EBUSY)

    @property
    def exists(self) -> bool:
        return self.st is not None

    def as_foreign(self) -> "HostEntry":
        self.foreign = True
        return self

    def open(self, flags: int, mode: int = 0o666) -> int:
        """openat(dirfd, name, flags | O_NOFOLLOW): a host descriptor, or OSError."""
        return host_fd(os.open(self.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self.dirfd))

    def open_path(self) -> int:
        """An O_PATH descriptor of the object itself (a symlink stays a symlink)."""
        return host_fd(os.open(self.name, _OBJ_FLAGS, dir_fd=self.dirfd))

    def close(self) -> None:
        if self.dirfd >= 0:
            os.close(self.dirfd)
            self.dirfd = -1

    def __del__(self) -> None:
        self.close()


@dataclass(frozen=True)
class Generated(_Result):
    """The walk ended on a generated node (a link itself only when not followed)."""

    node: Node
    gpath: str


@dataclass(frozen=True)
class Magic(_Result):
    """A followed magic link (/proc/<pid>/fd/N, /proc/<pid>/exe): the object itself."""

    link: MagicLink
    gpath: str


Resolved = Union[HostEntry, Generated, Magic]


def guest_view(root: str, host: str) -> str:
    """A host path named by mteemu's user (the program file, inherited stdio) as the guest
    sees it: inside the root, relative to it; outside, as it is."""
    if root == "/":
        return host
    if host == root:
        return "/"
    if host.startswith(root + "/"):
        return host[len(root):]
    return host


def walk(root: HostDir, base: str, path: str, follow: bool, tops: dict[str, Dir]) -> Resolved:
    """Resolve guest `path` relative to the guest directory `base` (a guest path); `follow`
    says whether a final symlink is followed. `tops` are the generated trees at the guest's
    root. Raises SyscallError with Linux's errno."""
    return _Walk(root, tops).run(base, path, follow)


class _Walk:
    """One walk: `comps` is the guest position; on the host, `fds[i]` holds the directory
    at comps[:mount + i] (fds[0] the root, or the host directory mounted at
    comps[:mount]), so `len(fds) == len(comps) - mount + 1`; inside a generated tree
    `node` is the position and `fds` is just the root."""

    def __init__(self, root: HostDir, tops: dict[str, Dir]) -> None:
        self.root, self.tops = root, tops
        self.comps: list[str] = []
        self.fds: list[int] = []
        self.node: Optional[Node] = None
        self.mount = 0
        self.links = 0                  # symlinks followed (ELOOP past the limit)

    def run(self, base: str, path: str, follow: bool) -> Resolved:
        self.fds = [os.dup(self.root.fd)]
        try:
            return self._run(base, path, follow)
        finally:
            for fd in self.fds:
                os.close(fd)

    def _run(self, base: str, path: str, follow: bool) -> Resolved:
        if not path.startswith("/"):
            self._goto([c for c in base.split("/") if c and c != "."])
        parts = deque(path.split("/"))
        self.links = 0
        while parts:
            c = parts.popleft()
            if c in ("", "."):
                continue
            done = self._step(c, parts, follow)
            if done is not None:
                return done
        return self._here()

    def _step(self, c: str, parts: deque, follow: bool) -> Optional[Resolved]:
        """One name of the path; the walk's result when it ends here."""
        rest_trivial = all(x in ("", ".") for x in parts)
        if c == "..":
            self._up()
            return None
        if self.node is None and not self.comps and c in self.tops:
            self.comps, self.node = [c], self.tops[c]      # at the root: fds is [root]
            return None
        if self.node is not None:
            final = rest_trivial and not parts            # "a/" and "a/." follow a final link
            return self._generated_step(c, parts, follow, final)
        if rest_trivial:
            return self._last_host_name(c, parts, follow)
        fd = self._open_dir(c)
        if fd is None:                                    # a symlink: walk its target here
            self.links = _count(self.links)
            self._jump(self._readlink(c), parts)
            return None
        self.fds.append(fd)
        self.comps.append(c)
        return None

    def _generated_step(self, c: str, parts: deque, follow: bool, final: bool) -> Optional[Resolved]:
        """A name inside a generated tree: a node entered, a link followed (a magic link,
        when final, is the walk's result), or ENOENT/ENOTDIR."""
        if not isinstance(self.node, Dir):
            raise SyscallError(errno.ENOTDIR)
        child = self.node.lookup(c)
        if child is None:
            raise SyscallError(errno.ENOENT)
        if not (isinstance(child, Link) and (follow or not final)):
            self._enter(c, child)
            return None
        self.links = _count(self.links)
        if isinstance(child, MagicLink):
            if final:
                return Magic(child, "/" + "/".join(self.comps + [c]))
            target = child.dir_path()
            if target is None:
                raise SyscallError(errno.ENOTDIR)
        else:
            target = child.target()
        self._jump(target, parts)
        return None

    def _last_host_name(self, c: str, parts: deque, follow: bool) -> Optional[Resolved]:
        """The last name on the host: it need not exist (a create) and is not entered."""
        st = self._lstat(c)
        if st is not None and stat.S_ISLNK(st.st_mode) and (follow or parts):
            self.links = _count(self.links)
            self._jump(self._readlink(c), parts)
            return None
        if parts and st is not None and not stat.S_ISDIR(st.st_mode):
            raise SyscallError(errno.ENOTDIR)
        if st is not None and not stat.S_ISLNK(st.st_mode):
            self._refuse_pseudo_obj(c)
        gpath = "/" + "/".join(self.comps + [c])
        return HostEntry(self.fds.pop(), c, gpath, st, trailing_slash=bool(parts))

    def _here(self) -> Resolved:
        """The walk ended on a directory it holds (or a generated node)."""
        gpath = "/" + "/".join(self.comps)
        if self.node is not None:
            return Generated(self.node, gpath)
        fd = self.fds.pop()
        try:
            st = os.fstat(fd)
        except OSError as e:
            os.close(fd)
            raise SyscallError(e.errno or errno.EIO) from None
        return HostEntry(fd, ".", gpath, st, is_root=not self.comps)

    # -- moves -------------------------------------------------------------------------------
    def _goto(self, comps: list[str]) -> None:
        """Start at a canonical guest position (the cwd, a directory descriptor's place)."""
        for c in comps:
            if c == "..":
                self._up()
            elif self.node is None and not self.comps and c in self.tops:
                self.comps, self.node = [c], self.tops[c]
            elif self.node is not None:
                if not isinstance(self.node, Dir):
                    raise SyscallError(errno.ENOTDIR)
                child = self.node.lookup(c)
                if child is None:
                    raise SyscallError(errno.ENOENT)      # e.g. the cwd's process has gone
                self._enter(c, child)
            else:
                fd = self._open_dir(c)
                if fd is None:
                    raise SyscallError(errno.ENOENT)      # no longer the directory it was
                self.fds.append(fd)
                self.comps.append(c)

    def _enter(self, c: str, child: Node) -> None:
        """Step from a generated directory into its child; a Mount continues on the host."""
        self.comps.append(c)
        if isinstance(child, Mount):
            self._reset(host_dup(child.hostdir()))
            self.mount, self.node = len(self.comps), None
        else:
            self.node = child

    def _reset(self, fd: int) -> None:
        """Hold only fd as the host position's base."""
        for old in self.fds:
            os.close(old)
        self.fds, self.mount = [fd], 0

    def _up(self) -> None:
        if not self.comps:
            return                                        # ".." of the root is the root
        self.comps.pop()
        if self.node is None and self.mount and len(self.comps) < self.mount:
            self._reset(os.dup(self.root.fd))             # out of a mount, back in its tree
            self.node = _node_at(self.comps, self.tops)
        elif self.node is not None:
            self.node = _node_at(self.comps, self.tops)
        else:
            os.close(self.fds.pop())

    def _jump(self, target: str, parts: deque) -> None:
        """Continue the walk at a link's target: absolute targets restart at the root."""
        if target.startswith("/"):
            self._reset(os.dup(self.root.fd))
            self.comps, self.node = [], None
        parts.extendleft(reversed(target.split("/")))

    # -- host steps --------------------------------------------------------------------------
    def _open_dir(self, name: str) -> Optional[int]:
        """Hold the directory `name` inside the current one; None when it is a symlink."""
        try:
            fd = host_fd(os.open(name, _DIR_FLAGS, dir_fd=self.fds[-1]))
        except OSError as e:
            if e.errno == errno.ENOTDIR:
                st = self._lstat(name)
                if st is not None and stat.S_ISLNK(st.st_mode):
                    return None
            raise SyscallError(e.errno or errno.EIO) from None
        if pseudo_fs(fd) is not None:
            os.close(fd)
            raise SyscallError(errno.ENOENT)          # the host's kernel state is not the guest's
        return fd

    def _lstat(self, name: str) -> Optional[os.stat_result]:
        try:
            return os.stat(name, dir_fd=self.fds[-1], follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise SyscallError(e.errno or errno.EIO) from None

    def _readlink(self, name: str) -> str:
        try:
            return os.readlink(name, dir_fd=self.fds[-1])
        except OSError as e:
            # Swapped for a non-link since the lstat: the name changed under us; Linux's
            # walk would see whichever it met, and ENOENT is what a vanished link gives.
            raise SyscallError(errno.ENOENT if e.errno == errno.EINVAL else e.errno or errno.EIO) from None

    def _refuse_pseudo_obj(self, name: str) -> None:
        """A final object on a host pseudo file system (bind-mounted into the root): ENOENT."""
        try:
            fd = os.open(name, _OBJ_FLAGS, dir_fd=self.fds[-1])
        except OSError:
            return                                    # gone: the caller's *at call will say so
        try:
            if pseudo_fs(fd) is not None:
                raise SyscallError(errno.ENOENT)
        finally:
            os.close(fd)


def _count(links: int) -> int:
    links += 1
    if links > MAX_SYMLINKS:
        raise SyscallError(errno.ELOOP)
    return links


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


def fs_type(fd: int) -> Optional[int]:
    """fstatfs(2)'s f_type of a host descriptor (None when it cannot be asked)."""
    buf = _Statfs()
    rc = _libc.fstatfs(fd, ctypes.byref(buf))
    return None if rc != 0 else buf.f_type & 0xFFFF_FFFF


def on_tmpfs(fd: int) -> bool:
    """Is an open host file on tmpfs? Linux tags shmem pages (VM_MTE_ALLOWED is set by
    shmem_mmap), so PROT_MTE works for files there and nowhere else on disk."""
    return fs_type(fd) == TMPFS_MAGIC


def pseudo_fs(fd: int) -> Optional[str]:
    """The name of the host pseudo file system a descriptor's object lies on; None for
    ordinary files."""
    t = fs_type(fd)
    return None if t is None else PSEUDO_FS_MAGIC.get(t)
