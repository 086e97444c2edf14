"""Many blocked threads do not slow the one that runs (issue 24): 200 threads blocked on a
pipe while the main thread makes 20,000 getppid() calls. A call that only reports can wake
nobody, so no blocked thread is polled after it (the scheduler polls them all before each
switch); before, every call polled all 200 (339 µs a call against 22 µs now). Counted with
--stats, not timed (on the native path, C answers most of these getppid calls itself)."""
from __future__ import annotations

import re

from conftest import build_test_program, run_mteemu


def test_queries_do_not_scan_the_blocked(tmp_path_factory, tmp_path) -> None:
    prog = build_test_program(tmp_path_factory, "blocked.c")
    r = run_mteemu(["run", "--stats", prog], cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert r.stdout == b"calls 20000, threads released 200\n"
    m = re.search(rb"syscalls=(\d+) .* answered-in-C=(\d+) wake-scans=(\d+)", r.stderr)
    assert m, r.stderr.decode()[-2000:]
    calls, scans = int(m.group(1)) + int(m.group(2)), int(m.group(3))     # the kernel's and C's
    assert calls > 20_000 and scans < 5_000, (calls, scans)
