"""Hostile files: mutated ELF headers and program headers (truncations, sizes and offsets
outside the file, overlapping segments, entries nowhere) load or fail with one line —
never a traceback; mutants that do load and run end like any guest (a signal, an exit,
or --timeout), never as an internal error. Device-tree fuzzing: test_board_fuzz.py."""
from __future__ import annotations

import random

import pytest
from conftest import run_mteemu
from fuzzers import elf as elf_fuzz

# Every test here runs a program.
pytestmark = pytest.mark.slow

CASES = 3000


def test_mutated_elfs_load_or_fail_cleanly(guest) -> None:
    counts = elf_fuzz.run(guest("hello").read_bytes(), CASES, seed=2026)
    assert counts["loaded"] + counts["rejected"] == CASES
    assert counts["loaded"] > 100 and counts["rejected"] > 100, counts


def test_mutated_elfs_run_or_fail_with_one_line(guest, tmp_path) -> None:
    rng = random.Random(7)
    data = guest("hello").read_bytes()
    for i in range(12):
        f = tmp_path / f"m{i}"
        f.write_bytes(elf_fuzz.mutate(data, rng))
        r = run_mteemu(["run", "--root", str(tmp_path), "--timeout", "5", str(f)], cwd=tmp_path, timeout=60)
        err = r.stderr.decode()
        assert "Traceback" not in err and r.returncode != 70, err[-800:]
        if r.returncode == 2:
            assert err.count("\n") == 1 and err.startswith("mteemu: ")
