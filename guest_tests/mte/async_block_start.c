/* An asynchronous tag-check fault at a store that begins a translated block, with a system
   call later in the same block: Linux reports it at that call (el0_svc_common() sees TFSR
   set, -ERESTARTNOINTR puts the PC back on the SVC, SIGSEGV/SEGV_MTEAERR is delivered
   there). mteemu finishes the faulting store alone before reporting; Unicorn's instruction
   count did not reach a block translated while nothing counted, so the step ran on through
   the SVC and the fault came at the next call (issue 25: found by the kernel's MTE
   selftests under a real kernel). The store is the first instruction of store_yield, and
   the first call (tags match) translates its block. */
#include <stdint.h>
#include <ucontext.h>
#include "mte.h"
// qemu: differs: it makes the system call first and delivers the signal at the next one
// | SEGV_MTEAERR at the SVC after the store: yes
// exit: 0

static volatile int code;
static volatile uintptr_t fault_pc;
static void handler(int sig, siginfo_t *si, void *ucv) {
    (void)sig;
    code = si->si_code;
    fault_pc = ((ucontext_t *)ucv)->uc_mcontext.pc;
}

void store_yield(char *p);
__asm__(".text\n.global store_yield\n.type store_yield, %function\nstore_yield:\n"
        "\tstrb wzr, [x0]\n\tmov x8, #124\n\tsvc #0\n\tret\n.size store_yield, .-store_yield\n");

int main(void) {
    char *buf = tagged_mmap(4096);
    struct sigaction sa = {0};
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    mte_enable(PR_MTE_TCF_ASYNC, ALL_TAGS);
    store_yield(buf);                     /* tags match: the block is translated */
    store_yield(set_tag(buf, 3));         /* an async fault, due at its sched_yield */
    getpid();                             /* before the fix it came here */
    printf("%s at the SVC after the store: %s\n", code_name(code),
           fault_pc == (uintptr_t)store_yield + 8 ? "yes" : "no");
    return 0;
}
