// prctl(PR_SET_PDEATHSIG): a grandchild asks for SIGUSR1 when its parent dies, and gets
// it when that parent exits; PR_GET_PDEATHSIG reads it back; a fork does not inherit it.
// PR_SET_DUMPABLE: the value is kept, inherited by fork, and reset to 1 by execve.
// exit: 0
// qemu: differs: qemu-user hands execve of /proc/self/exe to the host kernel, where that is qemu itself
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static int report[2];
static void on_usr1(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    char msg[64];
    int n = snprintf(msg, sizeof msg, "grandchild: got signal %d (SIGUSR1), si_code %d\n", sig, si->si_code);
    write(report[1], msg, n);
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc > 1) {                                    /* after execve */
        printf("after execve: dumpable %d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
        return 0;
    }
    pipe(report);
    printf("dumpable %d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    printf("after PR_SET_DUMPABLE 0: %d; 2 is refused: %d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0),
           prctl(PR_SET_DUMPABLE, 2, 0, 0, 0));
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        printf("child: dumpable %d (inherited)\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
        fflush(stdout);
        int go[2];
        pipe(go);
        pid_t grandchild = fork();
        if (grandchild == 0) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = on_usr1;
            sa.sa_flags = SA_SIGINFO;
            sigaction(SIGUSR1, &sa, NULL);
            prctl(PR_SET_PDEATHSIG, SIGUSR1, 0, 0, 0);
            int sig = 0;
            prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0);
            char line[64];
            int n = snprintf(line, sizeof line, "grandchild: PR_GET_PDEATHSIG %d\n", sig);
            write(report[1], line, n);
            pid_t before = getppid();
            close(go[0]);
            write(go[1], "x", 1);                      /* tell the parent it may exit now */
            for (;;)
                if (getppid() != before)
                    pause();                           /* the signal may come first or last */
        }
        char c;
        close(go[1]);
        read(go[0], &c, 1);
        _exit(0);                                      /* dies: the grandchild is orphaned */
    }
    waitpid(child, NULL, 0);
    close(report[1]);
    char buf[256];
    int n, total = 0;
    while ((n = read(report[0], buf + total, sizeof buf - 1 - total)) > 0)
        total += n;
    buf[total] = 0;
    fputs(buf, stdout);
    int unset = -1;
    prctl(PR_GET_PDEATHSIG, &unset, 0, 0, 0);
    printf("parent: PR_GET_PDEATHSIG %d\n", unset);
    fflush(stdout);
    char *args[] = {argv[0], "exec", NULL};
    execv("/proc/self/exe", args);
    return 1;
}
