// fork/waitpid with an exit status; the child has its own copy of memory.
// exit: 0
// qemu: same
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int counter = 10;
int main(void) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 1; }
    if (pid == 0) { counter += 5; printf("child: counter=%d\n", counter); exit(7); }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) { perror("waitpid"); return 1; }
    printf("parent: counter=%d exited=%d status=%d\n", counter, WIFEXITED(status), WEXITSTATUS(status));
    return 0;
}
