/* A hostile guest: seeded random syscalls with random and boundary arguments.
   Usage: storm SEED CALLS. Signals are ignored where they can be; exit, execve, clone,
   rt_sigreturn and the kill family are skipped (they would end or fork the storm). */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static uint64_t state;
static uint64_t next(void) { state = state * 6364136223846793005ULL + 1442695040888963407ULL; return state >> 11; }
static char scratch[65536];

static uint64_t arg(void) {
    switch (next() % 12) {
    case 0: return 0;
    case 1: return (uint64_t)-1;
    case 2: return next() % 64;
    case 3: return (uint64_t)scratch + next() % sizeof scratch;
    case 4: return ((uint64_t)5 << 56) | (uint64_t)scratch;
    case 5: return 0xffff800000000000ULL;
    case 6: return 0x1000;
    case 7: return next() << 12;
    case 8: return 1ULL << 48;
    case 9: return (uint64_t)scratch + 1;
    case 10: return 0x7fffffff;
    default: return next();
    }
}

int main(int argc, char **argv) {
    state = argc > 1 ? strtoull(argv[1], 0, 0) : 1;
    long calls = argc > 2 ? atol(argv[2]) : 100000;
    for (int s = 1; s < 65; s++)
        signal(s, SIG_IGN);
    for (long i = 0; i < calls; i++) {
        long nr = next() % 461;
        switch (nr) {
        case 93: case 94: case 221: case 281: case 220: case 435: case 139: case 129: case 130: case 131:
        case 214: case 215: case 216: case 222: case 226: case 233: /* brk munmap mremap mmap mprotect madvise */
        case 101: case 115: case 98: case 260: case 95: case 73: case 72: case 133: case 137: case 22: case 63:
        case 65: case 436: /* waits: sleeps, futex, wait4, polls, sigsuspend, reads of stdin */
            continue;
        }
        syscall(nr, arg(), arg(), arg(), arg(), arg(), arg());
    }
    return 0;
}
