/* mteemu's native hot path: the tag check on every access to a mixed-tag page, and the
   MTE instructions Unicorn does not know, executed where Unicorn raises them.

   Unicorn calls `mte_check_access` directly for every load and store that reaches an
   alias window (tagcheck.py: a page whose granules do not all carry the pointer's tag is
   mapped at ALIAS_BASE + (tag << ALIAS_SHIFT) + PA). For the common case — the access
   stays within one 16-byte granule of tagged RAM and the granule's allocation tag equals
   the pointer's logical tag — the check is a nibble compare here, and a store's old bytes
   go to the undo log that makes a later synchronous fault precise; an unaligned access
   over two granules of one page is checked the same way. Everything else (a mismatch,
   an access crossing pages, DC ZVA's byte stores, memory outside the spans this library
   was told about) is handed to the Python hook, unchanged, through
   the function pointer `fallback`: the Python path stays the reference, and this file
   only ever answers "matches" for what it can decide.

   Arm ARM: the check is CheckTag() (D10.7, "Allocation Tag checking"): the access is
   checked against the Allocation Tag of every granule it touches, the tag held for
   granule PA[55:4]; this library covers accesses within one page.

   The instructions (second half of this file): Unicorn raises an undefined-instruction
   exception for every MTE instruction; `mte_on_intr`, the engine's interrupt hook,
   executes IRG, GMI, SUBP(S), ADDG/SUBG, LDG, STG/STZG/ST2G/STZ2G (all addressing
   forms), STGP and DC GVA/GZVA as the Arm ARM pseudocode says (IRG's random tag comes
   from the seeded Python generator through a callback, so both paths draw the same tags), advances PC and lets Unicorn resume — no Python.
   Addresses are translated through a small software TLB filled by the kernel's page
   tables (a Python callback on a miss; flushed whenever the Python side flushes). It
   declines — and hands the exception, untouched, to the Python hook — whatever needs
   the kernel or the Python reference: SVC and every other exception, MSR/MRS TCO (they change the TLB policy), a translation the kernel refuses (a fault), an unaligned tag access
   (an alignment fault), and every tag write while the memory manager guards tag
   storage (a board whose tag storage is reused as memory).

   The library has no Python API: mteemu loads it with ctypes (machine/native.py) and
   Unicorn calls it through uc_hook_add(). It owns no memory of the guest: the RAM and
   the tag storage are the host buffers the Python side already uses, passed by address.
   The undo log is this library's; Python appends to it and reads it back through
   mte_log_append / mte_log_get so that there is one log, in order. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define UC_MEM_READ 16           /* unicorn.h: uc_mem_type */
#define UC_MEM_WRITE 17
#define UC_MEM_FETCH 18
#define EXCP_UDEF 1              /* QEMU's exception number for an undefined instruction */
#define ALIAS_SHIFT 46           /* tagcheck.py */
#define ALIAS_BASE (1ULL << 52)
#define ALIAS_MASK ((1ULL << ALIAS_SHIFT) - 1)
#define MAX_SPANS 16
#define LOG_ENTRIES 256          /* tagcheck._UNDO_LOG: more than one instruction ever makes */
#define LOG_BYTES 64             /* the largest write logged: a DC ZVA block */

typedef void (*hookmem_t)(void *uc, int type, uint64_t address, int size, int64_t value, void *user_data);

struct span {
    uint64_t base, end;          /* tagged RAM [base, end), physical */
    const uint8_t *tags;         /* its tag bytes: granule g's tag is nibble g of tags[] */
    uint8_t *ram;                /* host address of physical address `base` */
};

struct log_entry {
    uint64_t pa;
    uint32_t len;
    uint8_t old[LOG_BYTES];
};

static struct span spans[MAX_SPANS];
static int nspans;
static hookmem_t fallback;
static struct log_entry log_ring[LOG_ENTRIES];
static unsigned log_next, log_count;
static uint64_t fast_hits, slow_calls;   /* for `mteemu bench`'s profile: who did the work */

int mte_set_spans(int n, const uint64_t *bases, const uint64_t *ends, const uint64_t *tags, const uint64_t *rams) {
    if (n < 0 || n > MAX_SPANS)
        return -1;
    for (int i = 0; i < n; i++) {
        spans[i].base = bases[i];
        spans[i].end = ends[i];
        spans[i].tags = (const uint8_t *)(uintptr_t)tags[i];
        spans[i].ram = (uint8_t *)(uintptr_t)rams[i];
    }
    nspans = n;
    return 0;
}

void mte_set_fallback(hookmem_t fn) { fallback = fn; }

void mte_log_append(uint64_t pa, const uint8_t *old, uint32_t len) {
    struct log_entry *e = &log_ring[log_next];
    if (len > LOG_BYTES)
        len = LOG_BYTES;
    e->pa = pa;
    e->len = len;
    memcpy(e->old, old, len);
    log_next = (log_next + 1) % LOG_ENTRIES;
    if (log_count < LOG_ENTRIES)
        log_count++;
}

unsigned mte_log_count(void) { return log_count; }

/* Entry i, oldest first: its physical address and length; its bytes copied to `out`. */
int mte_log_get(unsigned i, uint64_t *pa, uint8_t *out) {
    if (i >= log_count)
        return -1;
    const struct log_entry *e = &log_ring[(log_next + LOG_ENTRIES - log_count + i) % LOG_ENTRIES];
    *pa = e->pa;
    memcpy(out, e->old, e->len);
    return (int)e->len;
}

void mte_log_clear(void) { log_count = 0; }

void mte_stats(uint64_t *out) {
    out[0] = fast_hits;
    out[1] = slow_calls;
}

static const struct span *span_of(uint64_t pa) {
    for (int i = 0; i < nspans; i++)
        if (spans[i].base <= pa && pa < spans[i].end)
            return &spans[i];
    return NULL;
}

/* The memory hook on the alias windows (uc_cb_hookmem_t). */
void mte_check_access(void *uc, int type, uint64_t address, int size, int64_t value, void *user_data) {
    uint64_t off = address - ALIAS_BASE;
    unsigned tag = (unsigned)(off >> ALIAS_SHIFT) & 0xF;
    uint64_t pa = off & ALIAS_MASK;
    int write = type == UC_MEM_WRITE;
    /* Within one page (at most two granules: an unaligned 8- or 16-byte access), and not
       a byte store (DC ZVA zeroes its block with byte stores, which the Python path
       recognises by the instruction). */
    if (size >= 1 && size <= 16 && (size > 1 || !write) && (pa & 0xFFF) + (uint64_t)size <= 0x1000) {
        const struct span *s = span_of(pa);
        if (s != NULL && pa + (uint64_t)size <= s->end) {
            uint64_t g = (pa - s->base) >> 4, last = (pa + (uint64_t)size - 1 - s->base) >> 4;
            int match = 1;
            for (; g <= last; g++)
                match &= ((s->tags[g >> 1] >> ((g & 1) << 2)) & 0xF) == tag;
            if (match) {
                if (write)
                    mte_log_append(pa, s->ram + (pa - s->base), (uint32_t)size);
                fast_hits++;
                return;
            }
        }
    }
    slow_calls++;
    if (fallback != NULL)
        fallback(uc, type, address, size, value, user_data);
}


/* ---- The MTE instructions ------------------------------------------------------------ */

typedef int (*reg_rw_t)(void *uc, int regid, void *value);
typedef int64_t (*translate_t)(uint64_t vpage, int access);   /* pa page | tagged, or -1 */
typedef void (*hookintr_t)(void *uc, uint32_t intno, void *user_data);
typedef void (*tags_changed_t)(uint64_t pfn);
typedef unsigned (*random_tag_t)(unsigned exclude);

struct bank {
    uint64_t base, end;
    uint8_t *host;
};

#define MAX_BANKS 16
#define TLB_BITS 10
#define TLB_SIZE (1u << TLB_BITS)
#define DIRECT_SLOTS 65536       /* pages filled straight to RAM (tagcheck.TagChecker.direct) */

struct tlb_entry {
    uint64_t vpage;              /* untagged virtual page; ~0 when empty */
    uint64_t pa;                 /* physical page */
    int tagged;                  /* mapped Tagged (PROT_MTE) */
};

static struct bank banks[MAX_BANKS];
static int nbanks;
static reg_rw_t reg_read, reg_write;
static translate_t translate;
static hookintr_t intr_fallback;
static tags_changed_t tags_changed;
static random_tag_t random_tag;
static uint64_t dcz_block = 64;  /* DC ZVA/GVA block: DCZID_EL0.BS of Unicorn's core */
static int regs_x[31], reg_sp, reg_pc, reg_nzcv;
static int insns_enabled;        /* off while tag storage is guarded, or when not configured */
static uint16_t gcr_exclude;     /* GCR_EL1.Exclude of the thread on the CPU */
static struct tlb_entry tlb[3][TLB_SIZE];   /* read, write, fetch */
static uint64_t direct_pfn[DIRECT_SLOTS];
static uint32_t direct_gen[DIRECT_SLOTS], generation = 1;
static int direct_overflow;
static uint64_t insns_native, insns_declined;

static uint32_t fill_generation;

void mte_flush_tlb(void) {
    memset(tlb, 0xff, sizeof tlb);
    fill_generation++;           /* and the TLB-fill cache below */
    generation++;                /* forgets every direct page at once */
    direct_overflow = 0;
}

void mte_mark_direct(uint64_t pfn) {
    uint32_t h = (uint32_t)(pfn * 0x9E3779B97F4A7C15ULL >> 48) & (DIRECT_SLOTS - 1);
    for (int probe = 0; probe < 64; probe++, h = (h + 1) & (DIRECT_SLOTS - 1)) {
        if (direct_gen[h] != generation || direct_pfn[h] == pfn) {
            direct_gen[h] = generation;
            direct_pfn[h] = pfn;
            return;
        }
    }
    direct_overflow = 1;         /* then every tag write asks the Python side */
}

static int is_direct(uint64_t pfn) {
    if (direct_overflow)
        return 1;
    uint32_t h = (uint32_t)(pfn * 0x9E3779B97F4A7C15ULL >> 48) & (DIRECT_SLOTS - 1);
    for (int probe = 0; probe < 64; probe++, h = (h + 1) & (DIRECT_SLOTS - 1)) {
        if (direct_gen[h] != generation)
            return 0;
        if (direct_pfn[h] == pfn)
            return 1;
    }
    return 0;
}

int mte_set_banks(int n, const uint64_t *bases, const uint64_t *ends, const uint64_t *hosts) {
    if (n < 0 || n > MAX_BANKS)
        return -1;
    for (int i = 0; i < n; i++) {
        banks[i].base = bases[i];
        banks[i].end = ends[i];
        banks[i].host = (uint8_t *)(uintptr_t)hosts[i];
    }
    nbanks = n;
    return 0;
}

void mte_set_cpu(reg_rw_t rd, reg_rw_t wr, const int *x_ids, int sp, int pc, int nzcv, translate_t tr,
                 hookintr_t fallback_intr, tags_changed_t changed, random_tag_t rnd, uint64_t dcz) {
    random_tag = rnd;
    dcz_block = dcz;
    reg_read = rd;
    reg_write = wr;
    memcpy(regs_x, x_ids, sizeof regs_x);
    reg_sp = sp;
    reg_pc = pc;
    reg_nzcv = nzcv;
    translate = tr;
    intr_fallback = fallback_intr;
    tags_changed = changed;
    mte_flush_tlb();
}

void mte_set_insns(int enabled, unsigned exclude) {
    insns_enabled = enabled;
    gcr_exclude = (uint16_t)exclude;
}

void mte_insn_stats(uint64_t *out) {
    out[0] = insns_native;
    out[1] = insns_declined;
}

static uint8_t *host_of(uint64_t pa) {
    for (int i = 0; i < nbanks; i++)
        if (banks[i].base <= pa && pa < banks[i].end)
            return banks[i].host + (pa - banks[i].base);
    return NULL;
}

/* The physical address of an untagged virtual address, through the software TLB; 0 and
   *ok = 0 when the kernel refuses it (the Python path will raise the fault). */
static uint64_t xlate(uint64_t va, int access, int *tagged, int *ok) {
    uint64_t vpage = va & ~0xFFFULL & ((1ULL << 56) - 1);
    int kind = access - UC_MEM_READ;
    /* Folded index: buffers a power of two apart (4 MiB, as allocators place them)
       would otherwise share every slot and evict each other on each access. */
    uint64_t vpn = vpage >> 12;
    struct tlb_entry *e = &tlb[kind][(vpn ^ (vpn >> TLB_BITS) ^ (vpn >> (2 * TLB_BITS))) & (TLB_SIZE - 1)];
    if (e->vpage != vpage) {
        int64_t r = translate(vpage, access);
        if (r < 0) {
            *ok = 0;
            return 0;
        }
        e->vpage = vpage;
        e->pa = (uint64_t)r & ~0xFFFULL;
        e->tagged = (int)(r & 1);
    }
    *ok = 1;
    *tagged = e->tagged;
    return e->pa | (va & 0xFFF);
}

/* Registers are read from Unicorn once per exception and written back once (a register
   file cache, as Cpu._reg does in Python): index 0-30 X0-X30, 31 SP, 32 NZCV. */
#define R_SP 31
#define R_NZCV 32
static uint64_t rv[33];
static uint64_t rv_loaded, rv_dirty;

static uint64_t reg_get(void *uc, int i) {
    if (!(rv_loaded >> i & 1)) {
        reg_read(uc, i == R_SP ? reg_sp : i == R_NZCV ? reg_nzcv : regs_x[i], &rv[i]);
        rv_loaded |= 1ULL << i;
    }
    return rv[i];
}

static void reg_set(int i, uint64_t v) {
    rv[i] = v;
    rv_loaded |= 1ULL << i;
    rv_dirty |= 1ULL << i;
}

static void regs_write_back(void *uc) {
    for (int i = 0; i < 33; i++)
        if (rv_dirty >> i & 1)
            reg_write(uc, i == R_SP ? reg_sp : i == R_NZCV ? reg_nzcv : regs_x[i], &rv[i]);
    rv_loaded = rv_dirty = 0;
}

/* X<n>; register 31 is SP or XZR, as the instruction's encoding says. */
static uint64_t xr(void *uc, int n, int sp) {
    if (n == 31)
        return sp ? reg_get(uc, R_SP) : 0;
    return reg_get(uc, n);
}

static void xw(void *uc, int n, uint64_t v, int sp) {
    (void)uc;
    if (n == 31) {
        if (sp)
            reg_set(R_SP, v);
        return;
    }
    reg_set(n, v);
}

#define TAG_SHIFT 56
#define TAG_FIELD (0xFULL << TAG_SHIFT)
static unsigned tag_of(uint64_t a) { return (unsigned)(a >> TAG_SHIFT) & 0xF; }
static uint64_t with_tag(uint64_t a, unsigned t) { return (a & ~TAG_FIELD) | ((uint64_t)t << TAG_SHIFT); }
/* Arm ARM SignExtend(): bit bits-1 of v copied into every bit above it. */
static uint64_t sext(uint64_t v, int bits) {
    if (bits >= 64)
        return v;
    return (v >> (bits - 1) & 1) ? v | ~((1ULL << bits) - 1) : v;
}
/* SUBP's operands: the 56-bit address part of a register, sign-extended. */
static int64_t sext56(uint64_t v) { return (int64_t)sext(v & ((1ULL << 56) - 1), 56); }

/* Arm ARM ChooseNonExcludedTag(). */
static unsigned choose_non_excluded_tag(unsigned tag, unsigned offset, unsigned exclude) {
    if ((exclude & 0xFFFF) == 0xFFFF)
        return 0;
    if (offset == 0)
        while ((exclude >> tag) & 1)
            tag = (tag + 1) & 0xF;
    while (offset) {
        offset--;
        tag = (tag + 1) & 0xF;
        while ((exclude >> tag) & 1)
            tag = (tag + 1) & 0xF;
    }
    return tag;
}

/* Give the granules of [pa, pa + len) (in one page) the tag; AArch64.MemTag[] write. */
static void set_tags(uint64_t pa, uint64_t len, unsigned tag) {
    const struct span *s = span_of(pa);
    if (s == NULL)
        return;                  /* not reached: callers decline such writes (store_tags, STGP) */
    uint8_t *tags = (uint8_t *)s->tags;
    for (uint64_t g = (pa - s->base) >> 4, end = (pa + len - s->base) >> 4; g < end; g++) {
        unsigned shift = (unsigned)(g & 1) << 2;
        tags[g >> 1] = (uint8_t)((tags[g >> 1] & ~(0xFu << shift)) | (tag << shift));
    }
    if (is_direct(pa >> 12))
        tags_changed(pa >> 12);  /* a TLB entry that skips checks may now be wrong */
}

static unsigned get_tag(uint64_t pa) {
    const struct span *s = span_of(pa);
    if (s == NULL)
        return 0;
    uint64_t g = (pa - s->base) >> 4;
    return (s->tags[g >> 1] >> ((g & 1) << 2)) & 0xF;
}

/* STG, STZG, ST2G, STZ2G: tag (and zero) `size` bytes at va; 0 to decline. Every page is
   translated before anything is written, so a declined instruction changed nothing. */
static int store_tags(uint64_t va, uint64_t size, unsigned tag, int zero) {
    uint64_t pas[2], lens[2];
    int tagged[2], parts = 0, ok;
    /* Counted, not compared with va + size: a block at the top of the address space
       would wrap to 0 and tag nothing (found by the differential test). */
    for (uint64_t pos = va, left = size; left > 0; parts++) {
        uint64_t n = 0x1000 - (pos & 0xFFF);
        if (n > left)
            n = left;
        if (parts == 2)
            return 0;
        pas[parts] = xlate(pos, UC_MEM_WRITE, &tagged[parts], &ok);
        if (!ok || (zero && host_of(pas[parts]) == NULL) || (tagged[parts] && span_of(pas[parts]) == NULL))
            return 0;            /* the Python path faults, or reports tags without storage */
        lens[parts] = n;
        pos += n;
        left -= n;
    }
    for (int i = 0; i < parts; i++) {
        if (zero)
            memset(host_of(pas[i]), 0, lens[i]);
        if (tagged[i])
            set_tags(pas[i], lens[i], tag);
    }
    return 1;
}

/* One MTE instruction; 1 when done (PC not yet advanced), 0 to decline. */
static int execute(void *uc, uint32_t w) {
    int rd = w & 31, rn = (w >> 5) & 31, rm = (w >> 16) & 31;
    uint32_t top = w & 0xFFE0FC00;
    /* Arm ARM C6.2 IRG: exclude = GCR_EL1.Exclude OR Xm<15:0>; rtag =
       ChooseRandomNonExcludedTag(exclude) (the seeded generator); Xd = Xn with that tag. */
    if (top == 0x9AC01000) {                                   /* IRG Xd|SP, Xn|SP, Xm */
        unsigned exclude = gcr_exclude | (unsigned)(xr(uc, rm, 0) & 0xFFFF);
        xw(uc, rd, with_tag(xr(uc, rn, 1), random_tag(exclude) & 0xF), 1);
        return 1;
    }
    /* GMI: Xd = Xm OR (1 << AArch64.AllocationTagFromAddress(Xn)). */
    if (top == 0x9AC01400) {                                   /* GMI Xd, Xn|SP, Xm */
        xw(uc, rd, xr(uc, rm, 0) | (1ULL << tag_of(xr(uc, rn, 1))), 0);
        return 1;
    }
    /* SUBP(S): SignExtend(Xn<55:0>) - SignExtend(Xm<55:0>); SUBPS sets NZCV as SUBS does. */
    if (top == 0x9AC00000 || top == 0xBAC00000) {              /* SUBP(S) Xd, Xn|SP, Xm|SP */
        int64_t a = sext56(xr(uc, rn, 1)), b = sext56(xr(uc, rm, 1));
        uint64_t ua = (uint64_t)a, ub = (uint64_t)b, result = ua - ub;
        xw(uc, rd, result, 0);
        if (top == 0xBAC00000) {
            uint64_t n = result >> 63, z = result == 0, c = ua >= ub, v = (((ua ^ ub) & (ua ^ result)) >> 63) & 1;
            reg_set(R_NZCV, n << 31 | z << 30 | c << 29 | v << 28);
        }
        return 1;
    }
    /* ADDG/SUBG: Xn +/- uimm6 * 16, tag = ChooseNonExcludedTag(tag(Xn), uimm4, GCR_EL1.Exclude). */
    if ((w & 0xFFC0C000) == 0x91800000 || (w & 0xFFC0C000) == 0xD1800000) {   /* ADDG / SUBG */
        uint64_t base = xr(uc, rn, 1), delta = (uint64_t)((w >> 16) & 0x3F) * 16;
        uint64_t addr = (w & 0x40000000) ? base - delta : base + delta;
        xw(uc, rd, with_tag(addr, choose_non_excluded_tag(tag_of(base), (w >> 10) & 0xF, gcr_exclude)), 1);
        return 1;
    }
    /* LDG: Xt's tag = AArch64.MemTag[Xn + simm9 * 16] (granule aligned). STG/STZG/ST2G/STZ2G:
       AArch64.MemTag[address] = tag(Xt) for 1 or 2 granules, zeroing the data for the Z
       forms; the address must be 16-byte aligned (else an Alignment fault); post-index
       uses the old base, pre-index and post-index write the new one back. */
    if ((w & 0xFF200000) == 0xD9200000) {                      /* LDG, STG, STZG, ST2G, STZ2G */
        unsigned opc = (w >> 22) & 3, op2 = (w >> 10) & 3;
        int64_t imm = (int64_t)sext((w >> 12) & 0x1FF, 9) * 16;
        int rt = w & 31;
        if (op2 == 0 && opc != 1)
            return 0;                                          /* STZGM / STGM / LDGM: EL1 only */
        uint64_t base = xr(uc, rn, 1);
        if (opc == 1 && op2 == 0) {                            /* LDG Xt, [Xn|SP, #simm] */
            int tagged, ok;
            uint64_t pa = xlate((base + (uint64_t)imm) & ~15ULL, UC_MEM_READ, &tagged, &ok);
            if (!ok)
                return 0;
            xw(uc, rt, with_tag(xr(uc, rt, 0), tagged ? get_tag(pa) : 0), 0);
            return 1;
        }
        uint64_t addr = op2 == 1 ? base : base + (uint64_t)imm;    /* post-index: the old base */
        if (addr & 15)
            return 0;                                          /* alignment fault: Python raises it */
        if (!store_tags(addr, opc >= 2 ? 32 : 16, tag_of(xr(uc, rt, 1)), opc == 1 || opc == 3))
            return 0;
        if (op2 != 2)
            xw(uc, rn, base + (uint64_t)imm, 1);
        return 1;
    }
    /* STGP: Mem[address, 16] = Xt2:Xt1 (unchecked) and AArch64.MemTag[address] = tag(address). */
    if ((w & 0xFE400000) == 0x68000000 && (w & 0x01800000)) { /* STGP Xt1, Xt2, [Xn|SP, #imm] */
        unsigned mode = (w >> 23) & 3;
        int64_t imm = (int64_t)sext((w >> 15) & 0x7F, 7) * 16;
        int rt = w & 31, rt2 = (w >> 10) & 31;
        uint64_t base = xr(uc, rn, 1), addr = mode == 1 ? base : base + (uint64_t)imm;
        int tagged, ok;
        if (addr & 15)
            return 0;
        uint64_t pa = xlate(addr, UC_MEM_WRITE, &tagged, &ok);
        uint8_t *host = ok ? host_of(pa) : NULL;
        if (host == NULL || (tagged && span_of(pa) == NULL))
            return 0;
        uint64_t data[2] = {xr(uc, rt, 0), xr(uc, rt2, 0)};
        memcpy(host, data, 16);
        if (tagged)
            set_tags(pa, 16, tag_of(addr));
        if (mode != 2)
            xw(uc, rn, base + (uint64_t)imm, 1);
        return 1;
    }
    /* DC GVA/GZVA: the tags (and for GZVA the data) of the DCZID_EL0-sized block holding Xt. */
    if ((w & 0xFFFFFFE0) == 0xD50B7460 || (w & 0xFFFFFFE0) == 0xD50B7480) {   /* DC GVA / DC GZVA, Xt */
        uint64_t addr = xr(uc, rd, 0);
        return store_tags(addr & ~(dcz_block - 1), dcz_block, tag_of(addr), (w & 0xFFFFFFE0) == 0xD50B7480);
    }
    return 0;                    /* MSR/MRS TCO, or no MTE instruction at all */
}

/* ---- Run-ahead: the plain instructions between MTE instructions ----------------------
   A tagging loop (`st2g; add; cmp; b.ne`) would leave the JIT once per MTE instruction.
   After one, the instructions that follow are run here while each is an MTE instruction
   or one of a few register-only plain ones (interp.py's set, the same Arm ARM pseudocode:
   ADD/SUB immediate and shifted register, logical shifted register, B, B.cond, CBZ/CBNZ,
   TBZ/TBNZ, MRS DCZID_EL0, NOP); the first other instruction goes back to Unicorn. No
   memory access is interpreted, so no tag check or fault can be missed. */
#define RUN_AHEAD 4096           /* cpu.RUN_AHEAD */

static int condition_holds(unsigned cond, uint64_t nzcv) {       /* ConditionHolds() */
    unsigned n = nzcv >> 31 & 1, z = nzcv >> 30 & 1, c = nzcv >> 29 & 1, v = nzcv >> 28 & 1;
    int r;
    switch (cond >> 1) {
    case 0: r = z; break;
    case 1: r = c; break;
    case 2: r = n; break;
    case 3: r = v; break;
    case 4: r = c && !z; break;
    case 5: r = n == v; break;
    case 6: r = n == v && !z; break;
    default: r = 1;
    }
    return (cond & 1) && cond != 0xF ? !r : r;
}

/* AddWithCarry() and the write of Rd (31: SP for the plain immediate form, else XZR). */
static void finish_add(void *uc, int rd, uint64_t a, uint64_t b, unsigned carry, int width, int setflags, int sp) {
    uint64_t mask = width == 64 ? ~0ULL : 0xFFFFFFFFULL;
    a &= mask;
    b &= mask;
    uint64_t result = (a + b + carry) & mask;
    if (setflags) {
        uint64_t n = result >> (width - 1) & 1, z = result == 0;
        uint64_t c = width == 64 ? (result < a || (carry && result == a)) : ((a + b + carry) >> 32) & 1;
        uint64_t sa = sext(a, width), sb = sext(b, width);
        uint64_t v = ((~(sa ^ sb) & (sa ^ sext(result, width))) >> 63) & 1;
        reg_set(R_NZCV, n << 31 | z << 30 | c << 29 | v << 28);
        xw(uc, rd, result, 0);
    } else {
        xw(uc, rd, result, sp);
    }
}

static uint64_t shifted(uint64_t value, unsigned kind, unsigned amount, int width) {     /* ShiftReg() */
    uint64_t mask = width == 64 ? ~0ULL : 0xFFFFFFFFULL;
    value &= mask;
    if (amount == 0)
        return value;
    switch (kind) {
    case 0: return (value << amount) & mask;
    case 1: return value >> amount;
    case 2: return (uint64_t)((int64_t)sext(value, width) >> amount) & mask;   /* ASR (GCC: arithmetic) */
    default: return ((value >> amount) | (value << (width - amount))) & mask;
    }
}

/* One plain instruction; 1 with *next set, 0 if it is not one of ours. */
static int step(void *uc, uint32_t w, uint64_t pc, uint64_t *next) {
    if ((w & 0x1F800000) == 0x11000000) {                     /* ADD/SUB (immediate) */
        int width = w >> 31 ? 64 : 32;
        unsigned sub = w >> 30 & 1;
        uint64_t imm = (uint64_t)(w >> 10 & 0xFFF) << ((w >> 22 & 1) ? 12 : 0);
        finish_add(uc, w & 31, xr(uc, w >> 5 & 31, 1), sub ? ~imm : imm, sub, width, w >> 29 & 1, 1);
        *next = pc + 4;
        return 1;
    }
    if ((w & 0x1F200000) == 0x0B000000) {                     /* ADD/SUB (shifted register) */
        int width = w >> 31 ? 64 : 32;
        unsigned sub = w >> 30 & 1, kind = w >> 22 & 3, amount = w >> 10 & 0x3F;
        if (kind == 3 || (int)amount >= width)
            return 0;
        uint64_t m = shifted(xr(uc, w >> 16 & 31, 0), kind, amount, width);
        finish_add(uc, w & 31, xr(uc, w >> 5 & 31, 0), sub ? ~m : m, sub, width, w >> 29 & 1, 0);
        *next = pc + 4;
        return 1;
    }
    if ((w & 0x1F000000) == 0x0A000000) {                     /* logical (shifted register) */
        int width = w >> 31 ? 64 : 32;
        if (!(w >> 31) && (w >> 15 & 1))
            return 0;                                          /* 32-bit with imm6 >= 32: reserved */
        uint64_t mask = width == 64 ? ~0ULL : 0xFFFFFFFFULL;
        uint64_t a = xr(uc, w >> 5 & 31, 0) & mask;
        uint64_t m = shifted(xr(uc, w >> 16 & 31, 0), w >> 22 & 3, w >> 10 & 0x3F, width);
        if (w >> 21 & 1)
            m = ~m & mask;
        unsigned opc = w >> 29 & 3;
        uint64_t r = opc == 1 ? (a | m) : opc == 2 ? (a ^ m) : (a & m);
        if (opc == 3)
            reg_set(R_NZCV, (r >> (width - 1) & 1) << 31 | (uint64_t)(r == 0) << 30);
        xw(uc, w & 31, r, 0);
        *next = pc + 4;
        return 1;
    }
    if ((w & 0xFF000010) == 0x54000000) {                     /* B.cond */
        *next = condition_holds(w & 0xF, reg_get(uc, R_NZCV)) ? pc + sext(w >> 5 & 0x7FFFF, 19) * 4 : pc + 4;
        return 1;
    }
    if ((w & 0xFC000000) == 0x14000000) {                     /* B */
        *next = pc + sext(w & 0x3FFFFFF, 26) * 4;
        return 1;
    }
    if ((w & 0x7E000000) == 0x34000000) {                     /* CBZ / CBNZ */
        uint64_t v = xr(uc, w & 31, 0) & (w >> 31 ? ~0ULL : 0xFFFFFFFFULL);
        *next = (v == 0) != (int)(w >> 24 & 1) ? pc + sext(w >> 5 & 0x7FFFF, 19) * 4 : pc + 4;
        return 1;
    }
    if ((w & 0x7E000000) == 0x36000000) {                     /* TBZ / TBNZ */
        unsigned bit = (w >> 31) << 5 | (w >> 19 & 31);
        *next = (xr(uc, w & 31, 0) >> bit & 1) == (w >> 24 & 1) ? pc + sext(w >> 5 & 0x3FFF, 14) * 4 : pc + 4;
        return 1;
    }
    if ((w & 0xFFFFFFE0) == 0xD53B00E0) {                     /* MRS Xt, DCZID_EL0 */
        unsigned bs = 0;
        while ((4ULL << bs) < dcz_block)
            bs++;
        xw(uc, w & 31, bs, 0);
        *next = pc + 4;
        return 1;
    }
    if (w == 0xD503201F) {                                     /* NOP */
        *next = pc + 4;
        return 1;
    }
    return 0;
}

static int fetch(uint64_t pc, uint32_t *word) {
    int tagged, ok;
    if (pc & 3)
        return 0;
    uint64_t pa = xlate(pc, UC_MEM_FETCH, &tagged, &ok);
    const uint8_t *code = ok && !(pc >> 56) ? host_of(pa) : NULL;
    if (code == NULL)
        return 0;
    memcpy(word, code, 4);
    return 1;
}

/* The engine's interrupt hook (uc_cb_hookintr_t). */
void mte_on_intr(void *uc, uint32_t intno, void *user_data) {
    if (intno == EXCP_UDEF && insns_enabled) {
        uint64_t pc = 0;
        uint32_t word;
        reg_read(uc, reg_pc, &pc);
        rv_loaded = rv_dirty = 0;
        if (fetch(pc, &word) && execute(uc, word)) {
            insns_native++;
            pc += 4;
            for (int n = 0; n < RUN_AHEAD && fetch(pc, &word); n++) {
                uint64_t next;
                if (execute(uc, word)) {
                    insns_native++;
                    pc += 4;
                } else if (step(uc, word, pc, &next)) {
                    pc = next;
                } else {
                    break;
                }
            }
            regs_write_back(uc);
            reg_write(uc, reg_pc, &pc);
            return;
        }
        rv_loaded = rv_dirty = 0;      /* declined: nothing was changed */
        insns_declined++;
    }
    intr_fallback(uc, intno, user_data);
}

/* ---- TLB refills ------------------------------------------------------------------------
   Unicorn's TLB holds 256 pages; a bigger working set (or sixteen tags of one page) refills
   the same translations over and over. Every fill the Python hook (Cpu._on_fill) accepted
   stays valid until the next flush, so this cache answers repeats in C and hands only
   first fills (and refusals) to Python. uc_cb_tlbevent_t / struct uc_tlb_entry, unicorn.h. */

struct uc_tlb_entry_abi {
    uint64_t paddr;
    uint32_t perms;
};
typedef _Bool (*tlbfill_t)(void *uc, uint64_t vaddr, int type, struct uc_tlb_entry_abi *result, void *user_data);

#define FILL_SLOTS 32768         /* an 8 MiB working set is 2048 pages x read/write: room for several */
struct fill_entry {
    uint64_t vaddr;              /* the tagged virtual page */
    uint64_t paddr;
    uint32_t perms;
    uint32_t gen;                /* valid while equal to fill_generation */
    int access;
};

static struct fill_entry fills[FILL_SLOTS];
static tlbfill_t fill_fallback;
static uint64_t fill_hits, fill_misses;

void mte_set_fill_fallback(tlbfill_t fn) { fill_fallback = fn; }

void mte_fill_stats(uint64_t *out) {
    out[0] = fill_hits;
    out[1] = fill_misses;
}

static struct fill_entry *fill_slot(uint64_t vaddr, int access) {
    /* The access type in the low bits of the key: shifted to the top, it fell out of the
       bits the index takes, and a page's read and write entries evicted each other. */
    uint64_t k = ((vaddr >> 12) << 2 | (uint64_t)(access & 3)) * 0x9E3779B97F4A7C15ULL;
    return &fills[(k >> 40) & (FILL_SLOTS - 1)];
}

_Bool mte_on_fill(void *uc, uint64_t vaddr, int type, struct uc_tlb_entry_abi *result, void *user_data) {
    struct fill_entry *e = fill_slot(vaddr, type);
    if (e->gen == fill_generation && e->vaddr == vaddr && e->access == type) {
        result->paddr = e->paddr;
        result->perms = e->perms;
        fill_hits++;
        return 1;
    }
    fill_misses++;
    _Bool ok = fill_fallback(uc, vaddr, type, result, user_data);
    if (ok) {                    /* what Python accepted holds until the next flush */
        e->vaddr = vaddr;
        e->access = type;
        e->paddr = result->paddr;
        e->perms = result->perms;
        e->gen = fill_generation;
    }
    return ok;
}

/* A CPU closed (Cpu.close): its Python callbacks are about to be freed; no engine that
   could call them runs any more, and the next CPU installs its own before running. */
void mte_detach(void) {
    fallback = NULL;
    fill_fallback = NULL;
    translate = NULL;
    intr_fallback = NULL;
    tags_changed = NULL;
    random_tag = NULL;
}
