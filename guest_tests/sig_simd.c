/* rt_sigreturn restores every register, SIMD included: a handler that clobbers
   v16 (caller-saved, so nothing but the signal frame can preserve it) and x9
   must not disturb the interrupted code. */
// exit: 0
// qemu: same
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

static void handler(int sig) {
    (void)sig;
    __asm__ volatile("movi v16.16b, #0x55\n\tmov x9, #0x77" ::: "v16", "x9");
}

int main(void) {
    signal(SIGUSR1, handler);
    uint64_t lo = 0x0123456789abcdefULL, hi = 0xfedcba9876543210ULL, out_lo, out_hi, x9;
    long pid = getpid();
    __asm__ volatile(
        "fmov d16, %[lo]\n\t"
        "mov v16.d[1], %[hi]\n\t"
        "mov x9, #0x1234\n\t"
        "mov x0, %[pid]\n\t"
        "mov x1, #10\n\t"          /* SIGUSR1 */
        "mov x8, #129\n\t"         /* kill: the signal arrives on the way out of this svc */
        "svc #0\n\t"
        "umov %[olo], v16.d[0]\n\t"
        "umov %[ohi], v16.d[1]\n\t"
        "mov %[x9], x9\n\t"
        : [olo] "=&r"(out_lo), [ohi] "=&r"(out_hi), [x9] "=&r"(x9)
        : [lo] "r"(lo), [hi] "r"(hi), [pid] "r"(pid)
        : "x0", "x1", "x8", "x9", "v16", "memory");
    printf("v16 = %016llx%016llx x9 = %llx\n", (unsigned long long)out_hi, (unsigned long long)out_lo,
           (unsigned long long)x9);
    return !(out_lo == lo && out_hi == hi && x9 == 0x1234);
}
