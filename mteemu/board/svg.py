"""The memory map as a picture: one bar per DRAM window (to scale within the window),
data regions and tag regions on it, and an arrow from each tagged memory to its tags."""
from __future__ import annotations

from xml.sax.saxutils import escape

from mteemu.board.memmap import DRAM_WINDOWS, fmt_range, fmt_size

WIDTH, LEFT, BAR_H, GAP, TOP = 960, 150, 46, 90, 60
DATA_FILL, TAG_FILL, FREE_FILL = "#4e79a7", "#f28e2b", "#eeeeee"


def draw(regions: list[dict], title: str) -> str:
    """regions: {"kind": "memory"|"tags", "name", "start", "end", "tags_of": name or None}."""
    lo = min(r["start"] for r in regions)
    hi = max(r["end"] for r in regions)
    rows = [w for w in DRAM_WINDOWS if any(r["start"] < w[2] and w[1] < r["end"] for r in regions)]
    outside = [r for r in regions if not any(w[1] <= r["start"] and r["end"] <= w[2] for w in DRAM_WINDOWS)]
    if outside:
        rows.append(("outside the windows", lo, hi))
    height = TOP + len(rows) * (BAR_H + GAP) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
           f'<title>{escape(title)}</title>',
           f'<text x="10" y="24" font-size="16" font-weight="bold">{escape(title)}</text>',
           f'<rect x="{WIDTH - 330}" y="12" width="14" height="14" fill="{DATA_FILL}"/>'
           f'<text x="{WIDTH - 310}" y="24">data</text>'
           f'<rect x="{WIDTH - 260}" y="12" width="14" height="14" fill="{TAG_FILL}"/>'
           f'<text x="{WIDTH - 240}" y="24">tag storage (arrow: whose tags)</text>']
    centers: dict[str, tuple[float, float]] = {}
    span = WIDTH - LEFT - 20
    for i, (name, ws, we) in enumerate(rows):
        y = TOP + i * (BAR_H + GAP)
        scale = span / (we - ws)
        out.append(f'<text x="10" y="{y + BAR_H / 2 + 4}">{escape(name)}</text>')
        out.append(f'<text x="10" y="{y + BAR_H / 2 + 18}" fill="#777" font-size="10">{ws:#x}</text>')
        out.append(f'<rect x="{LEFT}" y="{y}" width="{span}" height="{BAR_H}" fill="{FREE_FILL}" stroke="#999"/>')
        for r in regions:
            s, e = max(r["start"], ws), min(r["end"], we)
            if s >= e:
                continue
            x, w = LEFT + (s - ws) * scale, max((e - s) * scale, 2.0)
            fill = TAG_FILL if r["kind"] == "tags" else DATA_FILL
            label = f'{r["name"]} {fmt_range(r["start"], r["end"])} ({fmt_size(r["end"] - r["start"])})'
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="{fill}" stroke="#333">'
                       f'<title>{escape(label)}</title></rect>')
            ty = y - 6 if r["kind"] == "tags" else y + BAR_H + 14
            out.append(f'<text x="{x:.1f}" y="{ty}" font-size="10">{escape(r["name"])}</text>')
            centers.setdefault(r["name"], (x + w / 2, y + BAR_H / 2))
    for r in regions:
        if r["kind"] == "tags" and r.get("tags_of") in centers and r["name"] in centers:
            (x1, y1), (x2, y2) = centers[r["tags_of"]], centers[r["name"]]
            bend = min(y1, y2) - 34
            out.append(f'<path d="M {x1:.1f} {y1:.1f} C {x1:.1f} {bend:.1f}, {x2:.1f} {bend:.1f}, {x2:.1f} {y2 - 4:.1f}" '
                       'fill="none" stroke="#555" stroke-width="1.5" marker-end="url(#arrow)"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
