/* vfork: the child runs first in the parent's memory until it exits. */
// exit: 0
// qemu: same
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    fflush(stdout);
    pid_t pid = vfork();
    if (pid == 0) {
        static const char msg[] = "child of vfork\n";
        write(1, msg, sizeof msg - 1);
        _exit(7);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("parent: child exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
