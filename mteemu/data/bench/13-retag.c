// name: retagging (a use-after-free detector's allocator)
// target: 5
// 256 KiB of PROT_MTE memory as 32-byte objects; each round frees and reallocates objects by
// giving them a new random tag (IRG, excluding the old one, then ST2G), as an MTE-aware
// allocator does, and touches each new object.
#include <stdio.h>
#include <stdlib.h>
#include "mte.h"
int main(int argc, char **argv) {
    size_t len = 256 << 10;
    int rounds = argc > 1 ? atoi(argv[1]) : 40;
    char *a = tagged(len);
    unsigned long sum = 0, state = 3;
    for (int round = 0; round < rounds; round++)
        for (size_t k = 0; k < len / 32; k += 3) {
            state = state * 6364136223846793005UL + 1442695040888963407UL;
            size_t at = ((state >> 33) % (len / 32)) * 32;
            char *old = a + at, *obj;
            uint64_t excl = 0;
            __asm__ volatile("ldg %0, [%0]" : "+r"(old));
            __asm__ volatile("gmi %0, %1, %0" : "+r"(excl) : "r"(old));
            __asm__ volatile("irg %0, %1, %2" : "=r"(obj) : "r"(old), "r"(excl | 1));
            __asm__ volatile("st2g %0, [%0]" : : "r"(obj) : "memory");
            ((volatile uint64_t *)obj)[0] = round;
            ((volatile uint64_t *)obj)[3] = k;
            sum += ((volatile uint64_t *)obj)[0];
        }
    printf("%lu\n", sum);
    return 0;
}
