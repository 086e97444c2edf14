/* The program tests/test_gdb.py debugs with gdb-multiarch through `mteemu run -g`.
   Not a guest test of its own (no expected output): each mode is one thing to debug.
     plain   break at add_one, step, read and write `value`
     fault   a synchronous tag-check fault (pointer tag 5, memory tag 3), after
             tagged_ready() where the allocation tags can be read and set
     spin    loops forever: for Ctrl-C
     thread  a second thread changes `counter`: for a watchpoint on it
     fork    a child runs add_one too: the session follows the parent
     exec    execs itself in plain mode
   Built with pac-ret for every function: GDB unwinds through signed return addresses. */
// build: -O0 -pthread -mbranch-protection=pac-ret+leaf
#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../mte/mte.h"

volatile long counter;
int value = 41;

__attribute__((noinline)) int add_one(int x) {
    return x + 1;
}

__attribute__((noinline)) void tagged_ready(char *p) {
    __asm__ volatile("" : : "r"(p) : "memory");
}

static void *worker(void *arg) {
    for (int i = 0; i < 5; i++)
        counter += 10;
    return arg;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "plain";
    if (!strcmp(mode, "spin")) {
        for (;;)
            counter++;
    }
    if (!strcmp(mode, "thread")) {
        pthread_t th;
        pthread_create(&th, NULL, worker, NULL);
        pthread_join(th, NULL);
        printf("counter %ld\n", counter);
        return 0;
    }
    if (!strcmp(mode, "fork")) {
        pid_t pid = fork();
        if (pid == 0) {
            printf("child %d\n", add_one(100));
            return 0;
        }
        waitpid(pid, NULL, 0);
    }
    if (!strcmp(mode, "exec")) {
        char *args[] = {argv[0], "plain", NULL};
        execv("/proc/self/exe", args);
        return 1;
    }
    if (!strcmp(mode, "fault")) {
        if (mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS))
            return 1;
        char *buf = tagged_mmap(4096);
        char *p = set_tag(buf, 3);
        tag_range(p, 32);
        p[0] = 'a';
        tagged_ready(p);
        char *wrong = set_tag(buf, 5);
        wrong[16] = 'x';
        puts("not reached");
        return 1;
    }
    value = add_one(value);
    printf("value %d\n", value);
    return 0;
}
