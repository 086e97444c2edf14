#!/usr/bin/env python3
"""Build the guest test programs in guest_tests/ into build/guests/ (ignored).

Every program is built the same way (mteemu/testing/build.py):

    aarch64-linux-gnu-gcc -static -O2 -g -march=armv8.5-a+memtag SRC [extra] -o build/guests/NAME

where [extra] comes from a `// build: FLAGS` line at the top of the source (e.g. -pthread).
Usage: scripts/build_guests.py [NAME...]  (default: all; NAME may be mte/insns)
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mteemu.testing import build as _build  # noqa: E402
from mteemu.testing.spec import parse  # noqa: E402

SOURCES = ROOT / "guest_tests"
OUT = ROOT / "build" / "guests"
CC = _build.CC


def build(name: str) -> Path:
    src = SOURCES / f"{name}.c"
    return _build.build(src, name, parse(src, name).build_flags, OUT)


def all_names() -> list[str]:
    """The untagged programs."""
    return sorted(p.stem for p in SOURCES.glob("*.c"))


def mte_names() -> list[str]:
    """The MTE programs under guest_tests/mte/."""
    return sorted(f"mte/{p.stem}" for p in (SOURCES / "mte").glob("*.c"))


def main(argv: list[str]) -> int:
    for name in argv or all_names() + mte_names():
        print(build(name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
