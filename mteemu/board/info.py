"""What a board file holds, for people: the loaded layout, its findings, its map."""
from __future__ import annotations

from dataclasses import dataclass

from mteemu.board import binding, dt, rules
from mteemu.board.build import board_from_layout
from mteemu.board.memmap import fmt_range, fmt_size, window_of
from mteemu.board.model import Board


@dataclass
class BoardFile:
    path: str
    layout: binding.Layout
    findings: list[rules.Finding]

    @property
    def errors(self) -> list[rules.Finding]:
        return rules.errors(self.findings)

    def board(self) -> Board:
        return board_from_layout(self.layout, self.path)


def read(path: str, groups: tuple[str, ...] = rules.GROUPS, include_dirs: tuple[str, ...] = ()) -> BoardFile:
    """Load and validate a DTB/DTS; BoardError if it cannot be read at all."""
    layout = binding.scan(dt.load(path, include_dirs))
    return BoardFile(path, layout, rules.validate(layout, groups))


def regions(bf: BoardFile) -> list[dict]:
    """Every memory range and tag region, as plain records (for text, JSON and SVG):
    `error` when a validation error names the node; for a board without tag storage,
    the carve-out `run` hides at the top of each bank (`hidden`)."""
    out = []
    in_error = {f.node for f in bf.errors}
    v3_spans = [t.range for t in bf.layout.tags if t.range and t.binding == "v3"]
    for m in bf.layout.memory:
        for i, (addr, size) in enumerate(m.ranges):
            name = m.node.path + (f"[{i}]" if len(m.ranges) > 1 else "")
            # Only the v3 binding describes tag storage with a memory node of its own; any
            # other memory around tag storage is an overlap, drawn as data with the error.
            holds = any(addr <= a and a + s <= addr + size for a, s in v3_spans)
            out.append({"kind": "memory", "name": name, "start": addr, "end": addr + size,
                        "numa_node": m.numa_node, "holds_tag_storage": holds, "tags_of": None,
                        "error": m.node.path in in_error})
    for t in bf.layout.tags:
        if t.range is None:
            continue
        addr, size = t.range
        tagged = t.tagged.path if t.tagged is not None else None
        out.append({"kind": "tags", "name": t.node.path, "start": addr, "end": addr + size,
                    "block_size": t.block_size, "tags_of": tagged, "binding": t.binding,
                    "error": t.node.path in in_error})
    if not bf.layout.tags and bf.layout.usable:
        for tr in bf.board().tag_regions:
            out.append({"kind": "tags", "name": f"hidden carve-out of {tr.tagged.name}", "start": tr.base,
                        "end": tr.end, "block_size": None, "tags_of": tr.tagged.name, "binding": "mteemu",
                        "error": False, "hidden": True})
    return sorted(out, key=lambda r: (r["start"], r["kind"]))


def describe(bf: BoardFile) -> str:
    lines = [f"{bf.path}: binding {bf.layout.binding}"]
    for r in regions(bf):
        w = window_of(r["start"], r["end"])
        where = f"window {w[0]}" if w else "outside the Arm DRAM windows"
        if r["kind"] == "memory":
            extra = " (holds tag storage)" if r["holds_tag_storage"] else ""
            lines.append(f"  memory  {fmt_range(r['start'], r['end']):>27}  {fmt_size(r['end'] - r['start']):>9}  "
                         f"{r['name']}, numa node {r['numa_node']}, {where}{extra}")
        elif r.get("hidden"):
            lines.append(f"  tags    {fmt_range(r['start'], r['end']):>27}  {fmt_size(r['end'] - r['start']):>9}  "
                         f"{r['name']} (mteemu's, the board has no tag storage), {where}")
        else:
            block = f"block {r['block_size']:#x}" if r["block_size"] else "no block-size"
            lines.append(f"  tags    {fmt_range(r['start'], r['end']):>27}  {fmt_size(r['end'] - r['start']):>9}  "
                         f"{r['name']} ({r['binding']}), tags of {r['tags_of'] or '?'}, {block}, {where}")
    if not bf.layout.usable:
        lines.append(f"  {binding.NO_MEMORY}: `mteemu run` refuses this board")
    elif not bf.layout.tags:
        lines.append("  no tag storage nodes: mteemu hides a carve-out (1/33 of it) at the top of each memory region "
                     "(shown above)")
    n_err = len(bf.errors)
    lines.append(f"  validation: {n_err} error(s), {len(bf.findings) - n_err} other finding(s) "
                 "(mteemu validate-dtb for details)")
    return "\n".join(lines) + "\n"
