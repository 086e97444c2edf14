"""Device trees in: DTB or DTS files.

A DTB is read with the `fdt` package. Its property types are guesses (four printable
bytes look like a string), so every property keeps its raw bytes and is decoded by what
its binding says it is: `cells()` for reg, ranges, phandles, sizes; `strings()` for
compatible, device_type, status (the devicetree specification, 2.3 and 2.2.4).

A DTS is compiled by the real toolchain when `dtc` is installed — after the C
preprocessor when it has `#include` or macros, with the file's folder and `-i` folders
as include paths, as the kernel's build does — so every construct dtc accepts works and
the DTS and the DTB of a board are one tree. Without dtc (or with MTEEMU_NO_DTC=1) a
small reader of our own checks the subset real boards use, lays it out one statement
per line for `fdt`'s lenient line-based reader, and refuses with one line, naming the
construct, whatever it cannot read right (a second root block, `&label { }` outside
the root, /include/, expressions, labels beside explicit phandles).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

from mteemu.errors import BoardError
from mteemu.inputs import read_regular

DTB_MAGIC = b"\xd0\x0d\xfe\xed"
MAX_FILE = 64 << 20
DEFAULT_ADDRESS_CELLS, DEFAULT_SIZE_CELLS = 2, 1   # devicetree specification, 2.3.5


@dataclass(eq=False)
class Node:
    path: str
    name: str
    props: dict[str, bytes]             # name -> the property's raw bytes (b"" for an empty one)
    parent: Optional["Node"] = None
    children: list["Node"] = field(default_factory=list)

    @property
    def unit_name(self) -> str:
        return self.name.split("@", 1)[0]

    @property
    def depth(self) -> int:
        return 0 if self.parent is None else self.parent.depth + 1

    def cells(self, prop: str) -> Optional[list[int]]:
        """A <u32 ...> property (None if absent or not a whole number of cells)."""
        raw = self.props.get(prop)
        if raw is None or len(raw) % 4:
            return None
        return [int.from_bytes(raw[i:i + 4], "big") for i in range(0, len(raw), 4)]

    def u32(self, prop: str) -> Optional[int]:
        c = self.cells(prop)
        return c[0] if c and len(c) == 1 else None

    def strings(self, prop: str) -> list[str]:
        """A <stringlist> property: NUL-terminated strings ([] if absent or not one)."""
        raw = self.props.get(prop)
        if not raw or not raw.endswith(b"\0"):
            return []
        return raw[:-1].decode("utf-8", "replace").split("\0")

    @property
    def enabled(self) -> bool:
        """status absent, "okay" or "ok" (of_device_is_available())."""
        status = self.strings("status")
        return not status or status[0] in ("okay", "ok")

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
    memreserve: list[tuple[int, int]] = field(default_factory=list)   # /memreserve/ (address, size)

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
def load(path: str, include_dirs: Sequence[str] = ()) -> DeviceTree:
    """Read a DTB or DTS file; BoardError (one line) if it cannot be read or parsed."""
    for d in include_dirs:
        if not os.path.isdir(d):
            raise BoardError(f"-i {d}: not a directory")
    data = read_regular(path, "a device tree", MAX_FILE, BoardError)
    if data[:4] == DTB_MAGIC:
        return parse_dtb(data, path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BoardError(f"{path}: neither a DTB (bad magic {data[:4].hex()}) nor DTS text") from None
    if "/dts-v1/" not in text:
        raise BoardError(f"{path}: not a device tree (no DTB magic, no /dts-v1/ tag)")
    dtc = dtc_path()
    if dtc is None:
        return parse_dts(text, path)
    return parse_dtb(compile_dts(dtc, text, path, include_dirs), path)


def dtc_path() -> Optional[str]:
    """The dtc that compiles DTS files, or None (not installed, or MTEEMU_NO_DTC=1)."""
    if os.environ.get("MTEEMU_NO_DTC") == "1":
        return None
    return shutil.which("dtc")


_CPP_LINE = re.compile(r"^\s*#\s*(include|define|undef|if|ifdef|ifndef|elif|else|endif)\b", re.M)


def compile_dts(dtc: str, text: str, path: str, include_dirs: Sequence[str] = ()) -> bytes:
    """DTS text to DTB bytes: `cpp` first when the text has preprocessor lines (the
    kernel's dtc_cpp_flags: -nostdinc -undef -D__DTS__ -x assembler-with-cpp), then dtc."""
    dirs = [os.path.dirname(os.path.abspath(path))] + [os.path.abspath(d) for d in include_dirs]
    if _CPP_LINE.search(text):
        cpp = shutil.which("cpp")
        if cpp is None:
            raise BoardError(f"{path}: has C preprocessor lines (#include, #define) and no cpp is installed")
        args = [cpp, "-nostdinc", "-undef", "-D__DTS__", "-x", "assembler-with-cpp"]
        for d in dirs:
            args += ["-I", d]
        text = _tool(args + ["-"], text.encode(), path, "cpp").decode("utf-8", "replace")
    args = [dtc, "-q", "-I", "dts", "-O", "dtb", "-o", "-"]
    for d in dirs:
        args += ["-i", d]
    return _tool(args + ["-"], text.encode(), path, "dtc")


def _tool(args: list[str], stdin: bytes, path: str, name: str) -> bytes:
    try:
        r = subprocess.run(args, input=stdin, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BoardError(f"{path}: {name} failed: {e}") from None
    if r.returncode != 0 or not r.stdout:
        lines = [ln for ln in r.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        first = next((ln for ln in lines if "rror" in ln), lines[0] if lines else f"exit status {r.returncode}")
        raise BoardError(f"{path}: {name}: {first.replace('<stdin>', os.path.basename(path)).strip()}"[:300])
    return r.stdout


def parse_dtb(data: bytes, source: str = "<dtb>") -> DeviceTree:
    import fdt

    # fdt.FDT(entries=[]) makes every FDT share one list (a mutable default), and
    # parse_dtb() appends each DTB's /memreserve/ entries to it: emptied around each parse,
    # or every DTB read in one process would carry the entries of those read before it.
    shared = fdt.FDT.__init__.__defaults__[1]
    shared.clear()
    try:
        tree = fdt.parse_dtb(data)
        tree.entries = list(tree.entries)
        return _wrap(tree, source)
    except BoardError:
        raise
    except RecursionError:
        raise BoardError(f"{source}: malformed DTB: nodes nested too deeply") from None
    except Exception as e:  # noqa: BLE001 - fdt raises anything on garbage
        raise BoardError(f"{source}: malformed DTB: {e.__class__.__name__}: {e}"[:300]) from None
    finally:
        shared.clear()


def parse_dts(text: str, source: str = "<dts>") -> DeviceTree:
    """mteemu's own DTS reader (no dtc): the subset it can read right, or a one-line refusal."""
    import fdt

    normalized = normalize_dts(text, source)
    if re.search(r"&[A-Za-z_]", normalized) and re.search(r"(?m)^\s*(linux,)?phandle\s*=", normalized):
        # fdt numbers labelled nodes itself, and those numbers collide with explicit ones.
        raise BoardError(f"{source}: labels referenced with '&' beside explicit 'phandle' properties: mteemu's "
                         "own DTS reader cannot number them right; install dtc (device-tree-compiler)")
    try:
        return _wrap(fdt.parse_dts(normalized), source)
    except BoardError:
        raise
    except Exception as e:  # noqa: BLE001 - fdt raises anything on garbage
        raise BoardError(f"{source}: cannot parse DTS: {e.__class__.__name__}: {e}"[:300]) from None


def _raw(prop) -> bytes:  # noqa: ANN001 - an fdt property
    """The bytes behind fdt's guess of a property's type."""
    import fdt

    if isinstance(prop, fdt.PropWords):
        return b"".join((w & 0xFFFF_FFFF).to_bytes(4, "big") for w in prop.data)
    if isinstance(prop, fdt.PropStrings):
        return b"".join(s.encode("utf-8", "surrogateescape") + b"\0" for s in prop.data)
    if isinstance(prop, fdt.PropBytes):
        return bytes(prop.data)
    return b""


def _wrap(tree, source: str) -> DeviceTree:  # noqa: ANN001 - an fdt.FDT
    def build(fnode, parent: Optional[Node], depth: int) -> Node:  # noqa: ANN001 - an fdt node
        if depth > 64:
            raise BoardError(f"{source}: nodes nested more than 64 deep")
        name = fnode.name if parent is not None else "/"
        path = "/" if parent is None else (parent.path.rstrip("/") + "/" + name)
        props = {}
        for p in fnode.props:
            if p.name.endswith("_with_references"):
                continue                          # fdt's record of the DTS text behind a phandle
            props[p.name] = _raw(p)
        node = Node(path, name, props, parent)
        node.children = [build(c, node, depth + 1) for c in fnode.nodes]
        return node

    dt = DeviceTree(build(tree.root, None, 0), source,
                    memreserve=[(e["address"], e["size"]) for e in getattr(tree, "entries", []) or []])
    for n in dt.walk():
        for key in ("phandle", "linux,phandle"):
            ph = n.u32(key)
            if ph is None or ph in (0, 0xFFFFFFFF):
                continue
            other = dt.phandles.setdefault(ph, n)
            if other is not n:
                raise BoardError(f"{source}: phandle {ph:#x} is given to both {other.path} and {n.path}")
    return dt


# -- DTS: check the syntax, lay it out one statement per line for fdt ---------------------------
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<directive>/dts-v1/|/plugin/|/memreserve/|/include/|/delete-node/|/delete-property/|/omit-if-no-ref/|/bits/)
  | (?P<cpp>\#(?:include|define|if|ifdef|ifndef|endif|else|undef)\b[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<cells><[^<>;]*>)
  | (?P<bytes>\[[0-9a-fA-F\s]*\])
  | (?P<ref>&\{[^}]*\}|&[A-Za-z_][A-Za-z0-9_]*)
  | (?P<label>[A-Za-z_][A-Za-z0-9_]*:)
  | (?P<name>[A-Za-z0-9,._+\-#?@/]+)
  | (?P<punct>[{};=,])
""", re.X | re.S)


_PLAIN_CELLS = re.compile(r"<\s*(?:(?:0[xX][0-9a-fA-F]+|[0-9]+|&[A-Za-z_][A-Za-z0-9_]*)\s*)*>")


def _tokens(text: str, source: str) -> list[tuple[str, str, int]]:
    out = []
    pos = 0
    line = 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise BoardError(f"{source}:{line}: DTS syntax error near {text[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
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
    return _DtsReader(_tokens(text, source), source).read()


class _DtsReader:
    """A recursive-descent reader over the tokens, one method per construct."""

    def __init__(self, toks: list, source: str) -> None:
        self.toks, self.source = toks, source
        self.i = 0
        self.depth = 0
        self.saw_root = False
        self.out: list[str] = []

    def read(self) -> str:
        while self.i < len(self.toks):
            if self.depth == 0:
                self._top_level()
            elif self.toks[self.i][1] == "}":
                self._close_block()
            else:
                self._statement()
        if self.depth != 0:
            raise BoardError(f"{self.source}: DTS syntax error: {self.depth} unclosed '{{' at end of file")
        if not self.saw_root:
            raise BoardError(f"{self.source}: DTS has no root node")
        return "\n".join(self.out) + "\n"

    def expect(self, cond: bool, what: str) -> None:
        if not cond:
            toks, i = self.toks, self.i
            where = toks[i][2] if i < len(toks) else (toks[-1][2] if toks else 1)
            got = repr(toks[i][1]) if i < len(toks) else "end of file"
            raise BoardError(f"{self.source}:{where}: DTS syntax error: expected {what}, got {got}")

    def _at(self, value: str) -> bool:
        return self.i < len(self.toks) and self.toks[self.i][1] == value

    def _needs_dtc(self, what: str) -> BoardError:
        return BoardError(f"{self.source}:{self.toks[self.i][2]}: {what}")

    def _indent(self) -> str:
        return "    " * self.depth

    def _top_level(self) -> None:
        """A directive, or the root node's opening."""
        kind, value, _ = self.toks[self.i]
        if kind == "directive":
            self.expect(value in ("/dts-v1/", "/plugin/", "/memreserve/"), "a supported directive")
            self._directive(value)
            return
        if kind == "ref":
            raise self._needs_dtc(f"'{value} {{ ... }}' outside the root node: mteemu's own DTS reader cannot "
                                  "merge it; install dtc (device-tree-compiler)")
        if kind == "name" and value == "/" and self.saw_root:
            raise self._needs_dtc("a second root block '/ { ... }' (the .dtsi + .dts pattern): mteemu's own DTS "
                                  "reader cannot merge them; install dtc (device-tree-compiler)")
        self.expect(kind == "name" and value == "/", "the root node '/ {'")
        self.i += 1
        self.expect(self._at("{"), "'{'")
        self.out.append("/ {")
        self.depth = 1
        self.i += 1
        self.saw_root = True

    def _directive(self, value: str) -> None:
        toks = self.toks
        if value == "/memreserve/":
            self.i += 1
            self.expect(self.i + 1 < len(toks) and toks[self.i][0] == "name" and toks[self.i + 1][0] == "name",
                        "two numbers after /memreserve/")
            self.out.append(f"/memreserve/ {toks[self.i][1]} {toks[self.i + 1][1]};")
            self.i += 2
        else:
            self.out.append(value + ";")
            self.i += 1
        self.expect(self._at(";"), "';'")
        self.i += 1

    def _close_block(self) -> None:
        self.i += 1
        self.expect(self._at(";"), "';' after '}'")
        self.i += 1
        self.depth -= 1
        self.out.append(self._indent() + "};")

    def _statement(self) -> None:
        """A node's opening (with its labels), or a property."""
        kind, value, _ = self.toks[self.i]
        labels = []
        while kind == "label":
            labels.append(value)
            self.i += 1
            self.expect(self.i < len(self.toks), "a node or property name")
            kind, value, _ = self.toks[self.i]
        if kind == "directive" and value in ("/delete-node/", "/delete-property/", "/omit-if-no-ref/"):
            raise self._needs_dtc(f"{value} is not supported here; build the DTB with dtc")
        self.expect(kind == "name", "a node or property name")
        self.i += 1
        self.expect(self.i < len(self.toks), "'{', '=' or ';'")
        nxt = self.toks[self.i][1]
        if nxt == "{":
            prefix = (" ".join(labels) + " ") if labels else ""
            self.out.append(self._indent() + prefix + value + " {")
            self.depth += 1
            self.i += 1
            return
        self.expect(not labels, "'{' after a label")
        if nxt == ";":
            self.out.append(self._indent() + value + ";")
            self.i += 1
            return
        self.expect(nxt == "=", "'=', '{' or ';'")
        self.i += 1
        self.out.append(self._indent() + value + " = " + ", ".join(self._values()) + ";")

    def _values(self) -> list[str]:
        """A property's values up to its ';'."""
        toks, values = self.toks, []
        while True:
            if self._at("/bits/"):
                raise self._needs_dtc("/bits/ needs dtc (device-tree-compiler)")
            self.expect(self.i < len(toks) and toks[self.i][0] in ("string", "cells", "bytes", "ref"),
                        "a property value")
            kind, value, _ = toks[self.i]
            if kind == "ref" and value.startswith("&{"):
                raise self._needs_dtc(f"path references ({value}) need dtc (device-tree-compiler)")
            if kind == "cells" and not _PLAIN_CELLS.fullmatch(value):
                raise self._needs_dtc(f"{value!r}: expressions, path references and character literals in "
                                      "cells need dtc (device-tree-compiler)")
            values.append(value)
            self.i += 1
            self.expect(self.i < len(toks) and toks[self.i][1] in (",", ";"), "',' or ';'")
            self.i += 1
            if toks[self.i - 1][1] == ";":
                return values
