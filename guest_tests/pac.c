// Pointer authentication as Linux gives it to user space (FEAT_PAuth): HWCAP_PACA and
// HWCAP_PACG, signing and authenticating with the thread's keys, a corrupted pointer that
// fails authentication and faults when used, pac-ret protecting a return address, keys
// inherited by fork and replaced by PR_PAC_RESET_KEYS, and PR_PAC_SET_ENABLED_KEYS.
// exit: 0
// qemu: differs: qemu-aarch64 7.2 has no PR_PAC_GET_ENABLED_KEYS / PR_PAC_SET_ENABLED_KEYS (EINVAL)
// linux: differs: the oracle's CPU (QEMU -cpu max) has FEAT_FPAC: a failed AUTIA traps (SIGILL) instead of returning a poisoned pointer; mteemu's CPU model has no FEAT_FPAC
// build: -mbranch-protection=pac-ret
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PR_PAC_RESET_KEYS
#define PR_PAC_RESET_KEYS 54
#endif
#define PR_PAC_APIAKEY (1UL << 0)
#define PR_PAC_APIBKEY (1UL << 1)
#define PR_PAC_APDAKEY (1UL << 2)
#define PR_PAC_APDBKEY (1UL << 3)
#define PR_PAC_SET_ENABLED_KEYS 60
#define PR_PAC_GET_ENABLED_KEYS 61

static uint64_t pacia(uint64_t p, uint64_t mod) {
    __asm__ volatile("pacia %0, %1" : "+r"(p) : "r"(mod));
    return p;
}
static uint64_t autia(uint64_t p, uint64_t mod) {
    __asm__ volatile("autia %0, %1" : "+r"(p) : "r"(mod));
    return p;
}
static uint64_t pacib(uint64_t p, uint64_t mod) {
    __asm__ volatile("pacib %0, %1" : "+r"(p) : "r"(mod));
    return p;
}
static uint64_t autib(uint64_t p, uint64_t mod) {
    __asm__ volatile("autib %0, %1" : "+r"(p) : "r"(mod));
    return p;
}
static uint64_t pacga(uint64_t a, uint64_t b) {
    uint64_t r;
    __asm__ volatile("pacga %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

static sigjmp_buf env;
static volatile int code;
static void handler(int sig, siginfo_t *si, void *uc) {
    (void)sig, (void)uc;
    code = si->si_code;
    siglongjmp(env, 1);
}

static void target(void) { puts("not reached: a forged pointer was used"); }

/* pac-ret: a function that calls another signs its return address on entry (PACIASP,
   with the APIA key) and authenticates it before `ret` (AUTIASP); an overwritten return
   address fails authentication and the return faults. */
__attribute__((noinline)) static void smash(void) {
    volatile uint64_t *frame = __builtin_frame_address(0);
    frame[1] ^= 0x10;           /* the saved LR, as a stack overflow would change it */
    getpid();                   /* not a leaf: its LR is saved, signed, on the stack */
}

int main(void) {
    unsigned long hw = getauxval(AT_HWCAP);
    printf("HWCAP_PACA %d, HWCAP_PACG %d\n", !!(hw & HWCAP_PACA), !!(hw & HWCAP_PACG));
    uint64_t p = (uint64_t)&target;
    uint64_t s = pacia(p, 42);
    printf("signed differs: %d, authenticates: %d\n", s != p, autia(s, 42) == p);
    printf("wrong modifier authenticates: %d\n", autia(s, 43) == p);
    printf("pacga is a 32-bit code in the top half: %d\n", (pacga(1, 2) & 0xffffffff) == 0 && pacga(1, 2) != 0);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    if (!sigsetjmp(env, 1))
        ((void (*)(void))autia(s ^ (1UL << 50), 42))();
    printf("calling a forged pointer: SIGSEGV code %d\n", code);
    code = 0;
    if (!sigsetjmp(env, 1))
        smash();
    printf("pac-ret on a smashed return address: SIGSEGV code %d\n", code);

    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(pacia(p, 42) == s ? 0 : 1);
    int status;
    waitpid(pid, &status, 0);
    printf("fork keeps the keys: %d\n", WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* main returns through AUTIASP with the APIA key: the key tests use APIB. */
    uint64_t sb = pacib(p, 7);
    printf("reset with unknown keys: %d\n", prctl(PR_PAC_RESET_KEYS, 1UL << 5, 0, 0, 0));
    prctl(PR_PAC_RESET_KEYS, PR_PAC_APIBKEY, 0, 0, 0);
    printf("after PR_PAC_RESET_KEYS the old signature fails: %d, APIA unchanged: %d\n", autib(sb, 7) != p,
           autia(s, 42) == p);
    printf("enabled keys: %#x\n", prctl(PR_PAC_GET_ENABLED_KEYS, 0, 0, 0, 0));
    prctl(PR_PAC_SET_ENABLED_KEYS, PR_PAC_APIBKEY, 0, 0, 0);
    printf("after disabling APIB: %#x, pacib is a no-op: %d\n", prctl(PR_PAC_GET_ENABLED_KEYS, 0, 0, 0, 0),
           pacib(p, 7) == p);
    prctl(PR_PAC_SET_ENABLED_KEYS, PR_PAC_APIBKEY, PR_PAC_APIBKEY, 0, 0);
    printf("enabled again: %#x\n", prctl(PR_PAC_GET_ENABLED_KEYS, 0, 0, 0, 0));
    printf("enabling a key not named: %d\n", prctl(PR_PAC_SET_ENABLED_KEYS, PR_PAC_APIBKEY, PR_PAC_APDAKEY, 0, 0));
    signal(SIGSEGV, SIG_DFL);
    return 0;
}
