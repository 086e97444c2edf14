/* PSTATE.TCO and signals: the interrupted code's TCO is saved in the frame's
   pstate and restored by rt_sigreturn; the handler itself starts with TCO clear
   (Linux's setup_return()), so its accesses are checked. */
#include "mte.h"
// qemu: differs: it keeps PSTATE.TCO set in the handler

static volatile uint64_t tco_in_handler = 99;
static void on_usr1(int sig) {
    (void)sig;
    uint64_t v;
    __asm__ volatile("mrs %0, tco" : "=r"(v));
    tco_in_handler = v;
}

int main(void) {
    mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS);
    signal(SIGUSR1, on_usr1);
    __asm__ volatile("msr tco, #1" ::: "memory");
    raise(SIGUSR1);
    uint64_t after;
    __asm__ volatile("mrs %0, tco" : "=r"(after));
    __asm__ volatile("msr tco, #0" ::: "memory");
    printf("TCO in the handler: %#lx, after return: %#lx\n", (unsigned long)tco_in_handler, (unsigned long)after);
    return 0;
}
