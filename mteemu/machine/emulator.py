"""The instructions Unicorn does not know (the MTE ones, mte_insns.py) and the plain ones
after them (interp.py), run in Python over a register cache and a soft TLB: Unicorn's
reg_read/reg_write cost microseconds each from Python, so what an emulated run reads or
writes is kept here and written back once when it ends.

`Emulator` is an InsnContext (insn_context.py) over Unicorn; tests/test_interp.py has one
over a dict of registers.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

from mteemu.machine import interp, mte_insns
from mteemu.machine.arm64 import (
    ACCESS_FETCH,
    ACCESS_READ,
    ACCESS_WRITE,
    REG_NZCV,
    REG_PC,
    REG_SP,
    X_REGS,
    Exit,
    ExitKind,
    MemFault,
    Translator,
)
from mteemu.machine.counters import Counters
from mteemu.machine.irg import Irg, NativeIrg
from mteemu.machine.physmem import PAGE_SHIFT, PAGE_SIZE, PhysMem
from mteemu.machine.tagcheck import MteState, TagChecker
from mteemu.machine.tagstore import TagStore

RUN_AHEAD = 4096            # instructions interpreted after an MTE one before going back


class Emulator:
    """Runs emulated instructions on the core's registers (an InsnContext)."""

    def __init__(self, uc: Any, physmem: PhysMem, tags: TagStore, checker: TagChecker, irg: "Irg | NativeIrg",
                 counters: Counters, translate: Translator, dcz_block: int) -> None:
        self.uc, self.physmem, self.tags, self.checker, self.irg = uc, physmem, tags, checker, irg
        self.counters, self.translate, self.dcz_block = counters, translate, dcz_block
        # Instructions emulate() may run in one go: a debugger sees every instruction
        # through Unicorn (its breakpoints and single steps are Unicorn's code hooks).
        self.run_ahead = RUN_AHEAD
        # Translations made for emulated instructions, until the next TLB flush (the
        # kernel flushes on every page-table change, as for Unicorn's own TLB).
        self.soft_tlb: dict[tuple[int, int], tuple[int, bool]] = {}
        self.code_pages: dict[int, memoryview] = {}            # code page -> its RAM
        self.ops: dict[int, tuple[int, Callable]] = {}         # pc -> (word, decoded op)
        # While instructions are emulated: register values read or written so far.
        self._regs: Optional[dict[int, int]] = None
        self._dirty: set[int] = set()
        # The allocation history hears of tag stores (allochist.py): (pc, va, size, reg).
        self.on_tag_write: Optional[Callable[[int, int, int, Callable[[int], int]], None]] = None
        self.tag_write: Optional[tuple[int, int]] = None

    def forget_translations(self) -> None:
        self.soft_tlb.clear()
        self.code_pages.clear()

    def forget_code(self) -> None:
        self.ops.clear()
        self.code_pages.clear()

    def insn_at(self, pc: int) -> int:
        """The instruction word at pc (0 if it cannot be fetched)."""
        page = self.code_pages.get(pc & ~(PAGE_SIZE - 1))
        if page is None:
            res = self.translate(pc & ~(PAGE_SIZE - 1), ACCESS_FETCH)
            if res is None:
                return 0
            page = self.code_pages[pc & ~(PAGE_SIZE - 1)] = self.physmem.page(res[0] >> PAGE_SHIFT)
        off = pc & (PAGE_SIZE - 1)
        return int.from_bytes(page[off:off + 4], "little")

    def emulate(self, pc: int) -> Union[bool, Exit]:
        """Run an MTE instruction Unicorn does not know, and the MTE and plain register
        instructions right after it; False if pc holds no MTE instruction, an Exit if one
        faulted (the registers as before it), else True."""
        word = self.insn_at(pc)
        if not word:
            return False
        checking = self.checker.state.checking
        first = pc
        self._regs, self._dirty = {}, set()
        ops = self.ops
        try:
            for _ in range(self.run_ahead):
                cached = ops.get(pc)
                if cached is None or cached[0] != word:
                    cached = ops[pc] = (word, _compile(word))
                nxt = cached[1](self, pc)
                if nxt is None:
                    if pc == first:
                        self._regs = None
                        return False
                    break
                pc = nxt
                if checking != self.checker.state.checking:
                    break        # MSR TCO: the TLB policy changes before the next access
                word = self.insn_at(pc)
        except MemFault as f:
            self._write_back(pc)
            return Exit(ExitKind.FAULT, pc, fault_page=f.addr & ~(PAGE_SIZE - 1), access=f.access, addr=f.addr)
        except mte_insns.AlignmentFault as f:
            self._write_back(pc)
            return Exit(ExitKind.ALIGNMENT, pc, access=ACCESS_WRITE, addr=f.addr)
        except BaseException:
            self._regs = None
            raise
        self._write_back(pc)
        return True

    def _write_back(self, pc: int) -> None:
        """Leave emulation: the registers it changed, and PC, go back to Unicorn."""
        regs, self._regs = self._regs, None
        assert regs is not None                 # only while emulating
        for reg in self._dirty:
            self.uc.reg_write(reg, regs[reg])
        self.uc.reg_write(REG_PC, pc)

    def _reg(self, reg: int) -> int:
        if self._regs is None:
            return self.uc.reg_read(reg)
        value = self._regs.get(reg)
        if value is None:
            value = self._regs[reg] = self.uc.reg_read(reg)
        return value

    def _set_reg(self, reg: int, value: int) -> None:
        if self._regs is None:
            self.uc.reg_write(reg, value)
        else:
            self._regs[reg] = value
            self._dirty.add(reg)

    # -- InsnContext ---------------------------------------------------------------------------
    @property
    def mte(self) -> MteState:
        return self.checker.state

    def nzcv(self) -> int:
        return self._reg(REG_NZCV)

    def xr(self, n: int, sp: bool = False) -> int:
        """X<n>; register 31 is SP or XZR, as the instruction's encoding says."""
        if n == 31:
            return self._reg(REG_SP) if sp else 0
        return self._reg(X_REGS[n])

    def xw(self, n: int, value: int, sp: bool = False) -> None:
        if n == 31:
            if sp:
                self._set_reg(REG_SP, value & 0xFFFF_FFFF_FFFF_FFFF)
            return
        self._set_reg(X_REGS[n], value & 0xFFFF_FFFF_FFFF_FFFF)

    def set_nzcv(self, n: int, z: int, c: int, v: int) -> None:
        self._set_reg(REG_NZCV, n << 31 | z << 30 | c << 29 | v << 28)

    def note_tags(self, vaddr: int, size: int, tag: int) -> None:
        """The instruction stored tags to tagged memory: va (with that tag), size."""
        self.tag_write = ((vaddr & ((1 << 56) - 1)) | tag << 56, size)

    def translate_for_tags(self, vaddr: int, write: bool) -> tuple[int, bool]:
        """(physical address, page is tagged) for an emulated access, or MemFault."""
        access = ACCESS_WRITE if write else ACCESS_READ
        key = (vaddr & ~(PAGE_SIZE - 1) & ((1 << 56) - 1), access)
        hit = self.soft_tlb.get(key)
        if hit is None:
            res = self.translate(key[0], access)
            if res is None:
                raise MemFault(vaddr, access)
            hit = self.soft_tlb[key] = (res[0], res[2])
        return hit[0] | (vaddr & (PAGE_SIZE - 1)), hit[1]


def _compile(word: int) -> Callable[[Emulator, int], Optional[int]]:
    """An MTE instruction, or one the interpreter knows; decoded once per PC."""
    if mte_insns.is_mte(word):
        def mte_op(ctx: Emulator, pc: int) -> Optional[int]:
            ctx.tag_write = None
            if not mte_insns.execute(ctx, word):
                return None
            ctx.counters.python_insns += 1
            if ctx.tag_write is not None and ctx.on_tag_write is not None:
                ctx.on_tag_write(pc, *ctx.tag_write, ctx.xr)
            return pc + 4
        return mte_op
    return interp.compile_op(word)
