/* LDGM, STGM and STZGM are EL1-only instructions: at EL0 they are undefined, and
   Linux delivers SIGILL with ILL_ILLOPC (do_el0_undef). */
#include "mte.h"
// qemu: differs: it reports ILL_ILLOPN

static volatile int ill_code;
static sigjmp_buf ill_jmp;
static void on_ill(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    ill_code = si->si_code;
    siglongjmp(ill_jmp, 1);
}

int main(void) {
    mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS);
    char *buf = tagged_mmap(4096);
    uint64_t v = 0;
    struct sigaction sa = {0};
    sa.sa_sigaction = on_ill;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGILL, &sa, NULL);
    if (!sigsetjmp(ill_jmp, 1))
        __asm__ volatile("ldgm %0, [%1]" : "+r"(v) : "r"(buf));
    printf("LDGM at EL0: SIGILL %s\n", ill_code == ILL_ILLOPC ? "ILL_ILLOPC" : "other");
    ill_code = 0;
    if (!sigsetjmp(ill_jmp, 1))
        __asm__ volatile("stgm xzr, [%0]" : : "r"(buf) : "memory");
    printf("STGM at EL0: SIGILL %s\n", ill_code == ILL_ILLOPC ? "ILL_ILLOPC" : "other");
    ill_code = 0;
    if (!sigsetjmp(ill_jmp, 1))
        __asm__ volatile("stzgm xzr, [%0]" : : "r"(buf) : "memory");
    printf("STZGM at EL0: SIGILL %s\n", ill_code == ILL_ILLOPC ? "ILL_ILLOPC" : "other");
    return 0;
}
