// name: strided accesses over mixed-tag granules
// target: 10
// accesses: 262144
// Every 16-byte granule of a 256 KiB buffer has its own tag; 8 passes, one load and one
// store per granule.
#include <stdio.h>
#include "mte.h"
int main(void) {
    size_t len = 256 << 10;
    char *a = tagged(len);
    for (size_t i = 0; i < len; i += 16)
        __asm__ volatile("stg %0, [%0]" : : "r"(with_tag(a + i, (i >> 4) & 15)) : "memory");
    unsigned long sum = 0;
    for (int round = 0; round < 8; round++)
        for (size_t i = 0; i < len; i += 16) {
            uint64_t *p = (uint64_t *)with_tag(a + i, (i >> 4) & 15);
            p[0] += round;
            sum += p[1];
        }
    printf("%lu\n", sum);
    return 0;
}
