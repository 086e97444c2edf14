/* MTE instructions fault like the memory accesses they are: STG to a read-only page
   is SEGV_ACCERR, LDG of an unmapped address SEGV_MAPERR, an unaligned STG or STGP
   SIGBUS/BUS_ADRALN, each with the exact address and nothing changed. */
#include "mte.h"
// qemu: same

static volatile int bus_code;
static volatile uintptr_t bus_addr;
static sigjmp_buf bus_jmp;
static void on_bus(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    bus_code = si->si_code;
    bus_addr = (uintptr_t)si->si_addr;
    siglongjmp(bus_jmp, 1);
}

int main(void) {
    mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS);
    char *buf = tagged_mmap(3 * 4096);
    catch_segv(0);
    struct sigaction sa = {0};
    sa.sa_sigaction = on_bus;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGBUS, &sa, NULL);

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
    if (!sigsetjmp(bus_jmp, 1))
        stg(set_tag(buf + 4096 + 8, 3));
    printf("unaligned STG: SIGBUS code %d at +%ld, tag still %u\n", bus_code,
           (long)(untag((void *)bus_addr) - untag(buf)), tag_of(ldg(buf + 4096)));
    bus_code = 0;
    if (!sigsetjmp(bus_jmp, 1))
        __asm__ volatile("stgp xzr, xzr, [%0]" : : "r"(set_tag(buf + 4096 + 4, 3)) : "memory");
    printf("unaligned STGP: SIGBUS code %d\n", bus_code);
    return 0;
}
