// name: glibc malloc/free, heap tagging (sync)
// target: 10
// options: -E GLIBC_TUNABLES=glibc.mem.tagging=3
// 20000 free+malloc+memset rounds over 512 slots of up to 200 bytes.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    char *slot[512] = {0};
    unsigned long state = 1, sum = 0;
    for (int i = 0; i < 20000; i++) {
        state = state * 6364136223846793005UL + 1442695040888963407UL;
        int k = (state >> 33) % 512;
        size_t n = (state >> 13) % 200 + 1;
        free(slot[k]);
        slot[k] = malloc(n);
        memset(slot[k], i, n);
        sum += slot[k][n / 2];
    }
    printf("%lu\n", sum);
    return 0;
}
