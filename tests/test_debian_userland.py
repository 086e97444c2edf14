"""Debian's userland runs as on Linux: every line of tests/debian/battery.txt (coreutils,
grep, sed, gawk, find/xargs, diff, gzip/bzip2/xz/zstd/tar round trips, bash and dash with
pipes, subshells, traps and process substitution, jq, sqlite3, lua, perl, bc) run by bash
from bookworm's arm64 packages (scripts/debian-userland --fetch) agrees byte for byte with
the same line under qemu-aarch64 -L, untagged, and again under glibc's heap tagging, sync
and async (the tagged runs on the native hot path: the pure-Python path checks every
access in Python, minutes a line; it runs the untagged battery)."""
from __future__ import annotations

import os
from pathlib import Path

import battery
import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow                 # runs guest programs
SYSROOT = ROOT / "build" / "debian-userland"
LINES = battery.lines()


@pytest.fixture(scope="session")
def sysroot() -> Path:
    if not (SYSROOT / ".complete").exists():
        pytest.fail("the Debian userland is not fetched: run the README's test command (scripts/debian-userland "
                    "--fetch)")
    return SYSROOT


@pytest.fixture(scope="session")
def wrappers(sysroot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return battery.reference_path(sysroot, tmp_path_factory.mktemp("wrappers"))


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where every run of this worker happens (a fresh copy of the data each time): one
    path, so that what a line prints of it (realpath, find) is the same for the reference
    run and for each mode's mteemu run."""
    return tmp_path_factory.mktemp("battery") / "work"


# The reference run of each line, made once per worker: the three modes of a line run one
# after another (the line is the outer parameter), so it serves all three.
_REFERENCE: dict[int, battery.Outcome] = {}


def test_the_battery_is_a_hundred_lines() -> None:
    assert len(LINES) >= 100
    assert all(line.differs is None or line.differs for line in LINES)


@pytest.mark.parametrize("tagging", ["", "3", "1"], ids=["untagged", "sync", "async"])
@pytest.mark.parametrize("line", LINES, ids=[f"line{line.number}" for line in LINES])
def test_a_line_agrees_with_qemu(sysroot, wrappers, work, line: battery.Line, tagging: str) -> None:
    if tagging and os.environ.get("MTEEMU_PURE_PYTHON"):
        pytest.skip("heap-tagged lines run on the native hot path (pure Python: minutes a line)")
    if line.number not in _REFERENCE:
        _REFERENCE[line.number] = battery.run_line(line, sysroot, work, "qemu", wrappers)
    ref = _REFERENCE[line.number]
    got = battery.run_line(line, sysroot, work, "mteemu", tagging=tagging)
    if b"unimplemented syscall" in got.stderr:
        pytest.fail(f"{line.command}: {got.stderr.decode(errors='replace')}")
    same = (got.status, got.stdout, got.stderr) == (ref.status, ref.stdout, ref.stderr)
    if line.differs:
        assert not same, f"{line.command} agrees now: remove its '# differs: {line.differs}'"
        assert got.status == 0
        return
    assert (got.status, got.stdout.decode(errors="replace"), got.stderr.decode(errors="replace")) == \
        (ref.status, ref.stdout.decode(errors="replace"), ref.stderr.decode(errors="replace")), line.command
