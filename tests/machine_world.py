"""A CPU in-process over a fixed little world, for the machine core's tests (test_machine.py)
and the native/Python differential tests (test_native.py): one code page of instructions
ending in BRK, three Tagged data pages, one untagged page; everything else unmapped."""
from __future__ import annotations

from mteemu.board.model import default_board
from mteemu.machine import arm64 as C
from mteemu.machine.cpu import Cpu
from mteemu.machine.physmem import PhysMem
from mteemu.machine.tagcheck import MteState
from mteemu.machine.tagstore import TagStore

CODE_VA, DATA_VA, UNTAGGED_VA = 0x40_0000, 0x1000_0000, 0x2000_0000
DATA_PAGES = 3
BRK = 0xD420_0000


class World:
    """A CPU on the default board with a fixed little address space: one code page, three
    Tagged data pages, one untagged page; everything else unmapped."""

    def __init__(self, pure: bool, monkeypatch) -> None:
        with monkeypatch.context() as m:
            if pure:
                m.setenv("MTEEMU_PURE_PYTHON", "1")
            else:
                m.delenv("MTEEMU_PURE_PYTHON", raising=False)
            board = default_board()
            self.physmem = PhysMem(board)
            self.tags = TagStore(board, self.physmem)
            self.cpu = Cpu(self.physmem, self.tags, self._translate, lambda: True)
        assert (self.cpu.native is None) == pure
        base = 0x8000_0000
        self.map = {CODE_VA: (base, 5, False), UNTAGGED_VA: (base + 0x1000, 3, False)}
        for i in range(DATA_PAGES):
            self.map[DATA_VA + i * 0x1000] = (base + 0x2000 + i * 0x1000, 3, True)

    def _translate(self, vaddr: int, access: int):
        page = vaddr & ~0xFFF & ((1 << 56) - 1)
        hit = self.map.get(page)
        if hit is None or (access == C.ACCESS_FETCH and (page != CODE_VA or vaddr >> 56)):
            return None
        if access == C.ACCESS_WRITE and page == CODE_VA:
            return None
        return hit

    def load(self, words: "int | list[int]", regs: list[int], sp: int, nzcv: int, data: bytes, tag_bytes: bytes,
             state: MteState) -> None:
        words = [words] if isinstance(words, int) else words
        code = self.physmem.view(self.map[CODE_VA][0], 0x1000)
        code[:] = b"".join(w.to_bytes(4, "little") for w in words) + BRK.to_bytes(4, "little") * (1024 - len(words))
        for i in range(DATA_PAGES):
            pa = self.map[DATA_VA + i * 0x1000][0]
            self.physmem.view(pa, 0x1000)[:] = data[i * 0x1000:(i + 1) * 0x1000]
            self.tags.write_page(pa >> 12, tag_bytes[i * 128:(i + 1) * 128])
        self.physmem.view(self.map[UNTAGGED_VA][0], 0x1000)[:] = data[-0x1000:]
        self.cpu.uc.ctl_flush_tb()
        self.cpu.flush_tlb()
        self.cpu.set_mte(state)
        uc = self.cpu.uc
        for reg, value in zip(C.X_REGS, regs):
            uc.reg_write(reg, value)
        uc.reg_write(C.REG_SP, sp)
        uc.reg_write(C.REG_NZCV, nzcv)
        uc.reg_write(C.REG_PC, CODE_VA)

    def run(self) -> dict:
        ex = self.cpu.run()
        uc = self.cpu.uc
        out = {"kind": ex.kind, "pc": ex.pc, "regs": uc.reg_read_batch(C.X_REGS), "sp": uc.reg_read(C.REG_SP),
               "nzcv": uc.reg_read(C.REG_NZCV) & 0xF000_0000, "tco": self.cpu.mte.tco}
        if ex.kind is C.ExitKind.TAG_CHECK:
            m = ex.mismatch
            out["mismatch"] = (m.va, m.write, m.size, m.ptr_tag, m.mem_tag, m.sync)
        if ex.kind is C.ExitKind.FAULT:
            out["fault"] = (ex.fault_page, ex.access)
        pages = [self.map[DATA_VA + i * 0x1000][0] for i in range(DATA_PAGES)] + [self.map[UNTAGGED_VA][0]]
        out["memory"] = b"".join(bytes(self.physmem.view(pa, 0x1000)) for pa in pages)
        out["tags"] = b"".join(bytes(self.tags.page_tags(pa >> 12)) for pa in pages[:DATA_PAGES])
        return out
