// Tagged memory under memory pressure goes to swap and comes back with its tags (saved
// per swap entry at swap-out, restored at swap-in), on a board capped at 16 MiB with
// 64 MiB of swap.
// board: ../../dts/small-v3.dts
// options: --mem 16M --swap 64M
// variant cma: --tag-storage-policy cma
// | pages swapped out: yes
// | tagged pages back with data and tags: yes
// | pages swapped in: yes
// | untagged pages back: yes
// qemu: differs: it has no swap model
#include "mm.h"

int main(void) {
    if (mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS))
        return 99;
    size_t tlen = 8 * MiB, ulen = 12 * MiB;
    char *t = tagged_mmap(tlen);
    for (size_t p = 0; p < tlen; p += PAGE)
        fill_tagged_page(t + p, p / PAGE);
    /* More than fits: the oldest pages (the tagged ones) are reclaimed to swap. */
    char *u = mmap(NULL, ulen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t p = 0; p < ulen; p += PAGE)
        fill_page(u + p, 1000000 + p / PAGE);
    printf("pages swapped out: %s\n", vmstat("pswpout") > 0 ? "yes" : "no");
    int ok = 1;
    for (size_t p = 0; p < tlen; p += PAGE)
        ok &= tagged_page_ok(t + p, p / PAGE);
    printf("tagged pages back with data and tags: %s\n", ok ? "yes" : "no");
    printf("pages swapped in: %s\n", vmstat("pswpin") > 0 ? "yes" : "no");
    ok = 1;
    for (size_t p = 0; p < ulen; p += PAGE)
        ok &= page_ok(u + p, 1000000 + p / PAGE);
    printf("untagged pages back: %s\n", ok ? "yes" : "no");
    return 0;
}
