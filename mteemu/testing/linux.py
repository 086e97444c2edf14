"""`mteemu test --oracle linux`: every test also run under the Linux oracle
(mteemu/oracle/: Debian's arm64 kernel with MTE in qemu-system-aarch64), a batch per boot,
and compared with its mteemu run: the same exit status and stdout, or a difference (with
the diff), or failing under both. Linux's answer is the expected one: a difference fails
the test unless the test says why mteemu differs on purpose (`linux: differs: WHY`).

A test runs under Linux with its arguments, its environment (`env:` and `-E` options),
its time limit, the caller's uid and gid, stdin empty and /tmp as its working directory;
argv[0] is the path mteemu ran it by. Tests whose mteemu options have no Linux
equivalent (a board, --mte-tcf-preferred...) are not compared, and say so. Results are
cached by everything that decides them (the program's bytes, its arguments, environment
and time limit, the kernel and QEMU), so a suite boots only for the tests that changed.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
from pathlib import Path
from typing import Optional

from mteemu.oracle import fetch
from mteemu.oracle import runner as oracle
from mteemu.testing.runner import FAIL, PASS, Case, Result, stdout_problem

BATCH = 48                        # tests per boot (a boot costs ~5 s; a guest death loses at most a batch)
_ENV_OPTIONS = ("-E", "-U")


def _environment(spec) -> Optional[dict[str, str]]:  # noqa: ANN001 - a TestSpec
    """The test's environment, or None if its options are not all -E/-U (nothing to compare)."""
    env = dict(spec.env)
    opts = list(spec.options)
    while opts:
        opt = opts.pop(0)
        if opt not in _ENV_OPTIONS or not opts:
            return None
        value = opts.pop(0)
        if opt == "-E":
            name, _, v = value.partition("=")
            env[name] = v
        else:
            env.pop(value, None)
    return env


def _key(program: oracle.Program, machine: fetch.Machine) -> str:
    h = hashlib.sha256(program.path.read_bytes())
    h.update(json.dumps([program.name, program.args, sorted(program.env.items()), program.timeout, program.cwd,
                         program.uid, program.gid, program.capabilities, machine.kernel_version, str(machine.qemu),
                         oracle.INIT_SOURCE.read_bytes().hex()]).encode())
    return h.hexdigest()


def _load(path: Path) -> Optional[oracle.Outcome]:
    try:
        d = json.loads(path.read_text())
        return oracle.Outcome(d["kind"], d["value"], bytes.fromhex(d["stdout"]), bytes.fromhex(d["stderr"]),
                              d["kernel_log"])
    except (OSError, ValueError, KeyError):
        return None


def _store(path: Path, o: oracle.Outcome) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"kind": o.kind, "value": o.value, "stdout": o.stdout.hex(), "stderr": o.stderr.hex(),
                               "kernel_log": o.kernel_log}))
    tmp.replace(path)


def linux_outcomes(programs: list[oracle.Program], machine: fetch.Machine) -> list[oracle.Outcome]:
    """Each program's outcome under Linux: from the cache, else from a boot (BATCH at a time);
    only finished runs are cached."""
    cache = fetch.cache_dir() / "results"
    keys = [_key(p, machine) for p in programs]
    got: list[Optional[oracle.Outcome]] = [_load(cache / f"{k}.json") for k in keys]
    todo = [i for i, o in enumerate(got) if o is None]
    for start in range(0, len(todo), BATCH):
        chunk = todo[start:start + BATCH]
        outcomes, _ = oracle.run_batch([programs[i] for i in chunk], machine)
        for i, o in zip(chunk, outcomes):
            got[i] = o
            if o.kind in (oracle.EXITED, oracle.SIGNALED, oracle.TIMED_OUT, oracle.NOT_STARTED):
                _store(cache / f"{keys[i]}.json", o)
    return [o if o is not None else oracle.Outcome(oracle.NOT_RUN) for o in got]


def _linux_problem(spec, o: oracle.Outcome) -> str:  # noqa: ANN001
    """How Linux's run fails the test's own expectations ("" if it meets them)."""
    if o.status is None:
        return f"Linux: {o.kind}"
    problems = []
    if o.status != spec.status:
        problems.append(f"Linux's exit status {o.status}, the test expects {spec.status}")
    diff = stdout_problem(spec, o.stdout.decode(errors="replace"))
    if diff:
        problems.append("Linux's stdout differs from the expected")
    return "; ".join(problems)


def _difference(r: Result, o: oracle.Outcome) -> str:
    """mteemu's run against Linux's: "" when the exit status and stdout are the same."""
    if o.status is None:
        return f"Linux: {o.kind}" + (f" ({os.strerror(o.value)})" if o.kind == oracle.NOT_STARTED else "")
    what = []
    if r.exit_status != o.status:
        what.append(f"exit status {r.exit_status} under mteemu, {o.status} under Linux")
    if r.stdout != o.stdout:
        diff = "".join(difflib.unified_diff(o.stdout.decode(errors="replace").splitlines(True),
                                            r.stdout.decode(errors="replace").splitlines(True),
                                            "Linux stdout", "mteemu stdout"))
        first = next((ln[1:] for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")), "")
        what.append(f"stdout differs (mteemu: {first.strip()[:80]!r})" + (f":\n{diff}" if diff else ""))
    return "; ".join(what)


def program_for(spec, binary: Path) -> "oracle.Program | str":  # noqa: ANN001 - a TestSpec
    """The test as a Linux run, or why it is not compared."""
    env = _environment(spec)
    if env is None:
        return f"not compared: mteemu options {' '.join(spec.options)}"
    if spec.board is not None:
        return "not compared: a board of its own"
    return oracle.Program(binary, list(spec.args), env, b"", "/tmp", os.getuid(), os.getgid(),
                          max(1, int(spec.timeout + 0.999)), _host_capabilities(), str(binary))


def _host_capabilities() -> int:
    """The bounding set mteemu's guest has (the host process's: procfs.pid.host_capabilities)."""
    from mteemu.kernel.fs.procfs.pid import host_capabilities

    return int(dict(host_capabilities())["CapBnd"], 16)


def judge(spec, r: Result, o: oracle.Outcome) -> None:  # noqa: ANN001 - a TestSpec
    """mteemu's result against Linux's outcome (in place)."""
    r.oracle_name = "linux"
    diff = _difference(r, o)
    linux_fails = _linux_problem(spec, o)
    first = diff.splitlines()[0] if diff else ""
    if not diff:
        r.oracle = "agrees"
    elif r.status != PASS and linux_fails:
        r.oracle = f"fails under both: {linux_fails}"
    elif spec.linux:
        r.oracle = f"known difference: {spec.linux}"
    else:
        r.oracle = f"disagrees: {first}"
        r.status, r.message = FAIL, f"Linux disagrees: {first}"
        r.details = diff + (f"\n{linux_fails}" if linux_fails else "") + \
            (f"\nLinux's kernel log:\n{o.kernel_log}" if o.kernel_log.strip() else "")


def compare(cases: list[Case], results: list[Result], machine: Optional[fetch.Machine] = None) -> None:
    """Run the tests that ran under mteemu under Linux too, and judge each (in place)."""
    todo: list[tuple[Case, Result, oracle.Program]] = []
    for c, r in zip(cases, results):
        r.oracle_name = "linux"
        if c.spec is None or r.binary is None or r.exit_status is None:
            continue
        p = program_for(c.spec, r.binary)
        if isinstance(p, str):
            r.oracle = p
            continue
        todo.append((c, r, p))
    if not todo:
        return
    outcomes = linux_outcomes([p for _, _, p in todo], machine or fetch.machine())
    for (c, r, _), o in zip(todo, outcomes):
        assert c.spec is not None
        judge(c.spec, r, o)
