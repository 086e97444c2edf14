"""Reading what the user names on the command line (programs, device trees, tests):
only regular files, and never more than a bound. A FIFO would block the read forever
and `/dev/zero` would fill the host's memory; both are refused before any byte is read,
with one line naming the file."""
from __future__ import annotations

import os
import stat
from typing import Type

from mteemu.errors import InputError


def read_regular(path: str, what: str, limit: int, error: Type[InputError] = InputError) -> bytes:
    """The whole of a regular file of at most `limit` bytes, or `error` (one line)."""
    fd = open_regular(path, what, error)
    try:
        return read_fd(fd, path, what, limit, error)
    finally:
        os.close(fd)


def open_regular(path: str, what: str, error: Type[InputError] = InputError) -> int:
    """A descriptor of a regular file named by mteemu's user, or `error` (one line)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not {what}") from None
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{path}: is a directory, not {what}")
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path}: not a regular file; {what} must be one")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_fd(fd: int, path: str, what: str, limit: int, error: Type[InputError] = InputError) -> bytes:
    """The whole of the open regular file `fd` (named `path` in messages), read from its
    start, of at most `limit` bytes."""
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise error(f"{path}: {size} bytes is too large for {what} (at most {limit})")
        chunks, left, off = [], limit + 1, 0
        while left > 0:
            chunk = os.pread(fd, min(left, 1 << 20), off)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
            off += len(chunk)
        data = b"".join(chunks)
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror}") from None
    if len(data) > limit:
        raise error(f"{path}: grew past {limit} bytes while being read")
    return data
