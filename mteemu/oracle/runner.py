"""Running programs under the Linux oracle, a batch per boot.

Each batch: an initramfs with the oracle's init (init.c), the virtio modules, the programs
and a manifest; a raw disk for the results; one boot of
`qemu-system-aarch64 -M virt,mte=on -cpu max` with Debian's kernel. The kernel log comes
back on the serial console, kept apart from the programs' output, which comes back
byte for byte from the disk, one record per finished test (init.c says the format).
"""
from __future__ import annotations

import hashlib
import os
import signal
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from mteemu.oracle import fetch
from mteemu.oracle.cpio import Newc

CC = "aarch64-linux-gnu-gcc"
INIT_SOURCE = Path(__file__).with_name("init.c")
BOOT_SECONDS = 60             # allowance for the kernel's boot under TCG, on top of the tests' time
EXITED, SIGNALED, TIMED_OUT, NOT_STARTED, NOT_RUN = "exited", "signaled", "timed out", "not started", "not run"
_KINDS = {0: EXITED, 1: SIGNALED, 2: TIMED_OUT, 3: NOT_STARTED}
DISK_BYTES = 1 << 30          # sparse: the results of one batch
MAX_OUTPUT = 64 << 20         # a program's stdout and stderr are each cut at this (init.c's MAX_OUTPUT)


@dataclass
class Program:
    """One run: a host ELF file, and what it runs with."""

    path: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes = b""
    cwd: str = "/tmp"
    uid: int = 0
    gid: int = 0
    timeout: int = 60
    capabilities: int = (1 << 64) - 1    # the bounding set it runs with (the caller's on the host)
    name: str = ""                # argv[0] (default: the file's name); an absolute path is also
                                  # where the program is put, so /proc/self/exe names it as argv[0]


@dataclass
class Outcome:
    kind: str                     # EXITED, SIGNALED, TIMED_OUT, NOT_STARTED, NOT_RUN
    value: int = 0                # exit status, signal number, or errno
    stdout: bytes = b""
    stderr: bytes = b""
    kernel_log: str = ""          # what the kernel said while it ran

    @property
    def status(self) -> Optional[int]:
        """As a shell reports it (128 + signal); None if it did not finish."""
        if self.kind == EXITED:
            return self.value
        if self.kind == SIGNALED:
            return 128 + self.value
        return None


def build_init(cache: Path) -> Path:
    """init.c, built static for arm64 once per source (cached by its hash)."""
    source = INIT_SOURCE.read_bytes()
    out = cache / f"init-{hashlib.sha256(source).hexdigest()[:12]}"
    if not out.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        r = subprocess.run([CC, "-static", "-O2", "-Wall", "-o", str(tmp), str(INIT_SOURCE)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise fetch.OracleError(f"cannot build the oracle's init: {r.stderr.strip()[:300]}")
        tmp.rename(out)
    return out


def _where(p: Program, i: int) -> str:
    """Where the program lives in the guest: at its argv[0] when that is an absolute path
    outside the oracle's own directories (as `mteemu run` runs it, by its host path)."""
    name = p.name or ""
    if name.startswith("/") and ".." not in name.split("/") and not name.startswith(_RESERVED):
        return name
    return f"/oracle/bin/{i}"


_RESERVED = ("/oracle/", "/proc/", "/sys/", "/dev/", "/tmp/", "/init")


def _manifest(programs: list[Program]) -> bytes:
    fields: list[str] = []
    for i, p in enumerate(programs):
        argv = [p.name or p.path.name, *p.args]
        env = [f"{k}={v}" for k, v in p.env.items()]
        fields += ["T", str(p.timeout), str(p.uid), str(p.gid), f"{p.capabilities:x}", p.cwd, f"/oracle/in/{i}",
                   _where(p, i),
                   str(len(argv)), *argv, str(len(env)), *env]
    return b"".join(f.encode() + b"\0" for f in fields)


def _initramfs(out: Path, init: Path, machine: fetch.Machine, programs: list[Program]) -> None:
    with open(out, "wb") as f:
        c = Newc(f)
        for d in ("dev", "proc", "sys", "tmp", "oracle", "oracle/bin", "oracle/in", "oracle/modules.d"):
            c.directory(d, 0o1777 if d == "tmp" else 0o755)
        c.file("init", init.read_bytes(), 0o755)
        names = []
        for m in machine.modules:
            c.file(f"oracle/modules.d/{m.name}", m.read_bytes())
            names.append(f"/oracle/modules.d/{m.name}")
        c.file("oracle/modules", ("\n".join(names) + "\n").encode())
        made = {"dev", "proc", "sys", "tmp", "oracle", "oracle/bin", "oracle/in"}
        for i, p in enumerate(programs):
            where = _where(p, i).lstrip("/")
            parts = where.split("/")
            for k in range(1, len(parts)):
                d = "/".join(parts[:k])
                if d not in made:
                    c.directory(d)
                    made.add(d)
            if where not in made:
                c.file(where, p.path.read_bytes(), 0o755)
                made.add(where)
            c.file(f"oracle/in/{i}", p.stdin)
        c.file("oracle/manifest", _manifest(programs))
        c.close()


def _records(disk: Path, count: int) -> dict[int, Outcome]:
    found: dict[int, Outcome] = {}
    size = disk.stat().st_size
    with open(disk, "rb") as f:
        while len(found) < count:
            head = f.read(32)
            if len(head) < 32 or head[:4] != b"MTEO":
                break
            index, kind, value, lo, le = struct.unpack("<IIiQQ", head[4:])
            if lo > MAX_OUTPUT or le > MAX_OUTPUT or f.tell() + lo + le > size:
                break                     # a record cut short (the guest died writing it)
            out, err = f.read(lo), f.read(le)
            if len(out) < lo or len(err) < le or kind not in _KINDS:
                break
            found[index] = Outcome(_KINDS[kind], value, out, err)
            f.seek(-(32 + lo + le) % 512, os.SEEK_CUR)
    return found


def _split_log(log: str, programs: list[Program]) -> list[str]:
    """The kernel's lines between each test's start and end markers (init.c writes them)."""
    lines = log.replace("\r", "").splitlines()
    parts, at = [], 0
    for p in programs:
        name = p.name or p.path.name
        start, end = f"mteemu-oracle: test {name} start", f"mteemu-oracle: test {name} end"
        a = next((i for i in range(at, len(lines)) if lines[i].endswith(start)), None)
        b = next((i for i in range(a + 1, len(lines)) if lines[i].endswith(end)), len(lines)) if a is not None else None
        parts.append("\n".join(lines[a + 1:b]) if a is not None and b is not None else "")
        at = b + 1 if b is not None else at
    return parts


def run_batch(programs: list[Program], machine: fetch.Machine, memory_mb: int = 1024,
              batch_timeout: Optional[float] = None) -> tuple[list[Outcome], str]:
    """Boot once and run every program in order: an outcome for each (NOT_RUN for those the
    guest never finished: it died, or the batch's time ran out) and the whole kernel log."""
    cache = fetch.cache_dir()
    init = build_init(cache / "init")
    with tempfile.TemporaryDirectory(prefix="mteemu-oracle-") as tmp:
        work = Path(tmp)
        initrd, disk = work / "initramfs", work / "results"
        _initramfs(initrd, init, machine, programs)
        with open(disk, "wb") as f:
            f.truncate(DISK_BYTES)
        cmd = [str(machine.qemu), "-M", "virt,mte=on", "-cpu", "max", "-m", str(memory_mb), "-smp", "1",
               "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-kernel", str(machine.kernel),
               "-initrd", str(initrd), "-append", "console=ttyAMA0 panic=-1 print-fatal-signals=0 loglevel=6",
               "-drive", f"if=none,file={disk},format=raw,id=results", "-device", "virtio-blk-device,drive=results"]
        limit = batch_timeout if batch_timeout is not None else BOOT_SECONDS + sum(p.timeout + 5 for p in programs)
        env = {**os.environ, **machine.qemu_env}
        with open(work / "console", "wb") as console:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True)
            try:
                proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log = (work / "console").read_bytes().decode("utf-8", "replace")
        found = _records(disk, len(programs))
    logs = _split_log(log, programs)
    outcomes = []
    for i in range(len(programs)):
        o = found.get(i, Outcome(NOT_RUN))
        o.kernel_log = logs[i]
        outcomes.append(o)
    return outcomes, log


def run_one(program: Program, machine: fetch.Machine) -> Outcome:
    start = time.monotonic()
    outcomes, log = run_batch([program], machine)
    o = outcomes[0]
    if o.kind == NOT_RUN:
        tail = "\n".join(log.strip().splitlines()[-5:])
        raise fetch.OracleError(f"the oracle's guest ended before the program finished "
                                f"({time.monotonic() - start:.0f} s); its last console lines:\n{tail}")
    return o
