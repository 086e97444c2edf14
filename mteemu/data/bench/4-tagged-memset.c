// name: tagged memset/memcpy, one tag per page
// target: 2
// accesses: 167772160
// The same 20 rounds over PROT_MTE buffers whose pages each carry one tag (set once with
// ST2G loops, as an allocator would): the checks can run in the TLB.
#include <stdio.h>
#include <string.h>
#include "mte.h"
int main(void) {
    size_t len = 4 << 20;
    char *a = tagged(len), *b = tagged(len);
    for (size_t i = 0; i < len; i += 4096) {
        char *pa = with_tag(a + i, 1 + (i >> 12) % 15), *pb = with_tag(b + i, 1 + (i >> 12) % 15);
        for (size_t j = 0; j < 4096; j += 32)
            __asm__ volatile("st2g %0, [%0]\n\tst2g %1, [%1]" : : "r"(pa + j), "r"(pb + j) : "memory");
    }
    unsigned long sum = 0;
    for (int round = 0; round < 20; round++)
        for (size_t i = 0; i < len; i += 4096) {
            char *pa = with_tag(a + i, 1 + (i >> 12) % 15), *pb = with_tag(b + i, 1 + (i >> 12) % 15);
            memset(pa, round + 1, 4096);
            memcpy(pb, pa, 4096);
            sum += pb[4095];
        }
    printf("%lu\n", sum);
    return 0;
}
