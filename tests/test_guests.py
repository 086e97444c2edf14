"""Each guest program gives the same stdout, guest stderr and exit status under mteemu
as under qemu-aarch64 (Debian's qemu-user), which agrees with Linux for all of these."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, build_guests, run_mteemu

# Extra arguments and environment each program is run with (same under both emulators).
RUN_ARGS = {
    "args_env": ["-E", "MTEEMU_TEST_VAR=forty two", "-U", "MTEEMU_TEST_UNSET"],
}
GUEST_ARGS = {"args_env": ["one", "two words"]}
# Programs whose output is meant to differ between emulators (random bytes).
NOT_COMPARABLE = {"random_bytes"}
NAMES = [n for n in build_guests.all_names() if n not in NOT_COMPARABLE]


def _own_lines(stderr: bytes, prefix: bytes) -> bytes:
    """The guest's own stderr: the emulator's diagnostic lines removed."""
    return b"".join(line for line in stderr.splitlines(keepends=True) if not line.startswith(prefix))


@pytest.mark.parametrize("name", NAMES)
def test_matches_qemu(name: str, guest, tmp_path) -> None:
    if shutil.which("qemu-aarch64") is None:
        pytest.fail("qemu-aarch64 is missing: run the README's test command to install it")
    binary = str(guest(name))
    env = {**os.environ, "MTEEMU_TEST_UNSET": "should disappear"}
    ours = subprocess.run([os.sys.executable, "-m", "mteemu", "run", *RUN_ARGS.get(name, []), binary,
                           *GUEST_ARGS.get(name, [])], capture_output=True, cwd=tmp_path, env=env, timeout=120)
    theirs = subprocess.run(["qemu-aarch64", *RUN_ARGS.get(name, []), binary, *GUEST_ARGS.get(name, [])],
                            capture_output=True, cwd=tmp_path, env=env, timeout=120)
    assert ours.stdout == theirs.stdout
    assert _own_lines(ours.stderr, b"mteemu:") == _own_lines(theirs.stderr, b"qemu:")
    # qemu-aarch64 re-raises a fatal guest signal on itself; a shell shows both as 128+N.
    shell_status = theirs.returncode if theirs.returncode >= 0 else 128 - theirs.returncode
    assert ours.returncode == shell_status, ours.stderr.decode()


def test_killed_guest_reports_signal(guest) -> None:
    r = run_mteemu(["run", str(guest("abort"))])
    assert r.returncode == 134
    assert r.stdout == b"about to abort\n"
    assert re.search(rb"^mteemu: guest terminated by signal 6 \(SIGABRT\)", r.stderr, re.M)


def test_strace_decodes_syscalls(guest) -> None:
    r = run_mteemu(["run", "--strace", str(guest("hello"))])
    assert r.returncode == 3
    assert re.search(rb'\] write\(1, 0x[0-9a-f]+, \d+\) = \d+', r.stderr)
    assert re.search(rb'\] exit_group\(3\) = \?', r.stderr)


def test_seed_makes_getrandom_deterministic(guest) -> None:
    binary = str(guest("random_bytes"))
    out = {seed: [run_mteemu(["run", "--seed", seed, binary]) for _ in range(2)] for seed in ("7", "8")}
    for runs in out.values():
        assert all(r.returncode == 0 for r in runs)
        assert runs[0].stdout == runs[1].stdout
        assert re.fullmatch(rb"[0-9a-f]{32} [0-9a-f]{32}\n", runs[0].stdout)
    assert out["7"][0].stdout != out["8"][0].stdout
