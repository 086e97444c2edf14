// utimensat() and futimens(): explicit times, UTIME_OMIT keeps one, UTIME_NOW sets now,
// a bad nanosecond field is EINVAL, and sendfile() copies a file (touch and cat use them).
// exit: 0
// | explicit: 1000000000.500000000 2000000000.250000000
// | omit atime: 1000000000.500000000 3000000000.000000000
// | futimens now: 1 1
// | bad nsec: EINVAL
// | sendfile: 11 bytes "sendfile ok"
// qemu: same
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void show(const char *what) {
    struct stat st;
    stat("t.txt", &st);
    printf("%s: %ld.%09ld %ld.%09ld\n", what, (long)st.st_atim.tv_sec, st.st_atim.tv_nsec, (long)st.st_mtim.tv_sec,
           st.st_mtim.tv_nsec);
}

int main(void) {
    int fd = open("t.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
    write(fd, "sendfile ok", 11);
    struct timespec ts[2] = {{1000000000, 500000000}, {2000000000, 250000000}};
    utimensat(AT_FDCWD, "t.txt", ts, 0);
    show("explicit");
    struct timespec omit[2] = {{0, UTIME_OMIT}, {3000000000, 0}};
    utimensat(AT_FDCWD, "t.txt", omit, 0);
    show("omit atime");
    time_t before = time(NULL);
    futimens(fd, NULL);
    struct stat st;
    fstat(fd, &st);
    printf("futimens now: %d %d\n", st.st_atim.tv_sec >= before, st.st_mtim.tv_sec >= before);
    struct timespec bad[2] = {{0, 2000000000}, {0, 0}};
    errno = 0;
    utimensat(AT_FDCWD, "t.txt", bad, 0);
    printf("bad nsec: %s\n", strerrorname_np(errno));
    int out = open("copy.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    off_t off = 0;
    long n = sendfile(out, fd, &off, 100);
    close(out);
    char buf[32] = {0};
    out = open("copy.txt", O_RDONLY);
    read(out, buf, sizeof buf - 1);
    printf("sendfile: %ld bytes \"%s\"\n", n, buf);
    return 0;
}
