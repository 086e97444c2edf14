/* DC ZVA through a tagged pointer is a tag-checked store of the whole block
   (DCZID_EL0 says how big: 64 bytes here); DC GVA/GZVA set the block's tags from
   any address inside it. glibc's memset uses DC ZVA for large buffers, so memset
   of a big tagged buffer must work. */
#include "mte.h"
// qemu: differs: it faults with SEGV_MAPERR on DC ZVA through a tagged pointer

int main(void) {
    mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS);
    uint64_t dczid;
    __asm__("mrs %0, dczid_el0" : "=r"(dczid));
    size_t block = 4UL << (dczid & 0xf);
    printf("DCZID_EL0: %lu-byte blocks, DC ZVA permitted: %d\n", (unsigned long)block, !(dczid & 0x10));
    size_t len = 64 * 4096;
    char *buf = tagged_mmap(len);
    char *t = set_tag(buf, 7);
    for (size_t i = 0; i < len; i += block)
        __asm__ volatile("dc gva, %0" : : "r"(t + i + 8) : "memory");
    memset(t, 0xab, len);
    printf("tagged memset of 256 KiB: %d\n", (unsigned char)t[12345] == 0xab);
    memset(t, 0, len);                        /* glibc uses DC ZVA for zeroing */
    printf("tagged memset(0) of 256 KiB: %d\n", t[0] == 0 && t[len - 1] == 0);
    memset(t + 100, 0x11, 1000);
    __asm__ volatile("dc zva, %0" : : "r"(t + 100 + 30) : "memory");
    char *blk = t + ((100 + 30) & ~(block - 1));
    printf("DC ZVA zeroes the block holding the address: %d %d, next block kept: %d\n", blk[0] == 0,
           blk[block - 1] == 0, blk[block] == 0x11);
    catch_segv(0);
    stg(set_tag(buf + 4 * block + 16, 2));    /* one granule of that block gets tag 2 */
    memset(t + 4 * block, 0x22, 16);
    if (!FAULTED())
        __asm__ volatile("dc zva, %0" : : "r"(t + 4 * block + 40) : "memory");
    printf("DC ZVA over a granule with another tag: %s at block+%ld, first granule kept: %d\n",
           code_name(fault_code), (long)(fault_addr - untag(buf) - 4 * block), t[4 * block] == 0x22);
    __asm__ volatile("dc gzva, %0" : : "r"(set_tag(buf + 4 * block + 63, 9)) : "memory");
    printf("DC GZVA from the block's last byte: tags %u %u, data %d\n", tag_of(ldg(buf + 4 * block)),
           tag_of(ldg(buf + 4 * block + block - 16)), ((char *)set_tag(buf, 9))[4 * block] == 0);
    return 0;
}
