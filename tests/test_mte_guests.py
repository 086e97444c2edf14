"""MTE guest programs: results must match Linux's documented MTE ABI and the Arm
architecture, written down next to each program as NAME.expected (its stdout).

Each program says in comment lines at its top how it is run and judged:
  // exit: N            the exit status Linux gives (default 0)
  // run: OPTIONS       extra mteemu options (e.g. -E GLIBC_TUNABLES=...)
  // qemu: same         qemu-aarch64 agrees with Linux here, so it is compared too
  // qemu: differs ...  why qemu-aarch64 is not a valid oracle for this program
  // qemu-variant: V      qemu-aarch64 agrees with Linux for variant V, compared too
A program may have variants: NAME.VARIANT.expected files with a `// variant VARIANT: OPTIONS`
line each (the same binary under other mteemu options, e.g. another preferred mode).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, build_guests

SRC = ROOT / "guest_tests"


def _directives(name: str) -> dict:
    text = (SRC / f"{name}.c").read_text()
    exit_m = re.search(r"^//\s*exit:\s*(\d+)", text, re.M)
    run_m = re.search(r"^//\s*run:\s*(.*)$", text, re.M)
    return {
        "exit": int(exit_m.group(1)) if exit_m else 0,
        "run": shlex.split(run_m.group(1)) if run_m else [],
        "qemu": bool(re.search(r"^//\s*qemu:\s*same", text, re.M)),
        "qemu_variants": set(re.findall(r"^//\s*qemu-variant:\s*(\w+)", text, re.M)),
        "variants": {m.group(1): shlex.split(m.group(2))
                     for m in re.finditer(r"^//\s*variant\s+(\w+):\s*(.*)$", text, re.M)},
        "variant_exit": {m.group(1): int(m.group(2))
                         for m in re.finditer(r"^//\s*variant-exit\s+(\w+):\s*(\d+)", text, re.M)},
    }


def _cases() -> list:
    cases = []
    for name in build_guests.mte_names():
        cases.append(pytest.param(name, None, id=name))
        for variant in _directives(name)["variants"]:
            cases.append(pytest.param(name, variant, id=f"{name}.{variant}"))
    return cases


def _run(args: list[str], cwd) -> subprocess.CompletedProcess:  # noqa: ANN001
    # GLIBC_TUNABLES must come from the test's own -E options, never from the shell.
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    return subprocess.run(args, capture_output=True, cwd=cwd, timeout=300, env=env)


def _env_options(options: list[str]) -> list[str]:
    """The -E NAME=VALUE pairs (qemu-aarch64 takes them the same way)."""
    return [x for i, o in enumerate(options) if o == "-E" for x in options[i:i + 2]]


@pytest.mark.parametrize("name,variant", _cases())
def test_mte_guest_matches_linux(name: str, variant: str | None, guest, tmp_path) -> None:
    d = _directives(name)
    binary = str(guest(name))
    options = d["run"] + (d["variants"][variant] if variant else [])
    expected_file = SRC / (f"{name}.{variant}.expected" if variant else f"{name}.expected")
    ours = _run([sys.executable, "-m", "mteemu", "run", *options, binary], tmp_path)
    assert ours.stdout.decode() == expected_file.read_text(), ours.stderr.decode()[-3000:]
    want_exit = d["variant_exit"].get(variant, d["exit"]) if variant else d["exit"]
    assert ours.returncode == want_exit, ours.stderr.decode()[-3000:]
    assert b"Traceback" not in ours.stderr
    if (d["qemu"] and not variant) or variant in d["qemu_variants"]:
        if shutil.which("qemu-aarch64") is None:
            pytest.fail("qemu-aarch64 is missing: run the README's test command to install it")
        theirs = _run(["qemu-aarch64", *_env_options(options), binary], tmp_path)
        assert theirs.stdout == ours.stdout


def test_every_mte_program_has_its_expectation() -> None:
    for name in build_guests.mte_names():
        assert (SRC / f"{name}.expected").exists(), name
        for variant in _directives(name)["variants"]:
            assert (SRC / f"{name}.{variant}.expected").exists(), f"{name}.{variant}"
