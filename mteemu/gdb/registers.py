"""The g/G/p/P packets: a thread's registers in the order and widths of the target
description (tdesc.py), little-endian hex."""
from __future__ import annotations

from mteemu.gdb import tdesc
from mteemu.kernel.ptrace import ThreadRegs


def packet(regs: ThreadRegs, text: str) -> str:
    """g, G, p or P."""
    head, rest = text[0], text[1:]
    if head == "g":
        return read_all(regs)
    if head == "G":
        return write_all(regs, bytes.fromhex(rest))
    if head == "p":
        return read_one(regs, int(rest, 16))
    n, value = rest.split("=")
    return write_one(regs, int(n, 16), bytes.fromhex(value))


def read_all(regs: ThreadRegs) -> str:
    return "".join(_le(regs.read(r.key), r.bits) for r in tdesc.REGS)


def write_all(regs: ThreadRegs, data: bytes) -> str:
    pos = 0
    for r in tdesc.REGS:
        n = r.bits // 8
        if pos + n > len(data):
            break
        regs.write(r.key, int.from_bytes(data[pos:pos + n], "little"))
        pos += n
    return "OK"


def read_one(regs: ThreadRegs, n: int) -> str:
    if not 0 <= n < len(tdesc.REGS):
        return "E0e"
    r = tdesc.REGS[n]
    return _le(regs.read(r.key), r.bits)


def write_one(regs: ThreadRegs, n: int, data: bytes) -> str:
    if not 0 <= n < len(tdesc.REGS):
        return "E0e"
    regs.write(tdesc.REGS[n].key, int.from_bytes(data, "little"))
    return "OK"


def _le(value: int, bits: int) -> str:
    return (value & ((1 << bits) - 1)).to_bytes(bits // 8, "little").hex()
