"""Run a scenario in every interleaving of its threads' steps.

Steps are atomic and a thread's steps keep their order, so the interleavings are exactly
the merges of the threads' sequences — (n1+...+nk)! / (n1!...nk!) of them, all run: no
reduction is needed at these sizes, so every distinct order is covered by construction.
Each interleaving starts from a fresh world (same setup), runs step by step with the
invariant checker after every step, and ends with the scenario's own check of the data
and tags it cares about. A model violation raised by the machine (a tag write into a tag
block that is not reserved) stops that interleaving.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional

from mteemu.errors import ModelViolation
from mteemu.kernel.mm import invariants
from mteemu.kernel.mm.fixes import FIXES
from mteemu.kernel.mm.pagealloc import OutOfMemory
from mteemu.races.scenarios import Scenario, Step
from mteemu.races.world import World


def interleavings(threads: list[list[Step]]) -> Iterator[list[Step]]:
    """Every merge of the threads' step sequences, in a fixed (lexicographic) order."""
    total = sum(len(t) for t in threads)
    pos = [0] * len(threads)
    order: list[Step] = []

    def rec() -> Iterator[list[Step]]:
        if len(order) == total:
            yield list(order)
            return
        for i, t in enumerate(threads):
            if pos[i] < len(t):
                order.append(t[pos[i]])
                pos[i] += 1
                yield from rec()
                pos[i] -= 1
                order.pop()

    return rec()


@dataclass
class Broken:
    """One interleaving that broke something: its numbered trace and what broke."""

    index: int
    trace: list[str]
    problems: list[str]


@dataclass
class Report:
    scenario: Scenario
    fixes: tuple[str, ...]
    policy: str
    runs: int = 0
    broken: list[Broken] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.broken

    def as_dict(self) -> dict:
        return {"scenario": self.scenario.name, "title": self.scenario.title, "policy": self.policy,
                "fixes_off": [f for f in FIXES if f not in self.fixes],
                "guarded_by": list(self.scenario.guarded_by), "interleavings": self.runs,
                "violations": len(self.broken), "seconds": round(self.seconds, 3),
                "broken": [{"interleaving": b.index, "trace": b.trace, "problems": b.problems}
                           for b in self.broken]}


def run_one(scenario: Scenario, order: list[Step], fixes: tuple[str, ...], policy: str) -> tuple[list[str], list[str]]:
    """(trace, problems) of one interleaving."""
    world = World(policy)                     # the starting state is built with every fix
    trace: list[str] = []
    problems: list[str] = []
    try:
        ctx = scenario.setup(world)
        world.alloc.fixes = frozenset(fixes)
        for n, step in enumerate(order, 1):
            line = f"{n:2d}. T{step.thread} {scenario.threads[step.thread]}: {step.label}"
            try:
                note = step.run(ctx)
            except ModelViolation as e:
                trace.append(line)
                trace.append(f"    !! {e.message}")
                trace += [f"       {d}" for d in e.details]
                problems.append(e.message)
                return trace, problems
            except OutOfMemory:
                note = "out of memory"
            trace.append(line + (f"  -> {note}" if note else ""))
            found = invariants.violations(world.alloc)
            if found:
                msg = f"invariant broken after step {n}: {found[0]}"
                trace.append(f"    !! {msg}")
                if msg not in problems:
                    problems.append(msg)
        try:
            final = scenario.check(ctx)
        except ModelViolation as e:
            final = [e.message] + list(e.details)
        if final:
            trace.append("    after the last step: " + "; ".join(final))
            problems += final
        return trace, problems
    finally:
        world.close()


def explore(scenario: Scenario, fixes: Iterable[str] = FIXES, policy: str = "metadata") -> Report:
    fixes = tuple(fixes)
    report = Report(scenario, fixes, policy)
    start = time.monotonic()
    for i, order in enumerate(interleavings(scenario.thread_steps()), 1):
        trace, problems = run_one(scenario, order, fixes, policy)
        report.runs += 1
        if problems:
            report.broken.append(Broken(i, trace, problems))
    report.seconds = time.monotonic() - start
    return report


def format_text(report: Report, show: Optional[int] = 3) -> str:
    s = report.scenario
    off = [f for f in FIXES if f not in report.fixes]
    lines = [f"{s.name}: {s.title}",
             f"  guarded by {', '.join(s.guarded_by)}; policy {report.policy}; "
             f"fixes off: {', '.join(off) if off else 'none'}",
             f"  {report.runs} interleavings, {len(report.broken)} broke an invariant or corrupted data "
             f"({report.seconds:.2f} s)"]
    for b in report.broken[:show]:
        lines.append(f"  interleaving {b.index} of {report.runs}:")
        lines += ["    " + t for t in b.trace]
    if show is not None and len(report.broken) > show:
        lines.append(f"  ... and {len(report.broken) - show} more (--format json lists them all)")
    return "\n".join(lines) + "\n"
