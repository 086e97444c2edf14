// The whole design under pressure on the small board (66 MiB, no cap) with swap: untagged
// data fills ordinary memory and tag storage, then tagged memory is touched — each tagged
// page needs its tag block back, the data living there must move, and there is no free
// memory to move it to until reclaim swaps the oldest pages out. Everything is read back.
// board: ../../dts/small-v3.dts
// options: --swap 64M
// variant cma: --tag-storage-policy cma
// | untagged data spilled into tag storage: yes
// | tagged pages hold their data and tags: yes
// | untagged data survived migration and swap: yes
// | tag blocks reserved: yes
// | data migrated out of tag blocks: yes
// | swapped: yes
// qemu: differs: it has no tag storage or swap model
#include "mm.h"

int main(void) {
    if (mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS))
        return 99;
    fill_until(tag_storage_in_use, 80);
    printf("untagged data spilled into tag storage: %s\n", tag_storage_in_use() ? "yes" : "no");
    size_t len = 6 * MiB;
    char *t = tagged_mmap(len);
    for (size_t p = 0; p < len; p += PAGE)
        fill_tagged_page(t + p, p / PAGE);
    int ok = 1;
    for (size_t p = 0; p < len; p += PAGE)
        ok &= tagged_page_ok(t + p, p / PAGE);
    printf("tagged pages hold their data and tags: %s\n", ok ? "yes" : "no");
    printf("untagged data survived migration and swap: %s\n", chunks_ok() ? "yes" : "no");
    printf("tag blocks reserved: %s\n", reserved_pages() > 1 ? "yes" : "no");
    printf("data migrated out of tag blocks: %s\n", vmstat("pgmigrate_success") > 0 ? "yes" : "no");
    printf("swapped: %s\n", vmstat("pswpout") > 0 && vmstat("pswpin") > 0 ? "yes" : "no");
    return 0;
}
