"""A guest that opens all it can (issue 23, item 7): each process meets its RLIMIT_NOFILE
with Linux's errors, and all of them together never take the host descriptors mteemu keeps
for itself, so the tag-check fault report still prints (before: exit 70, no report)."""
from __future__ import annotations

import resource
import subprocess
import sys

import pytest
from conftest import build_test_program, run_mteemu

# Every test here runs a program.
pytestmark = pytest.mark.slow


def test_each_process_meets_its_rlimit_nofile(tmp_path_factory, tmp_path) -> None:
    prog = build_test_program(tmp_path_factory, "fdlimit.c")
    r = run_mteemu(["run", prog], cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        "default limit: 1021 opened, then EMFILE",       # 1,024 less stdin, stdout, stderr
        "dup3 to 1024: EBADF",                             # ksys_dup3(): newfd >= RLIMIT_NOFILE
        "F_DUPFD 1024: EINVAL",                            # f_dupfd(): from >= RLIMIT_NOFILE
        "hard limit: 4096",                                # INR_OPEN_MAX: init's on Linux
        "raise to the hard limit: ok",
        "past nr_open: EPERM",                             # do_prlimit(): above fs.nr_open (and without
        "dup3 to 4000: ok",                                # CAP_SYS_RESOURCE, above the hard limit)
    ]


def test_the_report_prints_after_the_host_fds_are_used_up(tmp_path_factory, tmp_path) -> None:
    prog = build_test_program(tmp_path_factory, "fdlimit.c")

    def few_fds() -> None:                     # mteemu's own limit, in the child only
        resource.setrlimit(resource.RLIMIT_NOFILE, (400, 400))

    r = subprocess.run([sys.executable, "-m", "mteemu", "run", prog, "exhaust"], cwd=tmp_path,
                       capture_output=True, timeout=300, preexec_fn=few_fds, stdin=subprocess.DEVNULL)
    err = r.stderr.decode()
    assert r.stdout.decode().splitlines()[-1] == "raised limit: ENFILE", r.stdout
    assert r.returncode == 139, err
    assert "ERROR: tag-mismatch (synchronous)" in err and "strb" in err, err
    assert "Traceback" not in err
