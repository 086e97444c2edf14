/* One heap bug per argument, under glibc's heap tagging, for the fault report's causes
   (tests/test_alloc_history.py runs each with --alloc-history and reads --report-json:
   the cause, the sizes, and the functions that allocated and freed the memory). Without
   an argument nothing goes wrong: a heap that allocates, reallocates and frees in two
   threads, and a fork. */
#include <pthread.h>
#include <sys/wait.h>
#include "mte.h"
// build: -pthread
// env: GLIBC_TUNABLES=glibc.mem.tagging=3
// | heap ok
// qemu: same

static volatile long sink;

/* Each helper does something after its call, so that it is no tail call and its frame
   is in the backtraces. */
__attribute__((noinline)) char *alloc_buf(size_t n) {
    char *p = malloc(n);
    memset(p, 'x', n);
    sink++;
    return p;
}

__attribute__((noinline)) void drop_buf(char *p) {
    free(p);
    sink++;
}

__attribute__((noinline)) char read_at(char *p, long i) {
    char c = ((volatile char *)p)[i];
    sink++;
    return c;
}

static void *thread_free(void *p) {
    drop_buf(p);
    return NULL;
}

static void *thread_work(void *arg) {
    (void)arg;
    for (int i = 0; i < 100; i++)
        drop_buf(alloc_buf(16 + i));
    return NULL;
}

static int clean(void) {
    pthread_t th;
    pthread_create(&th, NULL, thread_work, NULL);
    char *p = alloc_buf(40);
    p = realloc(p, 4000);
    char *q = calloc(10, 10);
    free(realloc(NULL, 24));                 /* glibc's realloc tail-calls malloc */
    void *r;
    if (posix_memalign(&r, 64, 100) != 0)
        return 1;
    free(r);
    free(q);
    free(p);
    pthread_join(th, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        drop_buf(alloc_buf(64));
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    puts("heap ok");
    return status;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return clean();
    const char *bug = argv[1];
    char *p = alloc_buf(32);
    char *keep = alloc_buf(64);              /* a neighbour that stays allocated */
    (void)keep;
    if (!strcmp(bug, "use-after-free")) {
        drop_buf(p);
        read_at(p, 8);
    } else if (!strcmp(bug, "use-after-free-thread")) {
        pthread_t th;
        pthread_create(&th, NULL, thread_free, p);
        pthread_join(th, NULL);
        read_at(p, 0);
    } else if (!strcmp(bug, "overflow-byte")) {
        read_at(p, 32);                      /* the byte after a 32-byte block */
    } else if (!strcmp(bug, "overflow-granule")) {
        read_at(keep, 64 + 16);              /* a whole granule past the end */
    } else if (!strcmp(bug, "underflow")) {
        read_at(keep, -16);
    } else if (!strcmp(bug, "double-free")) {
        drop_buf(p);
        drop_buf(p);
    } else if (!strcmp(bug, "use-after-realloc")) {
        char *q = realloc(p, 8192);          /* too big to grow in place: moved */
        sink += (long)q;
        read_at(p, 0);
    } else if (!strcmp(bug, "far")) {
        char *m = tagged_mmap(1 << 20);      /* tagged memory nobody allocated or tagged */
        read_at(set_tag(m + (1 << 19), 3), 0);
    } else if (!strcmp(bug, "fork-child")) {
        drop_buf(p);                         /* freed by the parent, used by the child */
        pid_t pid = fork();
        if (pid == 0) {
            read_at(p, 0);
            _exit(0);
        }
        int status;
        waitpid(pid, &status, 0);
        return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    } else if (!strcmp(bug, "exec")) {
        drop_buf(p);                         /* freed before the exec: forgotten by it */
        char arg[32];
        snprintf(arg, sizeof arg, "%p", (void *)p);
        execl("/proc/self/exe", argv[0], "after-exec", arg, (char *)NULL);
        return 2;
    } else if (!strcmp(bug, "after-exec")) {
        char *old = (char *)strtoul(argv[2], NULL, 16);
        read_at(old, 0);                     /* the old program's pointer */
    }
    puts("not reached");
    return 0;
}
