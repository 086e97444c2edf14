/* The guest's /dev under --root (issue 23, item 11): each device as Linux's
 * drivers/char/mem.c makes it, the /proc/self/fd links, /dev/tty without a terminal, and
 * /dev/shm as a tmpfs that two processes share and where PROT_MTE file mappings work.
 * Prints one "name: result" line per check. Built by tests/conftest.py. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROT_MTE 0x20

static const char *err(long rc) { return rc < 0 ? strerrorname_np(errno) : "ok"; }

static void node(const char *path) {
    struct stat st;
    if (stat(path, &st) < 0)
        printf("%s: %s\n", path, strerrorname_np(errno));
    else
        printf("%s: %s %u:%u %o\n", path, S_ISCHR(st.st_mode) ? "chr" : "other", major(st.st_rdev),
               minor(st.st_rdev), st.st_mode & 07777);
}

int main(int argc, char **argv) {
    char buf[256];
    const char *devs[] = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"};
    for (unsigned i = 0; i < sizeof devs / sizeof *devs; i++)
        node(devs[i]);

    int fd = open("/dev/null", O_RDWR);
    printf("null read: %zd\n", read(fd, buf, 8));
    printf("null write: %zd\n", write(fd, "abc", 3));
    printf("null lseek: %ld\n", (long)lseek(fd, 100, SEEK_SET));
    printf("null mmap: %s\n", err(mmap(0, 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED ? -1 : 0));

    fd = open("/dev/zero", O_RDWR);
    memset(buf, 7, 8);
    ssize_t n = read(fd, buf, 8);
    printf("zero read: %zd %d\n", n, buf[0] | buf[7]);
    char *z = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    printf("zero shared mmap: %s\n", z == MAP_FAILED ? strerrorname_np(errno) : z[100] == 0 ? "zeros" : "data");

    fd = open("/dev/full", O_RDWR);
    printf("full write: %s\n", err(write(fd, "x", 1)));
    printf("full read: %zd %d\n", read(fd, buf, 4), buf[0]);

    fd = open("/dev/urandom", O_RDONLY);
    printf("urandom read: %zd\n", read(fd, buf, 200));

    printf("tty open: %s\n", err(open("/dev/tty", O_RDWR)));

    n = readlink("/dev/stdin", buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("stdin link: %s\n", buf);
    n = readlink("/dev/fd", buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("fd link: %s\n", buf);
    fd = open("/dev/fd/2", O_WRONLY);
    printf("dev/fd/2: %s\n", err(fd));

    struct statfs sf;
    statfs("/dev/shm", &sf);
    printf("shm statfs: %s\n", sf.f_type == 0x01021994 ? "tmpfs" : "other");
    statfs("/dev", &sf);
    printf("dev statfs: %s\n", sf.f_type == 0x01021994 ? "tmpfs" : "other");

    if (argc > 1)                        /* "host": the host's /dev/shm is not ours to touch */
        goto mounts;
    /* A child writes through a shared tagged mapping of a /dev/shm file; the parent reads it. */
    fd = open("/dev/shm/region", O_RDWR | O_CREAT | O_EXCL, 0600);
    printf("shm create: %s\n", err(fd));
    ftruncate(fd, 4096);
    char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_MTE, MAP_SHARED, fd, 0);
    printf("shm PROT_MTE mmap: %s\n", p == MAP_FAILED ? strerrorname_np(errno) : "ok");
    if (fork() == 0) {
        int c = open("/dev/shm/region", O_RDWR);
        char *q = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, c, 0);
        strcpy(q, "from the child");
        _exit(0);
    }
    wait(0);
    printf("shm shared: %s\n", p);
    printf("shm unlink: %s\n", err(unlink("/dev/shm/region")));

    /* Into the mount and out again by "..". */
    mkdir("/dev/shm/d", 0700);
    chdir("/dev/shm/d");
    chdir("../..");
    printf("cwd after ../..: %s\n", getcwd(buf, sizeof buf));
    rmdir("/dev/shm/d");

mounts:
    fd = open("/proc/self/mounts", O_RDONLY);
    n = read(fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("mounts /dev: %s\n", strstr(buf, " /dev devtmpfs ") ? "yes" : "no");
    printf("mounts /dev/shm: %s\n", strstr(buf, " /dev/shm tmpfs ") ? "yes" : "no");
    return 0;
}
