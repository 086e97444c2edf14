/* Every kind of load and store is tag checked, granule by granule: all sizes,
   unaligned accesses crossing granules and pages, pairs, SIMD single and multiple
   structures, exclusives, acquire/release, atomics. PSTATE.TCO suppresses checks,
   pages without PROT_MTE are never checked, SA_EXPOSE_TAGBITS keeps the tag in
   si_addr. */
#include "mte.h"
// qemu: same
// linux: differs: QEMU 10.0 (the oracle's CPU) does not tag-check the fourth register of a 4-register LD1 (LD1 {4 x 16B} at A+16 and at A+64: only the latter faults); the Arm ARM checks every element, as mteemu does

static char *A, *B;     /* page A: tag 3 except granule 4 (tag 4); page B: tag 6 */

#define CHECK(label, stmt)                                                             \
    do {                                                                               \
        if (!FAULTED()) {                                                              \
            stmt;                                                                      \
            printf("%-34s ok\n", label);                                               \
        } else {                                                                       \
            printf("%-34s %s at A%+ld\n", label, code_name(fault_code),                \
                   (long)((fault_addr & ((1UL << 56) - 1)) - untag(A)));               \
        }                                                                              \
    } while (0)

int main(void) {
    mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS);
    A = tagged_mmap(2 * 4096);
    B = A + 4096;
    char *a3 = set_tag(A, 3), *a4 = set_tag(A, 4), *b6 = set_tag(B, 6);
    tag_range(a3, 4096);
    stg(a4 + 64);
    tag_range(b6, 4096);
    catch_segv(0);
    uint64_t v, w;

    CHECK("ldrb/ldrh/ldr w/ldr x/ldr q match", ({
        __uint128_t q;
        __asm__ volatile("ldrb %w0, [%2]\n\tldrh %w0, [%2, #2]\n\tldr %w0, [%2, #4]\n\tldr %1, [%2, #8]"
                         : "=&r"(v), "=&r"(w) : "r"(a3) : "memory");
        __asm__ volatile("ldr %q0, [%1, #16]" : "=w"(q) : "r"(a3) : "memory");
    }));
    CHECK("ldr x in the tag-4 granule", __asm__ volatile("ldr %0, [%1]" : "=r"(v) : "r"(a3 + 64)));
    CHECK("strb with tag 4 in its granule", __asm__ volatile("strb wzr, [%0]" : : "r"(a4 + 79) : "memory"));
    CHECK("unaligned ldr x into tag-4 granule", __asm__ volatile("ldr %0, [%1]" : "=r"(v) : "r"(a3 + 60)));
    CHECK("unaligned ldr w within granule", __asm__ volatile("ldr %w0, [%1]" : "=r"(v) : "r"(a3 + 49)));
    CHECK("ldp into tag-4 granule", __asm__ volatile("ldp %0, %1, [%2]" : "=r"(v), "=r"(w) : "r"(a3 + 56)));
    CHECK("stp matching", __asm__ volatile("stp xzr, xzr, [%0]" : : "r"(a3 + 32) : "memory"));
    CHECK("ld1 {4 x 16B} over tag-4 granule",
          __asm__ volatile("ld1 {v0.16b-v3.16b}, [%0]" : : "r"(a3 + 16) : "v0", "v1", "v2", "v3"));
    CHECK("ld4 {4 x 16B} matching",
          __asm__ volatile("ld4 {v0.16b-v3.16b}, [%0]" : : "r"(a3 + 128) : "v0", "v1", "v2", "v3"));
    CHECK("st1 {v.s}[1] single lane, tag 4",
          __asm__ volatile("st1 {v0.s}[1], [%0]" : : "r"(a4 + 64) : "memory"));
    CHECK("ld1r replicate, wrong tag", __asm__ volatile("ld1r {v0.4s}, [%0]" : : "r"(a4 + 16) : "v0"));
    CHECK("ldxr/stxr matching", ({
        uint32_t st;
        __asm__ volatile("1: ldxr %0, [%2]\n\tadd %0, %0, #1\n\tstxr %w1, %0, [%2]\n\tcbnz %w1, 1b"
                         : "=&r"(v), "=&r"(st) : "r"(a3 + 96) : "memory");
    }));
    CHECK("ldaxr wrong tag", __asm__ volatile("ldaxr %0, [%1]" : "=r"(v) : "r"(a3 + 64) : "memory"));
    CHECK("stlr wrong tag", __asm__ volatile("stlr xzr, [%0]" : : "r"(a4 + 96) : "memory"));
    CHECK("ldar matching", __asm__ volatile("ldar %0, [%1]" : "=r"(v) : "r"(a4 + 64) : "memory"));
    CHECK("ldadd matching", __asm__ volatile("ldadd %1, %0, [%2]" : "=r"(v) : "r"(5UL), "r"(a3 + 96) : "memory"));
    printf("  value after ldxr/stxr +1 and ldadd +5: %lu\n", (unsigned long)*(uint64_t *)(a3 + 96));
    CHECK("ldadd wrong tag", __asm__ volatile("ldadd %1, %0, [%2]" : "=r"(v) : "r"(5UL), "r"(a4 + 96) : "memory"));
    CHECK("cas wrong tag", ({
        v = 0;
        __asm__ volatile("cas %0, %1, [%2]" : "+r"(v) : "r"(1UL), "r"(a3 + 64) : "memory");
    }));
    CHECK("swp wrong tag", __asm__ volatile("swp %1, %0, [%2]" : "=r"(v) : "r"(1UL), "r"(a4 + 0) : "memory"));
    CHECK("uniform page, right tag", __asm__ volatile("ldr %0, [%1]" : "=r"(v) : "r"(b6 + 2048)));
    CHECK("uniform page, wrong tag", __asm__ volatile("str xzr, [%0]" : : "r"(set_tag(B + 2048, 7)) : "memory"));
    CHECK("cross-page read, tag 3 (B has 6)", __asm__ volatile("ldr %0, [%1]" : "=r"(v) : "r"(a3 + 4092)));
    CHECK("cross-page read, tag 6 (A has 3)", __asm__ volatile("ldr %0, [%1]" : "=r"(v) : "r"(set_tag(A + 4092, 6))));

    __asm__ volatile("msr tco, #1" ::: "memory");
    CHECK("TCO=1: wrong tag", __asm__ volatile("ldr %0, [%1]" : "=r"(v) : "r"(a4 + 128)));
    __asm__ volatile("msr tco, #0" ::: "memory");
    CHECK("TCO=0 again: wrong tag", __asm__ volatile("ldr %0, [%1]" : "=r"(v) : "r"(a4 + 128)));

    char *plain = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK("no PROT_MTE: any tag", ({
        ((volatile char *)set_tag(plain, 9))[10] = 1;
        v = ((volatile char *)set_tag(plain, 2))[10];
    }));

    catch_segv(SA_EXPOSE_TAGBITS);
    if (FAULTED())
        printf("SA_EXPOSE_TAGBITS: %s, si_addr tag %lu\n", code_name(fault_code), (unsigned long)(fault_addr >> 56));
    else
        *(volatile char *)set_tag(A, 5) = 0;
    if (FAULTED())
        printf("SA_EXPOSE_TAGBITS on SEGV_MAPERR: si_addr tag %lu\n", (unsigned long)(fault_addr >> 56));
    else
        *(volatile char *)set_tag((char *)8, 10) = 0;

    return 0;
}
