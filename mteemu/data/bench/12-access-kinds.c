// name: every access kind over mixed-tag granules
// target: 5
// Each 64-byte block of a 1 MiB PROT_MTE buffer carries its own tag (a new one each
// round, set with DC GVA-free STG loops as a tagging allocator would). Each round touches
// every block with one access kind: bytes, halfwords, words, doublewords, quadwords, pairs,
// unaligned within and across granules, across a page boundary, SIMD structure loads and
// stores, exclusives, LSE atomics and DC ZVA. `argv[1]` rounds (default 24: every kind
// twice), `argv[2]` one kind only.
#include <stdio.h>
#include <stdlib.h>
#include "mte.h"

#define LEN (1 << 20)
#define BLOCK 64

static void retag(char *a, unsigned round) {
    for (size_t i = 0; i < LEN; i += BLOCK) {
        char *p = with_tag(a + i, 1 + (i / BLOCK + round) % 15);
        __asm__ volatile("st2g %0, [%0]\n\tst2g %0, [%0, #32]" : : "r"(p) : "memory");
    }
}

int main(int argc, char **argv) {
    unsigned rounds = argc > 1 ? (unsigned)atoi(argv[1]) : 24;
    int only = argc > 2 ? atoi(argv[2]) : -1;                  /* one kind only (the tests) */
    char *a = tagged(LEN);
    uint64_t dczid;
    __asm__("mrs %0, dczid_el0" : "=r"(dczid));
    unsigned zva = 4u << (dczid & 15);
    unsigned long sum = 0;
    for (unsigned round = 0; round < rounds; round++) {
        retag(a, round);
        unsigned kind = only >= 0 ? (unsigned)only : round % 12;
        for (size_t i = 0; i < LEN; i += BLOCK) {
            char *p = with_tag(a + i, 1 + (i / BLOCK + round) % 15);
            switch (kind) {
            case 0:                                            /* bytes: STRB, LDRB at a stride */
                for (int j = 0; j < BLOCK; j += 5) { ((volatile char *)p)[j] = (char)j; sum += ((volatile char *)p)[j]; }
                break;
            case 1:                                            /* halfwords */
                for (int j = 0; j < BLOCK; j += 6) { *(volatile uint16_t *)(p + j) = (uint16_t)j; sum += *(volatile uint16_t *)(p + j); }
                break;
            case 2:                                            /* words and doublewords */
                *(volatile uint32_t *)(p + 4) = round; *(volatile uint64_t *)(p + 16) = round;
                sum += *(volatile uint32_t *)(p + 4) + *(volatile uint64_t *)(p + 16);
                break;
            case 3: {                                          /* quadwords and pairs: STR Q, STP, LDP */
                uint64_t x, y;
                __asm__ volatile("ldr q0, [%2]\n\tstr q0, [%2, #16]\n\tstp %0, %1, [%2, #32]\n\tldp %0, %1, [%2, #32]"
                                 : "=&r"(x), "=&r"(y) : "r"(p) : "v0", "memory");
                sum += x + y;
                break;
            }
            case 4:                                            /* unaligned: within a granule and across two */
                *(volatile uint32_t *)(p + 3) = round;
                *(volatile uint64_t *)(p + 12) = round;
                sum += *(volatile uint64_t *)(p + 13);
                break;
            case 5:                                            /* SIMD structure load and store: 64 bytes */
                __asm__ volatile("ld1 {v0.16b-v3.16b}, [%0]\n\tst1 {v0.16b-v3.16b}, [%0]\n\tld4 {v4.16b-v7.16b}, [%0]"
                                 : : "r"(p) : "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "memory");
                break;
            case 6: {                                          /* exclusives: LDXR/STXR */
                uint64_t v, fail;
                do
                    __asm__ volatile("ldxr %0, [%2]\n\tadd %0, %0, #1\n\tstxr %w1, %0, [%2]"
                                     : "=&r"(v), "=&r"(fail) : "r"(p + 8) : "memory");
                while (fail);
                sum += v;
                break;
            }
            case 7: {                                          /* LSE atomics: LDADD, SWP, CAS */
                uint64_t one = 1, old, expect = 0;
                __asm__ volatile("ldadd %2, %0, [%3]\n\tswp %2, %0, [%3]\n\tcas %1, %2, [%3]"
                                 : "=&r"(old), "+r"(expect) : "r"(one), "r"(p + 24) : "memory");
                sum += old;
                break;
            }
            case 8:                                            /* DC ZVA: the block, one tag */
                if (zva <= BLOCK)                              /* qemu's max CPU zeroes 512 bytes */
                    __asm__ volatile("dc zva, %0" : : "r"(p) : "memory");
                break;
            case 9:                                            /* byte loads and stores, every byte */
                for (int j = 0; j < BLOCK; j++) ((volatile char *)p)[j] ^= (char)j;
                break;
            case 10:                                           /* LDR/STR with register offsets, backwards */
                for (int j = BLOCK - 8; j >= 0; j -= 8) sum += *(volatile uint64_t *)(p + j);
                break;
            default:                                           /* across a page boundary (same tag both sides) */
                if ((i & 4095) == 4096 - BLOCK && i + BLOCK < LEN) {
                    char *q = p + BLOCK - 4;
                    __asm__ volatile("st2g %0, [%0, #64]\n\tst2g %0, [%0, #96]" : : "r"(p) : "memory");
                    *(volatile uint64_t *)q = round;
                    sum += *(volatile uint64_t *)q;
                }
                break;
            }
        }
    }
    printf("%lu\n", sum & 0xffff);
    return 0;
}
