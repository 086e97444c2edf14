/* A heap-tagged program starts another with vfork + exec and with fork + exec: the new
   program (this one again, with an argument) allocates, writes and frees on its own tagged
   heap and exits 0. Under mteemu a vfork child's exec once died of SIGSEGV in malloc: the
   CPU, resumed in the new address space, looked up the code page the parent ran last
   (vfork's) and that refused lookup was taken for the child's fault. */
// exit: 0
// qemu: same
// variant sync: -E GLIBC_TUNABLES=glibc.mem.tagging=3
// variant async: -E GLIBC_TUNABLES=glibc.mem.tagging=1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int run_child(const char *self, int use_vfork) {
    pid_t pid = use_vfork ? vfork() : fork();
    if (pid == 0) {
        execl(self, self, "child", (char *)0);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv) {
    if (argc > 1) {
        char *p = malloc(100);
        strcpy(p, "the child's heap works");
        puts(p);
        free(p);
        return 0;
    }
    char *q = malloc(64);                      /* the parent's heap is in use across the vfork */
    strcpy(q, "parent");
    fflush(stdout);
    int v = run_child(argv[0], 1);
    int f = run_child(argv[0], 0);
    printf("%s: vfork + exec child %d, fork + exec child %d\n", q, v, f);
    free(q);
    return 0;
}
