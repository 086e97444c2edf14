/* MTE instructions fault like the memory accesses they are: STG to a read-only page
   is SEGV_ACCERR, LDG of an unmapped address SEGV_MAPERR, an unaligned STG or STGP
   SIGBUS/BUS_ADRALN, each with the exact address and nothing changed. */
#include "mte.h"
// qemu: same

int main(void) {
    mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS);
    char *buf = tagged_mmap(3 * 4096);
    catch_segv(0);
    catch_signal(SIGBUS, 0);

    mprotect(buf, 4096, PROT_READ | PROT_MTE);
    if (!FAULTED())
        stg(set_tag(buf + 32, 3));
    printf("STG to a read-only page: %s at +%ld, tag still %u\n", code_name(fault_code),
           (long)(untag((void *)fault_addr) - untag(buf)), tag_of(ldg(buf + 32)));
    munmap(buf + 8192, 4096);
    if (!FAULTED())
        (void)ldg(buf + 8192 + 48);
    printf("LDG of an unmapped address: %s at +%ld\n", code_name(fault_code),
           (long)(untag((void *)fault_addr) - untag(buf)));
    if (!FAULTED())
        stg(set_tag(buf + 4096 + 8, 3));
    printf("unaligned STG: SIGBUS code %d at +%ld, tag still %u\n", fault_code,
           (long)(untag((void *)fault_addr) - untag(buf)), tag_of(ldg(buf + 4096)));
    if (!FAULTED())
        __asm__ volatile("stgp xzr, xzr, [%0]" : : "r"(set_tag(buf + 4096 + 4, 3)) : "memory");
    printf("unaligned STGP: SIGBUS code %d\n", fault_code);
    return 0;
}
