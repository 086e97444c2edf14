"""Discovering and running guest tests: each run is its own `mteemu run` process (forked
from a started server, forkserver.py, or else a new one), in a fresh working directory,
with exactly the environment the test asks for and a fixed seed, so a suite gives the same
results whatever the parallelism."""
from __future__ import annotations

import difflib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from mteemu.errors import EXIT_MODEL_VIOLATION
from mteemu.testing import build as B
from mteemu.testing.forkserver import ForkServer, ServerGone
from mteemu.testing.spec import ExpectationError, TestSpec, has_expectations, parse

ELF_MAGIC = b"\x7fELF"
PASS, FAIL, ERROR = "pass", "fail", "error"
_KILLED = re.compile(rb"^mteemu: guest terminated by signal (\d+) \(\w+\)(?:, si_code (\d+))?", re.M)
_REPORT = re.compile(rb"^==mteemu== ERROR:.*?(?=^mteemu: |\Z)", re.M | re.S)
_CAUSE = re.compile(r"^(Cause: .*)$", re.M)


@dataclass
class Result:
    name: str
    status: str                       # pass / fail / error
    seconds: float = 0.0
    message: str = ""                 # why it failed, one line
    details: str = ""                 # a diff, the fault report, the compiler's output...
    oracle: Optional[str] = None      # agrees / known difference: WHY / disagrees: WHAT
    stdout: bytes = b""
    oracle_name: str = "qemu"         # which oracle `oracle` is about: qemu (qemu-aarch64) or linux
    exit_status: Optional[int] = None  # mteemu's, when it ran to the end
    binary: Optional[Path] = None     # the program run (built from the source, or the ELF)


@dataclass
class Case:
    """A discovered test: its spec, or why it cannot even be read."""

    name: str
    path: Path
    spec: Optional[TestSpec] = None
    error: Optional[str] = None


def discover(paths: Iterable[str]) -> list[Case]:
    """C sources with an expectation block and ELFs (with an optional PROGRAM.test),
    directories recursively, in a stable order. Names are relative to the argument."""
    cases: list[Case] = []
    for arg in paths:
        root = Path(arg).resolve()
        if not root.exists():
            cases.append(Case(arg, root, error=f"{arg}: no such file or directory"))
            continue
        if not root.is_dir() and not root.is_file():     # a FIFO or device: never read it
            cases.append(Case(arg, root, error=f"{arg}: not a regular file or directory"))
            continue
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            base = f.relative_to(root) if root.is_dir() else Path(f.name)
            if f.suffix == ".c":
                if root.is_dir() and not has_expectations(f):
                    continue
                name = base.with_suffix("").as_posix()
            elif _is_elf(f):
                name = base.as_posix()
            else:
                continue
            try:
                for spec in parse(f, name).expanded():
                    cases.append(Case(spec.name, f, spec))
            except (ExpectationError, OSError, UnicodeDecodeError) as e:
                cases.append(Case(name, f, error=str(e)))
    return cases


def _is_elf(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            return fh.read(4) == ELF_MAGIC
    except OSError:
        return False


@dataclass
class Settings:
    cache: Path = field(default_factory=B.default_cache)
    oracle: Optional[str] = None      # "qemu"
    python: str = sys.executable


def run_case(case: Case, settings: Settings) -> Result:
    start = time.monotonic()
    if case.spec is None:
        return Result(case.name, ERROR, message=case.error or "unreadable test")
    spec = case.spec
    try:
        binary = B.build(spec.path, cache_name(spec), spec.build_flags, settings.cache) if spec.is_source \
            else spec.path
    except B.BuildError as e:
        return Result(case.name, ERROR, time.monotonic() - start, "does not build", str(e))
    except OSError as e:
        return Result(case.name, ERROR, time.monotonic() - start, f"cannot build: {e}")
    result = _check(spec, binary, settings)
    result.oracle_name = settings.oracle or "qemu"
    if result.status == PASS and settings.oracle == "qemu":
        _oracle(spec, binary, result)
    result.seconds = time.monotonic() - start
    return result


def cache_name(spec: TestSpec) -> str:
    # One cache entry per source file (whatever its test name), unique across suites.
    digest = hashlib.sha256(str(spec.path.resolve()).encode()).hexdigest()[:10]
    return f"{spec.path.stem}-{digest}"


def _guest_env(spec: TestSpec) -> list[str]:
    return [x for k, v in spec.env.items() for x in ("-E", f"{k}={v}")]


def _env_options(options: list[str]) -> list[str]:
    """The -E/-U pairs among mteemu options (qemu-aarch64 takes them the same way)."""
    return [x for i, o in enumerate(options) if o in ("-E", "-U") for x in options[i:i + 2]]


def _env() -> dict[str, str]:
    """The emulator's own environment, minimal and fixed: the guest's comes from -E."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]        # where this mteemu was imported from
    return env


def _run(cmd: list[str], timeout: float) -> tuple[Optional[subprocess.CompletedProcess], str]:
    with tempfile.TemporaryDirectory(prefix="mteemu-test-") as cwd:
        try:
            return subprocess.run(cmd, capture_output=True, cwd=cwd, timeout=timeout + 30, env=_env()), ""
        except subprocess.TimeoutExpired:
            return None, f"did not finish within {timeout + 30:g} s"
        except OSError as e:
            return None, f"cannot start: {e}"


class _Servers(threading.local):
    """One fork server per runner thread (a request at a time each), all closed at the end."""

    server: Optional[ForkServer] = None
    broken = False
    every: list[ForkServer] = []
    lock = threading.Lock()


_SERVERS = _Servers()


def close_servers() -> None:
    with _Servers.lock:
        for s in _Servers.every:
            s.close()
        _Servers.every.clear()


def _run_mteemu(cmd: list[str], timeout: float) -> tuple[Optional[subprocess.CompletedProcess], str]:
    """cmd (`python -m mteemu ...`) run by this thread's fork server; by a new process where
    no server can run (it could not start: no pidfd_open, say)."""
    local = _SERVERS
    if local.server is None and not local.broken:
        try:
            local.server = ForkServer(cmd[0], _env())
        except ServerGone:
            local.broken = True
        else:
            with _Servers.lock:
                _Servers.every.append(local.server)
    if local.server is None:
        return _run(cmd, timeout)
    with tempfile.TemporaryDirectory(prefix="mteemu-test-") as cwd:
        try:
            status, out, err = local.server.run(cmd[3:], cwd, timeout + 30)
        except ServerGone:
            local.server = None                     # started again for the next test
            return _run(cmd, timeout)
    if status is None:
        return None, f"did not finish within {timeout + 30:g} s"
    return subprocess.CompletedProcess(cmd, status, out, err), ""


def mteemu_command(spec: TestSpec, binary: Path, python: str) -> list[str]:
    # Tests always run with the memory manager's invariants checked, and with the allocation
    # history, so that a tag-check fault's failure says its cause (docs/performance.md: it
    # costs about a tenth on glibc heap-tagging workloads).
    cmd = [python, "-m", "mteemu", "run", "--seed", "0", "--timeout", f"{spec.timeout:g}", "--check-invariants",
           "--alloc-history"]
    if spec.board is not None:
        cmd += ["--dtb", str(spec.board)]
    # An empty environment for the guest: -U for nothing, everything from -E.
    return cmd + ["--clear-env", *_guest_env(spec), *spec.options, str(binary), *spec.args]


def _check(spec: TestSpec, binary: Path, settings: Settings) -> Result:
    proc, why = _run_mteemu(mteemu_command(spec, binary, settings.python), spec.timeout)
    if proc is None:
        return Result(spec.name, ERROR, message=why, binary=binary)
    result = _judge(spec, proc)
    result.exit_status, result.binary = proc.returncode, binary
    return result


def _judge(spec: TestSpec, proc: subprocess.CompletedProcess) -> Result:
    report = _REPORT.search(proc.stderr)
    details = report.group().decode(errors="replace") if report else ""
    if proc.returncode == 70 or b"Traceback" in proc.stderr:
        return Result(spec.name, ERROR, message="the emulator crashed",
                      details=proc.stderr.decode(errors="replace")[-4000:], stdout=proc.stdout)
    if proc.returncode == EXIT_MODEL_VIOLATION and b"model violation" in proc.stderr:
        return Result(spec.name, FAIL, message="the memory-manager model broke",
                      details=proc.stderr.decode(errors="replace")[-4000:], stdout=proc.stdout)
    if proc.returncode == 124 and b"--timeout" in proc.stderr:
        return Result(spec.name, FAIL, message=f"timed out after {spec.timeout:g} s", stdout=proc.stdout)
    problems = []
    if proc.returncode != spec.status:
        problems.append(f"exit status {proc.returncode}, expected {spec.status}")
    if spec.signal is not None and spec.si_code is not None:
        m = _KILLED.search(proc.stderr)
        got = int(m.group(2)) if m and m.group(2) else None
        if got != spec.si_code:
            problems.append(f"si_code {got}, expected {spec.si_code}")
    out = proc.stdout.decode(errors="replace")
    diff = stdout_problem(spec, out)
    if diff:
        problems.append("stdout differs")
        details = diff + ("\n" + details if details else "")
    if problems:
        stderr_tail = proc.stderr.decode(errors="replace")[-2000:] if not details else ""
        cause = _CAUSE.search(details)
        if cause:
            problems.append(cause.group(1))          # the fault's most likely cause, in the one line
        return Result(spec.name, FAIL, message="; ".join(problems), details=details or stderr_tail,
                      stdout=proc.stdout)
    return Result(spec.name, PASS, stdout=proc.stdout)


def stdout_problem(spec: TestSpec, out: str) -> str:
    if spec.stdout_exact is not None:
        if out == spec.stdout_exact:
            return ""
        return "".join(difflib.unified_diff(spec.stdout_exact.splitlines(True), out.splitlines(True),
                                            "expected stdout", "actual stdout"))
    if spec.stdout_lines is not None:
        got = out.splitlines()
        bad = []
        for i, (kind, want) in enumerate(spec.stdout_lines):
            line = got[i] if i < len(got) else None
            ok = line is not None and (line == want if kind == "|" else re.fullmatch(want, line) is not None)
            if not ok:
                bad.append(f"line {i + 1}: expected {'exactly ' if kind == '|' else 'to match '}{want!r}, "
                           f"got {line!r}")
        if len(got) > len(spec.stdout_lines):
            extra = len(got) - len(spec.stdout_lines)
            bad.append(f"{extra} unexpected extra line(s), first {got[len(spec.stdout_lines)]!r}")
        return "\n".join(bad)
    return ""


def _oracle(spec: TestSpec, binary: Path, result: Result) -> None:
    """Run under qemu-aarch64 too and say whether it agrees (in place)."""
    if shutil.which("qemu-aarch64") is None:
        result.oracle = "qemu-aarch64 is not installed"
        return
    cmd = ["qemu-aarch64", "-U", "LANG", "-U", "PATH", "-U", "PYTHONDONTWRITEBYTECODE", *_guest_env(spec),
           *_env_options(spec.options), str(binary), *spec.args]
    proc, why = _run(cmd, spec.timeout)
    if proc is None:
        agree, what = False, why
    else:
        status = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        agree = status == spec.status and proc.stdout == result.stdout
        what = (f"exit status {status} vs {spec.status}" if status != spec.status else "stdout differs")
    if agree:
        result.oracle = "agrees"
    elif spec.qemu_same:
        result.status, result.message, result.oracle = FAIL, f"qemu-aarch64 disagrees: {what}", f"disagrees: {what}"
    elif spec.qemu:
        result.oracle = f"known difference: {spec.qemu}"
    else:
        result.status, result.message, result.oracle = FAIL, f"qemu-aarch64 disagrees ({what}) and no known " \
            "difference is documented (add 'qemu: differs: WHY')", f"disagrees: {what}"
