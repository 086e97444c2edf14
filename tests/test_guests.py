"""mteemu's own behaviour around guest programs. The programs' results themselves are
checked by the pytest plugin (guest_tests/, compared with qemu-aarch64 where it agrees
with Linux); this file checks what the plugin cannot see: the guest's own stderr equals
qemu-aarch64's, the termination line, --strace, --seed."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from conftest import ROOT, build_guests, run_mteemu

from mteemu.testing.spec import parse

# Every test here runs a program.
pytestmark = pytest.mark.slow

NAMES = build_guests.all_names()


def _own_lines(stderr: bytes, prefix: bytes) -> bytes:
    """The guest's own stderr: the emulator's diagnostic lines removed."""
    return b"".join(line for line in stderr.splitlines(keepends=True) if not line.startswith(prefix))


@pytest.mark.parametrize("name", NAMES)
def test_guest_stderr_matches_qemu(name: str, guest, tmp_path) -> None:
    if shutil.which("qemu-aarch64") is None:
        pytest.fail("qemu-aarch64 is missing: run the README's test command to install it")
    spec = parse(ROOT / "guest_tests" / f"{name}.c", name)
    env_opts = [x for k, v in spec.env.items() for x in ("-E", f"{k}={v}")]
    binary = str(guest(name))
    ours = subprocess.run([os.sys.executable, "-m", "mteemu", "run", *env_opts, binary, *spec.args],
                          capture_output=True, cwd=tmp_path, timeout=120)
    theirs = subprocess.run(["qemu-aarch64", *env_opts, binary, *spec.args], capture_output=True, cwd=tmp_path,
                            timeout=120)
    assert _own_lines(ours.stderr, b"mteemu:") == _own_lines(theirs.stderr, b"qemu:")


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


def test_strace_names_what_is_not_modelled(guest) -> None:
    r = run_mteemu(["run", "--strace", str(guest("rlimits"))])
    assert r.returncode == 0
    assert re.search(rb"\] prlimit64\(0, 4, 0x[0-9a-f]+, 0\) = 0 \(not modelled: the limit is kept and reported, "
                     rb"not enforced\)", r.stderr), r.stderr


def test_seed_makes_getrandom_deterministic(guest) -> None:
    binary = str(guest("random_bytes"))
    out = {seed: [run_mteemu(["run", "--seed", seed, binary]) for _ in range(2)] for seed in ("7", "8")}
    for runs in out.values():
        assert all(r.returncode == 0 for r in runs)
        assert runs[0].stdout == runs[1].stdout
        assert re.fullmatch(rb"[0-9a-f]{32} [0-9a-f]{32}\n", runs[0].stdout)
    assert out["7"][0].stdout != out["8"][0].stdout


def test_demo_runs() -> None:
    """The README's first command ends in `mteemu demo`: the built-in guest on the default board."""
    r = run_mteemu(["demo"])
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 0, err
    assert "HWCAP2_MTE advertised: yes" in out and "caught SIGSEGV, si_code 9" in out, out
    assert "the child was killed by signal 11; the demo is done" in out, out
    assert "==mteemu== ERROR: tag-mismatch (synchronous)" in err and "Traceback" not in err, err
