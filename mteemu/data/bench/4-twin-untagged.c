// name: untagged twin of the tagged memset (same loops, no MTE)
// target: none
// accesses: 167772160
// 4-tagged-memset.c without PROT_MTE, tags or tag checks: what the same access pattern
// costs each emulator before any MTE work (the baseline of the tagged workload's ratio).
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
int main(void) {
    size_t len = 4 << 20;
    char *a = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *b = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned long sum = 0;
    for (int round = 0; round < 20; round++)
        for (size_t i = 0; i < len; i += 4096) {
            char *pa = a + i, *pb = b + i;
            memset(pa, round + 1, 4096);
            memcpy(pb, pa, 4096);
            sum += pb[4095];
        }
    printf("%lu\n", sum);
    return 0;
}
