// SA_ONSTACK with sigaltstack: stack overflow is caught on the alternate stack.
// exit: 0
// qemu: same
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static sigjmp_buf env;
static volatile int on_alt;
static char *alt;
static void handler(int sig) { char here; on_alt = &here >= alt && &here < alt + 65536; siglongjmp(env, 1); }
static int recurse(int n) { volatile char buf[1024]; buf[0] = (char)n; return recurse(n + 1) + buf[0]; }
int main(void) {
    alt = malloc(65536);
    stack_t ss = {.ss_sp = alt, .ss_size = 65536, .ss_flags = 0};
    if (sigaltstack(&ss, 0)) { perror("sigaltstack"); return 1; }
    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler; sa.sa_flags = SA_ONSTACK; sigaction(SIGSEGV, &sa, 0);
    if (sigsetjmp(env, 1) == 0) recurse(0);
    printf("stack overflow caught, handler ran on the alternate stack: %d\n", on_alt);
    return 0;
}
