"""Decode a load/store well enough to know which address it accessed.

Unicorn's TLB-fill hook sees only the page of a refused access, but Linux reports
the exact faulting address (FAR_EL1) in si_addr. State is precise when a fill is
refused (no register written yet), so the effective address can be recomputed from
the instruction and the registers: capstone gives the addressing mode.

capstone is imported on first use: most runs never fault.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Optional

ReadReg = Callable[[str], int]   # register name ('x0', 'w3', 'sp') -> value

_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class Decoded:
    mnemonic: str
    op_str: str
    base: Optional[str]           # base register name, None for PC-relative literals
    index: Optional[str]
    disp: int
    shift: int                    # left shift applied to the index
    extend: Optional[str]         # 'uxtw', 'sxtw', 'sxtx', ... applied to the index
    post_index: bool
    literal: Optional[int]        # absolute address of a PC-relative literal
    data_regs: tuple[str, ...] = ()   # the registers transferred (not the address's)


@lru_cache(maxsize=None)
def _disassembler():  # noqa: ANN202
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    md.detail = True
    return md


_EXTENDS = {1: "uxtb", 2: "uxth", 3: "uxtw", 4: "uxtx", 5: "sxtb", 6: "sxth", 7: "sxtw", 8: "sxtx"}


@lru_cache(maxsize=4096)
def decode(word: bytes, pc: int) -> Optional[Decoded]:
    from capstone import arm64

    insns = list(_disassembler().disasm(word, pc))
    if not insns:
        return None
    insn = insns[0]
    base = index = extend = None
    disp = shift = 0
    literal = None
    for op in insn.operands:
        if op.type == arm64.ARM64_OP_MEM:
            base = insn.reg_name(op.mem.base) if op.mem.base else None
            index = insn.reg_name(op.mem.index) if op.mem.index else None
            disp = op.mem.disp
            shift = op.shift.value if op.shift.type == arm64.ARM64_SFT_LSL else 0
            extend = _EXTENDS.get(op.ext)
    if base is None and insn.mnemonic.startswith(("ldr", "ldrsw", "prfm")):
        imms = [op.imm for op in insn.operands if op.type == arm64.ARM64_OP_IMM]
        literal = imms[-1] if imms else None
    regs = [insn.reg_name(op.reg) for op in insn.operands if op.type == arm64.ARM64_OP_REG]
    if insn.mnemonic in ("dc", "dc.") or insn.mnemonic.startswith("dc"):
        base = regs[-1] if regs else None
    return Decoded(insn.mnemonic, insn.op_str, base, index, disp, shift, extend,
                   bool(getattr(insn, "post_index", False)), literal, tuple(regs))


_REG_BYTES = {"x": 8, "w": 4, "q": 16, "d": 8, "s": 4, "h": 2, "b": 1, "v": 16}
_ONE_VALUE = ("cas", "swp", "ldadd", "ldclr", "ldeor", "ldset", "ldsmax", "ldsmin", "ldumax", "ldumin",
              "stadd", "stclr", "steor", "stset")


def access_size(word: bytes, pc: int) -> Optional[int]:
    """Bytes the load/store instruction transfers in all (a pair counts twice), for
    reports: Unicorn splits 16-byte accesses, so its hooks see 8."""
    d = decode(bytes(word), pc)
    if d is None or not d.data_regs:
        return None
    regs = list(d.data_regs)
    if d.mnemonic.startswith(("stxr", "stlxr", "stxp", "stlxp")):
        regs = regs[1:]                       # the status register
    if d.mnemonic.startswith(_ONE_VALUE):
        regs = regs[:1]
    m = d.mnemonic
    if m.endswith("sw"):                      # ldrsw, ldursw, ldpsw: words into x registers
        return 4 * len(regs)
    if m.endswith(("b", "h")) and m.startswith(("ld", "st", "cas", "swp")) and not m.startswith(("ld1", "st1")):
        return (1 if m.endswith("b") else 2) * len(regs)     # the byte and halfword forms
    sizes = [_REG_BYTES.get(r[0]) for r in regs]
    known = [s for s in sizes if s]
    return sum(known) if len(known) == len(sizes) else None


def _extend(value: int, kind: Optional[str], shift: int) -> int:
    if kind in ("sxtw",):
        value &= 0xFFFF_FFFF
        value = value - (1 << 32) if value & (1 << 31) else value
    elif kind == "uxtw":
        value &= 0xFFFF_FFFF
    return (value << shift) & _MASK64


def effective_address(word: bytes, pc: int, read_reg: ReadReg) -> Optional[int]:
    """The first address the instruction at pc accesses, or None if it is not a memory access."""
    d = decode(bytes(word), pc)
    if d is None:
        return None
    if d.literal is not None:
        return d.literal
    if d.base is None:
        return None
    addr = read_reg(d.base)
    if d.index is not None:
        addr += _extend(read_reg(d.index), d.extend, d.shift)
    if not d.post_index:
        addr += d.disp
    return addr & _MASK64


def disassemble(word: bytes, pc: int) -> str:
    d = decode(bytes(word), pc)
    return f"{d.mnemonic} {d.op_str}".strip() if d else f".inst {int.from_bytes(word, 'little'):#010x}"
