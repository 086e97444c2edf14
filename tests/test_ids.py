"""getpid, getppid and gettid answered by C (issue 24): the same output with the native
path (which answers repeated calls itself), the pure-Python path and --strace (which make
every call in the kernel), and Linux's answers."""
from __future__ import annotations

import os
import re

import pytest
from conftest import build_test_program, run_mteemu

# Every test here runs a program.
pytestmark = pytest.mark.slow

# What Linux 6.1 prints for tests/ids.c (the orphan is reparented to init).
LINUX = """1000 calls agree: 1
child sees itself and its parent: 1; parent still itself: 1
a thread's tid is its own: 1
orphan's parent after the exit: 1
SIGUSR1 handled in iteration 500
async tag fault reported in iteration 100
"""


def test_answers_and_deliveries_are_linuxs(tmp_path_factory, tmp_path) -> None:
    prog = build_test_program(tmp_path_factory, "ids.c")
    native = run_mteemu(["run", "--stats", prog], cwd=tmp_path, timeout=300)
    pure = run_mteemu(["run", prog], cwd=tmp_path, timeout=300, env={"MTEEMU_PURE_PYTHON": "1"})
    traced = run_mteemu(["run", "--strace", prog], cwd=tmp_path, timeout=300)
    for r in (native, pure, traced):
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        assert r.stdout.decode() == LINUX
    answered = int(re.search(rb"answered-in-C=(\d+)", native.stderr).group(1))
    assert answered > 2000 if not os.environ.get("MTEEMU_PURE_PYTHON") else answered == 0, answered
