// statfs/fstatfs describe the file system a path is on (procfs for /proc), mkfifo makes a
// FIFO with mknodat, pselect waits for a pipe to become readable, sync returns.
// exit: 0
// | statfs /proc: 0 0x9fa0
// | statfs .: 0, a block size: 1
// | fstatfs /proc/self/status: 0 0x9fa0
// | mkfifo: 0, a FIFO: 1
// | pselect on an empty pipe: 0
// | pselect on a readable pipe: 1, set: 1
// | sync: done
// qemu: same
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

int main(void) {
    struct statfs s;
    int rc = statfs("/proc", &s);
    printf("statfs /proc: %d %#lx\n", rc, (unsigned long)s.f_type);
    rc = statfs(".", &s);
    printf("statfs .: %d, a block size: %d\n", rc, s.f_bsize > 0);
    int fd = open("/proc/self/status", O_RDONLY);
    rc = fstatfs(fd, &s);
    printf("fstatfs /proc/self/status: %d %#lx\n", rc, (unsigned long)s.f_type);
    rc = mkfifo("fifo", 0600);
    struct stat st;
    stat("fifo", &st);
    printf("mkfifo: %d, a FIFO: %d\n", rc, S_ISFIFO(st.st_mode));
    int p[2];
    pipe(p);
    fd_set r;
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    struct timespec ts = {0, 1000000};
    printf("pselect on an empty pipe: %d\n", pselect(p[0] + 1, &r, NULL, NULL, &ts, NULL));
    write(p[1], "x", 1);
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    rc = pselect(p[0] + 1, &r, NULL, NULL, &ts, NULL);
    printf("pselect on a readable pipe: %d, set: %d\n", rc, FD_ISSET(p[0], &r));
    sync();
    printf("sync: done\n");
    return 0;
}
