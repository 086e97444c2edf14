"""The memory map as a picture: one bar per DRAM window of the Arm memory map, to scale
over the part of the window the board uses; data regions and tag regions on it,
numbered and listed under the bar; an arrow from each tagged memory to its tags."""
from __future__ import annotations

from xml.sax.saxutils import escape

from mteemu.board.memmap import DRAM_WINDOWS, fmt_range, fmt_size

WIDTH, LEFT, RIGHT, BAR_H, TOP, LINE = 1000, 150, 20, 40, 70, 16
DATA_FILL, TAG_FILL, HOLDS_FILL = "#4e79a7", "#f28e2b", "#c9d6e8"


def _rows(regions: list[dict]) -> list[tuple[str, int, int, list[dict]]]:
    """(window name, shown start, shown end, regions in it) for each window in use."""
    rows = []
    placed: set[int] = set()
    for name, ws, we in DRAM_WINDOWS:
        inside = [r for r in regions if ws <= r["start"] and r["end"] <= we]
        if inside:
            placed.update(id(r) for r in inside)
            rows.append((f"window {name}", min(r["start"] for r in inside), max(r["end"] for r in inside), inside))
    rest = [r for r in regions if id(r) not in placed]
    if rest:
        rows.append(("outside the windows", min(r["start"] for r in rest), max(r["end"] for r in rest), rest))
    return rows


def draw(regions: list[dict], title: str) -> str:
    """regions: dicts with kind ("memory"/"tags"), name, start, end, tags_of, and for
    memory holds_tag_storage (a v3 memory node describing tag storage)."""
    rows = _rows(regions)
    number = {id(r): i + 1 for i, r in enumerate(sorted(regions, key=lambda r: (r["start"], r["kind"])))}
    row_h = [BAR_H + 36 + LINE * len(rs) for _, _, _, rs in rows]
    height = TOP + sum(row_h) + 20
    span = WIDTH - LEFT - RIGHT
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#444"/></marker></defs>',
           f'<title>{escape(title)}</title>',
           f'<text x="10" y="24" font-size="16" font-weight="bold">{escape(title)}</text>',
           f'<rect x="10" y="38" width="14" height="14" fill="{DATA_FILL}"/><text x="30" y="50">data</text>',
           f'<rect x="80" y="38" width="14" height="14" fill="{TAG_FILL}"/>'
           f'<text x="100" y="50">tag storage (the arrow comes from the memory it tags)</text>',
           f'<rect x="470" y="38" width="14" height="14" fill="{HOLDS_FILL}" stroke="#333"/>'
           f'<text x="490" y="50">memory node holding tag storage (v3)</text>']
    centers: dict[str, tuple[float, float]] = {}
    y = TOP
    for (name, lo, hi, inside), h in zip(rows, row_h):
        scale = span / (hi - lo)
        out.append(f'<text x="10" y="{y + 16}" font-weight="bold">{escape(name)}</text>')
        out.append(f'<text x="10" y="{y + 32}" fill="#666" font-size="10">{lo:#x}</text>')
        out.append(f'<text x="10" y="{y + 44}" fill="#666" font-size="10">to {hi - 1:#x}</text>')
        for r in sorted(inside, key=lambda r: r["kind"] == "tags"):      # tags on top
            x, w = LEFT + (r["start"] - lo) * scale, max((r["end"] - r["start"]) * scale, 3.0)
            fill = TAG_FILL if r["kind"] == "tags" else HOLDS_FILL if r.get("holds_tag_storage") else DATA_FILL
            label = f'{r["name"]} {fmt_range(r["start"], r["end"])} ({fmt_size(r["end"] - r["start"])})'
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="{fill}" stroke="#333">'
                       f'<title>{escape(label)}</title></rect>')
            if w >= 18:
                color = "#000" if r["kind"] == "tags" or r.get("holds_tag_storage") else "#fff"
                out.append(f'<text x="{x + w / 2:.1f}" y="{y + BAR_H / 2 + 4}" text-anchor="middle" '
                           f'fill="{color}">{number[id(r)]}</text>')
            centers[r["name"]] = (x + w / 2, y)
        ly = y + BAR_H + 20
        for r in sorted(inside, key=lambda r: number[id(r)]):
            kind = "tags" if r["kind"] == "tags" else "memory"
            whose = f', tags of {r["tags_of"]}' if r.get("tags_of") else ""
            out.append(f'<text x="{LEFT}" y="{ly}" font-size="11">{number[id(r)]}. {kind} {escape(r["name"])} '
                       f'{fmt_range(r["start"], r["end"])} ({fmt_size(r["end"] - r["start"])}){escape(whose)}</text>')
            ly += LINE
        y += h
    for r in regions:
        if r["kind"] == "tags" and r.get("tags_of") in centers and r["name"] in centers:
            (x1, y1), (x2, y2) = centers[r["tags_of"]], centers[r["name"]]
            bend = min(y1, y2) - 28
            out.append(f'<path d="M {x1:.1f} {y1:.1f} C {x1:.1f} {bend:.1f}, {x2:.1f} {bend:.1f}, {x2:.1f} {y2 - 2:.1f}" '
                       'fill="none" stroke="#444" stroke-width="1.5" marker-end="url(#arrow)"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
