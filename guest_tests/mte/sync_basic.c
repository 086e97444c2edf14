/* IRG/STG/LDG and a synchronous tag-check fault caught with siginfo: si_code is
   SEGV_MTESERR and si_addr the faulting address without its tag bits. */
#include "mte.h"
// qemu: differs: it keeps the tag bits in si_addr

int main(void) {
    printf("HWCAP2_MTE: %d\n", !!(getauxval(AT_HWCAP2) & HWCAP2_MTE));
    if (mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS)) {
        perror("prctl");
        return 1;
    }
    char *buf = tagged_mmap(4096);
    printf("fresh PROT_MTE memory has tag %u\n", tag_of(ldg(buf)));
    char *p = set_tag(buf, 3);
    tag_range(p, 64);
    printf("after STG: granule 0 tag %u, granule 4 tag %u\n", tag_of(ldg(buf)), tag_of(ldg(buf + 64)));
    p[0] = 'a';
    p[63] = 'b';
    printf("matching accesses work: %c%c\n", p[0], p[63]);
    catch_segv(0);
    char *wrong = set_tag(buf, 5);
    if (!FAULTED()) {
        wrong[17] = 'x';
        puts("not reached");
    }
    printf("wrong tag: %s at offset %ld, tag bits in si_addr: %lu\n", code_name(fault_code),
           (long)(fault_addr - untag(buf)), fault_addr >> 56);
    printf("byte unchanged: %d\n", p[17] == 0);
    /* untagged pointer into a tagged page: logical tag 0 vs allocation tag 3 */
    if (!FAULTED())
        (void)*(volatile char *)(buf + 8);
    printf("untagged pointer: %s\n", code_name(fault_code));
    /* granule 4 onwards still has tag 0: the untagged pointer works there */
    buf[64] = 'z';
    printf("tag 0 granule via untagged pointer: %c\n", buf[64]);
    return 0;
}
