"""The Linux oracle (mteemu/oracle/, issue 25): programs run under Debian's arm64 kernel
with MTE in qemu-system-aarch64, a batch per boot, and come back byte for byte, with
their exit status, separately from the kernel's log; what finished is recovered when the
guest dies. Its MTE is checked per granule: QEMU 7.2 (Debian bookworm's) reads back 72
of these 1,024 tags right, this one all."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import build_test_program

from mteemu.oracle import fetch, runner

# Every test here runs a program (under Linux in QEMU, or mteemu).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def machine() -> fetch.Machine:
    try:
        return fetch.machine()
    except fetch.OracleError as e:
        pytest.fail(f"the oracle cannot run here ({e.message}): run the README's test command to fetch it")


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    return Path(build_test_program(tmp_path_factory, "oracle_probe.c"))


ALL_BYTES = bytes(range(256))
STDIN = ALL_BYTES * 64 + b"\0\n\r\x1a"


@pytest.fixture(scope="module")
def batch(machine, probe):
    programs = {
        "bytes": runner.Program(probe, ["bytes"]),
        "big": runner.Program(probe, ["big"]),
        "echo": runner.Program(probe, ["echo"], stdin=STDIN),
        "exit": runner.Program(probe, ["exit", "3"]),
        "segv": runner.Program(probe, ["segv"]),
        "spin": runner.Program(probe, ["spin"], timeout=2),
        "granules": runner.Program(probe, ["granules"]),
        "x86": runner.Program(Path(shutil.which("true") or "/bin/true")),
        "fds": runner.Program(probe, ["fds"]),
    }
    outcomes, log = runner.run_batch(list(programs.values()), machine)
    return dict(zip(programs, outcomes)), log


def test_output_comes_back_byte_for_byte(batch) -> None:
    got, _ = batch
    assert (got["bytes"].stdout, got["bytes"].stderr) == (ALL_BYTES, ALL_BYTES[::-1])
    big = bytes((i * 7 + i // 4096) & 0xFF for i in range(3 << 20))
    assert got["big"].stdout == big and got["big"].stderr == b""
    assert got["echo"].stdout == STDIN


def test_exit_statuses(batch) -> None:
    got, _ = batch
    assert (got["exit"].kind, got["exit"].status) == (runner.EXITED, 3)
    assert (got["segv"].kind, got["segv"].value, got["segv"].status) == (runner.SIGNALED, 11, 139)
    assert got["spin"].kind == runner.TIMED_OUT and got["spin"].status is None
    assert (got["x86"].kind, got["x86"].value) == (runner.NOT_STARTED, errno.ENOEXEC)


def test_a_program_starts_with_stdio_alone(batch) -> None:
    """Nothing of init's leaks into a test (its results disk was fd 3, writable, once)."""
    got, _ = batch
    assert got["fds"].stdout == b"open fds: 0 1 2\n"


def test_the_kernel_log_is_kept_apart(batch) -> None:
    got, log = batch
    assert "Linux version 6.1" in log and "mteemu-oracle: all tests ran" in log
    assert all(b"Linux version" not in o.stdout + o.stderr for o in got.values())


def test_mte_is_right_per_granule(batch) -> None:
    got, _ = batch
    assert got["granules"].stdout == b"tags read back: 1024/1024, own tag loads: 1024, other tag faults: 1024\n"


def test_what_finished_is_recovered_when_the_guest_dies(machine, probe) -> None:
    programs = [runner.Program(probe, ["exit", "7"]), runner.Program(probe, ["poweroff"]),
                runner.Program(probe, ["exit", "8"])]
    outcomes, _ = runner.run_batch(programs, machine)
    assert [(o.kind, o.status) for o in outcomes] == [(runner.EXITED, 7), (runner.NOT_RUN, None),
                                                      (runner.NOT_RUN, None)]


def test_a_qemu_older_than_8_is_refused(tmp_path) -> None:
    """Its MTE loses tags (QEMU 7.2: the probe above reads back 72 of 1,024)."""
    fake = tmp_path / "qemu-system-aarch64"
    fake.write_text("#!/bin/sh\necho 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)'\n")
    fake.chmod(0o755)
    with pytest.raises(fetch.OracleError, match="7.2"):
        fetch.machine(str(fake), fetch=False)


def test_mteemu_oracle_reports_as_mteemu_run_does(machine, probe, tmp_path) -> None:
    r = subprocess.run([sys.executable, "-m", "mteemu", "oracle", str(probe), "segv"], capture_output=True,
                       cwd=tmp_path, timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 139 and r.stdout == b""
    assert r.stderr.decode().endswith("mteemu: guest terminated by signal 11 (SIGSEGV)\n")
    r = subprocess.run([sys.executable, "-m", "mteemu", "oracle", "-E", "A=1", str(probe), "echo"],
                       input=b"through stdin", capture_output=True, cwd=tmp_path, timeout=300)
    assert (r.returncode, r.stdout) == (0, b"through stdin")
    r = subprocess.run([sys.executable, "-m", "mteemu", "oracle", os.devnull], capture_output=True, cwd=tmp_path,
                       timeout=60)
    assert r.returncode == 2 and r.stderr.decode().count("\n") == 1


def test_mteemu_test_judges_each_test_by_linux(machine, tmp_path) -> None:
    """`mteemu test --oracle linux`: the same run agrees; a difference fails unless the test
    says why mteemu differs on purpose; the JSON says which oracle spoke."""
    import json

    same = '// exit: 0\n// | 5\n#include <stdio.h>\nint main(void) { printf("%d\\n", 2 + 3); return 0; }\n'
    pid = '#include <stdio.h>\n#include <unistd.h>\nint main(void) { printf("%d\\n", getpid()); return 0; }\n'
    (tmp_path / "same.c").write_text(same)
    (tmp_path / "pid.c").write_text("// exit: 0\n" + pid)
    (tmp_path / "pid_known.c").write_text("// exit: 0\n// linux: differs: pids start at 1000\n" + pid)
    r = subprocess.run([sys.executable, "-m", "mteemu", "test", "-j", "1", "--oracle", "linux", "--json",
                        str(tmp_path / "r.json"), str(tmp_path)], capture_output=True, cwd=tmp_path, timeout=600)
    out = r.stdout.decode()
    assert r.returncode == 1, out + r.stderr.decode()
    assert "FAIL  pid: Linux disagrees: stdout differs (mteemu: '1000')" in out, out
    assert "PASS  pid_known  [linux: known difference: pids start at 1000]" in out, out
    assert "PASS  same\n" in out, out
    results = {x["name"]: x for x in json.loads((tmp_path / "r.json").read_text())}
    assert results["same"]["oracle"] == "agrees" and results["same"]["oracle_name"] == "linux"


@pytest.mark.parametrize("seed", [13, 14])
def test_system_call_sequences_answer_as_linux(machine, tmp_path_factory, seed: int) -> None:
    """The differential fuzzer (tests/fuzzers/oracle_syscalls.py): 400 random calls on files,
    descriptors, pipes, mappings and the tagged-address ABI, played under mteemu (confined)
    and under Linux, answer the same, call by call. These seeds once showed 20 differences
    (check orders: EINVAL before EBADF, ESPIPE before the buffer; access_ok(); pipe2's
    O_DIRECT; mmap's offset; msync/mprotect/madvise past the address space...)."""
    from fuzzers import oracle_syscalls

    player = build_test_program(tmp_path_factory, "syscall_player.c")
    ours, linux = oracle_syscalls.play(player, seed, 400, machine, sys.executable)
    assert len(ours.splitlines()) == 400, ours[-500:]
    assert oracle_syscalls.differences(ours, linux) == []
