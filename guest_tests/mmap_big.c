// A 1 MiB anonymous mmap and a 50 MiB malloc, touched end to end.
// exit: 0
// qemu: same
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
int main(void) {
    size_t n = 1 << 20;
    unsigned char *m = mmap(0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) { perror("mmap"); return 1; }
    for (size_t i = 0; i < n; i += 4096) m[i] = (unsigned char)(i >> 12);
    unsigned long s = 0; for (size_t i = 0; i < n; i += 4096) s += m[i];
    munmap(m, n);
    size_t big = 50u << 20;
    char *p = malloc(big);
    if (!p) { puts("malloc failed"); return 1; }
    memset(p, 0x5a, big);
    unsigned long t = 0; for (size_t i = 0; i < big; i += 65536) t += (unsigned char)p[i];
    free(p);
    printf("mmap sum=%lu malloc sum=%lu\n", s, t);
    return 0;
}
