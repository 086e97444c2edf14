// IRG's random tags, getrandom and fork: all reproducible under one --seed, so the same
// run prints the same thing every time (tests/test_hostile_guests.py runs it 20 times).
// exit: 0
// qemu: differs: its IRG tags and random bytes come from the host
// linux: differs: IRG's tags, getrandom and the random seeds are drawn from --seed 0 (this test's point); Linux's are random
#include <stdio.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    prctl(55, 1 | 2 | (0xfffeUL << 3), 0, 0, 0);     /* PR_SET_TAGGED_ADDR_CTRL: sync, tags 1-15 */
    static char buf[64];
    printf("IRG tags:");
    for (int i = 0; i < 16; i++) {
        void *p;
        __asm__ volatile("irg %0, %1" : "=r"(p) : "r"(buf));
        printf(" %lu", ((uintptr_t)p >> 56) & 15);
    }
    unsigned char r[8];
    getrandom(r, sizeof r, 0);
    printf("\ngetrandom: %02x%02x%02x%02x%02x%02x%02x%02x\n", r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        getrandom(r, 4, 0);
        printf("child %02x%02x%02x%02x\n", r[0], r[1], r[2], r[3]);
        return 0;
    }
    waitpid(pid, NULL, 0);
    getrandom(r, 4, 0);
    printf("parent %02x%02x%02x%02x\n", r[0], r[1], r[2], r[3]);
    return 0;
}
