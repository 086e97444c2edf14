"""The tag-check fault report: what people who know HWASan, KASAN or an Android
tombstone expect to read when MTE kills a program.

`capture()` takes a snapshot at the moment of the fault (the state is precise for a
synchronous fault) as a `TagFaultReport`; `format_text()` renders it for a terminal and
`to_json()` is what `--report-json` writes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional

GRANULE = 16
ROW = 16 * GRANULE          # 16 tags per row, like HWASan's tag dump
ROWS_AROUND = 3
MAX_FRAMES = 32


@dataclass
class FaultView:
    """What the kernel knows about the faulting thread, as plain callables."""

    regs: dict[str, int]                              # x0..x30, sp, pc
    read_u64: Callable[[int], Optional[int]]          # None: not readable
    tag_at: Callable[[int], Optional[int]]            # None: no tagged memory there
    instruction: str                                  # the faulting instruction, disassembled
    symbolize: Callable[[int], Optional[str]]
    tid: int
    program: str
    tagged_addr_ctrl: int
    mode: str                                         # sync / async / asymm


def _function(v: FaultView, pc: int) -> Optional[str]:
    sym = v.symbolize(pc)
    return sym.rsplit("+", 1)[0] if sym else None


def _backtrace(v: FaultView) -> list[int]:
    """PC, then the call sites of the AAPCS64 frame-record chain (x29). A leaf
    function keeps no frame record, so its caller is only in LR: LR is listed when
    it is not already the first record's return address and points outside the
    faulting function (inside it, it is a stale return from an earlier call)."""
    pcs = [v.regs["pc"]]
    fp = v.regs["x29"]
    seen = set()
    first_lr = None
    while fp and fp not in seen and len(pcs) < MAX_FRAMES and fp % 8 == 0:
        seen.add(fp)
        lr, nxt = v.read_u64(fp + 8), v.read_u64(fp)
        if not lr or nxt is None:
            break
        first_lr = lr if first_lr is None else first_lr
        pcs.append((lr & ((1 << 56) - 1)) - 4)
        if nxt <= fp:
            break
        fp = nxt
    lr = v.regs["x30"] & ((1 << 56) - 1)
    if lr and lr != first_lr and _function(v, lr - 4) != _function(v, pcs[0]):
        pcs.insert(1, lr - 4)
    return pcs


@dataclass(frozen=True)
class Frame:
    pc: int
    symbol: Optional[str]                 # "function+0xOFF (library)", or None


@dataclass(frozen=True)
class TagRow:
    address: int                          # the first granule's address
    tags: list[Optional[int]]             # 16 allocation tags; None: no tagged memory there
    current: bool                         # the row holding the faulting address


@dataclass(frozen=True)
class TagFaultReport:
    """A tag-check fault, as it was when it happened."""
    mode: str                             # "sync" or "async" (how this fault was raised)
    access: str                           # "READ" or "WRITE"
    size: int
    address: int                          # the pointer, tag bits kept
    pc: int
    pointer_tag: int
    memory_tag: int
    fault_granule: int
    thread: int
    program: str
    instruction: str
    backtrace: list[Frame]
    registers: dict[str, int]
    memory_tags: list[TagRow]
    tagged_addr_ctrl: int
    tcf: str                              # the thread's tag-check mode (sync / async / asymm)
    kind: str = "tag-mismatch"

    def to_json(self) -> dict:
        """--report-json's object: every field (kind first), frames and rows as objects."""
        fields = asdict(self)
        return {"kind": fields.pop("kind"), **fields}


def capture(v: FaultView, *, va: int, write: bool, size: int, ptr_tag: int, mem_tag: int,
            sync: bool) -> TagFaultReport:
    addr = va & ((1 << 56) - 1)
    row0 = (addr & ~(ROW - 1)) - ROWS_AROUND * ROW
    rows = [TagRow(base, [v.tag_at(base + i * GRANULE) for i in range(16)], base <= addr < base + ROW)
            for base in (row0 + r * ROW for r in range(2 * ROWS_AROUND + 1))]
    return TagFaultReport(
        mode="sync" if sync else "async", access="WRITE" if write else "READ", size=size, address=va,
        pc=v.regs["pc"], pointer_tag=ptr_tag, memory_tag=mem_tag, fault_granule=addr & ~(GRANULE - 1),
        thread=v.tid, program=v.program, instruction=v.instruction,
        backtrace=[Frame(pc, v.symbolize(pc)) for pc in _backtrace(v)], registers=dict(v.regs),
        memory_tags=rows, tagged_addr_ctrl=v.tagged_addr_ctrl, tcf=v.mode)


def format_text(r: TagFaultReport) -> str:
    mode = "synchronous" if r.mode == "sync" else "asynchronous"
    out = [f"==mteemu== ERROR: tag-mismatch ({mode}) on address {r.address:#x} at pc {r.pc:#x}",
           f"{r.access} of size {r.size} at {r.address:#x} tags: "
           f"{r.pointer_tag:x}/{r.memory_tag:x} (ptr/mem) in thread {r.thread} of {r.program}"]
    if r.mode == "async":
        out.append("(Linux reports an asynchronous fault with si_addr 0 at the next kernel entry; "
                   "the access above is the one that set TFSRE0_EL1)")
    for i, f in enumerate(r.backtrace):
        out.append(f"    #{i} {f.pc:#x} in {f.symbol or '??'}")
        if i == 0:
            out.append(f"         {r.instruction}")
    out.append("")
    out.append("Memory tags around the buggy address (one tag per 16-byte granule):")
    for row in r.memory_tags:
        cells = []
        for i, t in enumerate(row.tags):
            tag = "." if t is None else f"{t:x}"
            here = row.address + i * GRANULE == r.fault_granule
            cells.append(f"[{tag}]" if here else f" {tag} ")
        out.append(f"{'=>' if row.current else '  '}{row.address:#014x}:{''.join(cells)}")
    out.append("")
    out.append("Registers:")
    regs = r.registers
    names = [f"x{i}" for i in range(31)] + ["sp", "pc"]
    for i in range(0, len(names), 4):
        out.append("  " + "  ".join(f"{n:>3} {regs[n]:016x}" for n in names[i:i + 4]))
    out.append("")
    out.append(f"Tag-check mode: tagged_addr_ctrl={r.tagged_addr_ctrl:#x} (TCF {r.tcf})")
    out.append("SUMMARY: mteemu: tag-mismatch "
               f"{r.backtrace[0].symbol or hex(r.pc)}")
    return "\n".join(out) + "\n"
