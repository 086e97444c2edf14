// glibc's heap tagging in a memory-hungry program, on a board capped at 12 MiB with swap:
// the tagged heap grows past RAM (tag blocks reserved for it, parts of it swapped out and
// back with their tags), blocks are freed and reused, every block keeps its contents, and
// an overflow past a block is still caught by its tags at the end.
// board: ../../dts/small-v3.dts
// env: GLIBC_TUNABLES=glibc.mem.tagging=3
// options: --mem 12M --swap 32M
// variant cma: --tag-storage-policy cma
// | heap blocks hold their contents: yes
// | tag blocks reserved for the heap: yes
// | swapped under pressure: yes
// | overflow caught: SEGV_MTESERR
// qemu: differs: with tagging, qemu-aarch64 7.2 crashes in calloc (SEGV_MAPERR on DC ZVA)
#include "mm.h"

enum { N = 420, SIZE = 32 * 1024 };

static char *blk[N];

static void fill(int i) {
    for (int off = 0; off < SIZE; off += 512)
        blk[i][off] = (char)(i * 7 + off / 512);
}
static int check(int i) {
    for (int off = 0; off < SIZE; off += 512)
        if (blk[i][off] != (char)(i * 7 + off / 512))
            return 0;
    return 1;
}

int main(void) {
    for (int i = 0; i < N; i++) {
        blk[i] = malloc(SIZE);
        if (!blk[i])
            return 98;
        fill(i);
    }
    for (int i = 0; i < N; i += 2) {
        free(blk[i]);
        blk[i] = NULL;
    }
    for (int i = 0; i < N; i += 2) {
        blk[i] = malloc(SIZE);
        fill(i);
    }
    int ok = 1;
    for (int i = 0; i < N; i++)
        ok &= check(i);
    printf("heap blocks hold their contents: %s\n", ok ? "yes" : "no");
    printf("tag blocks reserved for the heap: %s\n", reserved_pages() > 1 ? "yes" : "no");
    printf("swapped under pressure: %s\n", vmstat("pswpout") > 0 && vmstat("pswpin") > 0 ? "yes" : "no");
    catch_segv(0);
    volatile char *p = blk[1];
    if (!FAULTED())
        p[SIZE + 32] = 1;
    printf("overflow caught: %s\n", code_name(fault_code));
    return 0;
}
