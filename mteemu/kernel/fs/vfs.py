"""The guest's file-system namespace: a path looked up from the cwd or a directory descriptor
(namei.py's walk by held descriptors, through the generated /proc, /sys and /dev trees and
the sysroot of -L), and the files opened from what it finds.
"""
from __future__ import annotations

import errno
import os
import stat as stat_mod
from typing import TYPE_CHECKING, Callable, Optional

from mteemu.kernel.fs import namei
from mteemu.kernel.fs.file import (
    O_CLOEXEC,
    OpenFile,
    Would,
    host_dup,
    host_open_flags,
)
from mteemu.kernel.fs.hostfile import HostFile
from mteemu.kernel.fs.namei import PSEUDO_TOPS, Generated, HostEntry, Magic, Resolved
from mteemu.kernel.fs.pseudofs import Link, open_node
from mteemu.kernel.process import Thread, Wait, blocking
from mteemu.kernel.uaccess import SyscallError, s32

if TYPE_CHECKING:
    from mteemu.kernel.api import VfsApi
    from mteemu.kernel.fs.hostfile import PageCache
    from mteemu.kernel.fs.pseudofs import Dir

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR, AT_EMPTY_PATH = 0x100, 0x200, 0x1000


class Vfs:
    """The guest's namespace for one run: its root and sysroot held as descriptors, the
    generated trees mounted at /proc, /sys (and /dev under --root), and the page cache
    host files are opened with."""

    def __init__(self, root_dir: namei.HostDir, sysroot_dir: Optional[namei.HostDir],
                 generated: "Callable[[Thread], dict[str, Dir]]", pagecache: "PageCache") -> None:
        self.root_dir, self.sysroot_dir = root_dir, sysroot_dir
        self.generated = generated          # the trees mounted over the root, as t sees them
        self.pagecache = pagecache
        # (st_dev, st_ino) of what guests made in this run: theirs to re-own, as on Linux
        # (tar x chowns what it extracted), where every other host file is refused.
        self.made: set[tuple[int, int]] = set()

    def note_made(self, dirfd: int, name: str) -> None:
        """A guest just made `name` in the held directory."""
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except OSError:
            return
        self.made.add((st.st_dev, st.st_ino))

    def made_by_guest(self, st: os.stat_result) -> bool:
        return (st.st_dev, st.st_ino) in self.made

    def close(self) -> None:
        self.root_dir.close()
        if self.sysroot_dir is not None:
            self.sysroot_dir.close()

    def lookup(self, t: Thread, dirfd: int, path: bytes, follow: bool = True, reading: bool = False) -> Resolved:
        """Walk a guest path (relative to dirfd or the cwd) in the guest's world (namei.py): a
        held host entry, a generated /proc or /sys node, or a followed magic link. `follow`:
        whether a final symlink is followed. `reading`: the caller only reads (open O_RDONLY,
        stat, readlink, exec), so an absolute path is looked up in the sysroot (-L) first, as
        qemu-user does — that is how a dynamic program's loader finds its libraries. What
        changes files never goes there: the sysroot is read-only to guests. A HostEntry holds
        a descriptor: use the result in a `with` block."""
        p = os.fsdecode(path)
        if not p:
            raise SyscallError(errno.ENOENT)
        sysroot = self.sysroot_dir
        if reading and sysroot is not None and p.startswith("/") and p.split("/")[1] not in PSEUDO_TOPS:
            try:
                found = namei.walk(sysroot, "/", p, follow, {})
            except SyscallError:
                found = None
            if isinstance(found, HostEntry):
                if found.exists:
                    return found.as_foreign()
                found.close()
        proc = t.proc
        dirfd = s32(dirfd)
        if p.startswith("/") or dirfd == AT_FDCWD:
            base = proc.cwd
        else:
            f = proc.fds.get(dirfd)
            if not f.is_dir:
                raise SyscallError(errno.ENOTDIR)
            base = f.path()
        return namei.walk(self.root_dir, base, p, follow, self.generated(t))

    def resolve(self, t: Thread, dirfd: int, path: bytes, follow: bool = True, creating: bool = False) -> HostEntry:
        """The held host entry of a guest path that a host call will change (create, remove,
        rename, link): generated names refuse it as Linux's procfs does."""
        try:
            r = self.lookup(t, dirfd, path, follow)
        except SyscallError as e:
            if e.errno == errno.ENOENT and self.in_generated_dir(t, dirfd, path):
                raise deny_entry() from None
            raise
        if isinstance(r, HostEntry):
            return r
        if creating:
            raise SyscallError(errno.EEXIST)
        raise deny_entry()


    def in_generated_dir(self, t: Thread, dirfd: int, path: bytes) -> bool:
        parent = os.path.dirname(os.fsdecode(path).rstrip("/")) or ("/" if path.startswith(b"/") else ".")
        try:
            with self.lookup(t, dirfd, os.fsencode(parent)) as r:
                return isinstance(r, Generated)
        except SyscallError:
            return False

    def open_host(self, r: HostEntry, flags: int, mode: int) -> HostFile:
        """openat() relative to the held directory, never following a final symlink: the walk
        followed the one it was asked to, and any other is ELOOP (or, with O_PATH, the link).
        A FIFO is opened non-blocking on the host: waiting for its peer is FifoOpen's."""
        if r.trailing_slash and flags & os.O_CREAT:
            raise SyscallError(errno.EISDIR)             # open_last_lookups(): "name/" is no file
        fifo = r.st is not None and stat_mod.S_ISFIFO(r.st.st_mode)
        try:
            fd = r.open(host_open_flags(flags) | (os.O_NONBLOCK if fifo else 0), mode)
        except OSError as e:
            raise oserror(e) from None
        if namei.pseudo_fs(fd) is not None:          # reached the host's kernel state after all
            os.close(fd)
            raise SyscallError(errno.ENOENT)
        if r.st is None and flags & os.O_CREAT:      # the walk found no such name: this open made it
            st = os.fstat(fd)
            self.made.add((st.st_dev, st.st_ino))
        return HostFile(fd, r.gpath, flags & ~O_CLOEXEC, self.pagecache, foreign=r.foreign)

    def open_for_reading(self, t: Thread, path: bytes) -> OpenFile:
        """openat(AT_FDCWD, path, O_RDONLY) as t would make it, without an fd: a debugger
        reads the tracee's files (GDB's vFile:open) in the tracee's world."""
        with self.lookup(t, AT_FDCWD, path, follow=True, reading=True) as r:
            if isinstance(r, HostEntry):
                return self.open_host(r, os.O_RDONLY, 0)
            return open_generated(r, os.O_RDONLY)


def deny_entry() -> SyscallError:
    """Adding or removing a name in a generated directory: may_create()/may_delete() refuse
    a user without write permission (EACCES); root passes them and finds no such
    operation (EPERM)."""
    return SyscallError(errno.EPERM if os.geteuid() == 0 else errno.EACCES)


def oserror(e: OSError) -> SyscallError:
    return SyscallError(e.errno or errno.EIO)


class FifoOpen:
    """A blocking open of a host FIFO (fifo_open()): a reader waits for a writer, a writer
    for a reader, as a blocked guest thread that signals and --timeout can end and that
    another guest process can wake by opening the other end. A reader holds its end while
    it waits (so that the writer's open succeeds) and is done when data or a hang-up shows
    a writer came; Linux wakes it when the writer opens (a writer that opens and neither
    writes nor closes keeps this reader waiting: a documented difference)."""

    def __init__(self, vfs: "VfsApi", t: Thread, r: HostEntry, flags: int) -> None:
        self.vfs, self.t, self.entry, self.flags = vfs, t, r, flags
        self.file: Optional[HostFile] = None

    def wait(self) -> "int | Wait":
        self.entry = keep_entry(self.entry)
        return blocking(self.attempt, Would, host=True)

    def attempt(self) -> int:
        acc = self.flags & 3
        if self.file is None:
            try:
                self.file = self.vfs.open_host(self.entry, self.flags, 0)
            except SyscallError as e:
                if e.errno == errno.ENXIO and acc == os.O_WRONLY:
                    raise Would() from None           # no reader yet
                raise
        if acc == os.O_RDONLY and not self.file.poll_in():
            raise Would()                             # no writer has come yet
        f, self.file = self.file, None
        return self.t.proc.fds.install(f, cloexec=bool(self.flags & O_CLOEXEC))

    def __del__(self) -> None:                        # abandoned (a signal, the run's end)
        if self.file is not None:
            self.file.release()


def keep_entry(r: HostEntry) -> HostEntry:
    """A HostEntry that outlives the `with` that walked it (its own held directory)."""
    return HostEntry(host_dup(r.dirfd), r.name, r.gpath, r.st, r.foreign)


def open_generated(r: "Generated | Magic", flags: int) -> OpenFile:
    if isinstance(r, Magic):
        return r.link.reopen(flags)
    if isinstance(r.node, Link):                 # O_NOFOLLOW on a link: ELOOP, as Linux
        raise SyscallError(errno.ELOOP)
    return open_node(r.node, r.gpath, flags, os.geteuid())
