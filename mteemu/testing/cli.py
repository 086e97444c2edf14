"""`mteemu test`: run suites in parallel, show progress, summarize, write reports."""
from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from mteemu.atomicfile import check_target, write_text
from mteemu.errors import InputError
from mteemu.testing import reports, shard
from mteemu.testing.runner import ERROR, FAIL, PASS, Case, Result, Settings, close_servers, discover, run_case


def _line(r: Result) -> str:
    oracle = f"  [{r.oracle_name}: {r.oracle}]" if r.oracle and r.oracle != "agrees" else ""
    text = f"{r.status.upper():5} {r.name}"     # no timings: the same suite prints the same
    return text + (f": {r.message}" if r.message else "") + oracle


def run_tests(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise InputError("-j must be at least 1")
    cases, shard_label = _select(args)
    if not cases:
        print(f"shard {shard_label}: no tests (more shards than tests)")
        return 0
    for option, out in (("--junit-xml", args.junit_xml), ("--json", args.json)):
        if out:
            check_target(out, option, [str(c.path) for c in cases])
    settings = Settings(oracle=args.oracle)
    if args.cache:
        settings.cache = Path(args.cache)
    tty = sys.stdout.isatty()
    final = _run_all(cases, settings, args.jobs, tty, lines=args.oracle != "linux")
    close_servers()
    if args.oracle == "linux":
        from mteemu.testing import linux

        linux.compare(cases, final)
        if not tty:
            for r in final:
                print(_line(r), flush=True)
    if tty:
        sys.stdout.write("\r" + " " * 100 + "\r")
    _summarize(final, tty, args.oracle)
    try:
        if args.junit_xml:
            write_text(args.junit_xml, reports.junit_xml(final, properties=reports.case_properties(cases, shard_label)))
        if args.json:
            write_text(args.json, reports.as_json(final))
    except OSError as e:
        raise InputError(f"cannot write the report: {e.strerror}: {e.filename}") from None
    return 0 if all(r.status == PASS for r in final) else 1


def _select(args: argparse.Namespace) -> tuple[list[Case], Optional[str]]:
    """The cases the paths hold, and only this shard's with --shard K/N."""
    cases = discover(args.paths)
    if not cases:
        raise InputError(f"no guest tests found in {' '.join(args.paths)}")
    if args.durations and not args.shard:
        raise InputError("--durations balances --shard K/N: give both")
    if not args.shard:
        return cases, None
    k, n = shard.parse(args.shard)
    durations = shard.load_durations(args.durations) if args.durations else None
    chosen = shard.select((c.name for c in cases), k, n, durations)
    return [c for c in cases if c.name in chosen], f"{k}/{n}"


def _run_all(cases: list[Case], settings: Settings, jobs: int, tty: bool, lines: bool) -> list[Result]:
    """Every case, `jobs` at a time: a progress bar on a terminal, else (with `lines`) one
    line per result in discovery order, whatever finished first."""
    results: list[Result | None] = [None] * len(cases)
    shown = 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_case, c, settings) for c in cases]
        for done, fut in enumerate(futures, 1):
            results[done - 1] = fut.result()
            if tty:
                width = 30
                fill = width * done // len(cases)
                failed = sum(r is not None and r.status != PASS for r in results)
                sys.stdout.write(f"\r[{'=' * fill}{' ' * (width - fill)}] {done}/{len(cases)} "
                                 f"{failed} failing  {cases[done - 1].name[:40]:40}")
                sys.stdout.flush()
            elif lines:                            # (Linux's verdicts come after every run)
                while shown < len(results) and (done_result := results[shown]) is not None:
                    print(_line(done_result), flush=True)
                    shown += 1
    return [r for r in results if r is not None]


def _summarize(final: list[Result], tty: bool, oracle_kind: Optional[str]) -> None:
    for r in final:
        if r.status != PASS:
            if tty:
                print(_line(r))
            if r.details:
                print("    " + r.details.rstrip().replace("\n", "\n    "))
    counts = {s: sum(r.status == s for r in final) for s in (PASS, FAIL, ERROR)}
    known = sum(1 for r in final if r.oracle and r.oracle.startswith("known"))
    oracle = f", {known} known {'Linux' if oracle_kind == 'linux' else 'qemu-aarch64'} difference(s)" \
        if oracle_kind else ""
    print(f"{len(final)} tests: {counts[PASS]} passed, {counts[FAIL]} failed, {counts[ERROR]} errors{oracle}")
