/* Helpers for the memory-manager workloads: the kernel's counters (/proc/meminfo,
   /proc/vmstat), page patterns that prove data survived migration and swap, and
   per-page tags that prove tags did. Tag storage shows as Metadata* (RFC v1) or
   Cma* (v2/v3), whichever the policy uses. */
#ifndef MTEEMU_GUEST_MM_H
#define MTEEMU_GUEST_MM_H
#include "../mte/mte.h"

#define PAGE 4096UL
#define MiB (1024UL * 1024)

static long proc_field(const char *file, const char *name) {
    char line[160];
    size_t n = strlen(name);
    long value = -1;
    FILE *f = fopen(file, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, name, n) && (line[n] == ':' || line[n] == ' ')) {
            value = strtol(line + n + 1 + (line[n] == ':'), NULL, 10);
            break;
        }
    fclose(f);
    return value;
}
static long vmstat(const char *name) { return proc_field("/proc/vmstat", name); }
static long meminfo_kb(const char *name) { return proc_field("/proc/meminfo", name); }
/* Tag storage onlined as memory, and how much of it is free, in kB. */
static long tag_storage_total_kb(void) { return meminfo_kb("MetadataTotal") + meminfo_kb("CmaTotal"); }
static long tag_storage_free_kb(void) { return meminfo_kb("MetadataFree") + meminfo_kb("CmaFree"); }
/* Tag blocks reserved so far, in pages. */
static long reserved_pages(void) { return vmstat("metadata_reserve_success") + vmstat("cma_alloc_success"); }
static long released_pages(void) { return vmstat("metadata_reserve_free") + vmstat("cma_release_success"); }

/* Every 8-byte word of a page says which page it is and whose: a moved or swapped page
   must come back with it. */
static void fill_page(void *page, unsigned long seed) {
    unsigned long *w = page;
    for (unsigned i = 0; i < PAGE / 8; i += 64)
        w[i] = seed * 0x9e3779b97f4a7c15UL + i;
}
static int page_ok(const void *page, unsigned long seed) {
    const unsigned long *w = page;
    for (unsigned i = 0; i < PAGE / 8; i += 64)
        if (w[i] != seed * 0x9e3779b97f4a7c15UL + i)
            return 0;
    return 1;
}
/* A page's tag pattern: every 64th granule g (4 per page; tagging all 256 would only make
   the test slow) gets tag 1 + (seed + g) % 15, the others keep tag 0. The data words
   sit in those granules. */
#define TAG_STRIDE 64
static unsigned granule_tag(unsigned long seed, unsigned g) {
    return g % TAG_STRIDE ? 0 : 1 + (unsigned)((seed + g / TAG_STRIDE) % 15);
}
static void tag_page(void *page, unsigned long seed) {
    for (unsigned g = 0; g < PAGE / 16; g += TAG_STRIDE)
        stg(set_tag((char *)page + g * 16, granule_tag(seed, g)));
}
static int tags_ok(void *page, unsigned long seed) {
    for (unsigned g = 0; g < PAGE / 16; g += TAG_STRIDE)
        if (tag_of(ldg((char *)page + g * 16)) != granule_tag(seed, g))
            return 0;
    return tag_of(ldg((char *)page + 16)) == 0;    /* and an untouched granule kept tag 0 */
}
/* Fill and tag a tagged page (its data written through correctly tagged pointers). */
static void fill_tagged_page(char *page, unsigned long seed) {
    tag_page(page, seed);
    for (unsigned g = 0; g < PAGE / 16; g += TAG_STRIDE)
        *(unsigned long *)set_tag(page + g * 16, granule_tag(seed, g)) = seed * 0x9e3779b97f4a7c15UL + g;
}
static int tagged_page_ok(char *page, unsigned long seed) {
    if (!tags_ok(page, seed))
        return 0;
    for (unsigned g = 0; g < PAGE / 16; g += TAG_STRIDE)
        if (*(unsigned long *)set_tag(page + g * 16, granule_tag(seed, g)) != seed * 0x9e3779b97f4a7c15UL + g)
            return 0;
    return 1;
}

/* Untagged anonymous memory in 1 MiB chunks until `stop` says enough (or `max` chunks). */
static char *chunks[256];
static int nchunks;
static void fill_until(int (*stop)(void), int max) {
    while (nchunks < max && !stop()) {
        char *c = mmap(NULL, MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (c == MAP_FAILED)
            break;
        for (unsigned long p = 0; p < MiB; p += PAGE)
            fill_page(c + p, (unsigned long)nchunks << 8 | p / PAGE);
        chunks[nchunks++] = c;
    }
}
static int chunks_ok(void) {
    for (int i = 0; i < nchunks; i++)
        if (chunks[i])
            for (unsigned long p = 0; p < MiB; p += PAGE)
                if (!page_ok(chunks[i] + p, (unsigned long)i << 8 | p / PAGE))
                    return 0;
    return 1;
}
/* Data in at least 1 MiB of tag storage. */
static int tag_storage_in_use(void) { return tag_storage_total_kb() - tag_storage_free_kb() >= 1024; }
#endif
