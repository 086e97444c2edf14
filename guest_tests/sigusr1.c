// A handler for SIGUSR1, raised with kill(getpid()).
// exit: 0
// qemu: same
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
static volatile sig_atomic_t got;
static void on_usr1(int sig) { got = sig; }
int main(void) {
    signal(SIGUSR1, on_usr1);
    kill(getpid(), SIGUSR1);
    printf("handler saw signal %d\n", (int)got);
    return got == SIGUSR1 ? 0 : 1;
}
