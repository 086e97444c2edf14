// malloc-heavy code with qsort.
// exit: 0
// qemu: same
#include <stdio.h>
#include <stdlib.h>
static int cmp(const void *a, const void *b) { long x = **(long **)a, y = **(long **)b; return (x > y) - (x < y); }
int main(void) {
    enum { N = 20000 };
    long **items = malloc(N * sizeof *items);
    unsigned long seed = 12345, sum = 0;
    for (int i = 0; i < N; i++) {
        seed = seed * 6364136223846793005UL + 1442695040888963407UL;
        items[i] = malloc(sizeof(long) * (1 + i % 7));
        items[i][0] = (long)(seed >> 33);
    }
    qsort(items, N, sizeof *items, cmp);
    for (int i = 1; i < N; i++) if (*items[i - 1] > *items[i]) { puts("unsorted"); return 1; }
    for (int i = 0; i < N; i += 1000) sum += (unsigned long)*items[i];
    for (int i = 0; i < N; i++) free(items[i]);
    free(items);
    printf("sorted %d items, sample sum %lu\n", N, sum);
    return 0;
}
