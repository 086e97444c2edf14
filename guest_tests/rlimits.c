// Resource limits are kept per process (setrlimit/prlimit64 read back, inherited by
// fork, a hard limit raised only with CAP_SYS_RESOURCE, which mteemu's guest has when mteemu has it);
// RLIMIT_NOFILE is enforced (dup3
// past it: EBADF, as ksys_dup3()), RLIMIT_CORE is kept (no core dumps here);
// fsync/fdatasync reach a file and refuse a pipe (EINVAL), as Linux's vfs_fsync does.
// exit: 0
// | setrlimit soft 256: 0
// | read back: 256, hard unchanged: 1
// ~ raising the hard limit: (allowed with|EPERM without) CAP_SYS_RESOURCE
// | soft above hard: Invalid argument
// | dup3 past the soft limit: Bad file descriptor
// | RLIMIT_CORE 0: 0
// | child inherits: 256
// | fsync a file: 0, fdatasync: 0
// | fsync a pipe: Invalid argument
// qemu: same
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caps.h"

int main(void) {
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    rlim_t hard = r.rlim_max;
    r.rlim_cur = 256;
    printf("setrlimit soft 256: %d\n", setrlimit(RLIMIT_NOFILE, &r));
    getrlimit(RLIMIT_NOFILE, &r);
    printf("read back: %lu, hard unchanged: %d\n", (unsigned long)r.rlim_cur, r.rlim_max == hard);
    r.rlim_max = hard + 1;
    int raised = setrlimit(RLIMIT_NOFILE, &r) == 0, eperm = !raised && errno == EPERM;
    printf("raising the hard limit: %s\n", has_cap(24 /* CAP_SYS_RESOURCE */)
           ? (raised ? "allowed with CAP_SYS_RESOURCE" : "refused with CAP_SYS_RESOURCE")
           : (eperm ? "EPERM without CAP_SYS_RESOURCE" : "allowed without CAP_SYS_RESOURCE"));
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
