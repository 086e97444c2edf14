// Resource limits are kept per process (setrlimit/prlimit64 read back, inherited by
// fork, a hard limit never raised without privilege); RLIMIT_NOFILE is enforced (dup3
// past it: EBADF, as ksys_dup3()), RLIMIT_CORE is kept (no core dumps here);
// fsync/fdatasync reach a file and refuse a pipe (EINVAL), as Linux's vfs_fsync does.
// exit: 0
// qemu: differs: qemu-user sets the host process's limits, and as root may raise a hard limit
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    rlim_t hard = r.rlim_max;
    r.rlim_cur = 256;
    printf("setrlimit soft 256: %d\n", setrlimit(RLIMIT_NOFILE, &r));
    getrlimit(RLIMIT_NOFILE, &r);
    printf("read back: %lu, hard unchanged: %d\n", (unsigned long)r.rlim_cur, r.rlim_max == hard);
    r.rlim_max = hard + 1;
    printf("raising the hard limit: %s\n", setrlimit(RLIMIT_NOFILE, &r) ? strerror(errno) : "allowed");
    r.rlim_cur = 512, r.rlim_max = 100;
    printf("soft above hard: %s\n", setrlimit(RLIMIT_NOFILE, &r) ? strerror(errno) : "allowed");
    printf("dup3 past the soft limit: %s\n", dup3(0, 300, 0) < 0 ? strerror(errno) : "allowed");
    struct rlimit core = {0, 0};
    printf("RLIMIT_CORE 0: %d\n", setrlimit(RLIMIT_CORE, &core));
    fflush(stdout);
    if (fork() == 0) {
        getrlimit(RLIMIT_NOFILE, &r);
        printf("child inherits: %lu\n", (unsigned long)r.rlim_cur);
        return 0;
    }
    wait(NULL);
    int fd = open("rlimits.tmp", O_CREAT | O_RDWR | O_TRUNC, 0600);
    write(fd, "x", 1);
    printf("fsync a file: %d, fdatasync: %d\n", fsync(fd), fdatasync(fd));
    close(fd);
    unlink("rlimits.tmp");
    int p[2];
    pipe(p);
    printf("fsync a pipe: %s\n", fsync(p[0]) ? strerror(errno) : "0");
    return 0;
}
