/* Every EL0 MTE instruction and addressing form, against the Arm ARM pseudocode:
   IRG (with the GCR exclude mask from prctl and the register's mask), GMI,
   ADDG/SUBG (tag offsets skip excluded tags), SUBP/SUBPS, LDG, STG/STZG/ST2G/STZ2G
   (signed offset, pre-index, post-index), STGP (all three forms), DC GVA, DC GZVA,
   MSR/MRS TCO. */
#include "mte.h"
// qemu: same

static uint64_t nzcv(void) {
    uint64_t v;
    __asm__ volatile("mrs %0, nzcv" : "=r"(v));
    return v >> 28;
}

int main(void) {
    /* include only tags 2, 5 and 9: GCR_EL1.Exclude = everything else */
    unsigned long include = (1UL << 2) | (1UL << 5) | (1UL << 9);
    mte_enable(PR_MTE_TCF_SYNC, include << PR_MTE_TAG_SHIFT);
    char *buf = tagged_mmap(2 * 4096);

    int seen[16] = {0}, bad = 0;
    for (int i = 0; i < 300; i++) {
        unsigned t = tag_of(irg(buf, 0));
        seen[t] = 1;
        bad += !(t == 2 || t == 5 || t == 9);
    }
    printf("IRG: outside the include mask %d times; saw 2:%d 5:%d 9:%d\n", bad, seen[2], seen[5], seen[9]);
    for (int i = 0; i < 100; i++)
        bad += tag_of(irg(buf, 1UL << 5 | 1UL << 9)) != 2;     /* register mask excludes 5 and 9 */
    printf("IRG with Xm excluding 5 and 9: always 2: %d\n", bad == 0);
    printf("IRG with everything excluded: tag %u\n", tag_of(irg(buf, 1UL << 2 | 1UL << 5 | 1UL << 9)));
    printf("IRG keeps the address: %d\n", untag(irg(buf + 48, 0)) == untag(buf + 48));

    uint64_t g;
    __asm__("gmi %0, %1, %2" : "=r"(g) : "r"(set_tag(buf, 7)), "r"(0x1UL));
    printf("GMI: %#lx\n", (unsigned long)g);

    void *a;
    __asm__("addg %0, %1, #32, #1" : "=r"(a) : "r"(set_tag(buf, 2)));
    printf("ADDG #32,#1 from tag 2: offset %ld tag %u\n", (long)(untag(a) - untag(buf)), tag_of(a));
    __asm__("addg %0, %1, #0, #2" : "=r"(a) : "r"(set_tag(buf, 9)));
    printf("ADDG #0,#2 from tag 9 (wraps): tag %u\n", tag_of(a));
    __asm__("addg %0, %1, #0, #0" : "=r"(a) : "r"(set_tag(buf, 3)));
    printf("ADDG #0,#0 from excluded tag 3: tag %u\n", tag_of(a));
    __asm__("subg %0, %1, #48, #1" : "=r"(a) : "r"(set_tag(buf + 64, 5)));
    printf("SUBG #48,#1 from tag 5: offset %ld tag %u\n", (long)(untag(a) - untag(buf)), tag_of(a));

    int64_t d;
    __asm__("subp %0, %1, %2" : "=r"(d) : "r"(set_tag(buf + 100, 3)), "r"(set_tag(buf, 12)));
    printf("SUBP: %ld\n", (long)d);
    __asm__ volatile("subps %0, %1, %2" : "=r"(d) : "r"(set_tag(buf, 3)), "r"(set_tag(buf + 16, 1)) : "cc");
    printf("SUBPS: %ld NZCV=%lx\n", (long)d, (unsigned long)nzcv());
    __asm__ volatile("cmpp %0, %1" : : "r"(set_tag(buf, 3)), "r"(set_tag(buf, 9)) : "cc");
    printf("CMPP equal: NZCV=%lx\n", (unsigned long)nzcv());

    /* STG: offset, pre-index, post-index */
    char *p = set_tag(buf, 5), *base = p;
    __asm__ volatile("stg %0, [%0, #16]" : : "r"(p) : "memory");
    __asm__ volatile("stg %1, [%0, #32]!" : "+r"(base) : "r"(p) : "memory");
    printf("STG pre-index writeback: +%ld\n", (long)(base - p));
    __asm__ volatile("stg %1, [%0], #-16" : "+r"(base) : "r"(set_tag(buf, 9)) : "memory");
    printf("STG post-index writeback: +%ld\n", (long)(base - p));
    printf("tags of granules 0..3: %u %u %u %u\n", tag_of(ldg(buf)), tag_of(ldg(buf + 16)), tag_of(ldg(buf + 32)),
           tag_of(ldg(buf + 48)));
    void *l = set_tag(buf + 16, 0);
    __asm__("ldg %0, [%1, #16]" : "+r"(l) : "r"(buf));
    printf("LDG [x, #16] keeps the address: %d, tag %u\n", untag(l) == untag(buf + 16), tag_of(l));
    printf("LDG of an unaligned address reads its granule: %u\n", tag_of(ldg(buf + 37)));

    /* STZG / ST2G / STZ2G */
    char *q = set_tag(buf + 256, 2);
    memset(buf + 256, 0, 128);
    tag_range(q, 128);
    memset(q, 0xaa, 128);
    char *z = set_tag(buf + 256, 9);
    __asm__ volatile("stzg %0, [%0]" : : "r"(z) : "memory");
    __asm__ volatile("st2g %0, [%0, #32]" : : "r"(z) : "memory");
    __asm__ volatile("stz2g %0, [%0, #64]" : : "r"(z) : "memory");
    printf("tags after STZG/ST2G/STZ2G:");
    for (int i = 0; i < 8; i++)
        printf(" %u", tag_of(ldg(buf + 256 + 16 * i)));
    printf("\n");
    printf("data: STZG zeroed %d, ST2G kept %d, STZ2G zeroed %d\n", z[0] == 0 && z[15] == 0,
           (unsigned char)z[32] == 0xaa && (unsigned char)z[63] == 0xaa, z[64] == 0 && z[95] == 0);

    /* pre- and post-index forms of STZG, ST2G and STZ2G, and LDG with a negative offset */
    char *w = set_tag(buf + 5120, 2), *wb = w;
    memset(buf + 5120, 0, 256);
    tag_range(set_tag(buf + 5120, 5), 256);
    memset(set_tag(buf + 5120, 5), 0x77, 256);
    __asm__ volatile("stzg %1, [%0, #16]!" : "+r"(wb) : "r"(w) : "memory");     /* granule 1 */
    __asm__ volatile("st2g %1, [%0, #32]!" : "+r"(wb) : "r"(w) : "memory");     /* granules 3, 4 */
    __asm__ volatile("stz2g %1, [%0], #64" : "+r"(wb) : "r"(w) : "memory");     /* granules 3, 4 */
    __asm__ volatile("st2g %1, [%0], #-16" : "+r"(wb) : "r"(w) : "memory");     /* granules 7, 8 */
    __asm__ volatile("stzg %1, [%0], #0" : "+r"(wb) : "r"(w) : "memory");       /* granule 6 */
    printf("pre/post-index forms, tags:");
    for (int i = 0; i < 10; i++)
        printf(" %u", tag_of(ldg(buf + 5120 + 16 * i)));
    printf("; base +%ld; zeroed:", (long)(wb - w));
    for (int i = 0; i < 10; i++)
        printf(" %d", *(char *)set_tag(buf + 5120 + 16 * i, tag_of(ldg(buf + 5120 + 16 * i))) == 0);
    printf("\n");
    void *neg = buf;
    __asm__("ldg %0, [%1, #-256]" : "+r"(neg) : "r"(buf + 5120 + 256 + 16));
    printf("LDG [x, #-256]: tag %u\n", tag_of(neg));

    /* STGP: offset, pre, post; data from the pair, tag from the address */
    uint64_t x1 = 0x1111111111111111, x2 = 0x2222222222222222;
    char *s = set_tag(buf + 512, 5), *sb = s;
    __asm__ volatile("stgp %1, %2, [%0, #16]" : : "r"(s), "r"(x1), "r"(x2) : "memory");
    __asm__ volatile("stgp %1, %2, [%0, #32]!" : "+r"(sb) : "r"(x2), "r"(x1) : "memory");
    char *sc = set_tag(buf + 512 + 64, 9);
    __asm__ volatile("stgp %1, %2, [%0], #16" : "+r"(sc) : "r"(x1), "r"(x1) : "memory");
    printf("STGP tags: %u %u %u, writeback pre +%ld post +%ld\n", tag_of(ldg(buf + 528)), tag_of(ldg(buf + 544)),
           tag_of(ldg(buf + 576)), (long)(sb - s), (long)(untag(sc) - untag(buf + 576)));
    printf("STGP data: %lx %lx\n", (unsigned long)*(uint64_t *)(set_tag(buf + 528, 5)),
           (unsigned long)*(uint64_t *)(set_tag(buf + 552, 5)));

    /* DC GVA / DC GZVA: the whole block holding the address, whatever offset in it */
    uint64_t dczid;
    __asm__("mrs %0, dczid_el0" : "=r"(dczid));
    size_t block = 4UL << (dczid & 0xf);
    /* the block size is IMPLEMENTATION DEFINED (qemu's "max" CPU has 512, mteemu 64) */
    char *blk = buf + 1024;
    memset(blk, 0x55, 2 * block);
    __asm__ volatile("dc gva, %0" : : "r"(set_tag(blk + 40, 9)) : "memory");
    __asm__ volatile("dc gzva, %0" : : "r"(set_tag(blk + block + 3, 2)) : "memory");
    printf("DC GVA tags: %u %u, DC GZVA tags: %u %u, next block %u\n", tag_of(ldg(blk)), tag_of(ldg(blk + block - 16)),
           tag_of(ldg(blk + block)), tag_of(ldg(blk + 2 * block - 16)), tag_of(ldg(blk + 2 * block)));
    printf("DC GVA kept data: %d, DC GZVA zeroed: %d\n", ((unsigned char *)set_tag(blk, 9))[5] == 0x55,
           ((char *)set_tag(blk + block, 2))[block - 1] == 0);

    /* PSTATE.TCO */
    uint64_t tco;
    __asm__ volatile("msr tco, #1\n\tmrs %0, tco\n\tmsr tco, #0" : "=r"(tco));
    uint64_t tco0;
    __asm__ volatile("mrs %0, tco" : "=r"(tco0));
    printf("TCO: set reads %#lx, cleared reads %#lx\n", (unsigned long)tco, (unsigned long)tco0);
    __asm__ volatile("msr tco, %0\n\tmrs %0, tco\n\tmsr tco, xzr" : "+r"(tco));
    printf("MSR TCO, Xt round trip: %#lx\n", (unsigned long)tco);
    return 0;
}
