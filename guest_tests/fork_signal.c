// A forked child handles signals (its own SIGUSR1, then the SIGCHLD of a grandchild) and
// returns from the handlers: the signal frame's return path is the parent's [vdso] copy.
// exit: 0
// qemu: same
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got_usr1, got_chld;
static void on_usr1(int sig) { (void)sig; got_usr1 = 1; }
static void on_chld(int sig) { (void)sig; got_chld = 1; }

int main(void) {
    pid_t child = fork();
    if (child == 0) {
        signal(SIGUSR1, on_usr1);
        signal(SIGCHLD, on_chld);
        raise(SIGUSR1);
        pid_t grandchild = fork();
        if (grandchild == 0)
            _exit(3);
        int status;
        waitpid(grandchild, &status, 0);
        printf("child: SIGUSR1 handled %d, SIGCHLD handled %d, grandchild exit %d\n", got_usr1, got_chld,
               WEXITSTATUS(status));
        fflush(stdout);
        _exit(got_usr1 && got_chld ? 0 : 1);
    }
    int status;
    waitpid(child, &status, 0);
    printf("parent: child exit %d\n", WEXITSTATUS(status));
    return WEXITSTATUS(status);
}
