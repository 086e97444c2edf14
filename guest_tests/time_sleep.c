// clock_gettime and nanosleep: the sleep really takes its time.
// exit: 0
// qemu: same
#include <stdio.h>
#include <time.h>
int main(void) {
    struct timespec a, b, req = {0, 50 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (nanosleep(&req, 0)) { perror("nanosleep"); return 1; }
    clock_gettime(CLOCK_MONOTONIC, &b);
    long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    struct timespec rt; clock_gettime(CLOCK_REALTIME, &rt);
    printf("slept at least 50 ms: %d\nrealtime after 2020: %d\n", ms >= 50, rt.tv_sec > 1577836800);
    return 0;
}
