"""The A64 encodings mteemu decodes itself, named once (Arm ARM C4, "A64 Instruction Set
Encoding"; the values are each class's fixed bits under its mask). mte_insns.py, interp.py,
cpu.py and tagcheck.py match words against these; _native.c spells the same numbers in C."""
from __future__ import annotations

# Data-processing (2 source): IRG, GMI, SUBP, SUBPS — word & DP2_MASK.
DP2_MASK = 0xFFE0FC00
IRG, GMI, SUBP, SUBPS = 0x9AC01000, 0x9AC01400, 0x9AC00000, 0xBAC00000
IRG_GMI_MASK = 0xFFE0F800                      # IRG and GMI differ in bit 10 only

# Add/subtract (immediate, with tags): ADDG, SUBG — word & ADDSUB_TAG_MASK.
ADDSUB_TAG_MASK = 0xFFC0C000
ADDG, SUBG = 0x91800000, 0xD1800000

# Load/store memory tags: STG, STZG, ST2G, STZ2G, LDG (and the EL1-only LDGM, STGM, STZGM).
TAG_MEM_MASK, TAG_MEM = 0xFF200000, 0xD9200000

# STGP (post-index, signed offset, pre-index): bits 24:23 non-zero (00 is STNP's class).
STGP_MASK, STGP, STGP_INDEX_BITS = 0xFE400000, 0x68000000, 0x01800000

# System instructions with a register operand Xt in bits 4:0 — word & SYS_XT_MASK.
SYS_XT_MASK = 0xFFFFFFE0
DC_ZVA, DC_GVA, DC_GZVA = 0xD50B7420, 0xD50B7460, 0xD50B7480
MSR_TCO, MRS_TCO = 0xD51B42E0, 0xD53B42E0
MRS_DCZID = 0xD53B00E0

# MSR TCO, #imm: the immediate in CRm (bits 11:8).
MSR_IMM_MASK, MSR_TCO_IMM = 0xFFFFF0FF, 0xD503409F
