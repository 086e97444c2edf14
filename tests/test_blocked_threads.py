"""Many blocked threads do not slow the one that runs (issue 24): 100 threads blocked on a
pipe and 100 on a futex while the main thread makes 42,000 system calls of three kinds.
A blocked thread's call is re-tried only when the object it sleeps on (its wait queue) is
woken, or a signal or its deadline comes (waitqueue.py); before, every call re-tried all
200 (8 million re-tries here). Counted with --stats, not timed."""
from __future__ import annotations

import re

import pytest
from conftest import build_test_program, run_mteemu

# Every test here runs a program.
pytestmark = pytest.mark.slow


def test_calls_do_not_retry_the_blocked(tmp_path_factory, tmp_path) -> None:
    prog = build_test_program(tmp_path_factory, "blocked.c")
    r = run_mteemu(["run", "--stats", prog], cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert r.stdout == b"calls 20000, threads released 200\n"
    m = re.search(rb"syscalls=(\d+) .* answered-in-C=(\d+) wake-scans=\d+ wait-polls=(\d+)", r.stderr)
    assert m, r.stderr.decode()[-2000:]
    calls, polls = int(m.group(1)) + int(m.group(2)), int(m.group(3))     # the kernel's and C's
    # Releasing the 200 re-tries each a few times (a pipe write wakes every reader: the
    # first takes the byte, the rest sleep on, as Linux's non-exclusive pipe wait).
    assert calls > 42_000 and polls < 25_000, (calls, polls)
