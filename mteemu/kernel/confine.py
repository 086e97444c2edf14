"""`--root DIR`: the guest's file system is DIR, and no path gets out of it.

Linux's path walk, redone inside the root: `..` stops at the root, absolute paths start
there, and every symlink — whoever made it, wherever it points — is read and walked
again inside the root, so the host path handed to a host syscall contains no symlink
that could lead out (except a final one the caller promises not to follow: unlink,
rename, readlink, lstat, O_NOFOLLOW). The guest's world is single threaded from the
host's point of view, so nothing can swap a component between the walk and the use.
"""
from __future__ import annotations

import errno
import os
from collections import deque

from mteemu.kernel.uaccess import SyscallError

MAX_SYMLINKS = 40          # Linux's MAXSYMLINKS


def walk(root: str, base: str, path: str, follow: bool) -> str:
    """The host path of guest `path` (relative to the host directory `base`, itself
    inside root); `follow` says whether a final symlink is followed."""
    cur = root if path.startswith("/") else base
    parts = deque(path.split("/"))
    links = 0
    while parts:
        c = parts.popleft()
        if c in ("", "."):
            continue
        if c == "..":
            if cur != root:
                cur = os.path.dirname(cur)
            continue
        nxt = os.path.join(cur, c)
        final = all(x in ("", ".") for x in parts)
        if (follow or not final) and os.path.islink(nxt):
            links += 1
            if links > MAX_SYMLINKS:
                raise SyscallError(errno.ELOOP)
            try:
                target = os.readlink(nxt)
            except OSError as e:
                raise SyscallError(e.errno or errno.EIO) from None
            if target.startswith("/"):
                cur = root
            parts.extendleft(reversed(target.split("/")))
            continue
        cur = nxt
    return cur


def guest_view(root: str, host: str) -> str:
    """A host path as the guest sees it (for getcwd, readlink of /proc/self/...)."""
    if host == root:
        return "/"
    if host.startswith(root + "/"):
        return host[len(root):]
    return host          # outside the root (the program file itself): shown as is
