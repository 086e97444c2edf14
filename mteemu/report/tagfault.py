"""The tag-check fault report: what people who know HWASan, KASAN or an Android
tombstone expect to read when MTE kills a program.

`capture()` takes a snapshot at the moment of the fault (the state is precise for a
synchronous fault) as a `TagFaultReport`; `format_text()` renders it for a terminal and
`to_json()` is what `--report-json` writes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

from mteemu.report import causes as C

if TYPE_CHECKING:
    from mteemu.machine.allochist import History

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
    history: "Optional[History]" = None               # the address space's allocation history


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
class Recorded:
    """A recorded allocator call or tag store, symbolized."""
    op: str                               # "malloc", "free", ..., "tag store"
    thread: int
    backtrace: list[Frame]


@dataclass(frozen=True)
class ReportCause:
    kind: str                             # use-after-free, double-free, buffer-overflow, buffer-underflow
    title: str                            # "Use After Free"
    line: str                             # "Use After Free, 0 bytes into a 32-byte allocation at 0x..."
    offset: int
    relation: str                         # into / right of / left of
    allocation: int                       # its start, untagged
    size: int
    tag: int
    source: str                           # "allocator" or "tag stores"
    allocated: Optional[Recorded]
    deallocated: Optional[Recorded]


SCHEMA = 2      # --report-json's version: 2 added schema, history, causes, granule_tagged_by, reported_at


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
    history: str = "off"                  # "allocator", "tag stores" (no allocator known), "off"
    causes: list[ReportCause] = field(default_factory=list)   # most likely first; [] when none is known
    granule_tagged_by: Optional[Recorded] = None               # the tag store that last set the granule's tag
    reported_at: Optional[str] = None     # async: the kernel entry that reported it ("system call getppid")

    def to_json(self) -> dict:
        """--report-json's object: every field (kind, then schema first), frames and rows as
        objects (docs/usage.md describes it)."""
        fields = asdict(self)
        return {"kind": fields.pop("kind"), "schema": SCHEMA, **fields}


def _recorded(v: FaultView, t: Optional[C.Trace]) -> Optional[Recorded]:
    """A recorded call's frames as a backtrace: pc, the caller in lr when it is another
    function and not the first frame record's (as _backtrace), the return sites."""
    if t is None:
        return None
    pc, lr, rets = t.frames[0], t.frames[1], t.frames[2:]
    pcs = [pc]
    if lr and (not rets or lr != rets[0]) and _function(v, lr - 4) != _function(v, pc):
        pcs.append(lr - 4)
    pcs += [r - 4 for r in rets]
    return Recorded(t.op, t.thread, [Frame(p, v.symbolize(p)) for p in pcs])


def _causes(v: FaultView, va: int, ptr_tag: int) -> tuple[str, list[ReportCause], Optional[Recorded]]:
    h = v.history
    if h is None:
        return "off", [], None
    calls, stores = h.events(), h.events(tags=True)
    found = C.classify(calls, stores, va, ptr_tag, lambda a: _function(v, a), v.regs["pc"])
    out = [ReportCause(c.kind, c.title, c.line(), c.offset, c.relation, c.address, c.size, c.tag, c.source,
                       _recorded(v, c.allocated), _recorded(v, c.deallocated)) for c in found]
    return ("allocator" if h.table else "tag stores"), out, _recorded(v, C.last_tag_store(stores, va))


def capture(v: FaultView, *, va: int, write: bool, size: int, ptr_tag: int, mem_tag: int,
            sync: bool) -> TagFaultReport:
    addr = va & ((1 << 56) - 1)
    history, causes, tagged_by = _causes(v, va, ptr_tag)
    row0 = (addr & ~(ROW - 1)) - ROWS_AROUND * ROW
    rows = [TagRow(base, [v.tag_at(base + i * GRANULE) for i in range(16)], base <= addr < base + ROW)
            for base in (row0 + r * ROW for r in range(2 * ROWS_AROUND + 1))]
    return TagFaultReport(
        mode="sync" if sync else "async", access="WRITE" if write else "READ", size=size, address=va,
        pc=v.regs["pc"], pointer_tag=ptr_tag, memory_tag=mem_tag, fault_granule=addr & ~(GRANULE - 1),
        thread=v.tid, program=v.program, instruction=v.instruction,
        backtrace=[Frame(pc, v.symbolize(pc)) for pc in _backtrace(v)], registers=dict(v.regs),
        memory_tags=rows, tagged_addr_ctrl=v.tagged_addr_ctrl, tcf=v.mode, history=history, causes=causes,
        granule_tagged_by=tagged_by)


def format_text(r: TagFaultReport) -> str:
    mode = "synchronous" if r.mode == "sync" else "asynchronous"
    out = [f"==mteemu== ERROR: tag-mismatch ({mode}) on address {r.address:#x} at pc {r.pc:#x}",
           f"{r.access} of size {r.size} at {r.address:#x} tags: "
           f"{r.pointer_tag:x}/{r.memory_tag:x} (ptr/mem) in thread {r.thread} of {r.program}"]
    if r.mode == "async":
        out.append("(Linux reports an asynchronous fault with si_addr 0 at the next kernel entry"
                   + (f", here {r.reported_at}" if r.reported_at else "")
                   + "; the access above is the one that set TFSRE0_EL1)")
    out += _cause_lines(r)
    for i, f in enumerate(r.backtrace):
        out.append(f"    #{i} {f.pc:#x} in {f.symbol or '??'}")
        if i == 0:
            out.append(f"         {r.instruction}")
    out.append("")
    out += history_lines(r)
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


def cause_line(r: TagFaultReport) -> str:
    """The most likely cause in one line (JUnit's failure message, GDB's monitor report)."""
    if r.causes:
        return f"[MTE]: {r.causes[0].line}"
    return "[MTE]: unknown" + (" (run with --alloc-history to see who allocated and freed it)"
                               if r.history == "off" else " (nothing recorded near the address)")


def _cause_lines(r: TagFaultReport) -> list[str]:
    """Android's `Cause:` lines: every candidate, most likely first."""
    if len(r.causes) > 1:
        out = ["Note: multiple potential causes for this fault were found, "
               "listed in decreasing order of likelihood."]
        return out + [f"Cause: [MTE]: {c.line}" for c in r.causes]
    return [f"Cause: {cause_line(r)}"]


def _trace_lines(what: str, rec: Recorded) -> list[str]:
    out = [f"{what} by thread {rec.thread} ({rec.op}):"]
    out += [f"      #{i:02d} pc {f.pc:#x} in {f.symbol or '??'}" for i, f in enumerate(rec.backtrace)]
    return out


def history_lines(r: TagFaultReport) -> list[str]:
    """Who allocated and freed (or tagged) the memory of each cause, as Android lists them."""
    out: list[str] = []
    for i, c in enumerate(r.causes):
        if len(r.causes) > 1:
            out.append(f"Cause {i + 1}: {c.line}")
        if c.deallocated is not None:
            out += _trace_lines("retagged" if c.source == "tag stores" else "deallocated", c.deallocated)
        if c.allocated is not None:
            out += _trace_lines("tagged" if c.source == "tag stores" else "allocated", c.allocated)
        out.append("")
    if r.granule_tagged_by is not None and not r.causes:
        out += _trace_lines(f"the faulting granule's tag ({r.memory_tag:x}) was last set", r.granule_tagged_by)
        out.append("")
    return out
