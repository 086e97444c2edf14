"""What the instruction emulators (mte_insns.py, interp.py) need of a core: emulator.py's
Emulator over Unicorn is one, the tests' FakeCpu over a dict of registers another."""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mteemu.machine.irg import Irg, NativeIrg
    from mteemu.machine.physmem import PhysMem
    from mteemu.machine.tagcheck import MteState
    from mteemu.machine.tagstore import TagStore


class InsnContext(Protocol):
    """What mte_insns.py and interp.py use of a core."""
    dcz_block: int
    physmem: "PhysMem"
    tags: "TagStore"
    irg: "Irg | NativeIrg"

    @property
    def mte(self) -> "MteState": ...
    def xr(self, n: int, sp: bool = False) -> int: ...
    def xw(self, n: int, value: int, sp: bool = False) -> None: ...
    def nzcv(self) -> int: ...
    def set_nzcv(self, n: int, z: int, c: int, v: int) -> None: ...
    def translate_for_tags(self, vaddr: int, write: bool) -> tuple[int, bool]: ...
    def note_tags(self, vaddr: int, size: int, tag: int) -> None: ...
