// name: byte stores and loads at a stride over mixed tags
// target: 5
// accesses: 25165824
// 4 MiB of PROT_MTE memory with a different tag in every 16-byte granule (more than any
// cache holds), then 12 passes of byte loads and stores at a 5-byte stride, as a codec or
// a parser touches its buffer.
#include <stdio.h>
#include <stdlib.h>
#include "mte.h"
int main(int argc, char **argv) {
    size_t len = 4 << 20;
    int passes = argc > 1 ? atoi(argv[1]) : 12;
    char *a = tagged(len);
    for (size_t i = 0; i < len; i += 16)
        __asm__ volatile("stg %0, [%0]" : : "r"(with_tag(a + i, 1 + (i >> 4) % 15)) : "memory");
    unsigned long sum = 0;
    for (int pass = 0; pass < passes; pass++)
        for (size_t i = pass % 5; i < len; i += 5) {
            volatile char *p = (volatile char *)with_tag(a + i, 1 + (i >> 4) % 15);
            *p = (char)(*p + (char)i);
            sum += (unsigned char)*p;
        }
    printf("%lu\n", sum);
    return 0;
}
