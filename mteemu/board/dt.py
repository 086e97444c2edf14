"""Device trees in: DTB or DTS files, read with the `fdt` package (no dtc at run time).

`fdt`'s DTS reader is line based and lenient (it drops nodes written on one line and
accepts `<1 2;`), so DTS text is first checked and re-laid out one statement per line
by the small tokenizer below; a syntax error is reported with its line. Everything
else — cells, phandles, strings — comes from `fdt`'s tree, wrapped in `Node`, which
knows its parent so that `reg` is read with the parent's #address-cells/#size-cells
(the package does not combine cells).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator, Optional

from mteemu.errors import BoardError
from mteemu.inputs import read_regular

DTB_MAGIC = b"\xd0\x0d\xfe\xed"
MAX_FILE = 64 << 20
DEFAULT_ADDRESS_CELLS, DEFAULT_SIZE_CELLS = 2, 1   # devicetree specification, 2.3.5


@dataclass(eq=False)
class Node:
    path: str
    name: str
    props: dict[str, object]            # name -> list[int] (cells), list[str], bytes or None (empty)
    parent: Optional["Node"] = None
    children: list["Node"] = field(default_factory=list)

    @property
    def unit_name(self) -> str:
        return self.name.split("@", 1)[0]

    @property
    def depth(self) -> int:
        return 0 if self.parent is None else self.parent.depth + 1

    def cells(self, prop: str) -> Optional[list[int]]:
        value = self.props.get(prop)
        return value if isinstance(value, list) and all(isinstance(v, int) for v in value) else None

    def u32(self, prop: str) -> Optional[int]:
        c = self.cells(prop)
        return c[0] if c and len(c) == 1 else None

    def strings(self, prop: str) -> list[str]:
        value = self.props.get(prop)
        return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []

    def has(self, prop: str) -> bool:
        return prop in self.props

    def address_cells(self) -> int:
        """#address-cells that applies to this node's own `reg` (its parent's)."""
        v = self.parent.u32("#address-cells") if self.parent else None
        return DEFAULT_ADDRESS_CELLS if v is None else v

    def size_cells(self) -> int:
        v = self.parent.u32("#size-cells") if self.parent else None
        return DEFAULT_SIZE_CELLS if v is None else v

    def ranges(self, prop: str = "reg") -> list[tuple[int, int]]:
        """(address, size) pairs of a reg-like property; BoardError if the cells do not
        divide into whole entries."""
        cells = self.cells(prop)
        if cells is None:
            return []
        ac, sc = self.address_cells(), self.size_cells()
        if ac < 1 or sc < 0 or ac > 4 or sc > 4:
            raise BoardError(f"{self.path}: unsupported #address-cells/#size-cells {ac}/{sc}")
        width = ac + sc
        if len(cells) % width:
            raise BoardError(f"{self.path}: '{prop}' has {len(cells)} cells, not a multiple of "
                             f"#address-cells + #size-cells = {width}")
        out = []
        for i in range(0, len(cells), width):
            addr = _combine(cells[i:i + ac])
            size = _combine(cells[i + ac:i + width])
            out.append((addr, size))
        return out


def _combine(cells: list[int]) -> int:
    v = 0
    for c in cells:
        v = (v << 32) | c
    return v


@dataclass
class DeviceTree:
    root: Node
    source: str                          # the file it came from
    phandles: dict[int, Node] = field(default_factory=dict)

    def walk(self) -> Iterator[Node]:
        stack = [self.root]
        while stack:
            n = stack.pop()
            yield n
            stack.extend(reversed(n.children))

    def find(self, path: str) -> Optional[Node]:
        for n in self.walk():
            if n.path == path:
                return n
        return None

    def by_phandle(self, value: Optional[int]) -> Optional[Node]:
        return None if value is None else self.phandles.get(value)


# -- reading files ------------------------------------------------------------------------------
def load(path: str) -> DeviceTree:
    """Read a DTB or DTS file; BoardError (one line) if it cannot be read or parsed."""
    data = read_regular(path, "a device tree", MAX_FILE, BoardError)
    if data[:4] == DTB_MAGIC:
        return parse_dtb(data, path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BoardError(f"{path}: neither a DTB (bad magic {data[:4].hex()}) nor DTS text") from None
    if "/dts-v1/" not in text:
        raise BoardError(f"{path}: not a device tree (no DTB magic, no /dts-v1/ tag)")
    return parse_dts(text, path)


def parse_dtb(data: bytes, source: str = "<dtb>") -> DeviceTree:
    import fdt

    try:
        tree = fdt.parse_dtb(data)
        return _wrap(tree, source)
    except BoardError:
        raise
    except RecursionError:
        raise BoardError(f"{source}: malformed DTB: nodes nested too deeply") from None
    except Exception as e:  # noqa: BLE001 - fdt raises anything on garbage
        raise BoardError(f"{source}: malformed DTB: {e.__class__.__name__}: {e}"[:300]) from None


def parse_dts(text: str, source: str = "<dts>") -> DeviceTree:
    import fdt

    normalized = normalize_dts(text, source)
    try:
        tree = fdt.parse_dts(normalized)
        return _wrap(tree, source)
    except BoardError:
        raise
    except Exception as e:  # noqa: BLE001
        raise BoardError(f"{source}: cannot parse DTS: {e.__class__.__name__}: {e}"[:300]) from None


def _prop_value(prop) -> object:  # noqa: ANN001 - an fdt property
    import fdt

    if isinstance(prop, fdt.PropWords):
        return list(prop.data)
    if isinstance(prop, fdt.PropStrings):
        return list(prop.data)
    if isinstance(prop, fdt.PropBytes):
        return bytes(prop.data)
    return None


def _wrap(tree, source: str) -> DeviceTree:  # noqa: ANN001 - an fdt.FDT
    def build(fnode, parent: Optional[Node], depth: int) -> Node:
        if depth > 64:
            raise BoardError(f"{source}: nodes nested more than 64 deep")
        name = fnode.name if parent is not None else "/"
        path = "/" if parent is None else (parent.path.rstrip("/") + "/" + name)
        props = {}
        for p in fnode.props:
            if p.name.endswith("_with_references"):
                continue                          # fdt's record of the DTS text behind a phandle
            props[p.name] = _prop_value(p)
        node = Node(path, name, props, parent)
        node.children = [build(c, node, depth + 1) for c in fnode.nodes]
        return node

    dt = DeviceTree(build(tree.root, None, 0), source)
    for n in dt.walk():
        for key in ("phandle", "linux,phandle"):
            ph = n.u32(key)
            if ph is not None and ph not in (0, 0xFFFFFFFF):
                dt.phandles.setdefault(ph, n)
    return dt


# -- DTS: check the syntax, lay it out one statement per line for fdt ---------------------------
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<directive>/dts-v1/|/plugin/|/memreserve/|/include/|/delete-node/|/delete-property/|/omit-if-no-ref/)
  | (?P<cpp>\#(?:include|define|if|ifdef|ifndef|endif|else|undef)\b[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<cells><[^<>;{}]*>)
  | (?P<bytes>\[[0-9a-fA-F\s]*\])
  | (?P<ref>&\{[^}]*\}|&[A-Za-z_][A-Za-z0-9_]*)
  | (?P<label>[A-Za-z_][A-Za-z0-9_]*:)
  | (?P<name>[A-Za-z0-9,._+\-#?@/]+)
  | (?P<punct>[{};=,])
""", re.X | re.S)


def _tokens(text: str, source: str) -> list[tuple[str, str, int]]:
    out = []
    pos = 0
    line = 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise BoardError(f"{source}:{line}: DTS syntax error near {text[pos:pos + 20]!r}")
        kind = m.lastgroup
        value = m.group()
        if kind == "cpp":
            raise BoardError(f"{source}:{line}: C preprocessor lines ({value.split()[0]}) are not DTS: "
                             "run cpp (or build the DTB with dtc) first")
        if kind not in ("ws", "comment"):
            out.append((kind, value, line))
        line += value.count("\n")
        pos = m.end()
    return out


def normalize_dts(text: str, source: str = "<dts>") -> str:
    """Check the DTS grammar (the subset real board files use) and re-emit it one
    statement per line; BoardError with the line number on a syntax error."""
    toks = _tokens(text, source)
    out: list[str] = []
    i = 0
    depth = 0

    def expect(cond: bool, what: str) -> None:
        if not cond:
            where = toks[i][2] if i < len(toks) else (toks[-1][2] if toks else 1)
            got = repr(toks[i][1]) if i < len(toks) else "end of file"
            raise BoardError(f"{source}:{where}: DTS syntax error: expected {what}, got {got}")

    def indent() -> str:
        return "    " * depth

    saw_root = False
    while i < len(toks):
        kind, value, _ = toks[i]
        if depth == 0:
            if kind == "directive":
                expect(value in ("/dts-v1/", "/plugin/", "/memreserve/"), "a supported directive")
                if value == "/memreserve/":
                    i += 1
                    expect(i + 1 < len(toks) and toks[i][0] == "name" and toks[i + 1][0] == "name",
                           "two numbers after /memreserve/")
                    out.append(f"/memreserve/ {toks[i][1]} {toks[i + 1][1]};")
                    i += 2
                else:
                    out.append(value + ";")
                    i += 1
                expect(i < len(toks) and toks[i][1] == ";", "';'")
                i += 1
                continue
            expect(kind == "name" and value == "/", "the root node '/ {'")
            i += 1
            expect(i < len(toks) and toks[i][1] == "{", "'{'")
            out.append("/ {")
            depth = 1
            i += 1
            saw_root = True
            continue
        if value == "}":
            i += 1
            expect(i < len(toks) and toks[i][1] == ";", "';' after '}'")
            i += 1
            depth -= 1
            out.append(indent() + "};")
            continue
        labels = []
        while kind == "label":
            labels.append(value)
            i += 1
            expect(i < len(toks), "a node or property name")
            kind, value, _ = toks[i]
        if kind == "directive" and value in ("/delete-node/", "/delete-property/", "/omit-if-no-ref/"):
            raise BoardError(f"{source}:{toks[i][2]}: {value} is not supported here; build the DTB with dtc")
        expect(kind == "name", "a node or property name")
        name = value
        i += 1
        expect(i < len(toks), "'{', '=' or ';'")
        nxt = toks[i][1]
        prefix = (" ".join(labels) + " ") if labels else ""
        if nxt == "{":
            out.append(indent() + prefix + name + " {")
            depth += 1
            i += 1
            continue
        expect(not labels or nxt == "{", "'{' after a label")
        if nxt == ";":
            out.append(indent() + name + ";")
            i += 1
            continue
        expect(nxt == "=", "'=', '{' or ';'")
        i += 1
        values = []
        while True:
            expect(i < len(toks) and toks[i][0] in ("string", "cells", "bytes", "ref"), "a property value")
            values.append(toks[i][1])
            i += 1
            expect(i < len(toks) and toks[i][1] in (",", ";"), "',' or ';'")
            if toks[i][1] == ";":
                i += 1
                break
            i += 1
        out.append(indent() + name + " = " + ", ".join(values) + ";")
    if depth != 0:
        raise BoardError(f"{source}: DTS syntax error: {depth} unclosed '{{' at end of file")
    if not saw_root:
        raise BoardError(f"{source}: DTS has no root node")
    return "\n".join(out) + "\n"
