"""The MTE instructions Unicorn 2.1.4 does not implement, decoded and executed here.

Unicorn raises an undefined-instruction exception (EXCP_UDEF) for every MTE
instruction; the CPU's interrupt hook hands the word to `execute()`, which performs
it the way the Arm ARM pseudocode does and returns True, or returns False when the
word is no MTE instruction an EL0 program may run (the guest then gets SIGILL).

Tag-setting instructions are unchecked accesses (Arm ARM: "Tag Unchecked"). A tag
write to memory that is not mapped Tagged (no PROT_MTE) is ignored and a tag read
gives 0 (allocation tag access is RAZ/WI for untagged memory).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from mteemu.machine import encodings as E
from mteemu.machine.tagstore import GRANULE

if TYPE_CHECKING:
    from mteemu.machine.insn_context import InsnContext

MASK64 = (1 << 64) - 1
TAG_SHIFT = 56
TAG_FIELD = 0xF << TAG_SHIFT
PSTATE_TCO_BIT = 25          # PSTATE.TCO as MRS/MSR TCO and SPSR see it


class AlignmentFault(Exception):
    def __init__(self, addr: int) -> None:
        super().__init__(f"unaligned tag access at {addr:#x}")
        self.addr = addr


def tag_of(addr: int) -> int:
    return (addr >> TAG_SHIFT) & 0xF


def with_tag(addr: int, tag: int) -> int:
    return (addr & ~TAG_FIELD) | (tag << TAG_SHIFT)


def choose_non_excluded_tag(tag: int, offset: int, exclude: int) -> int:
    """Arm ARM ChooseNonExcludedTag(): step `offset` allowed tags up from `tag`."""
    if exclude & 0xFFFF == 0xFFFF:
        return 0
    if offset == 0:
        while exclude >> tag & 1:
            tag = (tag + 1) & 0xF
    while offset:
        offset -= 1
        tag = (tag + 1) & 0xF
        while exclude >> tag & 1:
            tag = (tag + 1) & 0xF
    return tag


def _sext56(v: int) -> int:
    v &= (1 << 56) - 1
    return v - (1 << 56) if v >> 55 else v


def _simm(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


def is_mte(word: int) -> bool:
    """Could this word be an MTE instruction (execute() decides for sure)?"""
    return (word & E.IRG_GMI_MASK == E.IRG or word & E.DP2_MASK in (E.SUBP, E.SUBPS)
            or word & E.ADDSUB_TAG_MASK in (E.ADDG, E.SUBG) or word & E.TAG_MEM_MASK == E.TAG_MEM
            or (word & E.STGP_MASK == E.STGP and word & E.STGP_INDEX_BITS != 0)
            or word & E.SYS_XT_MASK in (E.DC_GVA, E.DC_GZVA, E.MSR_TCO, E.MRS_TCO)
            or word & E.MSR_IMM_MASK == E.MSR_TCO_IMM)


def execute(cpu: "InsnContext", word: int) -> bool:
    """Perform one MTE instruction; False if `word` is not one EL0 may execute."""
    rd, rn, rm = word & 31, (word >> 5) & 31, (word >> 16) & 31
    top = word & E.DP2_MASK
    if top == E.IRG:                                            # IRG Xd|SP, Xn|SP, Xm
        exclude = cpu.mte.exclude | (cpu.xr(rm) & 0xFFFF)
        cpu.xw(rd, with_tag(cpu.xr(rn, sp=True), cpu.irg.random_tag(exclude)), sp=True)
        return True
    if top == E.GMI:                                            # GMI Xd, Xn|SP, Xm
        cpu.xw(rd, cpu.xr(rm) | (1 << tag_of(cpu.xr(rn, sp=True))))
        return True
    if top in (E.SUBP, E.SUBPS):                                # SUBP(S) Xd, Xn|SP, Xm|SP
        a, b = _sext56(cpu.xr(rn, sp=True)), _sext56(cpu.xr(rm, sp=True))
        result = (a - b) & MASK64
        cpu.xw(rd, result)
        if top == E.SUBPS:
            ua, ub = a & MASK64, b & MASK64
            n, z = result >> 63, int(result == 0)
            c = int(ua >= ub)
            v = int(((ua ^ ub) & (ua ^ result)) >> 63 & 1)
            cpu.set_nzcv(n, z, c, v)
        return True
    if word & E.ADDSUB_TAG_MASK in (E.ADDG, E.SUBG):             # ADDG / SUBG
        uimm6, uimm4 = (word >> 16) & 0x3F, (word >> 10) & 0xF
        base = cpu.xr(rn, sp=True)
        delta = uimm6 * GRANULE
        addr = (base + delta if word & 0x40000000 == 0 else base - delta) & MASK64
        cpu.xw(rd, with_tag(addr, choose_non_excluded_tag(tag_of(base), uimm4, cpu.mte.exclude)), sp=True)
        return True
    if word & E.TAG_MEM_MASK == E.TAG_MEM:
        return _tag_memory(cpu, word)
    if word & E.STGP_MASK == E.STGP and word & E.STGP_INDEX_BITS:   # STGP (post, offset, pre)
        return _stgp(cpu, word)
    if word & E.SYS_XT_MASK in (E.DC_GVA, E.DC_GZVA):          # DC GVA / DC GZVA
        addr = cpu.xr(rd)
        block = cpu.dcz_block
        start = addr & ~(block - 1) & MASK64
        _set_tags(cpu, start, block, tag_of(addr), zero=word & E.SYS_XT_MASK == E.DC_GZVA)
        return True
    if word & E.MSR_IMM_MASK == E.MSR_TCO_IMM:                  # MSR TCO, #imm
        cpu.mte.tco = bool(word >> 8 & 1)
        return True
    if word & E.SYS_XT_MASK == E.MSR_TCO:                       # MSR TCO, Xt
        cpu.mte.tco = bool(cpu.xr(rd) >> PSTATE_TCO_BIT & 1)
        return True
    if word & E.SYS_XT_MASK == E.MRS_TCO:                       # MRS Xt, TCO
        cpu.xw(rd, int(cpu.mte.tco) << PSTATE_TCO_BIT)
        return True
    return False


def _tag_memory(cpu: "InsnContext", word: int) -> bool:
    """LDG, STG, STZG, ST2G, STZ2G (LDGM, STGM, STZGM are EL1 only: SIGILL at EL0)."""
    opc, op2 = (word >> 22) & 3, (word >> 10) & 3
    imm = _simm((word >> 12) & 0x1FF, 9) * GRANULE
    rt, rn = word & 31, (word >> 5) & 31
    if op2 == 0 and opc != 1:
        return False                                  # STZGM / STGM / LDGM
    base = cpu.xr(rn, sp=True)
    if opc == 1 and op2 == 0:                         # LDG Xt, [Xn|SP, #simm]
        addr = (base + imm) & MASK64 & ~(GRANULE - 1)
        pa, tagged = cpu.translate_for_tags(addr, write=False)
        cpu.xw(rt, with_tag(cpu.xr(rt), cpu.tags.get(pa) if tagged else 0))
        return True
    addr = base if op2 == 1 else (base + imm) & MASK64    # post-index uses the old base
    if addr & (GRANULE - 1):
        raise AlignmentFault(addr)
    size = GRANULE * (2 if opc >= 2 else 1)
    _set_tags(cpu, addr, size, tag_of(cpu.xr(rt, sp=True)), zero=opc in (1, 3))
    if op2 != 2:
        cpu.xw(rn, (base + imm) & MASK64, sp=True)
    return True


def _stgp(cpu: "InsnContext", word: int) -> bool:
    """STGP Xt1, Xt2, [Xn|SP, #imm]: data pair and the address's tag, unchecked."""
    mode = (word >> 23) & 3                           # 1 post, 2 offset, 3 pre
    imm = _simm((word >> 15) & 0x7F, 7) * GRANULE
    rt, rt2, rn = word & 31, (word >> 10) & 31, (word >> 5) & 31
    base = cpu.xr(rn, sp=True)
    addr = base if mode == 1 else (base + imm) & MASK64
    if addr & (GRANULE - 1):
        raise AlignmentFault(addr)
    data = cpu.xr(rt).to_bytes(8, "little") + cpu.xr(rt2).to_bytes(8, "little")
    pa, tagged = cpu.translate_for_tags(addr, write=True)
    cpu.physmem.view(pa, GRANULE)[:] = data
    if tagged:
        cpu.tags.set_range(pa, GRANULE, tag_of(addr))
        cpu.note_tags(addr, GRANULE, tag_of(addr))
    if mode != 2:
        cpu.xw(rn, (base + imm) & MASK64, sp=True)
    return True


def _set_tags(cpu: "InsnContext", addr: int, size: int, tag: int, zero: bool) -> None:
    """Tag (and optionally zero) [addr, addr+size), granule aligned, page by page.
    Every page is translated before anything is written, so a fault changes nothing."""
    parts = []
    pos = addr
    while pos < addr + size:
        n = min(addr + size - pos, 0x1000 - (pos & 0xFFF))
        pa, tagged = cpu.translate_for_tags(pos, write=True)
        parts.append((pa, n, tagged))
        pos += n
    for pa, n, tagged in parts:
        if zero:
            cpu.physmem.view(pa, n)[:] = bytes(n)
        if tagged:
            cpu.tags.set_range(pa, n, tag)
    if any(tagged for _pa, _n, tagged in parts):
        cpu.note_tags(addr, size, tag)
