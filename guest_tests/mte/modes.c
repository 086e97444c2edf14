/* The tag-check fault modes Linux offers through prctl: NONE (no checks), SYNC
   (precise SEGV_MTESERR), ASYNC (the access completes; SEGV_MTEAERR with si_addr 0
   arrives at the next kernel entry, after the access) and, when both are asked for,
   the CPU's preferred mode (default async; sync or asymm with --mte-tcf-preferred,
   asymm = sync reads and async writes). PR_GET_TAGGED_ADDR_CTRL returns exactly
   the bits that were set. */
#include "mte.h"
// qemu: differs: it returns one TCF bit from PR_GET_TAGGED_ADDR_CTRL and keeps tag bits in si_addr
// variant prefsync: --mte-tcf-preferred sync
// variant prefasymm: --mte-tcf-preferred asymm

static char *buf;
static volatile int seen_at_signal = -1;
static volatile int syscalls_before_signal;

static void on_fault(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    fault_code = si->si_code;
    fault_addr = (uintptr_t)si->si_addr;
    seen_at_signal = ((volatile char *)set_tag(buf, 3))[0];
    siglongjmp(fault_jmp, 1);
}

static const char *where(void) {
    static char text[64];
    if (!fault_addr)
        return "0";
    snprintf(text, sizeof text, "buf%+ld%s", (long)(fault_addr - untag(buf)), fault_addr >> 56 ? " (tagged)" : "");
    return text;
}

static void try_write(const char *mode, int value) {
    volatile char *wrong = set_tag(buf, 5);
    seen_at_signal = -1;
    syscalls_before_signal = 0;
    if (!FAULTED()) {
        wrong[0] = (char)value;
        syscalls_before_signal = 1;      /* still here after the access: not a precise fault */
        getppid();                       /* a kernel entry: an asynchronous fault is reported here */
        syscalls_before_signal = 2;
    }
    printf("%-10s write: %-12s si_addr=%s memory=%d at signal %d, ran on after the access: %d\n", mode,
           fault_code ? code_name(fault_code) : "no signal", where(),
           ((volatile char *)set_tag(buf, 3))[0], seen_at_signal, syscalls_before_signal);
}

static void try_read(const char *mode) {
    volatile char *wrong = set_tag(buf, 5);
    syscalls_before_signal = 0;
    if (!FAULTED()) {
        (void)wrong[0];
        syscalls_before_signal = 1;
        getppid();
        syscalls_before_signal = 2;
    }
    printf("%-10s read:  %-12s si_addr=%s, ran on after the access: %d\n", mode,
           fault_code ? code_name(fault_code) : "no signal", where(), syscalls_before_signal);
}

static void set_mode(unsigned long tcf) {
    if (mte_enable(tcf, ALL_TAGS))
        perror("prctl");
    printf("PR_GET_TAGGED_ADDR_CTRL = %#lx\n", (unsigned long)prctl(PR_GET_TAGGED_ADDR_CTRL, 0, 0, 0, 0));
}

int main(void) {
    buf = tagged_mmap(4096);
    tag_range(set_tag(buf, 3), 64);
    struct sigaction sa = {0};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);

    set_mode(PR_MTE_TCF_NONE);
    try_write("none", 1);
    try_read("none");
    set_mode(PR_MTE_TCF_SYNC);
    try_write("sync", 2);
    try_read("sync");
    set_mode(PR_MTE_TCF_ASYNC);
    try_write("async", 3);
    try_read("async");
    set_mode(PR_MTE_TCF_SYNC | PR_MTE_TCF_ASYNC);
    try_write("both", 4);
    try_read("both");

    printf("unknown bit: %d\n", prctl(PR_SET_TAGGED_ADDR_CTRL, 1UL << 20, 0, 0, 0));
    printf("arg3 set: %d\n", prctl(PR_SET_TAGGED_ADDR_CTRL, PR_TAGGED_ADDR_ENABLE, 1, 0, 0));
    printf("GET with arg2: %d\n", prctl(PR_GET_TAGGED_ADDR_CTRL, 1, 0, 0, 0));
    return 0;
}
