"""Output files (reports, SVGs, JUnit/JSON results) are written whole or not at all: a
temporary file next to the target, then an atomic rename. Readers (CI servers, people)
never see half a report.

A target that exists and is not a regular file (a device node, a FIFO, a directory) is
refused before anything runs: renaming over `/dev/null` would replace the device with a
file. New files get the mode `open(O_CREAT, 0666)` would give them: `0666 & ~umask`.
"""
from __future__ import annotations

import os
import stat
import tempfile
from typing import Iterable, Optional

from mteemu.errors import InputError


def check_target(path: str, option: str, inputs: Iterable[Optional[str]] = ()) -> None:
    """Refuse an output path that cannot be written as a plain file, or names an input."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise InputError(f"{option} {path}: {e.strerror}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise InputError(f"{option} {path}: exists and is not a regular file; mteemu writes reports only "
                         "to regular files")
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise InputError(f"{option} {path}: its directory does not exist")
    if any(same_file(path, p) for p in inputs if p):
        raise InputError(f"{option} {path}: that is an input file; choose another name")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str, text: str) -> None:
    check_target(path, "output file")
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)        # an existing report keeps its mode
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), mode)
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def same_file(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)
