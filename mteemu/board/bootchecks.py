"""The tag-storage checks Linux makes at boot, in one place: the validator's kernel rules
(rules.py) and the kernel model's own boot (kernel/mm/tag_storage.py) both ask here, so a
board gets one verdict. mte_tag_storage_init() and fdt_init_tag_storage() of the RFC
(docs/reference/tag-storage-rfc.md §1): any failure disables tag storage management.
"""
from __future__ import annotations

import math
from typing import Optional

PAGE_SIZE = 4096
PAGEBLOCK = 2 << 20            # pageblock_nr_pages with 4 KiB pages: 2 MiB
MAX_TAG_REGIONS = 32

# (rule id, what the kernel logs) for each check, in the order the kernel makes them.
TOO_MANY = ("kernel.max-regions", "Maximum number of tag storage regions exceeded")
UNALIGNED = ("kernel.pageblock-align", f"Tag storage region not aligned to {PAGEBLOCK // PAGE_SIZE:#x}")
RATIO = ("kernel.size-ratio", "Tag region doesn't cover exactly the corresponding memory region")
NOT_BLOCKS = ("kernel.block-multiple", "Tag storage region size is not a multiple of allocation block size")


def block_size_pages(block_size: int) -> int:
    """get_block_size_pages(): the least common multiple of the page and the block, in pages."""
    return math.lcm(PAGE_SIZE, block_size) // PAGE_SIZE


def unaligned(base: int, size: int) -> bool:
    return bool(base % PAGEBLOCK or size % PAGEBLOCK)


def ratio_wrong(tag_size: int, data_size: int) -> bool:
    return tag_size * 32 != data_size


def not_whole_blocks(size: int, block_size: int) -> bool:
    return bool(size % PAGE_SIZE or (size // PAGE_SIZE) % block_size_pages(block_size))


def region_problem(index: int, base: int, size: int, data_size: int,
                   block_size: int) -> Optional[tuple[str, str]]:
    """The first check region number `index` fails, as (rule id, kernel log line), or None."""
    if index >= MAX_TAG_REGIONS:
        return TOO_MANY
    if unaligned(base, size):
        return UNALIGNED
    if ratio_wrong(size, data_size):
        return RATIO
    if not_whole_blocks(size, block_size):
        return NOT_BLOCKS
    return None
