/* mteemu's native hot path: the tag check on every access to a mixed-tag page, and the
   MTE instructions Unicorn does not know, executed where Unicorn raises them.

   Unicorn calls `mte_check_access` directly for every load and store that reaches an
   alias window (tagcheck.py: a page whose granules do not all carry the pointer's tag is
   mapped at ALIAS_BASE + (tag << ALIAS_SHIFT) + PA). When every granule the access
   touches (one or two, in one page or across two) carries the pointer's logical tag, the
   check is a nibble compare here, and a store's old bytes go to the undo log that makes a
   later synchronous fault precise; DC ZVA's byte stores are told from STRB by the
   instruction at PC and checked as one store of their block. Everything else (a mismatch,
   memory outside the spans this library was told about, an instruction it cannot fetch)
   is handed to the Python hook, unchanged, through the function pointer `fallback`: the
   Python path stays the reference, and this file only ever answers "matches" for what it
   can decide.

   All state is one CPU's (struct mte_ctx, below): Unicorn hands it to every hook as its
   user_data, and Python passes it to every call.

   Arm ARM: the check is CheckTag() (D10.7, "Allocation Tag checking"): the access is
   checked against the Allocation Tag of every granule it touches, the tag held for
   granule PA[55:4]; this library covers accesses within one page.

   The instructions (second half of this file): Unicorn raises an undefined-instruction
   exception for every MTE instruction; `mte_on_intr`, the engine's interrupt hook,
   executes IRG, GMI, SUBP(S), ADDG/SUBG, LDG, STG/STZG/ST2G/STZ2G (all addressing
   forms), STGP and DC GVA/GZVA as the Arm ARM pseudocode says (IRG's random tag from this
   CPU's seeded SplitMix64, the generator machine/irg.py implements identically, so both
   paths draw the same tags), advances PC and lets Unicorn resume — no Python.
   Addresses are translated through a small software TLB filled by the kernel's page
   tables (a Python callback on a miss; flushed whenever the Python side flushes). It
   declines — and hands the exception, untouched, to the Python hook — whatever needs
   the kernel or the Python reference: SVC and every other exception, MSR/MRS TCO (they change the TLB policy), a translation the kernel refuses (a fault), an unaligned tag access
   (an alignment fault), and every tag write while the memory manager guards tag
   storage (a board whose tag storage is reused as memory).

   TLB refills (end of the file) are answered here when they repeat one since the last
   flush, or when the kernel already translated the page (another tag of it: only the
   placement is decided, as tagcheck.py's place()); a retag forgets its page alone, also
   in Unicorn's own TLB when QEMU's tlb_flush_page() was found (unicorn_tlb.py). And the
   system-call exception: x8 and x0-x5 are read here before the Python kernel runs, x0
   written after it.

   The library has no Python API: mteemu loads it with ctypes (machine/native.py) and
   Unicorn calls it through uc_hook_add(). It owns no memory of the guest: the RAM and
   the tag storage are the host buffers the Python side already uses, passed by address.
   The undo log is this library's; Python appends to it and reads it back through
   mte_log_append / mte_log_get so that there is one log, in order. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TLB_START_ENTRIES 256    /* QEMU's TLB: 1 << CPU_TLB_DYN_DEFAULT_BITS entries at first */
#define TLB_MAX_ENTRIES 65536    /* grown up to this (256 MiB of pages; QEMU allows 1 << 20) */
#define UC_MEM_READ 16           /* unicorn.h: uc_mem_type */
#define UC_MEM_WRITE 17
#define UC_MEM_FETCH 18
#define EXCP_UDEF 1              /* QEMU's exception number for an undefined instruction */
#define EXCP_SWI 2               /* ... and for SVC */
#define SYS_NR 0                 /* struct mte_ctx's syscall[]: x8, x0-x5, result, set */
#define SYS_ARG0 1
#define SYS_RESULT 7
#define SYS_SET 8
#define NR_GETPID 172            /* asm-generic/unistd.h */
#define NR_GETPPID 173
#define NR_GETTID 178
#define FAST_ARMED 0             /* struct mte_ctx's fast[]: see mte_on_intr */
#define FAST_PID 1
#define FAST_PPID 2
#define FAST_TID 3
#define FAST_CALLS 4
#define ALIAS_SHIFT 46           /* tagcheck.py */
#define ALIAS_BASE (1ULL << 52)
#define ALIAS_MASK ((1ULL << ALIAS_SHIFT) - 1)
#define MAX_SPANS 16
#define LOG_ENTRIES 256          /* tagcheck._UNDO_LOG: more than one instruction ever makes */
#define LOG_BYTES 64             /* the largest write logged: a DC ZVA block */
#define SYS_XT_MASK 0xFFFFFFE0u  /* encodings.py: a system instruction's Xt in bits 4:0 */
#define DC_ZVA 0xD50B7420u

struct ah_hist;                          /* _allochist.c */
struct mte_ctx;
static void ah_tag_write(struct mte_ctx *c, void *uc, uint64_t pc, uint64_t va, uint64_t size);

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

typedef int (*reg_rw_t)(void *uc, int regid, void *value);
typedef int64_t (*translate_t)(uint64_t vpage, int access);   /* pa page | tagged, or -1 */
typedef void (*hookintr_t)(void *uc, uint32_t intno, void *user_data);
typedef void (*tags_changed_t)(uint64_t pfn);

struct bank {
    uint64_t base, end;
    uint8_t *host;
};

#define MAX_BANKS 16
#define TLB_BITS 10
#define TLB_SIZE (1u << TLB_BITS)
#define DIRECT_SLOTS 65536       /* pages filled straight to RAM (tagcheck.TagChecker.direct) */
#define DIRECT_VAS 4             /* tagged virtual pages remembered per such page */
typedef void (*tlb_flush_page_t)(void *cpu, uint64_t addr);
typedef void (*tlb_flush_all_t)(void *uc);      /* tcg_flush_softmmu_tlb(): tlb_flush(uc->cpu) */

struct tlb_entry {
    uint64_t vpage;              /* untagged virtual page; ~0 when empty */
    uint64_t pa;                 /* physical page */
    int tagged;                  /* mapped Tagged (PROT_MTE) */
};

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
    uint32_t pgen;               /* ... and while its physical page's generation is this */
};

/* The kernel's answer for an untagged virtual page (Cpu._on_fill tells it through
   mte_note_page): what a fill of the same page under another tag needs, so that only the
   placement (straight to RAM, or through a tag's alias window) is decided, here. */
#define PAGE_SLOTS 16384
struct page_entry {
    uint64_t vpage;
    uint64_t pa;
    uint32_t perms;
    uint32_t gen;                /* valid while equal to fill_generation */
    int access, tagged;
};

#define PAGE_GEN_SLOTS 65536     /* per physical page: bumped when its placement may change */
#define ALIAS_SLOTS 65536        /* alias page -> the tagged virtual page that filled it */
struct alias_entry {
    uint64_t alias, va;
    uint32_t gen;
};

/* Everything this library knows of one CPU: Unicorn hands it back to each hook as the
   `user_data` given to uc_hook_add(), and Python passes it to every call. A CPU owns its
   context (mte_new / mte_free), so two CPUs in one process never share a TLB, a log or a
   callback (before, the statics made a second CPU take over the first). */
struct mte_ctx {
    struct span spans[MAX_SPANS];
    int nspans;
    hookmem_t fallback;
    struct log_entry log_ring[LOG_ENTRIES];
    unsigned log_next, log_count;
    uint64_t fast_hits, slow_calls;          /* for --stats: who did the work */
    struct bank banks[MAX_BANKS];
    int nbanks;
    reg_rw_t reg_read, reg_write;
    translate_t translate;
    hookintr_t intr_fallback;
    tags_changed_t tags_changed;
    uint64_t irg_state;                      /* IRG's generator (mte_random_tag) */
    uint64_t syscall[9];                     /* the SVC being handled: SYS_NR ... SYS_SET */
    uint64_t fast[5];                        /* calls answered here: FAST_ARMED ... FAST_CALLS */
    uint64_t dcz_block;                      /* DC ZVA/GVA block: DCZID_EL0.BS of Unicorn's core */
    int regs_x[31], reg_sp, reg_pc, reg_nzcv;
    int insns_enabled;                       /* off while tag storage is guarded, or when not configured */
    uint16_t gcr_exclude;                    /* GCR_EL1.Exclude of the thread on the CPU */
    struct tlb_entry tlb[3][TLB_SIZE];       /* read, write, fetch */
    uint64_t direct_pfn[DIRECT_SLOTS];
    uint32_t direct_gen[DIRECT_SLOTS], generation;
    uint64_t direct_va[DIRECT_SLOTS][DIRECT_VAS];    /* the tagged pages filled straight to it */
    uint8_t direct_nva[DIRECT_SLOTS];                /* how many; DIRECT_VAS + 1: more than that */
    int direct_overflow;
    tlb_flush_page_t unicorn_flush_page;     /* QEMU's tlb_flush_page(), when found (cpu.py) */
    void *unicorn_cpu;                       /* its CPUState */
    tlb_flush_all_t unicorn_flush_all;       /* the whole-TLB flush that lets QEMU's TLB grow */
    uint8_t *skip_sync;                      /* the engine's skip_sync_pc_on_exit (mte_set_skip_sync) */
    uint64_t fills_since_flush, tlb_guess, tlb_grows;
    uint64_t insns_native, insns_declined;
    uint64_t rv[33];                         /* the register file cache (reg_get) */
    uint64_t rv_loaded, rv_dirty;
    struct fill_entry fills[FILL_SLOTS];
    uint32_t fill_generation;
    tlbfill_t fill_fallback;
    uint64_t fill_hits, fill_misses;
    uint64_t kind_pc;                        /* store_is_dc_zva()'s last answer */
    uint32_t kind_gen;
    int kind_zva;
    uint64_t zva_pc, zva_block;              /* the DC ZVA block checked and logged last */
    struct page_entry pages[PAGE_SLOTS];
    uint32_t page_gen[PAGE_GEN_SLOTS];
    struct alias_entry aliases[ALIAS_SLOTS];
    int checking;                            /* tag checks on for the thread (MteState.checking) */
    uint64_t page_flushes;
    struct ah_hist *ah;                      /* the allocation history of the thread on the CPU */
    uint32_t ah_tid;
    uint64_t tw_va, tw_size;                 /* the tags the instruction just run wrote (tagged memory) */
};

struct mte_ctx *mte_new(void) {
    struct mte_ctx *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->dcz_block = 64;
    c->generation = 1;
    c->kind_pc = c->zva_pc = ~0ULL;
    memset(c->tlb, 0xff, sizeof c->tlb);
    return c;
}

void mte_free(struct mte_ctx *c) { free(c); }


int mte_set_spans(struct mte_ctx *c, int n, const uint64_t *bases, const uint64_t *ends, const uint64_t *tags, const uint64_t *rams) {
    if (n < 0 || n > MAX_SPANS)
        return -1;
    for (int i = 0; i < n; i++) {
        c->spans[i].base = bases[i];
        c->spans[i].end = ends[i];
        c->spans[i].tags = (const uint8_t *)(uintptr_t)tags[i];
        c->spans[i].ram = (uint8_t *)(uintptr_t)rams[i];
    }
    c->nspans = n;
    return 0;
}

void mte_set_fallback(struct mte_ctx *c, hookmem_t fn) { c->fallback = fn; }

void mte_log_append(struct mte_ctx *c, uint64_t pa, const uint8_t *old, uint32_t len) {
    struct log_entry *e = &c->log_ring[c->log_next];
    if (len > LOG_BYTES)
        len = LOG_BYTES;
    e->pa = pa;
    e->len = len;
    memcpy(e->old, old, len);
    c->log_next = (c->log_next + 1) % LOG_ENTRIES;
    if (c->log_count < LOG_ENTRIES)
        c->log_count++;
}

unsigned mte_log_count(struct mte_ctx *c) { return c->log_count; }

/* Entry i, oldest first: its physical address and length; its bytes copied to `out`. */
int mte_log_get(struct mte_ctx *c, unsigned i, uint64_t *pa, uint8_t *out) {
    if (i >= c->log_count)
        return -1;
    const struct log_entry *e = &c->log_ring[(c->log_next + LOG_ENTRIES - c->log_count + i) % LOG_ENTRIES];
    *pa = e->pa;
    memcpy(out, e->old, e->len);
    return (int)e->len;
}

void mte_log_clear(struct mte_ctx *c) { c->log_count = 0; }

void mte_stats(struct mte_ctx *c, uint64_t *out) {
    out[0] = c->fast_hits;
    out[1] = c->slow_calls;
}

static const struct span *span_of(struct mte_ctx *c, uint64_t pa) {
    for (int i = 0; i < c->nspans; i++)
        if (c->spans[i].base <= pa && pa < c->spans[i].end)
            return &c->spans[i];
    return NULL;
}

static int fetch(struct mte_ctx *c, uint64_t pc, uint32_t *word);
int mte_flush_page(struct mte_ctx *c, uint64_t pfn);
static uint64_t xlate(struct mte_ctx *c, uint64_t va, int access, int *tagged, int *ok);
uint64_t mte_alias_va(struct mte_ctx *c, uint64_t alias);

/* Whether every granule of [pa, pa + len) lies in tagged RAM and carries the tag. */
static int granules_match(struct mte_ctx *c, uint64_t pa, uint64_t len, unsigned tag, const struct span **span) {
    const struct span *s = span_of(c, pa);
    if (s == NULL || pa + len > s->end)
        return 0;
    *span = s;
    for (uint64_t g = (pa - s->base) >> 4, last = (pa + len - 1 - s->base) >> 4; g <= last; g++)
        if (((s->tags[g >> 1] >> ((g & 1) << 2)) & 0xF) != tag)
            return 0;
    return 1;
}

/* The first address in [pa, pa + len) (one page) whose granule's tag is not `tag`, or
   UINT64_MAX when all match: memory outside tagged RAM has tag 0. A system call's buffer
   checked against its pointer's tag (copy_{to,from}_user under TCF=SYNC) in one call;
   TagStore.mismatch() (tagstore.py) is the reference, and tests/test_native.py keeps
   them equal. */
uint64_t mte_first_mismatch(struct mte_ctx *c, uint64_t pa, uint64_t len, unsigned tag) {
    const struct span *s = span_of(c, pa);
    if (len == 0)
        return UINT64_MAX;
    if (s == NULL)
        return tag == 0 ? UINT64_MAX : pa;
    uint64_t last = (pa + len - 1 - s->base) >> 4, end_g = (s->end - s->base) >> 4;
    if (last >= end_g)
        last = end_g - 1;
    for (uint64_t g = (pa - s->base) >> 4; g <= last; g++)
        if (((s->tags[g >> 1] >> ((g & 1) << 2)) & 0xF) != tag) {
            uint64_t a = s->base + (g << 4);
            return a > pa ? a : pa;
        }
    return UINT64_MAX;
}

/* Whether the byte store being made is DC ZVA's: 1 yes, 0 no (an STRB), -1 when the
   instruction cannot be fetched (Python decides). Cached for the last PC until a flush. */
static int store_is_dc_zva(struct mte_ctx *c, void *uc, uint64_t *pc) {
    *pc = 0;
    c->reg_read(uc, c->reg_pc, pc);
    if (*pc != c->kind_pc || c->kind_gen != c->fill_generation) {
        uint32_t w;
        c->kind_pc = *pc;
        c->kind_gen = c->fill_generation;
        c->kind_zva = fetch(c, *pc, &w) ? (w & SYS_XT_MASK) == DC_ZVA : -1;
    }
    return c->kind_zva;
}

/* A DC ZVA byte store: its whole block must carry the pointer's tag (checked at every
   byte store, as tagcheck.py does), and the block's old bytes are logged once per block
   and PC (tagcheck.py's _zva). 0: Python decides (a mismatch, no tags there, a block
   larger than a log entry). */
static int zva_block_matches(struct mte_ctx *c, uint64_t pc, uint64_t pa, unsigned tag) {
    uint64_t len = c->dcz_block, block = pa & ~(len - 1);
    const struct span *s;
    if (len > LOG_BYTES || (block & 0xFFF) + len > 0x1000 || !granules_match(c, block, len, tag, &s))
        return 0;
    if (pc != c->zva_pc || block != c->zva_block)
        mte_log_append(c, block, s->ram + (block - s->base), (uint32_t)len);
    c->zva_pc = pc;
    c->zva_block = block;
    c->fast_hits++;
    return 1;
}

/* The memory hook on the alias windows (uc_cb_hookmem_t). */
void mte_check_access(void *uc, int type, uint64_t address, int size, int64_t value, void *user_data) {
    struct mte_ctx *c = user_data;
    uint64_t off = address - ALIAS_BASE;
    unsigned tag = (unsigned)(off >> ALIAS_SHIFT) & 0xF;
    uint64_t pa = off & ALIAS_MASK;
    int write = type == UC_MEM_WRITE;
    if (size == 1 && write) {
        /* Unicorn zeroes a DC ZVA block with byte stores: told apart from STRB by the
           instruction at PC. DC ZVA is checked, and logged, as one store of its block
           (tagcheck.py does the same). */
        uint64_t pc;
        int zva = store_is_dc_zva(c, uc, &pc);
        if (zva < 0)
            goto slow;
        if (zva) {
            if (zva_block_matches(c, pc, pa, tag))
                return;
            goto slow;
        }
    }
    /* At most two granules (an unaligned 8- or 16-byte access), in one page or across
       two: the next page's tags are found through the software TLB (tagcheck.py asks the
       kernel the same way: a read translation, so nothing is copied on write). */
    if (size >= 1 && size <= 16) {
        uint64_t first = 0x1000 - (pa & 0xFFF);
        const struct span *s;
        if (first > (uint64_t)size)
            first = (uint64_t)size;
        if (granules_match(c, pa, first, tag, &s)) {
            if ((uint64_t)size > first) {
                uint64_t va = mte_alias_va(c, address & ~0xFFFULL);
                int tagged, ok;
                if (va == ~0ULL)
                    goto slow;
                uint64_t next = xlate(c, va + 0x1000, UC_MEM_READ, &tagged, &ok);
                const struct span *s2;
                if (!ok || (tagged && !granules_match(c, next, (uint64_t)size - first, tag, &s2)))
                    goto slow;
            }
            if (write)
                mte_log_append(c, pa, s->ram + (pa - s->base), (uint32_t)first);
            c->fast_hits++;
            return;
        }
    }
slow:
    c->slow_calls++;
    if (c->fallback != NULL)
        c->fallback(uc, type, address, size, value, user_data);
}


/* ---- The MTE instructions ------------------------------------------------------------ */




void mte_flush_tlb(struct mte_ctx *c) {
    memset(c->tlb, 0xff, sizeof c->tlb);
    c->fill_generation++;           /* and the TLB-fill cache below */
    c->generation++;                /* forgets every direct page at once */
    c->direct_overflow = 0;
    c->zva_pc = ~0ULL;               /* memory may have been written since: log again */
    c->fills_since_flush = 0;        /* Unicorn's TLB was flushed whole too (Cpu.flush_tlb) */
}

/* The page `pfn` is filled straight to RAM for the tagged virtual page `va`. */
void mte_mark_direct(struct mte_ctx *c, uint64_t pfn, uint64_t va) {
    uint32_t h = (uint32_t)(pfn * 0x9E3779B97F4A7C15ULL >> 48) & (DIRECT_SLOTS - 1);
    va &= ~0xFFFULL;
    for (int probe = 0; probe < 64; probe++, h = (h + 1) & (DIRECT_SLOTS - 1)) {
        if (c->direct_gen[h] != c->generation || c->direct_pfn[h] == pfn) {
            if (c->direct_gen[h] != c->generation || c->direct_pfn[h] != pfn)
                c->direct_nva[h] = 0;
            c->direct_gen[h] = c->generation;
            c->direct_pfn[h] = pfn;
            unsigned n = c->direct_nva[h];
            for (unsigned i = 0; i < n && n <= DIRECT_VAS; i++)
                if (c->direct_va[h][i] == va)
                    return;
            if (n < DIRECT_VAS)
                c->direct_va[h][n] = va;
            if (n <= DIRECT_VAS)
                c->direct_nva[h] = (uint8_t)(n + 1);
            return;
        }
    }
    c->direct_overflow = 1;         /* then every tag write asks the Python side */
}

void mte_set_unicorn_flush_page(struct mte_ctx *c, tlb_flush_page_t fn, void *cpu) {
    c->unicorn_flush_page = fn;
    c->unicorn_cpu = cpu;
}

/* The page is no longer filled straight to RAM: a tombstone keeps the probe chains.
   Unicorn's TLB entries for it are dropped one by one when the virtual pages are known
   and QEMU's tlb_flush_page() was found: 1; else 0, and the caller flushes it whole. */
static int unmark_direct(struct mte_ctx *c, uint64_t pfn) {
    uint32_t h = (uint32_t)(pfn * 0x9E3779B97F4A7C15ULL >> 48) & (DIRECT_SLOTS - 1);
    for (int probe = 0; probe < 64; probe++, h = (h + 1) & (DIRECT_SLOTS - 1)) {
        if (c->direct_gen[h] != c->generation)
            return 1;                                 /* not direct: nothing maps it unchecked */
        if (c->direct_pfn[h] == pfn) {
            c->direct_pfn[h] = ~0ULL;
            unsigned n = c->direct_nva[h];
            if (c->unicorn_flush_page == NULL || n > DIRECT_VAS)
                return 0;
            for (unsigned i = 0; i < n; i++)
                c->unicorn_flush_page(c->unicorn_cpu, c->direct_va[h][i]);
            return 1;
        }
    }
    return 0;
}

static int is_direct(struct mte_ctx *c, uint64_t pfn) {
    if (c->direct_overflow)
        return 1;
    uint32_t h = (uint32_t)(pfn * 0x9E3779B97F4A7C15ULL >> 48) & (DIRECT_SLOTS - 1);
    for (int probe = 0; probe < 64; probe++, h = (h + 1) & (DIRECT_SLOTS - 1)) {
        if (c->direct_gen[h] != c->generation)
            return 0;
        if (c->direct_pfn[h] == pfn)
            return 1;
    }
    return 0;
}

int mte_set_banks(struct mte_ctx *c, int n, const uint64_t *bases, const uint64_t *ends, const uint64_t *hosts) {
    if (n < 0 || n > MAX_BANKS)
        return -1;
    for (int i = 0; i < n; i++) {
        c->banks[i].base = bases[i];
        c->banks[i].end = ends[i];
        c->banks[i].host = (uint8_t *)(uintptr_t)hosts[i];
    }
    c->nbanks = n;
    return 0;
}

void mte_set_cpu(struct mte_ctx *c, reg_rw_t rd, reg_rw_t wr, const int *x_ids, int sp, int pc, int nzcv, translate_t tr,
                 hookintr_t fallback_intr, tags_changed_t changed, uint64_t dcz) {
    c->dcz_block = dcz;
    c->reg_read = rd;
    c->reg_write = wr;
    memcpy(c->regs_x, x_ids, sizeof c->regs_x);
    c->reg_sp = sp;
    c->reg_pc = pc;
    c->reg_nzcv = nzcv;
    c->translate = tr;
    c->intr_fallback = fallback_intr;
    c->tags_changed = changed;
    mte_flush_tlb(c);
}

void mte_set_insns(struct mte_ctx *c, int enabled, unsigned exclude, int checking) {
    c->insns_enabled = enabled;
    c->gcr_exclude = (uint16_t)exclude;
    c->checking = checking;
}

void mte_insn_stats(struct mte_ctx *c, uint64_t *out) {
    out[0] = c->insns_native;
    out[1] = c->insns_declined;
}

static uint8_t *host_of(struct mte_ctx *c, uint64_t pa) {
    for (int i = 0; i < c->nbanks; i++)
        if (c->banks[i].base <= pa && pa < c->banks[i].end)
            return c->banks[i].host + (pa - c->banks[i].base);
    return NULL;
}

/* The physical address of an untagged virtual address, through the software TLB; 0 and
   *ok = 0 when the kernel refuses it (the Python path will raise the fault). */
static uint64_t xlate(struct mte_ctx *c, uint64_t va, int access, int *tagged, int *ok) {
    uint64_t vpage = va & ~0xFFFULL & ((1ULL << 56) - 1);
    int kind = access - UC_MEM_READ;
    /* Folded index: buffers a power of two apart (4 MiB, as allocators place them)
       would otherwise share every slot and evict each other on each access. */
    uint64_t vpn = vpage >> 12;
    struct tlb_entry *e = &c->tlb[kind][(vpn ^ (vpn >> TLB_BITS) ^ (vpn >> (2 * TLB_BITS))) & (TLB_SIZE - 1)];
    if (e->vpage != vpage) {
        int64_t r = c->translate(vpage, access);
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

static uint64_t reg_get(struct mte_ctx *c, void *uc, int i) {
    if (!(c->rv_loaded >> i & 1)) {
        c->reg_read(uc, i == R_SP ? c->reg_sp : i == R_NZCV ? c->reg_nzcv : c->regs_x[i], &c->rv[i]);
        c->rv_loaded |= 1ULL << i;
    }
    return c->rv[i];
}

static void reg_set(struct mte_ctx *c, int i, uint64_t v) {
    c->rv[i] = v;
    c->rv_loaded |= 1ULL << i;
    c->rv_dirty |= 1ULL << i;
}

static void regs_write_back(struct mte_ctx *c, void *uc) {
    for (int i = 0; i < 33; i++)
        if (c->rv_dirty >> i & 1)
            c->reg_write(uc, i == R_SP ? c->reg_sp : i == R_NZCV ? c->reg_nzcv : c->regs_x[i], &c->rv[i]);
    c->rv_loaded = c->rv_dirty = 0;
}

/* X<n>; register 31 is SP or XZR, as the instruction's encoding says. */
static uint64_t xr(struct mte_ctx *c, void *uc, int n, int sp) {
    if (n == 31)
        return sp ? reg_get(c, uc, R_SP) : 0;
    return reg_get(c, uc, n);
}

static void xw(struct mte_ctx *c, void *uc, int n, uint64_t v, int sp) {
    (void)uc;
    if (n == 31) {
        if (sp)
            reg_set(c, R_SP, v);
        return;
    }
    reg_set(c, n, v);
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

/* IRG's generator: SplitMix64, as machine/irg.py (the same tags on both paths). */
void mte_seed_irg(struct mte_ctx *c, uint64_t state) { c->irg_state = state; }

unsigned mte_random_tag(struct mte_ctx *c, unsigned exclude) {
    uint64_t z = (c->irg_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    unsigned allowed[16], n = 0;
    for (unsigned t = 0; t < 16; t++)
        if (!((exclude >> t) & 1))
            allowed[n++] = t;
    return n ? allowed[z % n] : 0;
}

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
static void set_tags(struct mte_ctx *c, uint64_t pa, uint64_t len, unsigned tag) {
    const struct span *s = span_of(c, pa);
    if (s == NULL)
        return;                  /* not reached: callers decline such writes (store_tags, STGP) */
    uint8_t *tags = (uint8_t *)s->tags;
    for (uint64_t g = (pa - s->base) >> 4, end = (pa + len - s->base) >> 4; g < end; g++) {
        unsigned shift = (unsigned)(g & 1) << 2;
        tags[g >> 1] = (uint8_t)((tags[g >> 1] & ~(0xFu << shift)) | (tag << shift));
    }
    /* A TLB entry that skips checks may now be wrong: dropped here when Unicorn's
       entries for the page are known, else the Python side flushes everything. */
    if (is_direct(c, pa >> 12) && (c->direct_overflow || !mte_flush_page(c, pa >> 12)))
        c->tags_changed(pa >> 12);
}

static unsigned get_tag(struct mte_ctx *c, uint64_t pa) {
    const struct span *s = span_of(c, pa);
    if (s == NULL)
        return 0;
    uint64_t g = (pa - s->base) >> 4;
    return (s->tags[g >> 1] >> ((g & 1) << 2)) & 0xF;
}

/* What the allocation history hears of a tag store (_allochist.c: ah_tag_write). */
static void note_tags(struct mte_ctx *c, uint64_t va, uint64_t size, unsigned tag) {
    c->tw_va = (va & ((1ULL << 56) - 1)) | ((uint64_t)tag << 56);
    c->tw_size = size;
}

/* STG, STZG, ST2G, STZ2G: tag (and zero) `size` bytes at va; 0 to decline. Every page is
   translated before anything is written, so a declined instruction changed nothing. */
static int store_tags(struct mte_ctx *c, uint64_t va, uint64_t size, unsigned tag, int zero) {
    uint64_t pas[2], lens[2];
    int tagged[2] = {0, 0}, parts = 0, ok;
    /* Counted, not compared with va + size: a block at the top of the address space
       would wrap to 0 and tag nothing (found by the differential test). */
    for (uint64_t pos = va, left = size; left > 0; parts++) {
        uint64_t n = 0x1000 - (pos & 0xFFF);
        if (n > left)
            n = left;
        if (parts == 2)
            return 0;
        pas[parts] = xlate(c, pos, UC_MEM_WRITE, &tagged[parts], &ok);
        if (!ok || (zero && host_of(c, pas[parts]) == NULL) || (tagged[parts] && span_of(c, pas[parts]) == NULL))
            return 0;            /* the Python path faults, or reports tags without storage */
        lens[parts] = n;
        pos += n;
        left -= n;
    }
    for (int i = 0; i < parts; i++) {
        if (zero)
            memset(host_of(c, pas[i]), 0, lens[i]);
        if (tagged[i])
            set_tags(c, pas[i], lens[i], tag);
    }
    if (tagged[0] || (parts == 2 && tagged[1]))
        note_tags(c, va, size, tag);
    return 1;
}

/* One MTE instruction; 1 when done (PC not yet advanced), 0 to decline. */
static int execute(struct mte_ctx *c, void *uc, uint32_t w) {
    int rd = w & 31, rn = (w >> 5) & 31, rm = (w >> 16) & 31;
    uint32_t top = w & 0xFFE0FC00;
    /* Arm ARM C6.2 IRG: exclude = GCR_EL1.Exclude OR Xm<15:0>; rtag =
       ChooseRandomNonExcludedTag(exclude) (the seeded generator); Xd = Xn with that tag. */
    if (top == 0x9AC01000) {                                   /* IRG Xd|SP, Xn|SP, Xm */
        unsigned exclude = c->gcr_exclude | (unsigned)(xr(c, uc, rm, 0) & 0xFFFF);
        xw(c, uc, rd, with_tag(xr(c, uc, rn, 1), mte_random_tag(c, exclude)), 1);
        return 1;
    }
    /* GMI: Xd = Xm OR (1 << AArch64.AllocationTagFromAddress(Xn)). */
    if (top == 0x9AC01400) {                                   /* GMI Xd, Xn|SP, Xm */
        xw(c, uc, rd, xr(c, uc, rm, 0) | (1ULL << tag_of(xr(c, uc, rn, 1))), 0);
        return 1;
    }
    /* SUBP(S): SignExtend(Xn<55:0>) - SignExtend(Xm<55:0>); SUBPS sets NZCV as SUBS does. */
    if (top == 0x9AC00000 || top == 0xBAC00000) {              /* SUBP(S) Xd, Xn|SP, Xm|SP */
        int64_t a = sext56(xr(c, uc, rn, 1)), b = sext56(xr(c, uc, rm, 1));
        uint64_t ua = (uint64_t)a, ub = (uint64_t)b, result = ua - ub;
        xw(c, uc, rd, result, 0);
        if (top == 0xBAC00000) {
            uint64_t n = result >> 63, z = result == 0, cf = ua >= ub, v = (((ua ^ ub) & (ua ^ result)) >> 63) & 1;
            reg_set(c, R_NZCV, n << 31 | z << 30 | cf << 29 | v << 28);
        }
        return 1;
    }
    /* ADDG/SUBG: Xn +/- uimm6 * 16, tag = ChooseNonExcludedTag(tag(Xn), uimm4, GCR_EL1.Exclude). */
    if ((w & 0xFFC0C000) == 0x91800000 || (w & 0xFFC0C000) == 0xD1800000) {   /* ADDG / SUBG */
        uint64_t base = xr(c, uc, rn, 1), delta = (uint64_t)((w >> 16) & 0x3F) * 16;
        uint64_t addr = (w & 0x40000000) ? base - delta : base + delta;
        xw(c, uc, rd, with_tag(addr, choose_non_excluded_tag(tag_of(base), (w >> 10) & 0xF, c->gcr_exclude)), 1);
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
        uint64_t base = xr(c, uc, rn, 1);
        if (opc == 1 && op2 == 0) {                            /* LDG Xt, [Xn|SP, #simm] */
            int tagged, ok;
            uint64_t pa = xlate(c, (base + (uint64_t)imm) & ~15ULL, UC_MEM_READ, &tagged, &ok);
            if (!ok)
                return 0;
            xw(c, uc, rt, with_tag(xr(c, uc, rt, 0), tagged ? get_tag(c, pa) : 0), 0);
            return 1;
        }
        uint64_t addr = op2 == 1 ? base : base + (uint64_t)imm;    /* post-index: the old base */
        if (addr & 15)
            return 0;                                          /* alignment fault: Python raises it */
        if (!store_tags(c, addr, opc >= 2 ? 32 : 16, tag_of(xr(c, uc, rt, 1)), opc == 1 || opc == 3))
            return 0;
        if (op2 != 2)
            xw(c, uc, rn, base + (uint64_t)imm, 1);
        return 1;
    }
    /* STGP: Mem[address, 16] = Xt2:Xt1 (unchecked) and AArch64.MemTag[address] = tag(address). */
    if ((w & 0xFE400000) == 0x68000000 && (w & 0x01800000)) { /* STGP Xt1, Xt2, [Xn|SP, #imm] */
        unsigned mode = (w >> 23) & 3;
        int64_t imm = (int64_t)sext((w >> 15) & 0x7F, 7) * 16;
        int rt = w & 31, rt2 = (w >> 10) & 31;
        uint64_t base = xr(c, uc, rn, 1), addr = mode == 1 ? base : base + (uint64_t)imm;
        int tagged, ok;
        if (addr & 15)
            return 0;
        uint64_t pa = xlate(c, addr, UC_MEM_WRITE, &tagged, &ok);
        uint8_t *host = ok ? host_of(c, pa) : NULL;
        if (host == NULL || (tagged && span_of(c, pa) == NULL))
            return 0;
        uint64_t data[2] = {xr(c, uc, rt, 0), xr(c, uc, rt2, 0)};
        memcpy(host, data, 16);
        if (tagged) {
            set_tags(c, pa, 16, tag_of(addr));
            note_tags(c, addr, 16, tag_of(addr));
        }
        if (mode != 2)
            xw(c, uc, rn, base + (uint64_t)imm, 1);
        return 1;
    }
    /* DC GVA/GZVA: the tags (and for GZVA the data) of the DCZID_EL0-sized block holding Xt. */
    if ((w & 0xFFFFFFE0) == 0xD50B7460 || (w & 0xFFFFFFE0) == 0xD50B7480) {   /* DC GVA / DC GZVA, Xt */
        uint64_t addr = xr(c, uc, rd, 0);
        return store_tags(c, addr & ~(c->dcz_block - 1), c->dcz_block, tag_of(addr), (w & 0xFFFFFFE0) == 0xD50B7480);
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
static void finish_add(struct mte_ctx *c, void *uc, int rd, uint64_t a, uint64_t b, unsigned carry, int width, int setflags, int sp) {
    uint64_t mask = width == 64 ? ~0ULL : 0xFFFFFFFFULL;
    a &= mask;
    b &= mask;
    uint64_t result = (a + b + carry) & mask;
    if (setflags) {
        uint64_t n = result >> (width - 1) & 1, z = result == 0;
        uint64_t cf = width == 64 ? (result < a || (carry && result == a)) : ((a + b + carry) >> 32) & 1;
        uint64_t sa = sext(a, width), sb = sext(b, width);
        uint64_t v = ((~(sa ^ sb) & (sa ^ sext(result, width))) >> 63) & 1;
        reg_set(c, R_NZCV, n << 31 | z << 30 | cf << 29 | v << 28);
        xw(c, uc, rd, result, 0);
    } else {
        xw(c, uc, rd, result, sp);
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
static int step(struct mte_ctx *c, void *uc, uint32_t w, uint64_t pc, uint64_t *next) {
    if ((w & 0x1F800000) == 0x11000000) {                     /* ADD/SUB (immediate) */
        int width = w >> 31 ? 64 : 32;
        unsigned sub = w >> 30 & 1;
        uint64_t imm = (uint64_t)(w >> 10 & 0xFFF) << ((w >> 22 & 1) ? 12 : 0);
        finish_add(c, uc, w & 31, xr(c, uc, w >> 5 & 31, 1), sub ? ~imm : imm, sub, width, w >> 29 & 1, 1);
        *next = pc + 4;
        return 1;
    }
    if ((w & 0x1F200000) == 0x0B000000) {                     /* ADD/SUB (shifted register) */
        int width = w >> 31 ? 64 : 32;
        unsigned sub = w >> 30 & 1, kind = w >> 22 & 3, amount = w >> 10 & 0x3F;
        if (kind == 3 || (int)amount >= width)
            return 0;
        uint64_t m = shifted(xr(c, uc, w >> 16 & 31, 0), kind, amount, width);
        finish_add(c, uc, w & 31, xr(c, uc, w >> 5 & 31, 0), sub ? ~m : m, sub, width, w >> 29 & 1, 0);
        *next = pc + 4;
        return 1;
    }
    if ((w & 0x1F000000) == 0x0A000000) {                     /* logical (shifted register) */
        int width = w >> 31 ? 64 : 32;
        if (!(w >> 31) && (w >> 15 & 1))
            return 0;                                          /* 32-bit with imm6 >= 32: reserved */
        uint64_t mask = width == 64 ? ~0ULL : 0xFFFFFFFFULL;
        uint64_t a = xr(c, uc, w >> 5 & 31, 0) & mask;
        uint64_t m = shifted(xr(c, uc, w >> 16 & 31, 0), w >> 22 & 3, w >> 10 & 0x3F, width);
        if (w >> 21 & 1)
            m = ~m & mask;
        unsigned opc = w >> 29 & 3;
        uint64_t r = opc == 1 ? (a | m) : opc == 2 ? (a ^ m) : (a & m);
        if (opc == 3)
            reg_set(c, R_NZCV, (r >> (width - 1) & 1) << 31 | (uint64_t)(r == 0) << 30);
        xw(c, uc, w & 31, r, 0);
        *next = pc + 4;
        return 1;
    }
    if ((w & 0xFF000010) == 0x54000000) {                     /* B.cond */
        *next = condition_holds(w & 0xF, reg_get(c, uc, R_NZCV)) ? pc + sext(w >> 5 & 0x7FFFF, 19) * 4 : pc + 4;
        return 1;
    }
    if ((w & 0xFC000000) == 0x14000000) {                     /* B */
        *next = pc + sext(w & 0x3FFFFFF, 26) * 4;
        return 1;
    }
    if ((w & 0x7E000000) == 0x34000000) {                     /* CBZ / CBNZ */
        uint64_t v = xr(c, uc, w & 31, 0) & (w >> 31 ? ~0ULL : 0xFFFFFFFFULL);
        *next = (v == 0) != (int)(w >> 24 & 1) ? pc + sext(w >> 5 & 0x7FFFF, 19) * 4 : pc + 4;
        return 1;
    }
    if ((w & 0x7E000000) == 0x36000000) {                     /* TBZ / TBNZ */
        unsigned bit = (w >> 31) << 5 | (w >> 19 & 31);
        *next = (xr(c, uc, w & 31, 0) >> bit & 1) == (w >> 24 & 1) ? pc + sext(w >> 5 & 0x3FFF, 14) * 4 : pc + 4;
        return 1;
    }
    if ((w & 0xFFFFFFE0) == 0xD53B00E0) {                     /* MRS Xt, DCZID_EL0 */
        unsigned bs = 0;
        while ((4ULL << bs) < c->dcz_block)
            bs++;
        xw(c, uc, w & 31, bs, 0);
        *next = pc + 4;
        return 1;
    }
    if (w == 0xD503201F) {                                     /* NOP */
        *next = pc + 4;
        return 1;
    }
    return 0;
}

static int fetch(struct mte_ctx *c, uint64_t pc, uint32_t *word) {
    int tagged, ok;
    if (pc & 3)
        return 0;
    uint64_t pa = xlate(c, pc, UC_MEM_FETCH, &tagged, &ok);
    const uint8_t *code = ok && !(pc >> 56) ? host_of(c, pa) : NULL;
    if (code == NULL)
        return 0;
    memcpy(word, code, 4);
    return 1;
}

/* The engine's interrupt hook (uc_cb_hookintr_t). */
void mte_on_intr(void *uc, uint32_t intno, void *user_data) {
    struct mte_ctx *c = user_data;
    if (intno == EXCP_UDEF && c->insns_enabled) {
        uint64_t pc = 0;
        uint32_t word;
        c->reg_read(uc, c->reg_pc, &pc);
        c->rv_loaded = c->rv_dirty = 0;
        c->tw_size = 0;
        if (fetch(c, pc, &word) && execute(c, uc, word)) {
            c->insns_native++;
            if (c->tw_size)
                ah_tag_write(c, uc, pc, c->tw_va, c->tw_size);
            pc += 4;
            for (int n = 0; n < RUN_AHEAD && fetch(c, pc, &word); n++) {
                uint64_t next;
                c->tw_size = 0;
                if (execute(c, uc, word)) {
                    c->insns_native++;
                    if (c->tw_size)
                        ah_tag_write(c, uc, pc, c->tw_va, c->tw_size);
                    pc += 4;
                } else if (step(c, uc, word, pc, &next)) {
                    pc = next;
                } else {
                    break;
                }
            }
            regs_write_back(c, uc);
            c->reg_write(uc, c->reg_pc, &pc);
            if (c->skip_sync != NULL)
                *c->skip_sync = 0;           /* see mte_set_skip_sync() */
            return;
        }
        c->rv_loaded = c->rv_dirty = 0;      /* declined: nothing was changed */
        c->insns_declined++;
    }
    if (intno == EXCP_SWI) {
        /* A system call: its number and arguments read here, its return value written
           back here (the kernel reads and sets them in `syscall` without a foreign call). */
        c->syscall[SYS_NR] = 0;
        c->reg_read(uc, c->regs_x[8], &c->syscall[SYS_NR]);
        /* getpid, getppid, gettid while the kernel says their answers hold (armed after
           one was made, disarmed whenever anything could change them or make a signal
           or an asynchronous tag fault due at this call's return): answered here. */
        uint64_t nr = c->syscall[SYS_NR];
        if (c->fast[FAST_ARMED] && (nr == NR_GETPID || nr == NR_GETPPID || nr == NR_GETTID)) {
            c->reg_write(uc, c->regs_x[0], &c->fast[nr == NR_GETPID ? FAST_PID : nr == NR_GETPPID ? FAST_PPID : FAST_TID]);
            c->fast[FAST_CALLS]++;
            return;
        }
        for (int i = 0; i < 6; i++)
            c->reg_read(uc, c->regs_x[i], &c->syscall[SYS_ARG0 + i]);
        c->syscall[SYS_SET] = 0;
        c->intr_fallback(uc, intno, user_data);
        if (c->syscall[SYS_SET])
            c->reg_write(uc, c->regs_x[0], &c->syscall[SYS_RESULT]);
        if (c->skip_sync != NULL)
            *c->skip_sync = 0;
        return;
    }
    c->intr_fallback(uc, intno, user_data);
    if (c->skip_sync != NULL)
        *c->skip_sync = 0;
}

/* uc_reg_write(PC) sets the engine's skip_sync_pc_on_exit until the next uc_emu_start, and
   while it is set no memory hook restores the PC of the access it reports: a tag check
   fault after an emulated MTE instruction (or a system call that moved the PC) named the
   previous block's PC. The flag is cleared after each hook that may have written the PC
   (unicorn_exit_checks.py finds it). */
void mte_set_skip_sync(struct mte_ctx *c, uint8_t *flag) { c->skip_sync = flag; }

/* The system-call block: x8, x0-x5, then the result and whether it was set (cpu.py). */
uint64_t *mte_syscall_block(struct mte_ctx *c) { return c->syscall; }

/* The answers C may give itself: armed, pid, ppid, tid, and how many it gave (cpu.py). */
uint64_t *mte_fast_block(struct mte_ctx *c) { return c->fast; }

/* ---- TLB refills ------------------------------------------------------------------------
   Unicorn's TLB holds 256 pages; a bigger working set (or sixteen tags of one page) refills
   the same translations over and over. Every fill the Python hook (Cpu._on_fill) accepted
   stays valid until the next flush, so this cache answers repeats in C and hands only
   first fills (and refusals) to Python. uc_cb_tlbevent_t / struct uc_tlb_entry, unicorn.h. */



void mte_set_fill_fallback(struct mte_ctx *c, tlbfill_t fn) { c->fill_fallback = fn; }

void mte_fill_stats(struct mte_ctx *c, uint64_t *out) {
    out[0] = c->fill_hits;
    out[1] = c->fill_misses;
}

static struct fill_entry *fill_slot(struct mte_ctx *c, uint64_t vaddr, int access) {
    /* The access type in the low bits of the key: shifted to the top, it fell out of the
       bits the index takes, and a page's read and write entries evicted each other. */
    uint64_t k = ((vaddr >> 12) << 2 | (uint64_t)(access & 3)) * 0x9E3779B97F4A7C15ULL;
    return &c->fills[(k >> 40) & (FILL_SLOTS - 1)];
}

static uint32_t *page_gen_of(struct mte_ctx *c, uint64_t pfn) {
    return &c->page_gen[(pfn * 0x9E3779B97F4A7C15ULL >> 40) & (PAGE_GEN_SLOTS - 1)];
}

static uint64_t pfn_of_fill(uint64_t paddr) {
    return (paddr >= ALIAS_BASE ? (paddr - ALIAS_BASE) & ALIAS_MASK : paddr) >> 12;
}

/* One physical page's tags changed so that its placement may have (Cpu._tags_changed):
   its fills and its straight-to-RAM mark go; every other page's stay. */
int mte_flush_page(struct mte_ctx *c, uint64_t pfn) {
    (*page_gen_of(c, pfn))++;
    c->zva_pc = ~0ULL;
    c->page_flushes++;
    return !c->direct_overflow && unmark_direct(c, pfn);
}

static struct page_entry *page_slot(struct mte_ctx *c, uint64_t vpage, int access) {
    uint64_t k = ((vpage >> 12) << 2 | (uint64_t)(access & 3)) * 0x9E3779B97F4A7C15ULL;
    return &c->pages[(k >> 40) & (PAGE_SLOTS - 1)];
}

void mte_note_page(struct mte_ctx *c, uint64_t vaddr, int access, uint64_t pa, uint32_t perms, int tagged) {
    uint64_t vpage = vaddr & ~0xFFFULL & ((1ULL << 56) - 1);
    struct page_entry *e = page_slot(c, vpage, access);
    e->vpage = vpage;
    e->access = access;
    e->pa = pa & ~0xFFFULL;
    e->perms = perms;
    e->tagged = tagged;
    e->gen = c->fill_generation;
}

/* The tag every granule of the page carries, or -1 if they differ (TagStore.uniform():
   memory without tag storage reads as tag 0). */
static int uniform_tag(struct mte_ctx *c, uint64_t pa) {
    const struct span *s = span_of(c, pa);
    if (s == NULL)
        return 0;
    const uint8_t *t = s->tags + ((pa - s->base) >> 5);
    uint8_t first = t[0];
    if ((first >> 4) != (first & 0xF))
        return -1;
    for (int i = 1; i < 128; i++)
        if (t[i] != first)
            return -1;
    return first & 0xF;
}

int mte_note_alias(struct mte_ctx *c, uint64_t alias, uint64_t va) {
    uint32_t h = (uint32_t)((alias >> 12) * 0x9E3779B97F4A7C15ULL >> 48) & (ALIAS_SLOTS - 1);
    for (int probe = 0; probe < 64; probe++, h = (h + 1) & (ALIAS_SLOTS - 1)) {
        struct alias_entry *e = &c->aliases[h];
        if (e->gen != c->fill_generation || e->alias == alias) {
            e->gen = c->fill_generation;
            e->alias = alias;
            e->va = va;
            return 1;
        }
    }
    return 0;                    /* full: Python places this one */
}

/* The tagged virtual page an alias page was filled for, or ~0 (tagcheck.TagChecker.alias_va). */
uint64_t mte_alias_va(struct mte_ctx *c, uint64_t alias) {
    uint32_t h = (uint32_t)((alias >> 12) * 0x9E3779B97F4A7C15ULL >> 48) & (ALIAS_SLOTS - 1);
    for (int probe = 0; probe < 64; probe++, h = (h + 1) & (ALIAS_SLOTS - 1)) {
        const struct alias_entry *e = &c->aliases[h];
        if (e->gen != c->fill_generation)
            return ~0ULL;
        if (e->alias == alias)
            return e->va;
    }
    return ~0ULL;
}

int mte_is_direct(struct mte_ctx *c, uint64_t pfn) { return is_direct(c, pfn); }

/* TagChecker.place() in C, for a page the kernel already translated: straight to RAM
   when the page is unchecked or all of it carries the pointer's tag, else the tag's
   alias window (only once the checking hook is on: Python adds it). */
static int place(struct mte_ctx *c, uint64_t vaddr, const struct page_entry *pe, uint64_t *paddr) {
    unsigned tag = (unsigned)(vaddr >> 56) & 0xF;
    if (!pe->tagged || !c->checking) {
        *paddr = pe->pa;
        return 1;
    }
    if (uniform_tag(c, pe->pa) == (int)tag) {
        mte_mark_direct(c, pe->pa >> 12, vaddr);
        *paddr = pe->pa;
        return 1;
    }
    uint64_t alias = ALIAS_BASE + ((uint64_t)tag << ALIAS_SHIFT) + pe->pa;
    if (c->fallback == NULL || !mte_note_alias(c, alias, vaddr & ~0xFFFULL))
        return 0;
    *paddr = alias;
    return 1;
}

_Bool mte_on_fill(void *uc, uint64_t vaddr, int type, struct uc_tlb_entry_abi *result, void *user_data) {
    struct mte_ctx *c = user_data;
    if (c->unicorn_flush_all != NULL && ++c->fills_since_flush > 4 * c->tlb_guess && c->tlb_guess < TLB_MAX_ENTRIES) {
        /* Refills beyond what the TLB holds: QEMU sizes its TLB only when it is flushed
           (tlb_mmu_resize_locked(): doubled when more than 70 % of it is in use), and
           mteemu seldom flushes, so a working set of more than 256 pages refilled every
           page it touched. Flushing now lets it double (QEMU's callers of tlb_fill()
           look their entry up again: "TLB resize via tlb_fill may have moved the entry"). */
        c->unicorn_flush_all(uc);
        c->tlb_guess *= 2;
        c->fills_since_flush = 0;
        c->tlb_grows++;
    }
    struct fill_entry *e = fill_slot(c, vaddr, type);
    if (e->gen == c->fill_generation && e->vaddr == vaddr && e->access == type
        && e->pgen == *page_gen_of(c, pfn_of_fill(e->paddr))) {
        result->paddr = e->paddr;
        result->perms = e->perms;
        c->fill_hits++;
        return 1;
    }
    uint64_t vpage = vaddr & ~0xFFFULL & ((1ULL << 56) - 1), paddr;
    const struct page_entry *pe = page_slot(c, vpage, type);
    _Bool ok;
    /* A tagged instruction fetch is a translation fault (TBI is for data only: Mm.fault),
       never another tag's fill of the same page. */
    if (!(type == UC_MEM_FETCH && vaddr >> 56) && pe->gen == c->fill_generation && pe->vpage == vpage
        && pe->access == type && place(c, vaddr, pe, &paddr)) {
        result->paddr = paddr;
        result->perms = pe->perms;
        c->fill_hits++;          /* decided here: no Python */
        ok = 1;
    } else {
        c->fill_misses++;
        ok = c->fill_fallback(uc, vaddr, type, result, user_data);
    }
    if (ok) {                    /* holds until the next flush, or its page's */
        e->vaddr = vaddr;
        e->access = type;
        e->paddr = result->paddr;
        e->perms = result->perms;
        e->gen = c->fill_generation;
        e->pgen = *page_gen_of(c, pfn_of_fill(result->paddr));
    }
    return ok;
}

void mte_page_flush_count(struct mte_ctx *c, uint64_t *out) {
    out[0] = c->page_flushes;
    out[1] = c->tlb_grows;
}

void mte_set_unicorn_flush_all(struct mte_ctx *c, tlb_flush_all_t fn) {
    c->unicorn_flush_all = fn;
    c->tlb_guess = TLB_START_ENTRIES;
}

#include "_allochist.c"
