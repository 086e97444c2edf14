"""GDB's breakpoints (Z0/Z1) and watchpoints (Z2-Z4) of one traced process, as the CPU's
debug hooks (machine/debughooks.py) take them: breakpoints by virtual address, watched
ranges by the physical pages behind them now (resolved again after every TLB flush)."""
from __future__ import annotations

from typing import Optional

from mteemu.kernel import ptrace
from mteemu.kernel.mm.addrspace import TOP_BYTE_MASK
from mteemu.kernel.process import Process
from mteemu.machine.debughooks import WATCH_ACCESS, WATCH_READ, WATCH_WRITE, DebugHooks, Watch

SOFTWARE, HARDWARE = 0, 1


class Points:
    def __init__(self, hooks: DebugHooks, proc: Process) -> None:
        self.hooks, self.proc = hooks, proc
        self.breaks: dict[int, int] = {}                        # address -> SOFTWARE or HARDWARE
        self.watches: dict[tuple[int, int, int], None] = {}     # (kind, addr, length)
        hooks.on_flush = self.resolve_watches

    def kind_at(self, pc: int) -> Optional[int]:
        return self.breaks.get(pc)

    def clear(self) -> None:
        self.breaks.clear()
        self.watches.clear()

    def apply(self) -> None:
        self.hooks.set_breakpoints(set(self.breaks))
        self.resolve_watches()

    def resolve_watches(self) -> None:
        """Each watched range as the physical pages behind it now (debughooks.py)."""
        resolved = []
        for kind, addr, length in self.watches:
            va = addr & TOP_BYTE_MASK
            end = va + length
            while va < end:
                n = min(end - va, 4096 - (va & 0xFFF))
                pte = self.proc.mm.ptes.get(va >> 12)
                if pte is not None and pte.present:
                    resolved.append(Watch(va, (pte.pfn << 12) | (va & 0xFFF), n, kind))
                va += n
        self.hooks.set_watches(resolved)

    def insert(self, kind: int, addr: int, length: int) -> str:
        if kind in (SOFTWARE, HARDWARE):
            self.breaks[addr] = kind
            return "OK"
        if kind in (WATCH_WRITE, WATCH_READ, WATCH_ACCESS):
            if not 0 < length <= 4096:
                return "E22"
            # Fault the pages in (as a read, FOLL_FORCE) so they have a physical home to watch.
            ptrace.read_memory(self.proc, addr, length)
            self.watches[(kind, addr, length)] = None
            return "OK"
        return ""

    def remove(self, kind: int, addr: int, length: int) -> str:
        if kind in (SOFTWARE, HARDWARE):
            self.breaks.pop(addr, None)
            return "OK"
        if kind in (WATCH_WRITE, WATCH_READ, WATCH_ACCESS):
            self.watches.pop((kind, addr, length), None)
            return "OK"
        return ""
