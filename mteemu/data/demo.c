// The demo guest run by `mteemu demo`: a little of everything the emulator models.
// Built by scripts/build_demo: aarch64-linux-gnu-gcc -static -O2 -g -march=armv8.5-a+memtag -pthread
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/wait.h>
#include <unistd.h>
#ifndef HWCAP2_MTE
#define HWCAP2_MTE (1 << 18)
#endif
static long total;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *worker(void *arg) {
    for (long i = 1; i <= 1000; i++) { pthread_mutex_lock(&lock); total += i * (long)arg; pthread_mutex_unlock(&lock); }
    return 0;
}
static volatile sig_atomic_t seen;
static void on_signal(int sig) { seen = sig; }
int main(void) {
    printf("mteemu demo: arm64 Linux user space on an emulated board\n");
    printf("  HWCAP2_MTE advertised: %s\n", getauxval(AT_HWCAP2) & HWCAP2_MTE ? "yes" : "no");
    pthread_t t[2];
    for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, worker, (void *)(i + 1));
    for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
    printf("  two threads summed %ld\n", total);
    signal(SIGUSR1, on_signal);
    raise(SIGUSR1);
    printf("  signal handler ran for signal %d\n", (int)seen);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) _exit(42);
    int status; waitpid(pid, &status, 0);
    printf("  forked child exited with %d\n", WEXITSTATUS(status));
    return 0;
}
