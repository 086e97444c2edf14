"""Fuzzing the device-tree reader in CI: byte mutations of every valid file in dts/ (as
DTS text and as dtc-compiled DTB) must each end as a board, a list of findings or a
one-line BoardError — never another exception. scripts/fuzz boards runs more."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import ROOT
from fuzzers import boards as fuzz

# Every test here runs a program.
pytestmark = pytest.mark.slow

CASES = 4000


def test_mutated_device_trees_never_crash_the_reader() -> None:
    if shutil.which("dtc") is None:
        pytest.fail("dtc is missing: run the README's test command to install device-tree-compiler")
    seeds = []
    for f in sorted((ROOT / "dts").glob("*.dts")):
        if "expect-unreadable" in f.read_text():
            continue
        seeds.append(subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", str(f)], capture_output=True,
                                    check=True).stdout)
        seeds.append(f.read_bytes())
    counts = fuzz.run(seeds, CASES, seed=2026)
    assert sum(counts.values()) == CASES
    # The mutations must reach the validator and the board builder, not only the parser.
    assert counts["board"] > 20 and counts["findings"] > 20, counts
