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
        if st.st_size > limit:
            raise error(f"{path}: {st.st_size} bytes is too large for {what} (at most {limit})")
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise error(f"{path}: grew past {limit} bytes while being read")
    return data
