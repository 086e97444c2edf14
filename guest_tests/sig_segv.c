// SIGSEGV on an unmapped address, caught with siginfo and left with siglongjmp.
// exit: 0
// qemu: same
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
static sigjmp_buf env;
static volatile void *fault_addr;
static volatile int code;
static void handler(int sig, siginfo_t *si, void *uc) { fault_addr = si->si_addr; code = si->si_code; siglongjmp(env, 1); }
int main(void) {
    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler; sa.sa_flags = SA_SIGINFO; sigaction(SIGSEGV, &sa, 0);
    volatile int *p = (int *)0x1234568;
    if (sigsetjmp(env, 1) == 0) { *p = 42; puts("not reached"); return 1; }
    printf("caught SIGSEGV at %p code=%d\n", (void *)fault_addr, code);
    if (sigsetjmp(env, 1) == 0) { int x = *(volatile int *)0x10; printf("%d\n", x); }
    printf("caught again at %p code=%d\n", (void *)fault_addr, code);
    return 0;
}
