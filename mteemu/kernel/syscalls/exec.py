"""execve(2) and execveat(2): the calling process runs another program (fs/exec.c,
fs/binfmt_script.c, fs/binfmt_elf.c).

Everything that can fail is done before the point of no return: the path is walked in
the guest's world (inside `--root`), `#!` scripts name their interpreter (itself walked
there, at most four levels deep, as Linux's binfmt recursion limit), and the arm64 ELF is
read and checked. Then Kernel.exec_image() replaces the address space and the rest of
the process's state as Linux does. A non-ELF, a non-arm64 ELF or a malformed one is
ENOEXEC; so is a dynamically linked program whose interpreter is in neither the sysroot
nor the guest's world (one `mteemu:` line says so).
"""
from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING, Optional

from mteemu.errors import MteEmuError, NoInterpreter
from mteemu.kernel.fs.exefile import ExeFile
from mteemu.kernel.fs.file import reopen
from mteemu.kernel.fs.hostfile import HostFile
from mteemu.kernel.fs.namei import HostEntry, Magic
from mteemu.kernel.fs.vfs import AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW
from mteemu.kernel.process import Thread
from mteemu.kernel.syscalls.args import s32, user_path
from mteemu.kernel.syscalls.registry import NORETURN, Support, syscall
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi

MAX_ARG_STRLEN = 32 * 4096        # one argument or environment string
ARG_MAX = 512 * 1024              # all of them (a quarter of the 8 MiB stack, less room for auxv)
BINPRM_BUF_SIZE = 256             # how much of a `#!` line is read
MAX_INTERP_DEPTH = 4              # binfmt_script: a script's interpreter may be a script, 4 deep


def _strings(t: Thread, addr: int) -> list[bytes]:
    if not addr:
        return []
    out, total = [], 0
    for p in t.proc.mem.read_ptr_array(addr):
        try:
            s = t.proc.mem.read_cstr(p, MAX_ARG_STRLEN)
        except SyscallError as e:          # copy_strings(): a string past MAX_ARG_STRLEN is E2BIG
            raise SyscallError(errno.E2BIG if e.errno == errno.ENAMETOOLONG else e.errno) from None
        total += len(s) + 1
        if total > ARG_MAX:                # at once: never more than ARG_MAX bytes held
            raise SyscallError(errno.E2BIG)
        out.append(s)
    return out


def _program(k: "KernelApi", t: Thread, dirfd: int, path: bytes, follow: bool) -> ExeFile:
    """The executable regular file a path names, opened once (do_open_execat()), or the
    errno Linux gives: a final symlink that must not be followed is ELOOP, a directory or
    other non-regular file or one without execute permission EACCES."""
    with k.vfs.lookup(t, dirfd, path, follow=follow, reading=True) as r:
        if isinstance(r, Magic):                        # /proc/<pid>/exe, /proc/<pid>/fd/N
            f = r.link.reopen(os.O_RDONLY)
            try:
                if not isinstance(f, HostFile):
                    raise SyscallError(errno.EACCES)    # a pipe or memfd here is no program file
                return _reopened(f)
            finally:
                f.release()
        if not isinstance(r, HostEntry):
            raise SyscallError(errno.EACCES)            # a generated file is no program
        if r.st is None:
            raise SyscallError(errno.ENOENT)
        try:
            # O_NONBLOCK: a FIFO must not hold the open (it is refused below, as Linux does).
            return _checked(r.open(os.O_RDONLY | os.O_NONBLOCK), r.gpath)
        except OSError as e:
            raise SyscallError(e.errno or errno.EIO) from None


def _reopened(f: HostFile) -> ExeFile:
    """The program an open host file is (fexecve, /proc/<pid>/fd/N): opened again through
    mteemu's descriptor of it, never by a name."""
    try:
        return _checked(reopen(f.fd, os.O_RDONLY | os.O_NONBLOCK), f.path())
    except OSError as e:
        raise SyscallError(e.errno or errno.EIO) from None


def _checked(fd: int, name: str) -> ExeFile:
    exe = ExeFile(fd, name)
    st = exe.stat()
    # may_open(MAY_EXEC) on a regular file: asked of the object held, not of a name.
    if not stat.S_ISREG(st.st_mode) or not os.access(exe.source, os.X_OK):
        exe.close()
        raise SyscallError(errno.EACCES)
    return exe


def _script_interpreter(exe: ExeFile) -> tuple[bytes, bytes] | None:
    """A `#!` line's interpreter and optional argument (load_script()), or None."""
    try:
        head = exe.head(BINPRM_BUF_SIZE)
    except OSError as e:
        raise SyscallError(e.errno or errno.EIO) from None
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].strip(b" \t")
    if not line:
        raise SyscallError(errno.ENOEXEC)
    interp, _, arg = line.replace(b"\t", b" ").partition(b" ")
    return interp, arg.strip(b" ")


def do_execve(k: "KernelApi", t: Thread, dirfd: int, path: bytes, argv: list[bytes], envp: list[bytes],
              follow: bool = True, exe: Optional[ExeFile] = None) -> object:
    """`exe`: the program already open (fexecve); else `path` is walked."""
    execfn = path
    for _ in range(MAX_INTERP_DEPTH + 1):
        if exe is None:
            exe = _program(k, t, dirfd, path, follow)
        script = _script_interpreter(exe)
        if script is None:
            break
        interpreter, arg = script
        # The interpreter runs with the script's path as execve was given it (bprm->interp).
        argv = [interpreter] + ([arg] if arg else []) + [path] + argv[1:]
        path, dirfd, follow, exe = interpreter, AT_FDCWD, True, None
    else:
        raise SyscallError(errno.ELOOP)
    try:
        image, interp = k.programs.read_images(exe)
    except MteEmuError as e:
        if isinstance(e, NoInterpreter):
            k.say(f"execve {exe.name}: {e.message}")
        raise SyscallError(errno.ENOEXEC) from None
    k.programs.exec_image(t, image, exe, argv, envp, execfn, interp)
    return NORETURN


@syscall("execve", strings=(0,), support=Support.PARTIAL,
         note=("arm64 ELF programs (static or dynamic) and #! scripts, four levels deep; a dynamic "
               "program whose interpreter is in no sysroot is ENOEXEC; an exec from a thread other "
               "than the leader keeps that thread's id"))
def sys_execve(k: "KernelApi", t: Thread, path: int, argv: int, envp: int) -> object:
    return do_execve(k, t, AT_FDCWD, user_path(t, path), _strings(t, argv), _strings(t, envp))


@syscall("execveat", strings=(1,), support=Support.PARTIAL,
         note="as execve")
def sys_execveat(k: "KernelApi", t: Thread, dirfd: int, path: int, argv: int, envp: int, flags: int) -> object:
    if flags & ~(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW):
        raise SyscallError(errno.EINVAL)
    raw = t.proc.mem.read_cstr(path, 4096) if path else b""
    if not raw:
        if not flags & AT_EMPTY_PATH:
            raise SyscallError(errno.ENOENT)
        f = t.proc.fds.get(s32(dirfd))                   # fexecve(): the open file itself
        if not isinstance(f, HostFile):
            raise SyscallError(errno.EACCES)
        return do_execve(k, t, AT_FDCWD, os.fsencode(f.path()), _strings(t, argv), _strings(t, envp),
                         exe=_reopened(f))
    return do_execve(k, t, dirfd, raw, _strings(t, argv), _strings(t, envp),
                     follow=not flags & AT_SYMLINK_NOFOLLOW)
