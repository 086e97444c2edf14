"""`mteemu test`: run suites in parallel, show progress, summarize, write reports."""
from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mteemu.atomicfile import check_target, write_text
from mteemu.errors import InputError
from mteemu.testing import reports, shard
from mteemu.testing.runner import ERROR, FAIL, PASS, Result, Settings, close_servers, discover, run_case


def _line(r: Result) -> str:
    oracle = f"  [{r.oracle_name}: {r.oracle}]" if r.oracle and r.oracle != "agrees" else ""
    text = f"{r.status.upper():5} {r.name}"     # no timings: the same suite prints the same
    return text + (f": {r.message}" if r.message else "") + oracle


def run_tests(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise InputError("-j must be at least 1")
    cases = discover(args.paths)
    if not cases:
        raise InputError(f"no guest tests found in {' '.join(args.paths)}")
    shard_label = None
    if args.durations and not args.shard:
        raise InputError("--durations balances --shard K/N: give both")
    if args.shard:
        k, n = shard.parse(args.shard)
        durations = shard.load_durations(args.durations) if args.durations else None
        chosen = shard.select((c.name for c in cases), k, n, durations)
        cases = [c for c in cases if c.name in chosen]
        shard_label = f"{k}/{n}"
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
    results: list[Result | None] = [None] * len(cases)
    shown = 0
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_case, c, settings) for c in cases]
        done = 0
        for i, fut in enumerate(futures):
            results[i] = fut.result()
            done += 1
            if tty:
                width = 30
                fill = width * done // len(cases)
                failed = sum(r is not None and r.status != PASS for r in results)
                sys.stdout.write(f"\r[{'=' * fill}{' ' * (width - fill)}] {done}/{len(cases)} "
                                 f"{failed} failing  {cases[i].name[:40]:40}")
                sys.stdout.flush()
            elif args.oracle != "linux":           # (Linux's verdicts come after every run)
                # One line per result, in discovery order, whatever finished first.
                while shown < len(results) and (done_result := results[shown]) is not None:
                    print(_line(done_result), flush=True)
                    shown += 1
    close_servers()
    final = [r for r in results if r is not None]
    if args.oracle == "linux":
        from mteemu.testing import linux

        linux.compare(cases, final)
        if not tty:
            for r in final:
                print(_line(r), flush=True)
    if tty:
        sys.stdout.write("\r" + " " * 100 + "\r")
    for r in final:
        if r.status != PASS:
            if tty:
                print(_line(r))
            if r.details:
                print("    " + r.details.rstrip().replace("\n", "\n    "))
    counts = {s: sum(r.status == s for r in final) for s in (PASS, FAIL, ERROR)}
    known = sum(1 for r in final if r.oracle and r.oracle.startswith("known"))
    oracle = f", {known} known {'Linux' if args.oracle == 'linux' else 'qemu-aarch64'} difference(s)" \
        if args.oracle else ""
    print(f"{len(final)} tests: {counts[PASS]} passed, {counts[FAIL]} failed, {counts[ERROR]} errors{oracle}")
    try:
        if args.junit_xml:
            write_text(args.junit_xml, reports.junit_xml(final, properties=reports.case_properties(cases, shard_label)))
        if args.json:
            write_text(args.json, reports.as_json(final))
    except OSError as e:
        raise InputError(f"cannot write the report: {e.strerror}: {e.filename}") from None
    return 0 if counts[PASS] == len(final) else 1
