// The demo guest run by `mteemu demo`: Arm MTE catching memory bugs, on an emulated board.
// Built by scripts/build_demo: aarch64-linux-gnu-gcc -static -O2 -g -march=armv8.5-a+memtag
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PROT_MTE
#define PROT_MTE 0x20
#endif
#ifndef HWCAP2_MTE
#define HWCAP2_MTE (1 << 18)
#endif

// A toy tagging allocator: every object gets a random tag (IRG) on its granules (STG).
static char *heap;
static size_t used;
static char *tag_alloc(size_t n) {
    n = (n + 15) & ~15UL;
    char *p = heap + used, *t;
    used += n;
    __asm__ volatile("irg %0, %1" : "=r"(t) : "r"(p));
    for (size_t i = 0; i < n; i += 16)
        __asm__ volatile("stg %0, [%0]" : : "r"(t + i) : "memory");
    return t;
}

static sigjmp_buf again;
static void on_segv(int sig, siginfo_t *si, void *uc) {
    (void)sig, (void)uc;
    printf("  caught SIGSEGV, si_code %d (%s), at heap offset %ld\n", si->si_code,
           si->si_code == 9 ? "SEGV_MTESERR: synchronous tag-check fault" : "?",
           (long)((uintptr_t)si->si_addr - (uintptr_t)heap));
    siglongjmp(again, 1);
}

__attribute__((noipa)) static void copy_name(char *dst, const char *src) {
    strcpy(dst, src);      // no bounds check: the bug
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("mteemu demo: Arm MTE on an emulated board\n");
    printf("  HWCAP2_MTE advertised: %s\n", getauxval(AT_HWCAP2) & HWCAP2_MTE ? "yes" : "no");
    prctl(PR_SET_TAGGED_ADDR_CTRL, PR_TAGGED_ADDR_ENABLE | PR_MTE_TCF_SYNC | (0xfffeUL << 3), 0, 0, 0);
    heap = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE | PROT_MTE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *name = tag_alloc(16), *secret = tag_alloc(32);
    strcpy(secret, "the secret");
    printf("  two objects, tags %lu and %lu\n", (uintptr_t)name >> 56 & 15, (uintptr_t)secret >> 56 & 15);

    struct sigaction sa = {0};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    if (!sigsetjmp(again, 1))
        copy_name(name, "a name longer than sixteen bytes");
    printf("  the overflow wrote nothing past its object: secret is still \"%s\"\n", secret);

    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        printf("  a child process repeats the bug without a handler; mteemu reports it:\n");
        copy_name(name, "a name longer than sixteen bytes");
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("  the child was killed by signal %d; the demo is done\n", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return 0;
}
