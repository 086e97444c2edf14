/* getpid, getppid and gettid are answered by C once armed (issue 24): the answers must stay
 * Linux's across fork, threads and a parent's exit, and a signal or an asynchronous tag
 * fault due at a call's return must still be delivered there. Built by tests/conftest.py. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int seen_at = -1, loop_at;

static void on_usr1(int sig) { (void)sig; seen_at = loop_at; }

static void on_segv(int sig, siginfo_t *info, void *uc) {
    (void)sig, (void)uc;
    seen_at = info->si_code == 8 /* SEGV_MTEAERR */ ? loop_at : -2;
}

static void *thread_tid(void *arg) {
    *(pid_t *)arg = gettid();
    return NULL;
}

int main(void) {
    pid_t pid = getpid(), ppid = getppid();
    int same = 1;
    for (int i = 0; i < 1000; i++)
        same &= getpid() == pid && getppid() == ppid && gettid() == pid;
    printf("1000 calls agree: %d\n", same);

    fflush(stdout);                           /* a child must not print our buffer again */
    pid_t child = fork();
    if (child == 0) {
        int ok = 1;
        for (int i = 0; i < 100; i++)
            ok &= getpid() != pid && getppid() == pid && gettid() == getpid();
        _exit(ok ? 0 : 1);
    }
    int status;
    waitpid(child, &status, 0);
    printf("child sees itself and its parent: %d; parent still itself: %d\n",
           WIFEXITED(status) && WEXITSTATUS(status) == 0, getpid() == pid && gettid() == pid);

    pthread_t t;
    pid_t other = 0;
    pthread_create(&t, NULL, thread_tid, &other);
    pthread_join(t, NULL);
    printf("a thread's tid is its own: %d\n", other != pid && other > 0 && gettid() == pid);

    fflush(stdout);
    if (fork() == 0) {                        /* the grandchild's parent exits under it */
        pid_t mid = getpid();
        if (fork() == 0) {
            while (getppid() == mid)
                ;
            printf("orphan's parent after the exit: %d\n", getppid());
            fflush(stdout);
            _exit(0);
        }
        _exit(0);
    }
    while (wait(NULL) > 0)
        ;
    usleep(200000);

    signal(SIGUSR1, on_usr1);
    for (loop_at = 0; loop_at < 1000; loop_at++) {
        getppid();
        if (loop_at == 500)
            kill(getpid(), SIGUSR1);          /* delivered when kill returns */
    }
    printf("SIGUSR1 handled in iteration %d\n", seen_at);

    struct sigaction sa = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO};
    sigaction(SIGSEGV, &sa, NULL);
    prctl(PR_SET_TAGGED_ADDR_CTRL, PR_TAGGED_ADDR_ENABLE | PR_MTE_TCF_ASYNC | (0xfffeUL << PR_MTE_TAG_SHIFT), 0, 0, 0);
    volatile char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | 0x20, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    seen_at = -1;
    for (loop_at = 0; loop_at < 3; loop_at++)
        getppid();                            /* armed again, before the fault */
    loop_at = 100;
    p = (volatile char *)((unsigned long)p | (5UL << 56));
    p[0] = 1;                                 /* async: due at the next kernel entry */
    for (loop_at = 100; loop_at < 200; loop_at++)
        getppid();
    printf("async tag fault reported in iteration %d\n", seen_at);
    return 0;
}
