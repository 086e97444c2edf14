"""The q and Q packets of a GDB session: what the stub supports, threads, the qXfer
objects (target description, auxv, exec file, threads, siginfo) and memory tags."""
from __future__ import annotations

from typing import Optional

from mteemu.gdb import rsp, tdesc
from mteemu.kernel import ptrace
from mteemu.kernel.api import KernelApi
from mteemu.kernel.process import Process, Thread
from mteemu.kernel.signals import SigInfo


def thread_id(t: Thread) -> str:
    """pPID.TID (the multiprocess extension's form)."""
    return f"p{t.proc.pid:x}.{t.tid:x}"


def find_thread(proc: Process, spec: str) -> Optional[Thread]:
    """The thread a thread-id names: pPID.TID, or TID."""
    tid = spec.split(".")[-1] if spec.startswith("p") else spec
    try:
        n = int(tid, 16)
    except ValueError:
        return None
    for t in proc.live_threads:
        if t.tid == n:
            return t
    return None


def supported(text: str, packet_size: int) -> tuple[str, set[str]]:
    """qSupported: our features, and those GDB offered (exec-events...)."""
    offered = text.partition(":")[2].split(";")
    features = {f[:-1] for f in offered if f.endswith("+")}
    ours = [f"PacketSize={packet_size:x}", "QStartNoAckMode+", "multiprocess+", "swbreak+", "hwbreak+",
            "qXfer:features:read+", "qXfer:auxv:read+", "qXfer:exec-file:read+",
            "qXfer:siginfo:read+", "qXfer:threads:read+", "vContSupported+", "memory-tagging+"]
    if "exec-events" in features:
        ours.append("exec-events+")
    return ";".join(ours), features


def threads_xml(proc: Process) -> bytes:
    rows = "".join(f'<thread id="{thread_id(t)}" core="0" name="{t.name.decode(errors="replace")}"/>'
                   for t in proc.live_threads)
    return f'<?xml version="1.0"?>\n<threads>{rows}</threads>\n'.encode()


def xfer(text: str, proc: Process, current: Thread, siginfo: dict[int, SigInfo]) -> "str | bytes":
    """qXfer:OBJECT:read:ANNEX:OFFSET,LENGTH."""
    _q, obj, op, rest = text.split(":", 3)
    annex, _, span = rest.rpartition(":")
    off, length = (int(x, 16) for x in span.split(","))
    if op != "read":
        return ""
    if obj == "features" and annex == "target.xml":
        data = tdesc.target_xml().encode()
    elif obj == "auxv":
        data = proc.auxv
    elif obj == "exec-file":
        data = proc.exe.name.encode()
    elif obj == "threads":
        data = threads_xml(proc)
    elif obj == "siginfo":
        info = siginfo.get(current.tid)
        if info is None:
            return "E01"
        data = info.pack(expose_tagbits=True)   # the tracer sees the tag bits (get_signal() hides them later)
    else:
        return ""
    chunk = data[off:off + length]
    return (b"m" if off + length < len(data) else b"l") + rsp.escape(chunk)


def read_tags(k: KernelApi, proc: Process, args: str) -> str:
    """qMemTags:ADDR,LENGTH:TYPE (type 1: allocation tags, the only ones in memory)."""
    where, kind = args.split(":")
    addr, length = (int(x, 16) for x in where.split(","))
    if int(kind, 16) != 1:
        return "E01"
    return "m" + ptrace.read_tags(k, proc, addr, length).hex()


def write_tags(k: KernelApi, proc: Process, args: str) -> str:
    """QMemTags:ADDR,LENGTH:TYPE:TAGS."""
    where, kind, tags = args.split(":")
    addr, length = (int(x, 16) for x in where.split(","))
    if int(kind, 16) != 1:
        return "E01"
    ptrace.write_tags(k, proc, addr, length, bytes.fromhex(tags))
    return "OK"


MONITOR_HELP = ("mteemu's monitor commands:\n"
                "  monitor report   the tag-check fault the thread stopped with: its cause, who allocated\n"
                "                   and freed the memory (run with --alloc-history), the tags around it\n")


def monitor(cmd: str, current: Thread, siginfo: dict[int, SigInfo]) -> str:
    """`monitor CMD`'s output."""
    from mteemu.report import tagfault

    if cmd.strip() != "report":
        return MONITOR_HELP if cmd.strip() in ("", "help") else f"unknown monitor command {cmd!r}\n" + MONITOR_HELP
    info = siginfo.get(current.tid)
    if info is None or info.report is None:
        return f"thread {current.tid} did not stop with a tag-check fault\n"
    return tagfault.format_text(info.report)
