// build: -pthread
// Two pthreads increment a mutex-protected counter and are joined.
// exit: 0
// qemu: same
#include <pthread.h>
#include <stdio.h>
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static void *work(void *arg) {
    for (int i = 0; i < 20000; i++) { pthread_mutex_lock(&lock); counter++; pthread_mutex_unlock(&lock); }
    return arg;
}
int main(void) {
    pthread_t a, b;
    pthread_create(&a, 0, work, (void *)1); pthread_create(&b, 0, work, (void *)2);
    void *ra, *rb; pthread_join(a, &ra); pthread_join(b, &rb);
    printf("counter=%ld results=%ld,%ld\n", counter, (long)ra, (long)rb);
    return 0;
}
