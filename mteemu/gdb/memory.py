"""The m, M and X packets: the traced process's memory as ptrace reads and writes it
(FOLL_FORCE: read-only pages too, never past what is mapped)."""
from __future__ import annotations

from mteemu.gdb import rsp
from mteemu.kernel import ptrace
from mteemu.kernel.api import KernelApi
from mteemu.kernel.process import Process


def packet(k: KernelApi, proc: Process, p: bytes, packet_size: int) -> str:
    head = p[:1]
    if head == b"m":
        addr, length = (int(x, 16) for x in p[1:].decode().split(","))
        data = ptrace.read_memory(proc, addr, min(length, packet_size // 2))
        return data.hex() if data or not length else "E0e"
    colon = p.index(b":")
    addr, length = (int(x, 16) for x in p[1:colon].decode().split(","))
    data = bytes.fromhex(p[colon + 1:].decode()) if head == b"M" else rsp.unescape(p[colon + 1:])
    if length:
        ptrace.write_memory(k, proc, addr, data[:length])
    return "OK"
