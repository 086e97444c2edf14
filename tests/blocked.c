/* Many threads blocked while one makes system calls (issue 24): 200 threads wait on a pipe,
 * the main thread makes 20,000 getppid() calls, then releases them with one byte each.
 * The kernel's wake scans must not follow the calls (mteemu run --stats counts them).
 * Built by tests/conftest.py. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#define THREADS 200
static int p[2];

static void *reader(void *arg) {
    char c;
    (void)arg;
    return read(p[0], &c, 1) == 1 ? NULL : (void *)1;
}

int main(void) {
    pthread_t t[THREADS];
    if (pipe(p))
        return 1;
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, reader, NULL);
    usleep(100000);                              /* let them all block */
    unsigned long sum = 0;
    for (int i = 0; i < 20000; i++)
        sum += getppid() >= 0;
    for (int i = 0; i < THREADS; i++)
        if (write(p[1], "x", 1) != 1)
            return 2;
    int bad = 0;
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += r != NULL;
    }
    printf("calls %lu, threads released %d\n", sum, THREADS - bad);
    return 0;
}
