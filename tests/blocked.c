/* Many threads blocked while one makes system calls (issue 24): 100 threads wait on a pipe
 * and 100 on a condition variable (futex), while the main thread makes 20,000 getppid()
 * calls, 20,000 64-byte write+read pairs through a second pipe and 2,000 sched_yield()s;
 * then it releases them all. A blocked thread's call is re-tried only when its wait queue
 * is woken (mteemu run --stats counts the re-tries: wait-polls).
 * Built by tests/conftest.py. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <unistd.h>

#define READERS 100
#define SLEEPERS 100
static int p[2];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int go, asleep;

static void *reader(void *arg) {
    char c;
    (void)arg;
    return read(p[0], &c, 1) == 1 ? NULL : (void *)1;
}

static void *sleeper(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    asleep++;
    while (!go)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(void) {
    pthread_t t[READERS + SLEEPERS];
    int q[2];
    char buf[64] = {0};
    if (pipe(p) || pipe(q))
        return 1;
    for (int i = 0; i < READERS; i++)
        pthread_create(&t[i], NULL, reader, NULL);
    for (int i = READERS; i < READERS + SLEEPERS; i++)
        pthread_create(&t[i], NULL, sleeper, NULL);
    for (;;) {                                   /* until every sleeper waits on the futex */
        pthread_mutex_lock(&lock);
        int n = asleep;
        pthread_mutex_unlock(&lock);
        if (n == SLEEPERS)
            break;
        sched_yield();
    }
    usleep(100000);                              /* and every reader on the pipe */
    unsigned long sum = 0;
    for (int i = 0; i < 20000; i++)
        sum += getppid() >= 0;
    for (int i = 0; i < 20000; i++) {
        buf[0] = (char)i;
        if (write(q[1], buf, sizeof buf) != sizeof buf || read(q[0], buf, sizeof buf) != sizeof buf)
            return 3;
    }
    for (int i = 0; i < 2000; i++)
        sched_yield();
    pthread_mutex_lock(&lock);
    go = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < READERS; i++)
        if (write(p[1], "x", 1) != 1)
            return 2;
    int bad = 0;
    for (int i = 0; i < READERS + SLEEPERS; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += r != NULL;
    }
    printf("calls %lu, threads released %d\n", sum, READERS + SLEEPERS - bad);
    return 0;
}
