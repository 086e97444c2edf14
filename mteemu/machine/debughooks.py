"""What a debugger needs from the CPU: breakpoints, watchpoints and their precise stops.

A breakpoint is a Unicorn code hook on exactly its address: Unicorn translates the hook
call into that one instruction only, so code elsewhere runs at full speed, and a stop
requested in a code hook happens before the instruction executes (measured: PC stays
on it, its effects are absent) — what a BRK-based breakpoint gives GDB on Linux.

A watchpoint is a memory hook. In Unicorn's virtual-TLB mode memory hooks see the
*physical* address (an alias window's for tagged pages, see tagcheck.py), so the
debugger resolves each watched virtual range to the physical pages behind it now, and
again whenever the page tables change (Cpu.flush_tlb). Arm's watchpoints stop before
the access (Arm ARM D2.10.5, the Watchpoint exception is taken before the instruction
executes; GDB's aarch64 target steps over them itself), but Unicorn's hook runs as the
access happens and its stop takes effect after the instruction: so the registers are
saved in the hook, the bytes a store is about to change are copied, and `settle()`
puts both back — the instruction is undone, as for a synchronous tag-check fault.

Only threads the debugger traces stop (`wanted`): a forked child runs the same code
and shares pages with its parent, and GDB has detached from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_MEM_WRITE
from unicorn.arm64_const import UC_ARM64_REG_PC

from mteemu.machine.physmem import PAGE_SIZE, PhysMem
from mteemu.machine.tagcheck import ALIAS_BASE, ALIAS_MASK, ALIAS_SHIFT

WATCH_WRITE, WATCH_READ, WATCH_ACCESS = 2, 3, 4      # GDB's Z2, Z3, Z4


@dataclass(frozen=True)
class Watch:
    """One watched range, resolved: the physical span [pa, pa+length) backs [va, va+length)."""
    va: int
    pa: int
    length: int
    kind: int


@dataclass(frozen=True)
class WatchHit:
    va: int                     # the watched address the access touched
    kind: int                   # the watchpoint's kind: WATCH_WRITE, WATCH_READ or WATCH_ACCESS
    ctx: object                 # the registers before the instruction (a UcContext)
    undo: tuple[int, bytes]     # (pa, bytes) a store overwrote


class DebugTarget(Protocol):
    """What the debug hooks use of the CPU (cpu.Cpu is one)."""
    uc: Any
    physmem: PhysMem
    running: bool

    def invalidate_code(self) -> None: ...
    def flush_tlb(self) -> None: ...
    def stop_for_debugger(self, pc: int) -> None: ...


class DebugHooks:
    def __init__(self, cpu: DebugTarget) -> None:
        self.cpu = cpu
        self.wanted: Callable[[], bool] = lambda: True
        self.on_flush: Optional[Callable[[], None]] = None     # page tables changed: re-resolve watches
        self._breaks: dict[int, int] = {}         # address -> Unicorn hook handle
        self._watches: list[Watch] = []
        self._watch_hook: Optional[int] = None
        self.hit: Optional[WatchHit] = None

    # -- breakpoints --------------------------------------------------------------------
    @property
    def breakpoints(self) -> frozenset[int]:
        return frozenset(self._breaks)

    def set_breakpoints(self, addrs: set[int]) -> None:
        """Called only while the CPU is stopped: hooks change, and translated code with them."""
        uc = self.cpu.uc
        changed = False
        for addr in set(self._breaks) - addrs:
            uc.hook_del(self._breaks.pop(addr))
            changed = True
        for addr in addrs - set(self._breaks):
            self._breaks[addr] = uc.hook_add(UC_HOOK_CODE, self._on_break, begin=addr, end=addr)
            changed = True
        if changed:
            self.cpu.invalidate_code()    # hook calls are compiled into translated blocks

    def _on_break(self, uc, address: int, _size: int, _data) -> None:  # noqa: ANN001
        if self.wanted():
            self.cpu.stop_for_debugger(address)

    # -- watchpoints --------------------------------------------------------------------
    def set_watches(self, watches: list[Watch]) -> None:
        """The resolved watch list; may be called while the CPU runs (a page-table change)."""
        self._watches = watches
        if watches and self._watch_hook is None and not self.cpu.running:
            self._watch_hook = self.cpu.uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self._on_access)
            self.cpu.invalidate_code()
            self.cpu.flush_tlb()
        elif not watches and self._watch_hook is not None and not self.cpu.running:
            self.cpu.uc.hook_del(self._watch_hook)
            self._watch_hook = None
            self.cpu.invalidate_code()

    def _on_access(self, uc, access: int, address: int, size: int, _value: int, _data) -> None:  # noqa: ANN001
        if not self._watches or self.hit is not None:
            return
        pa = address
        if address >= ALIAS_BASE:
            pa = (address - ALIAS_BASE) & ALIAS_MASK if (address - ALIAS_BASE) >> ALIAS_SHIFT < 16 else address
        write = access == UC_MEM_WRITE
        for w in self._watches:
            if w.pa < pa + size and pa < w.pa + w.length:
                if (w.kind == WATCH_WRITE and not write) or (w.kind == WATCH_READ and write):
                    continue
                if not self.wanted():
                    return
                n = min(size, PAGE_SIZE - (pa & (PAGE_SIZE - 1)))
                old = bytes(self.cpu.physmem.view(pa, n)) if write else b""
                self.hit = WatchHit(w.va + max(pa - w.pa, 0), w.kind, uc.context_save(), (pa, old))
                self.cpu.stop_for_debugger(uc.reg_read(UC_ARM64_REG_PC))
                return

    def settle(self) -> None:
        """After a watchpoint stop: registers and memory as before the instruction."""
        hit = self.hit
        if hit is None:
            return
        self.cpu.uc.context_restore(hit.ctx)
        pa, old = hit.undo
        if old:
            self.cpu.physmem.view(pa, len(old))[:] = old
