"""Debian's userland battery (tests/debian/battery.txt): its command lines, the data they
work on, and each line run under mteemu and under qemu-aarch64 (every program of the line,
through wrappers: qemu-user itself runs what a program execs natively on the host)."""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
BATTERY = HERE / "debian" / "battery.txt"
ENV = {"LANG": "C", "HOME": "/tmp", "TZ": "UTC"}
TIMEOUT = 240


@dataclass(frozen=True)
class Line:
    number: int                  # 1-based, among the command lines
    command: str
    differs: Optional[str]       # why it differs on purpose, if it does


@dataclass(frozen=True)
class Outcome:
    status: int
    stdout: bytes
    stderr: bytes
    seconds: float


def lines() -> list[Line]:
    out, why = [], None
    for text in BATTERY.read_text().splitlines():
        if text.startswith("# differs:"):
            why = text.partition(":")[2].strip()
        elif text.strip() and not text.startswith("#"):
            out.append(Line(len(out) + 1, text, why))
            why = None
    return out


def make_data(where: Path) -> None:
    """The files the lines read: the same bytes on every machine (a seeded generator)."""
    r = random.Random(1)
    words = ["".join(r.choice("abcdefghij") for _ in range(r.randint(2, 8))) for _ in range(2000)]
    where.mkdir(parents=True, exist_ok=True)
    (where / "words.txt").write_text("\n".join(words) + "\n")
    (where / "nums.txt").write_text("\n".join(str(r.randint(-1000, 100000)) for _ in range(3000)) + "\n")
    (where / "passwd").write_text("\n".join(
        f"user{i}:x:{1000 + i}:{1000 + i}:User {i}:/home/user{i}:/bin/{'bash' if i % 3 else 'sh'}"
        for i in range(50)) + "\n")
    (where / "data.json").write_text("[" + ",".join('{"id":%d,"name":"%s","v":%d}' % (i, words[i], i * 7 % 13)
                                                   for i in range(50)) + "]\n")
    os.utime(where / "passwd", (1_600_000_000, 1_600_000_000))     # older than the rest (find -newer)


def reference_path(sysroot: Path, where: Path) -> Path:
    """A directory of wrappers, one per program of the sysroot: an ELF runs under
    qemu-aarch64 -L SYSROOT, a script under the host's sh (its programs found here again)."""
    where.mkdir(parents=True, exist_ok=True)
    for tool in (sysroot / "usr" / "bin").iterdir():
        target = tool.resolve() if tool.is_symlink() else tool
        try:
            elf = target.open("rb").read(4) == b"\x7fELF"
        except OSError:
            continue
        run = f"qemu-aarch64 -L {sysroot} {target}" if elf else f"/bin/sh {target}"
        wrapper = where / tool.name
        wrapper.write_text(f'#!/bin/sh\nexec {run} "$@"\n')
        wrapper.chmod(0o755)
    return where


def run_line(line: Line, sysroot: Path, work: Path, emulator: str, wrappers: Optional[Path] = None,
             tagging: str = "") -> Outcome:
    """The line in a fresh copy of the data, under mteemu (`tagging`: glibc.mem.tagging's
    value, "" for none) or under qemu-aarch64 (through `wrappers`)."""
    if work.exists():
        shutil.rmtree(work)
    make_data(work)
    if emulator == "mteemu":
        tag = ["-E", f"GLIBC_TUNABLES=glibc.mem.tagging={tagging}"] if tagging else []
        cmd = [sys.executable, "-m", "mteemu", "run", "-L", str(sysroot), "--timeout", str(TIMEOUT), *tag,
               "-E", "PATH=/usr/bin:/bin", str(sysroot / "usr" / "bin" / "bash"), "-c", line.command]
        env = ENV | {"PATH": os.environ["PATH"]} | {k: v for k, v in os.environ.items()
                                                     if k in ("MTEEMU_PURE_PYTHON", "PYTHONPATH")}
    else:
        assert wrappers is not None
        cmd = [str(wrappers / "bash"), "-c", line.command]
        env = ENV | {"PATH": f"{wrappers}:/usr/bin:/bin"}
    start = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, cwd=work, env=env, stdin=subprocess.DEVNULL, timeout=TIMEOUT + 60)
    seconds = time.monotonic() - start
    # Paths normalized: the sysroot and the wrappers are where each run finds /usr/bin.
    stderr = p.stderr.replace(str(sysroot).encode(), b"")
    if wrappers is not None:
        stderr = stderr.replace(str(wrappers).encode(), b"/usr/bin")
    return Outcome(p.returncode, p.stdout, stderr, seconds)


def run_all(sysroot: Path) -> list[tuple[Line, Outcome, dict[str, Outcome]]]:
    """Every line under qemu-aarch64 and under mteemu untagged, sync and async."""
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory(dir=HERE.parent / "build") as tmp:
        wrappers = reference_path(sysroot, Path(tmp) / "wrappers")
        for line in lines():
            ref = run_line(line, sysroot, Path(tmp) / "work", "qemu", wrappers)
            runs = {mode: run_line(line, sysroot, Path(tmp) / "work", "mteemu", tagging=tag)
                    for mode, tag in (("untagged", ""), ("sync", "3"), ("async", "1"))}
            rows.append((line, ref, runs))
            print(f"{line.number:3} {'ok ' if _same(runs['untagged'], ref) else 'DIFF'} {line.command[:70]}",
                  file=sys.stderr, flush=True)
    return rows


def _same(a: Outcome, b: Outcome) -> bool:
    return (a.status, a.stdout, a.stderr) == (b.status, b.stdout, b.stderr)


def table(rows: list[tuple[Line, Outcome, dict[str, Outcome]]]) -> str:
    """docs/debian-userland.md's table."""
    agree = {mode: sum(_same(runs[mode], ref) for _, ref, runs in rows) for mode in ("untagged", "sync", "async")}
    total = {mode: sum(runs[mode].seconds for _, _, runs in rows) for mode in ("untagged", "sync", "async")}
    qemu = sum(ref.seconds for _, ref, _ in rows)
    out = ["| | untagged | glibc.mem.tagging=3 | glibc.mem.tagging=1 | qemu-aarch64 |", "|---|---|---|---|---|",
           f"| lines agreeing with qemu-aarch64 (of {len(rows)}) | {agree['untagged']} | {agree['sync']} | "
           f"{agree['async']} | |",
           f"| total seconds | {total['untagged']:.1f} | {total['sync']:.1f} | {total['async']:.1f} | {qemu:.1f} |",
           f"| ratio to qemu-aarch64 | {total['untagged'] / qemu:.1f}x | {total['sync'] / qemu:.1f}x | "
           f"{total['async'] / qemu:.1f}x | 1x |", "", "The five slowest lines (untagged mteemu / qemu-aarch64):", ""]
    slowest = sorted(rows, key=lambda r: -r[2]["untagged"].seconds / max(r[1].seconds, 0.01))[:5]
    out += [f"* {r[2]['untagged'].seconds / max(r[1].seconds, 0.01):.1f}x: `{r[0].command}`" for r in slowest]
    differing = [(line, ref, runs) for line, ref, runs in rows if not _same(runs["untagged"], ref)]
    if differing:
        out += ["", "Lines that differ:", ""]
        out += [f"* `{line.command}`: {line.differs or 'not explained'}" for line, _, _ in differing]
    return "\n".join(out) + "\n"
