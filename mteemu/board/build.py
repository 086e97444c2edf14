"""From a device tree's layout to the Board the machine is built from."""
from __future__ import annotations

from mteemu.board.binding import NO_MEMORY, Layout
from mteemu.board.model import Board, MemRegion, TagRegion, with_tag_carveout
from mteemu.errors import BoardError

PAGE = 4096
MAX_RAM = 1 << 46          # what the alias windows of the checking hook can address


def board_from_layout(layout: Layout, name: str) -> Board:
    """Memory regions from the memory nodes; tag regions where the tag-storage nodes say.
    A board without tag-storage nodes gets a hidden carve-out at the top of each bank."""
    memory = []
    for m in layout.memory:
        for i, (addr, size) in enumerate(m.ranges):
            if not size:
                continue
            base, end = (addr + PAGE - 1) & ~(PAGE - 1), (addr + size) & ~(PAGE - 1)
            if end <= base:
                continue
            if end > MAX_RAM:
                raise BoardError(f"{m.node.path}: memory above {MAX_RAM:#x} is not supported by the emulator")
            memory.append(MemRegion(base=base, size=end - base, numa_node=m.numa_node,
                                    name=m.node.path + (f"[{i}]" if len(m.ranges) > 1 else "")))
    if not memory:
        raise BoardError(f"{layout.tree.source}: {NO_MEMORY}")
    _check_disjoint(memory)
    if not layout.tags:
        # Static MTE: every bank gets its own hidden carve-out, so every byte of RAM the
        # kernel sees has tags (one carve-out for the first bank only left the others
        # untagged, and tag-checked programs failed wherever the allocator used them).
        carved = [with_tag_carveout(name, bank) for bank in memory]
        return Board(name=name, memory=tuple(b.memory[0] for b in carved),
                     tag_regions=tuple(b.tag_regions[0] for b in carved))
    tags = []
    for t in layout.tags:
        span, tagged = t.range, layout.memory_node(t.tagged)
        if span is None or tagged is None or len(tagged.ranges) != 1:
            raise BoardError(f"{t.node.path}: unusable tag storage node (run mteemu validate-dtb)")
        addr, size = tagged.ranges[0]
        region = next((r for r in memory if r.base == addr), None)
        if region is None:
            raise BoardError(f"{t.node.path}: its tagged memory is not a usable memory region")
        tags.append(TagRegion(base=span[0], size=span[1], tagged=region, block_size=t.block_size or PAGE,
                              name=t.node.path))
    return Board(name=name, memory=tuple(memory), tag_regions=tuple(tags))


def _check_disjoint(memory: list[MemRegion]) -> None:
    spans = sorted((r.base, r.end, r.name) for r in memory)
    for (_a0, a1, an), (b0, _b1, bn) in zip(spans, spans[1:]):
        if b0 < a1:
            raise BoardError(f"memory {an} and {bn} overlap")
