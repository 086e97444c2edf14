// Robust mutexes (set_robust_list): a thread, and then a child process, die holding one;
// the kernel marks it FUTEX_OWNER_DIED at their exit and wakes the waiter, whose lock
// returns EOWNERDEAD; pthread_mutex_consistent() makes it usable again.
// exit: 0
// qemu: differs: qemu-user answers set_robust_list with ENOSYS: the lock times out (ETIMEDOUT)
// build: -pthread
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t *m;

static void *die_holding(void *arg) {
    pthread_mutex_lock(m);
    return arg;                     /* exits without unlocking */
}

static void init(pthread_mutex_t *mx, int pshared) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (pshared)
        pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(mx, &a);
}

static void take(const char *who) {
    /* A timed lock: where robust futexes are not cleaned up, the waiter would wait forever. */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 3;
    int r = pthread_mutex_timedlock(m, &deadline);
    printf("%s: lock returned %s\n", who, r == EOWNERDEAD ? "EOWNERDEAD" : r ? strerror(r) : "0");
    if (r != 0 && r != EOWNERDEAD)
        return;
    if (r == EOWNERDEAD)
        pthread_mutex_consistent(m);
    printf("%s: unlock returned %d, lock again %d\n", who, pthread_mutex_unlock(m), pthread_mutex_lock(m));
    pthread_mutex_unlock(m);
}

int main(void) {
    m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    init(m, 0);
    pthread_t th;
    pthread_create(&th, NULL, die_holding, NULL);
    pthread_join(th, NULL);
    take("after the thread");

    pthread_mutex_destroy(m);
    init(m, 1);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        pthread_mutex_lock(m);
        _exit(0);                   /* dies holding the process-shared mutex */
    }
    waitpid(pid, NULL, 0);
    take("after the child");
    return 0;
}
