// name: system calls beside 1,000 blocked threads
// target: 8
// 1,000 threads wait on a pipe while the main thread makes 50,000 64-byte write+read pairs
// through another pipe, then releases them: the cost of a call must not grow with the
// number of threads that sleep (a wait queue per object, not a scan of every thread).
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#define THREADS 1000
static int sleepers[2];
static void *sleeper(void *arg) {
    char c;
    (void)arg;
    return read(sleepers[0], &c, 1) == 1 ? NULL : (void *)1;
}
int main(void) {
    static pthread_t t[THREADS];
    pthread_attr_t attr;
    int q[2];
    char buf[64] = {0};
    if (pipe(sleepers) || pipe(q))
        return 1;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 << 10);
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], &attr, sleeper, NULL))
            return 2;
    usleep(200000);                              /* every sleeper reaches its read */
    unsigned long sum = 0;
    for (int i = 0; i < 50000; i++) {
        buf[0] = (char)i;
        if (write(q[1], buf, sizeof buf) != sizeof buf || read(q[0], buf, sizeof buf) != sizeof buf)
            return 3;
        sum += (unsigned char)buf[0];
    }
    if (write(sleepers[1], (char[THREADS]){0}, THREADS) != THREADS)
        return 4;
    int bad = 0;
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += r != NULL;
    }
    printf("%lu %d\n", sum, bad);
    return 0;
}
