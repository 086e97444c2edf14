/* SA_RESTART, SA_NODEFER and SA_RESETHAND as Linux implements them. */
// signal: SIGUSR1
// qemu: same
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int hits;
static int blocked_in_handler;

static void on_usr1(int sig) {
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    blocked_in_handler = sigismember(&cur, sig);
    hits++;
}

/* A child interrupts the parent's blocking read with SIGUSR1, then writes. */
static void interrupted_read(int flags) {
    struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = flags};
    sigaction(SIGUSR1, &sa, NULL);
    int fds[2];
    pipe(fds);
    pid_t parent = getpid(), child = fork();
    if (child == 0) {
        usleep(200000);
        kill(parent, SIGUSR1);
        usleep(200000);
        write(fds[1], "x", 1);
        _exit(0);
    }
    char c;
    hits = 0;
    ssize_t n = read(fds[0], &c, 1);
    printf("flags=%s read=%zd errno=%s hits=%d\n", flags & SA_RESTART ? "SA_RESTART" : "0",
           n, n < 0 ? strerror(errno) : "-", hits);
    waitpid(child, NULL, 0);
    close(fds[0]);
    close(fds[1]);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);   /* the last raise kills us */
    interrupted_read(SA_RESTART);
    interrupted_read(0);

    struct sigaction sa = {.sa_handler = on_usr1};
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
    printf("default: signal blocked in its handler: %d\n", blocked_in_handler);
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
    printf("SA_NODEFER: signal blocked in its handler: %d\n", blocked_in_handler);

    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
    struct sigaction now;
    sigaction(SIGUSR1, NULL, &now);
    printf("SA_RESETHAND: handler after delivery is SIG_DFL: %d, hits=%d\n", now.sa_handler == SIG_DFL, hits);
    raise(SIGUSR1);   /* default action now: terminate */
    puts("not reached");
    return 0;
}
