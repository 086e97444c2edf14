/* Linux's limits and errors where a hostile guest would make mteemu hold huge objects or
   reach what has no mapping (tests/test_bounds.py); "name: result" lines. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static void show(const char *what, long rc) {
    if (rc < 0) printf("%s: %s\n", what, strerrorname_np(errno));
    else printf("%s: %#lx\n", what, rc);
}

static long map_try(int fd, int flags) {
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, flags, fd, 0);
    return p == MAP_FAILED ? -1 : 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && !strcmp(argv[1], "root")) {
        show("rmdir /", rmdir("/"));
        show("rename /", rename("/", "/x"));
        return 0;
    }
    size_t big = 256ul << 20;
    char *buf = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    static struct iovec iov[1024];
    for (int i = 0; i < 1024; i++) iov[i] = (struct iovec){buf, big};
    int null = open("/dev/null", O_WRONLY);
    show("writev 1024 x 256 MiB", writev(null, iov, 1024));
    int zero = open("/dev/zero", O_RDONLY);
    for (int i = 0; i < 24; i++) iov[i] = (struct iovec){buf, 16ul << 20};
    show("readv /dev/zero 24 x 16 MiB", readv(zero, iov, 24));
    char *arg = malloc(128 * 1024);
    memset(arg, 'a', 128 * 1024 - 1);
    arg[128 * 1024 - 1] = 0;
    char **args = calloc(65537, sizeof *args);
    for (int i = 0; i < 65536; i++) args[i] = arg;
    show("execve 65536 x 128 KiB", execv("/proc/self/exe", args));
    arg[0] = 0;
    char *huge = malloc(256 * 1024);
    memset(huge, 'b', 256 * 1024 - 1);
    huge[256 * 1024 - 1] = 0;
    char *one[] = {huge, NULL};
    show("execve one 256 KiB argument", execv("/proc/self/exe", one));
    show("mmap shared /dev/null", map_try(open("/dev/null", O_RDWR), MAP_SHARED));
    show("mmap private /dev/null", map_try(open("/dev/null", O_RDWR), MAP_PRIVATE));
    int fds[2];
    pipe(fds);
    show("mmap shared pipe", map_try(fds[0], MAP_SHARED));
    mkfifo("fifo", 0600);
    show("mmap shared fifo", map_try(open("fifo", O_RDWR), MAP_SHARED));
    unlink("fifo");
    int z = open("/dev/zero", O_RDWR);
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, z, 0);
    show("mmap shared /dev/zero", p == MAP_FAILED ? -1 : (p[0] = 7, p[0] == 7 && p[1] == 0 ? 0 : 1));
    return 0;
}
