// mprotect(PROT_MTE) over memory already full of data, some of it living in tag storage:
// the kernel reserves nothing at mprotect time, marks the pages fault-on-access, and on
// each first access reserves the page's tag block — or, for a page that is itself tag
// storage, migrates it to a page that can hold tags. Data survives; tags start at 0.
// board: ../../dts/small-v3.dts
// variant cma: --tag-storage-policy cma
// | untagged data spilled into tag storage: yes
// | nothing reserved by mprotect itself: yes
// | data intact after mprotect(PROT_MTE): yes
// | fresh tags read 0: yes
// | tag blocks reserved on first access: yes
// | pages moved out of tag storage: yes
// | tags set afterwards stick: yes
// qemu: differs: it has no tag storage to reuse
#include "mm.h"

int main(void) {
    if (mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS))
        return 99;
    fill_until(tag_storage_in_use, 80);
    printf("untagged data spilled into tag storage: %s\n", tag_storage_in_use() ? "yes" : "no");
    /* Free every other chunk but the last ones (which are the ones in tag storage), so
       there is room for the pages that must move. */
    for (int i = 0; i < nchunks - 4; i += 2) {
        munmap(chunks[i], MiB);
        chunks[i] = NULL;
    }
    long reserved = reserved_pages(), migrated = vmstat("pgmigrate_success");
    for (int i = 0; i < nchunks; i++)
        if (chunks[i] && mprotect(chunks[i], MiB, PROT_READ | PROT_WRITE | PROT_MTE))
            return 98;
    printf("nothing reserved by mprotect itself: %s\n", reserved_pages() == reserved ? "yes" : "no");
    printf("data intact after mprotect(PROT_MTE): %s\n", chunks_ok() ? "yes" : "no");
    int zero = 1;
    for (int i = 0; i < nchunks; i++)
        if (chunks[i])
            for (unsigned long p = 0; p < MiB; p += PAGE)
                zero &= tag_of(ldg(chunks[i] + p)) == 0;
    printf("fresh tags read 0: %s\n", zero ? "yes" : "no");
    printf("tag blocks reserved on first access: %s\n", reserved_pages() > reserved ? "yes" : "no");
    printf("pages moved out of tag storage: %s\n", vmstat("pgmigrate_success") > migrated ? "yes" : "no");
    int ok = 1;
    for (int i = 0; i < nchunks; i++)
        if (chunks[i])
            for (unsigned long p = 0; p < MiB; p += PAGE) {
                stg(set_tag(chunks[i] + p + 32, 7));
                ok &= tag_of(ldg(chunks[i] + p + 32)) == 7 && tag_of(ldg(chunks[i] + p)) == 0;
            }
    printf("tags set afterwards stick: %s\n", ok ? "yes" : "no");
    return 0;
}
