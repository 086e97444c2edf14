"""Output files are written whole or not at all: a temporary file next to the target,
then an atomic rename. Readers (CI servers, people) never see half a report."""
from __future__ import annotations

import os
import tempfile


def write_text(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def same_file(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)
