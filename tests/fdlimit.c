/* A guest that uses up file descriptors (issue 23, item 7): first its own RLIMIT_NOFILE
 * (EMFILE at 1,024, as Linux), dup3/F_DUPFD past the limit, then, with the limit raised to
 * fs.nr_open, the host's descriptors (ENFILE a reserve short of mteemu's own limit); then a
 * tag-check fault, whose report must still print. Built by tests/conftest.py. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#define PROT_MTE 0x20

static int open_all(const char *path, int *last_errno) {
    int n = 0;
    for (;;) {
        int fd = open(path, O_RDONLY);
        if (fd < 0) {
            *last_errno = errno;
            return n;
        }
        n++;
    }
}

int main(int argc, char **argv) {
    int err = 0;
    int n = open_all(argv[0], &err);
    printf("default limit: %d opened, then %s\n", n, strerrorname_np(err));
    printf("dup3 to 1024: %s\n", dup3(0, 1024, 0) < 0 ? strerrorname_np(errno) : "ok");
    printf("F_DUPFD 1024: %s\n", fcntl(0, F_DUPFD, 1024) < 0 ? strerrorname_np(errno) : "ok");
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    printf("hard limit: %lu\n", (unsigned long)rl.rlim_max);
    rl.rlim_cur = rl.rlim_max;                 /* no privilege needed up to the hard limit */
    printf("raise to the hard limit: %s\n", setrlimit(RLIMIT_NOFILE, &rl) < 0 ? strerrorname_np(errno) : "ok");
    struct rlimit past = {(1 << 20) + 1, (1 << 20) + 1};
    printf("past nr_open: %s\n", setrlimit(RLIMIT_NOFILE, &past) < 0 ? strerrorname_np(errno) : "ok");
    printf("dup3 to 4000: %s\n", dup3(0, 4000, 0) == 4000 ? "ok" : strerrorname_np(errno));
    if (argc > 1) {                      /* the test limits mteemu's own descriptors first */
        n = open_all(argv[0], &err);
        printf("raised limit: %s\n", strerrorname_np(err));
        fflush(stdout);
        prctl(PR_SET_TAGGED_ADDR_CTRL, PR_TAGGED_ADDR_ENABLE | PR_MTE_TCF_SYNC | (0xfffe << PR_MTE_TAG_SHIFT), 0, 0, 0);
        volatile char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_MTE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        p = (volatile char *)((unsigned long)p | (3UL << 56));
        p[0] = 1;                        /* allocation tag 0, pointer tag 3: SIGSEGV */
    }
    return 0;
}
