"""The memory map as a picture: one bar per DRAM window of the Arm memory map (and one for
what lies outside them), data and tag regions on it, numbered and listed under the bar,
an arrow from each tagged memory to its tags.

Scale: within a bar, each run of touching regions is drawn to scale in proportion to its
size, and the empty address space between runs is cut down to a fixed break (drawn as a
gap with a `≈` mark), so two banks gigabytes apart are not two slivers. Regions a
validation error names are drawn in the error colour; the carve-out mteemu hides on a
board without tag storage is drawn hatched. Arrows bend in the band above their bar,
below the legend.
"""
from __future__ import annotations

from typing import Callable
from xml.sax.saxutils import escape

from mteemu.board.memmap import DRAM_WINDOWS, fmt_range, fmt_size

WIDTH, LEFT, RIGHT, BAR_H, LINE = 1000, 150, 20, 40, 16
LEGEND_BOTTOM = 74          # nothing else is drawn above this
ARROW_BAND = 44             # the space above each bar where its arrows bend
GAP = 28                    # the width a break between runs of regions takes
MIN_RUN = 40                # the least width of a run, however small
DATA_FILL, TAG_FILL, HOLDS_FILL, ERROR_FILL = "#4e79a7", "#f28e2b", "#c9d6e8", "#e15759"


def _rows(regions: list[dict]) -> list[tuple[str, list[dict]]]:
    """(window name, regions in it) for each window in use, then what lies outside them."""
    rows = []
    placed: set[int] = set()
    for name, ws, we in DRAM_WINDOWS:
        inside = [r for r in regions if ws <= r["start"] and r["end"] <= we]
        if inside:
            placed.update(id(r) for r in inside)
            rows.append((f"window {name}", inside))
    rest = [r for r in regions if id(r) not in placed]
    if rest:
        rows.append(("outside the windows", rest))
    return rows


def _runs(inside: list[dict]) -> list[tuple[int, int]]:
    """The address ranges the regions cover, touching ones merged."""
    out: list[list[int]] = []
    for r in sorted(inside, key=lambda r: r["start"]):
        if out and r["start"] <= out[-1][1]:
            out[-1][1] = max(out[-1][1], r["end"])
        else:
            out.append([r["start"], r["end"]])
    return [(a, b) for a, b in out]


def _scale(runs: list[tuple[int, int]], width: float) -> Callable[[int], float]:
    """Address -> x offset: each run to scale by its share of the covered bytes (at least
    MIN_RUN wide), breaks of GAP between runs."""
    room = width - GAP * (len(runs) - 1)
    total = sum(b - a for a, b in runs)
    widths = [max(room * (b - a) / total, MIN_RUN) for a, b in runs]
    shrink = room / sum(widths)
    widths = [w * shrink for w in widths]
    starts, x = [], 0.0
    for w in widths:
        starts.append(x)
        x += w + GAP

    def at(addr: int) -> float:
        for (a, b), x0, w in zip(runs, starts, widths):
            if addr <= b:
                return x0 + w * (max(addr, a) - a) / (b - a)
        return width
    return at


def _fill(r: dict) -> str:
    if r.get("error"):
        return ERROR_FILL
    if r.get("hidden"):
        return "url(#hatch)"
    return TAG_FILL if r["kind"] == "tags" else HOLDS_FILL if r.get("holds_tag_storage") else DATA_FILL


def draw(regions: list[dict], title: str) -> str:
    """regions: dicts with kind ("memory"/"tags"), name, start, end, tags_of, and
    optionally holds_tag_storage (a v3 memory node describing tag storage), error, hidden."""
    rows = _rows(regions)
    number = {id(r): i + 1 for i, r in enumerate(sorted(regions, key=lambda r: (r["start"], r["kind"])))}
    row_h = [ARROW_BAND + BAR_H + 24 + LINE * len(rs) for _, rs in rows]
    height = LEGEND_BOTTOM + sum(row_h) + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#444"/></marker>'
           f'<pattern id="hatch" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
           f'<rect width="8" height="8" fill="#fde3c8"/><line x1="0" y1="0" x2="0" y2="8" stroke="{TAG_FILL}" '
           'stroke-width="4"/></pattern></defs>',
           f'<title>{escape(title)}</title>',
           f'<text x="10" y="24" font-size="16" font-weight="bold">{escape(title)}</text>']
    out += _legend(any(r.get("hidden") for r in regions))
    centers: dict[str, tuple[float, float]] = {}
    y = LEGEND_BOTTOM
    for (name, inside), h in zip(rows, row_h):
        out += _row(name, inside, y + ARROW_BAND, number, centers)
        y += h
    out += _arrows(regions, centers)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _legend(hidden: bool) -> list[str]:
    legend = [("data", DATA_FILL), ("tag storage (arrow from the memory it tags)", TAG_FILL),
              ("memory node holding tag storage (v3)", HOLDS_FILL), ("named by a validation error", ERROR_FILL)]
    if hidden:
        legend.append(("mteemu's hidden tag carve-out (the board has no tag storage)", "url(#hatch)"))
    out = []
    lx, ly = 10.0, 38
    for text, fill in legend:
        width = 26 + 6.5 * len(text)
        if lx + width > WIDTH:
            lx, ly = 10.0, ly + 18
        out.append(f'<rect x="{lx}" y="{ly}" width="14" height="14" fill="{fill}" stroke="#333"/>'
                   f'<text x="{lx + 20}" y="{ly + 12}">{escape(text)}</text>')
        lx += width
    return out


def _row(name: str, inside: list[dict], bar_y: float, number: dict[int, int],
         centers: dict[str, tuple[float, float]]) -> list[str]:
    """One row: the bar of the regions inside a window (gaps not drawn), then a line per
    region; each region's center goes into `centers` for the arrows."""
    runs = _runs(inside)
    at = _scale(runs, WIDTH - LEFT - RIGHT)
    out = [f'<text x="10" y="{bar_y + 14}" font-weight="bold">{escape(name)}</text>',
           f'<text x="10" y="{bar_y + 28}" fill="#666" font-size="10">{runs[0][0]:#x}</text>',
           f'<text x="10" y="{bar_y + 40}" fill="#666" font-size="10">to {runs[-1][1] - 1:#x}</text>']
    for (_, b), (a2, _) in zip(runs, runs[1:]):
        gx = LEFT + at(b) + GAP / 2
        out.append(f'<text x="{gx:.1f}" y="{bar_y + BAR_H / 2 + 5}" text-anchor="middle" fill="#888" '
                   f'font-size="14">≈<title>{escape(fmt_size(a2 - b))} not drawn</title></text>')
    for r in sorted(inside, key=lambda r: r["kind"] == "tags"):      # tags on top
        x, w = LEFT + at(r["start"]), max(at(r["end"]) - at(r["start"]), 3.0)
        label = f'{r["name"]} {fmt_range(r["start"], r["end"])} ({fmt_size(r["end"] - r["start"])})'
        stroke = ' stroke="#a00" stroke-width="2.5"' if r.get("error") else ' stroke="#333"'
        out.append(f'<rect x="{x:.1f}" y="{bar_y}" width="{w:.1f}" height="{BAR_H}" fill="{_fill(r)}"{stroke}>'
                   f'<title>{escape(label)}</title></rect>')
        if w >= 18:
            dark = r["kind"] == "memory" and not r.get("holds_tag_storage") and not r.get("error")
            out.append(f'<text x="{x + w / 2:.1f}" y="{bar_y + BAR_H / 2 + 4}" text-anchor="middle" '
                       f'fill="{"#fff" if dark else "#000"}">{number[id(r)]}</text>')
        centers[r["name"]] = (x + w / 2, bar_y)
    ty = bar_y + BAR_H + 20
    for r in sorted(inside, key=lambda r: number[id(r)]):
        kind = "tags" if r["kind"] == "tags" else "memory"
        whose = f', tags of {r["tags_of"]}' if r.get("tags_of") else ""
        flag = " (in error)" if r.get("error") else ""
        out.append(f'<text x="{LEFT}" y="{ty}" font-size="11">{number[id(r)]}. {kind} {escape(r["name"])} '
                   f'{fmt_range(r["start"], r["end"])} ({fmt_size(r["end"] - r["start"])}){escape(whose)}'
                   f'{flag}</text>')
        ty += LINE
    return out


def _arrows(regions: list[dict], centers: dict[str, tuple[float, float]]) -> list[str]:
    """An arrow from each memory region to its tag storage."""
    out = []
    arrows = [r for r in regions if r["kind"] == "tags" and r.get("tags_of") in centers and r["name"] in centers]
    for i, r in enumerate(arrows):
        (x1, y1), (x2, y2) = centers[r["tags_of"]], centers[r["name"]]
        # Staggered so that several arrows stay apart, never above the bar's band.
        bend = max(min(y1, y2) - 12 - 6 * (i % 5), LEGEND_BOTTOM + 4)
        out.append(f'<path d="M {x1:.1f} {y1:.1f} C {x1:.1f} {bend:.1f}, {x2:.1f} {bend:.1f}, {x2:.1f} {y2 - 2:.1f}" '
                   'fill="none" stroke="#444" stroke-width="1.5" marker-end="url(#arrow)"/>')
    return out
