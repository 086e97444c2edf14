"""`mteemu test` runs each test in a child forked from a started server
(testing/forkserver.py) instead of a new Python process: the child must be
indistinguishable from `python -m mteemu ...` run in the same directory — exit status,
stdout and stderr byte for byte, stdin at end of file — and a run that outlives its time is
killed without taking the server with it."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import build_test_program

from mteemu.testing.forkserver import ForkServer
from mteemu.testing.runner import _env


@pytest.fixture(scope="module")
def server():
    s = ForkServer(sys.executable, _env())
    yield s
    s.close()


@pytest.fixture(scope="module")
def forkee(tmp_path_factory) -> str:
    return build_test_program(tmp_path_factory, "forkee.c")


CASES = {
    "exit status 3": ["run", "-E", "WHO=me", "{prog}", "print", "3"],
    "killed by a signal": ["run", "{prog}", "segv"],
    "mteemu's own error": ["run", "{prog}-missing"],
    "bad option": ["run", "--no-such-option", "{prog}"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_a_forked_run_is_a_fresh_process(server, forkee, tmp_path, name: str) -> None:
    argv = [a.replace("{prog}", forkee) for a in CASES[name]]
    fresh = subprocess.run([sys.executable, "-m", "mteemu", *argv], capture_output=True, cwd=tmp_path,
                           env=_env(), stdin=subprocess.DEVNULL, timeout=120)
    forked = tmp_path / "forked"
    forked.mkdir()
    status, out, err = server.run(argv, str(forked), 120)
    assert (status, out, err) == (fresh.returncode, fresh.stdout, fresh.stderr)


@pytest.mark.slow
def test_a_run_past_its_time_is_killed_and_the_server_goes_on(server, forkee, tmp_path) -> None:
    pid = server.pid
    status, _, _ = server.run(["run", forkee, "spin"], str(tmp_path), 1.0)
    assert status is None
    status, out, _ = server.run(["run", forkee, "print", "0"], str(tmp_path), 120)
    assert status == 0 and b"stdin gave 0 bytes" in out and server.pid == pid


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_mteemu_test_starts_one_python_for_all_its_tests(forkee, tmp_path) -> None:
    """Counted with strace: `mteemu test` of four tests on one thread executes Python twice
    (itself and its fork server), not once per test."""
    for i in range(4):
        (tmp_path / f"t{i}.c").write_text(f'// exit: 0\n// | test {i}\n#include <stdio.h>\n'
                                          f'int main(void) {{ puts("test {i}"); return 0; }}\n')
    trace = tmp_path / "trace"
    r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace), sys.executable, "-m",
                        "mteemu", "test", "-j", "1", *(str(tmp_path / f"t{i}.c") for i in range(4))],
                       capture_output=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert b"4 tests: 4 passed" in r.stdout
    pythons = [ln for ln in trace.read_text().splitlines() if f'execve("{sys.executable}"' in ln]
    assert len(pythons) == 2, pythons
