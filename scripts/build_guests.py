#!/usr/bin/env python3
"""Build the guest test programs in guest_tests/ into build/guests/.

Every program is built the same way, recorded here and in the README:

    aarch64-linux-gnu-gcc -static -O2 -g -march=armv8.5-a+memtag SRC [extra] -o build/guests/NAME

where [extra] comes from a `// build: FLAGS` line at the top of the source (e.g. -pthread).
A build is cached under a hash of the source, the flags and the compiler version, and
written through a temporary file and an atomic rename, so parallel test workers can
build at once. Usage: scripts/build_guests.py [NAME...]  (default: all)
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "guest_tests"
OUT = ROOT / "build" / "guests"
CC = "aarch64-linux-gnu-gcc"
BASE_FLAGS = ["-static", "-O2", "-g", "-march=armv8.5-a+memtag"]


@lru_cache(maxsize=1)
def compiler_version() -> str:
    return subprocess.run([CC, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]


def extra_flags(source: Path) -> list[str]:
    m = re.search(r"^//\s*build:\s*(.*)$", source.read_text(), re.M)
    return shlex.split(m.group(1)) if m else []


def build(name: str) -> Path:
    """Build guest_tests/NAME.c (NAME may be "mte/x") if not cached; the binary's path.
    The key covers the headers next to the source too (mte/mte.h)."""
    src = SOURCES / f"{name}.c"
    extra = extra_flags(src)
    headers = b"".join(h.read_bytes() for h in sorted(src.parent.glob("*.h")))
    key = hashlib.sha256(src.read_bytes() + headers + repr(BASE_FLAGS + extra).encode()
                         + compiler_version().encode()).hexdigest()[:16]
    binary = OUT / name
    binary.parent.mkdir(parents=True, exist_ok=True)
    stamp = OUT / f"{name}.key"
    if binary.exists() and stamp.exists() and stamp.read_text() == key:
        return binary
    fd, tmp = tempfile.mkstemp(dir=binary.parent, prefix=f".{binary.name}.")
    os.close(fd)
    try:
        subprocess.run([CC, *BASE_FLAGS, str(src), *extra, "-o", tmp], check=True)
        os.replace(tmp, binary)
        stamp_tmp = f"{tmp}.key"
        Path(stamp_tmp).write_text(key)
        os.replace(stamp_tmp, stamp)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return binary


def all_names() -> list[str]:
    """The untagged programs (compared with qemu-aarch64 as they are)."""
    return sorted(p.stem for p in SOURCES.glob("*.c"))


def mte_names() -> list[str]:
    """The MTE programs under guest_tests/mte/ (compared with Linux's documented ABI)."""
    return sorted(f"mte/{p.stem}" for p in (SOURCES / "mte").glob("*.c"))


def main(argv: list[str]) -> int:
    for name in argv or all_names() + mte_names():
        print(build(name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
