// name: untagged memset/memcpy
// target: 15
// accesses: 167772160
// 20 rounds of memset + memcpy over 4 MiB buffers (16-byte stores: 8 Mi accesses a round).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    size_t len = 4 << 20;
    char *a = malloc(len), *b = malloc(len);
    unsigned long sum = 0;
    for (int round = 0; round < 20; round++) {
        memset(a, round + 1, len);
        memcpy(b, a, len);
        sum += b[len - 1];
    }
    printf("%lu\n", sum);
    return 0;
}
