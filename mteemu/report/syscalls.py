"""`mteemu syscalls`: the system call table as people read it (text), as the docs include it
(markdown, docs/known-differences.md) and as tools read it (JSON)."""
from __future__ import annotations

import json
from dataclasses import dataclass

MISSING = "missing"        # not in the table: the guest gets ENOSYS and one "unimplemented" line


@dataclass(frozen=True)
class Row:
    nr: int
    name: str
    support: str             # full, partial, refused or missing
    note: str


def rows(include_missing: bool = False) -> list[Row]:
    from mteemu.kernel.syscalls.numbers import SYSCALL_NAMES
    from mteemu.kernel.syscalls.table import HANDLERS

    out = [Row(h.nr, h.name, h.support.value, h.note) for h in HANDLERS.values()]
    if include_missing:
        out += [Row(nr, name, MISSING, "ENOSYS") for nr, name in SYSCALL_NAMES.items() if nr not in HANDLERS]
    return sorted(out, key=lambda r: r.nr)


def text(table: list[Row]) -> str:
    width = max(len(r.name) for r in table)
    lines = [f"{r.nr:4d}  {r.name:<{width}}  {r.support:<8}  {r.note}".rstrip() for r in table]
    counts: dict[str, int] = {}
    for r in table:
        counts[r.support] = counts.get(r.support, 0) + 1
    lines.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return "\n".join(lines) + "\n"


def markdown(table: list[Row]) -> str:
    """Only the calls that are not fully modelled: the known differences."""
    lines = ["| call | nr | support | what differs from Linux |", "|---|---|---|---|"]
    lines += [f"| `{r.name}` | {r.nr} | {r.support} | {r.note} |" for r in table if r.support != "full"]
    full = sum(r.support == "full" for r in table)
    lines.append("")
    lines.append(f"The other {full} implemented calls are modelled fully (`mteemu syscalls` lists them all).")
    return "\n".join(lines) + "\n"


def as_json(table: list[Row]) -> str:
    return json.dumps({"version": 1, "syscalls": [r.__dict__ for r in table]}, indent=1) + "\n"
