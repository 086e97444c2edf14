"""The `arm,mte-tag-storage` binding in its three RFC versions, read out of a device tree.

* v1 (the seed, Aug 2023): a root child whose name contains `metadata`, `memory = <&mem>`.
* v2 (Nov 2023): the same, but the name contains `tag-storage`.
* v3 (Jan 2024): a child of `/reserved-memory` with `tagged-memory = <&mem>` and
  `reusable`; the tag memory is also described by a memory node of its own.

(docs/reference/tag-storage-rfc.md §1.) Memory is read as early_init_dt_scan_memory() reads it:
the root children with `device_type = "memory"` whose status is okay, their ranges from
`linux,usable-memory` when present, else `reg`, and ranges of size 0 skipped (the
placeholders a bootloader fills in, `reg = <0 0 0 0>`). Tag-storage nodes with a status
other than okay are ignored, as fdt_scan_reserved_mem() ignores them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from mteemu.board.dt import DeviceTree, Node
from mteemu.errors import BoardError

COMPATIBLE = "arm,mte-tag-storage"


NO_MEMORY = ("no usable memory: no enabled memory node (device_type = \"memory\") has a range of non-zero "
             "size (on real hardware a bootloader fills them in)")


@dataclass
class MemoryNode:
    node: Node
    ranges: list[tuple[int, int]]        # (address, size) of non-zero size: linux,usable-memory, else reg
    numa_node: int = 0
    placeholders: int = 0                # ranges of size 0, skipped as Linux skips them


@dataclass
class TagNode:
    node: Node
    binding: str                         # "v1", "v2", "v3" or "unknown"
    ranges: list[tuple[int, int]]
    block_size: Optional[int]
    tagged_prop: str                     # "memory" (v1/v2) or "tagged-memory" (v3)
    tagged: Optional[Node]               # the node the phandle names (None: missing/not found)
    reusable: bool

    @property
    def range(self) -> Optional[tuple[int, int]]:
        return self.ranges[0] if len(self.ranges) == 1 and self.ranges[0][1] else None


@dataclass
class Layout:
    tree: DeviceTree
    memory: list[MemoryNode] = field(default_factory=list)
    tags: list[TagNode] = field(default_factory=list)
    disabled_memory: list[Node] = field(default_factory=list)    # memory nodes Linux skips (status)
    disabled_tags: list[Node] = field(default_factory=list)      # tag-storage nodes Linux ignores

    @property
    def usable(self) -> bool:
        """Whether Linux would find any memory at all."""
        return any(m.ranges for m in self.memory)

    def reserved(self) -> list[tuple[str, int, int]]:
        """What Linux never gives the page allocator: (what, start, end) of every `no-map`
        /reserved-memory region and every /memreserve/ entry."""
        out = [(f"/memreserve/ entry {i}", a, a + s) for i, (a, s) in enumerate(self.tree.memreserve) if s]
        rm = next((c for c in self.tree.root.children if c.name == "reserved-memory"), None)
        for c in rm.children if rm is not None else []:
            if c.has("no-map") and c.enabled and COMPATIBLE not in c.strings("compatible"):
                out += [(c.path, a, a + s) for a, s in safe_ranges(c, "reg") if s]
        return out

    @property
    def binding(self) -> str:
        """Which version the file uses: v1, v2, v3, "none" (no tag storage) or "mixed"."""
        kinds = {t.binding for t in self.tags}
        if not kinds:
            return "none"
        return kinds.pop() if len(kinds) == 1 else "mixed"

    def memory_node(self, node: Optional[Node]) -> Optional[MemoryNode]:
        for m in self.memory:
            if m.node is node:
                return m
        return None


def _binding_of(node: Node) -> str:
    parent = node.parent
    if parent is not None and parent.depth == 1 and parent.name == "reserved-memory":
        return "v3"
    if node.depth == 1 and "metadata" in node.name:
        return "v1"
    if node.depth == 1 and "tag-storage" in node.name:
        return "v2"
    return "unknown"


def safe_ranges(node: Node, prop: str) -> list[tuple[int, int]]:
    try:
        return node.ranges(prop)
    except BoardError:
        return []       # reported as a finding by the rules (kernel.reg / kernel.tagged-memory)


def usable_prop(n: Node) -> str:
    return "linux,usable-memory" if n.has("linux,usable-memory") else "reg"


def scan(tree: DeviceTree) -> Layout:
    layout = Layout(tree)
    for n in tree.root.children:
        if "memory" in n.strings("device_type"):
            if not n.enabled:
                layout.disabled_memory.append(n)
                continue
            ranges = safe_ranges(n, usable_prop(n))
            layout.memory.append(MemoryNode(n, [r for r in ranges if r[1]], n.u32("numa-node-id") or 0,
                                            placeholders=sum(1 for r in ranges if not r[1])))
    for n in tree.walk():
        if COMPATIBLE not in n.strings("compatible"):
            continue
        if not n.enabled:
            layout.disabled_tags.append(n)
            continue
        binding = _binding_of(n)
        prop = "tagged-memory" if binding == "v3" else "memory"
        layout.tags.append(TagNode(node=n, binding=binding, ranges=safe_ranges(n, "reg"),
                                   block_size=n.u32("block-size"), tagged_prop=prop,
                                   tagged=tree.by_phandle(n.u32(prop)), reusable=n.has("reusable")))
    return layout


def reg_problem(node: Node, prop: str = "reg") -> Optional[str]:
    """Why a reg-like property cannot be used, or None."""
    if not node.has(prop):
        return f"no '{prop}' property"
    try:
        entries = node.ranges(prop)
    except BoardError as e:
        return str(e).split(": ", 1)[-1]
    if len(entries) != 1:
        return f"'{prop}' has {len(entries)} address/size pairs, the binding allows exactly one"
    if entries[0][1] == 0:
        return f"'{prop}' has size 0"
    return None
