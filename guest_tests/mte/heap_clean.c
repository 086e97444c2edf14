/* A clean malloc/realloc/free-heavy program prints the same result whether glibc
   tags the heap (sync or async) or not. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
// qemu: differs: with tagging, qemu-aarch64 7.2 crashes in calloc (SEGV_MAPERR on DC ZVA)
// variant sync: -E GLIBC_TUNABLES=glibc.mem.tagging=3
// variant async: -E GLIBC_TUNABLES=glibc.mem.tagging=1

int main(void) {
    enum { SLOTS = 257 };
    char *slot[SLOTS] = {0};
    size_t size[SLOTS] = {0};
    uint64_t state = 12345, sum = 0;
    for (int i = 0; i < 6000; i++) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        int k = (int)((state >> 33) % SLOTS);
        size_t n = (size_t)((state >> 13) % 700) + 1;
        switch ((state >> 50) % 3) {
        case 0:
            free(slot[k]);
            slot[k] = malloc(n);
            memset(slot[k], (int)(i & 0xff), n);
            size[k] = n;
            break;
        case 1:
            slot[k] = realloc(slot[k], n);
            if (n > size[k])
                memset(slot[k] + size[k], 7, n - size[k]);
            size[k] = n;
            break;
        default:
            for (size_t j = 0; j < size[k]; j += 13)
                sum = sum * 31 + (unsigned char)slot[k][j];
        }
    }
    char *big = calloc(1, 300000);
    memset(big, 3, 300000);
    for (size_t j = 0; j < 300000; j += 4096)
        sum += big[j];
    free(big);
    for (int k = 0; k < SLOTS; k++)
        free(slot[k]);
    printf("checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
