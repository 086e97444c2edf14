/* LDGM, STGM and STZGM are EL1-only instructions: at EL0 they are undefined, and
   Linux delivers SIGILL with ILL_ILLOPC (do_el0_undef). */
#include "mte.h"
// qemu: differs: it reports ILL_ILLOPN

int main(void) {
    mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS);
    char *buf = tagged_mmap(4096);
    uint64_t v = 0;
    catch_signal(SIGILL, 0);
    if (!FAULTED())
        __asm__ volatile("ldgm %0, [%1]" : "+r"(v) : "r"(buf));
    printf("LDGM at EL0: SIGILL %s\n", fault_code == ILL_ILLOPC ? "ILL_ILLOPC" : "other");
    if (!FAULTED())
        __asm__ volatile("stgm xzr, [%0]" : : "r"(buf) : "memory");
    printf("STGM at EL0: SIGILL %s\n", fault_code == ILL_ILLOPC ? "ILL_ILLOPC" : "other");
    if (!FAULTED())
        __asm__ volatile("stzgm xzr, [%0]" : : "r"(buf) : "memory");
    printf("STZGM at EL0: SIGILL %s\n", fault_code == ILL_ILLOPC ? "ILL_ILLOPC" : "other");
    return 0;
}
