// A pipe between a parent and a forked child; the parent blocks until data arrives.
// exit: 0
// qemu: same
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    int fds[2]; if (pipe(fds)) { perror("pipe"); return 1; }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) { close(fds[0]); const char *m = "through the pipe"; write(fds[1], m, strlen(m)); _exit(0); }
    close(fds[1]);
    char buf[64] = {0}; ssize_t n = read(fds[0], buf, sizeof buf - 1);
    ssize_t eof = read(fds[0], buf + n, 1);
    int st; waitpid(pid, &st, 0);
    printf("got %zd bytes: %s; then %zd (EOF); child status %d\n", n, buf, eof, WEXITSTATUS(st));
    return 0;
}
