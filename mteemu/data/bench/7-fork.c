// name: fork-heavy
// target: none
// 200 fork + exit + waitpid, each child touching 64 KiB of its parent's 1 MiB heap.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    char *heap = malloc(1 << 20);
    memset(heap, 1, 1 << 20);
    int total = 0;
    for (int i = 0; i < 200; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            memset(heap + (i % 16) * 65536, i, 65536);
            _exit(heap[(i % 16) * 65536] & 0x7f);
        }
        int status;
        waitpid(pid, &status, 0);
        total += WEXITSTATUS(status);
    }
    printf("%d\n", total);
    return 0;
}
