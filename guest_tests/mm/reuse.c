// Tag storage is memory until tags need it (the RFC's cover letter): untagged data fills
// the board until it spills into tag storage; half of it is freed; then tagged memory is
// mapped and touched, so the tag blocks it needs are taken back — every untagged page
// living in them is migrated out, data intact. Both placement policies.
// board: ../../dts/small-v3.dts
// variant cma: --tag-storage-policy cma
// | tag storage onlined: 2048 kB
// | untagged data spilled into tag storage: yes
// | tag blocks reserved for tagged pages: yes
// | pages migrated out of tag blocks: yes
// | tagged pages hold their data and tags: yes
// | untagged data survived the migrations: yes
// | tag blocks given back after munmap: yes
// qemu: differs: it has no tag storage to reuse
#include "mm.h"

int main(void) {
    if (mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS)) {
        perror("prctl");
        return 99;
    }
    printf("tag storage onlined: %ld kB\n", tag_storage_total_kb());
    fill_until(tag_storage_in_use, 80);
    printf("untagged data spilled into tag storage: %s\n", tag_storage_in_use() ? "yes" : "no");
    for (int i = 0; i < nchunks; i += 2) {        /* room to migrate into */
        munmap(chunks[i], MiB);
        chunks[i] = NULL;
    }
    long reserved = reserved_pages(), migrated = vmstat("pgmigrate_success");
    size_t len = 4 * MiB;
    char *t = tagged_mmap(len);
    for (size_t p = 0; p < len; p += PAGE)
        fill_tagged_page(t + p, p / PAGE);
    printf("tag blocks reserved for tagged pages: %s\n", reserved_pages() > reserved ? "yes" : "no");
    printf("pages migrated out of tag blocks: %s\n", vmstat("pgmigrate_success") > migrated ? "yes" : "no");
    int ok = 1;
    for (size_t p = 0; p < len; p += PAGE)
        ok &= tagged_page_ok(t + p, p / PAGE);
    printf("tagged pages hold their data and tags: %s\n", ok ? "yes" : "no");
    printf("untagged data survived the migrations: %s\n", chunks_ok() ? "yes" : "no");
    long released = released_pages();
    munmap(t, len);
    printf("tag blocks given back after munmap: %s\n", released_pages() > released ? "yes" : "no");
    return 0;
}
