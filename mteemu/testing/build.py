"""Building guest test programs with Debian's cross compiler, cached.

    aarch64-linux-gnu-gcc -static -O2 -g -march=armv8.5-a+memtag SRC [flags] -o CACHE/NAME

The cache key covers the source, the headers next to it, the flags and the compiler
version; a build goes through a temporary file and an atomic rename, so parallel
workers can build at once.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

CC = "aarch64-linux-gnu-gcc"
BASE_FLAGS = ["-static", "-O2", "-g", "-march=armv8.5-a+memtag"]


class BuildError(Exception):
    """The program does not compile (the message holds the compiler's output)."""


def default_cache() -> Path:
    base = os.environ.get("MTEEMU_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mteemu")
    return Path(base) / "guests"


@lru_cache(maxsize=1)
def compiler_version() -> str:
    if shutil.which(CC) is None:
        raise BuildError(f"{CC} is not installed (Debian package gcc-aarch64-linux-gnu)")
    return subprocess.run([CC, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]


def build(src: Path, name: str, flags: list[str], cache: Path) -> Path:
    """The binary built from src (reusing a cached build); BuildError if it fails."""
    headers = b"".join(h.read_bytes() for h in sorted(src.parent.glob("*.h")))
    key = hashlib.sha256(src.read_bytes() + headers + repr(BASE_FLAGS + flags).encode()
                         + compiler_version().encode()).hexdigest()[:16]
    binary = cache / name
    binary.parent.mkdir(parents=True, exist_ok=True)
    stamp = cache / f"{name}.key"
    if binary.exists() and stamp.exists() and stamp.read_text() == key:
        return binary
    fd, tmp = tempfile.mkstemp(dir=binary.parent, prefix=f".{binary.name}.")
    os.close(fd)
    try:
        r = subprocess.run([CC, *BASE_FLAGS, str(src), *flags, "-o", tmp], capture_output=True, text=True)
        if r.returncode:
            raise BuildError(f"{src}: does not compile:\n{r.stderr.strip()}")
        os.replace(tmp, binary)
        stamp_tmp = f"{tmp}.key"
        Path(stamp_tmp).write_text(key)
        os.replace(stamp_tmp, stamp)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return binary
