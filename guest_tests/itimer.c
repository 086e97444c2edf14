// setitimer()/getitimer() and alarm(): SIGALRM arrives after the interval — also while the
// program spins without system calls, and while it waits in pause() (EINTR) — an interval
// timer repeats, a disarmed one never fires, and getitimer shows what is left.
// exit: 0
// | alarm in a busy loop: SIGALRM
// | pause: interrupted (EINTR), handler ran 1
// | interval timer: 3 ticks, then disarmed
// | getitimer: armed 1, interval 0
// | a disarmed timer does not fire: 0
// qemu: same
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t ticks;
static void on_alarm(int sig) { (void)sig; ticks++; }

int main(void) {
    signal(SIGALRM, on_alarm);
    alarm(1);
    while (!ticks)
        ;                                      /* no system call: the timer must still fire */
    printf("alarm in a busy loop: SIGALRM\n");
    ticks = 0;
    struct itimerval it = {{0, 0}, {0, 100000}};
    setitimer(ITIMER_REAL, &it, NULL);
    errno = 0;
    pause();
    printf("pause: interrupted (%s), handler ran %d\n", strerrorname_np(errno), ticks);
    ticks = 0;
    struct itimerval every = {{0, 50000}, {0, 50000}};
    setitimer(ITIMER_REAL, &every, NULL);
    while (ticks < 3)
        pause();
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("interval timer: %d ticks, then disarmed\n", ticks);
    struct itimerval one = {{0, 0}, {5, 0}}, cur;
    setitimer(ITIMER_REAL, &one, NULL);
    getitimer(ITIMER_REAL, &cur);
    printf("getitimer: armed %d, interval %ld\n", cur.it_value.tv_sec >= 4 && cur.it_value.tv_sec <= 5,
           (long)cur.it_interval.tv_usec);
    setitimer(ITIMER_REAL, &off, NULL);
    ticks = 0;
    usleep(200000);
    printf("a disarmed timer does not fire: %d\n", ticks);
    return 0;
}
