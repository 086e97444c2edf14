/* When an asynchronous tag-check fault is pending, Linux does not run the next system
   call: el0_svc_common() sets -ERESTARTNOINTR, SIGSEGV/SEGV_MTEAERR is delivered, and the
   call is made again only if the handler returns. A handler that long-jumps therefore
   never sees the call's effect. The same holds after a synchronous fault was handled at
   the very same store (its code already translated). */
#include <sched.h>
#include "mte.h"
// qemu: differs: it runs the system call first and delivers the signal after it
// | async then write(): SEGV_MTEAERR before the write
// | sync at the store: SEGV_MTESERR
// | async at the same store, then sched_yield(): SEGV_MTEAERR at step 1
// | a handler that returns: the call is made after it: restarted write
// exit: 0

__attribute__((noipa)) static void store(char *p) { *p = 1; }

static volatile int handled;
static void count(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    handled = si->si_code;
}

int main(void) {
    char *buf = tagged_mmap(4096);
    char *bad = set_tag(buf, 3);              /* the memory's tag is 0 */

    mte_enable(PR_MTE_TCF_ASYNC, ALL_TAGS);
    catch_segv(0);
    if (FAULTED()) {
        printf("async then write(): %s before the write\n", code_name(fault_code));
    } else {
        store(bad);
        write(1, "the write ran\n", 14);      /* Linux: never, the handler long-jumps */
        printf("no fault\n");
    }
    fflush(stdout);

    mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS);
    if (FAULTED())
        printf("sync at the store: %s\n", code_name(fault_code));
    else
        store(bad);
    mte_enable(PR_MTE_TCF_ASYNC, ALL_TAGS);
    volatile int step = 0;
    if (FAULTED()) {
        printf("async at the same store, then sched_yield(): %s at step %d\n", code_name(fault_code), step);
    } else {
        store(bad);
        step = 1;
        sched_yield();
        step = 2;
        sched_yield();
        printf("no async fault\n");
    }
    fflush(stdout);

    /* A handler that returns: the interrupted call is made after it. */
    struct sigaction sa = {0};
    sa.sa_sigaction = count;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    store(bad);
    printf("a handler that returns: the call is made after it: ");
    fflush(stdout);
    store(bad);
    write(1, "restarted write\n", 16);
    return handled == SEGV_MTEAERR ? 0 : 1;
}
