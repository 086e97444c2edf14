/* A guest that tries to leave --root by swapping names for symlinks between mteemu's check
   and its use (tests/test_swaps.py). One attack per argv[1]; each prints "name: result"
   lines. Host paths it aims at come in argv: the guest only knows them as strings. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const char *err(long rc) { return rc < 0 ? strerrorname_np(errno) : "ok"; }

/* The first bytes of a file, as text ("ELF" for a program), or the errno. */
static void show_head(const char *what, const char *path) {
    char buf[16] = {0};
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) { printf("%s: %s\n", what, strerrorname_np(errno)); return; }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n >= 4 && !memcmp(buf, "\177ELF", 4)) printf("%s: ELF\n", what);
    else printf("%s: read \"%.*s\"\n", what, (int)(n > 0 ? n : 0), buf);
}

static int copy_self(const char *to) {
    char buf[65536];
    int in = open("/proc/self/exe", O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    if (in < 0 || out < 0) return -1;
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0) write(out, buf, n);
    close(in);
    close(out);
    return 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    setvbuf(stdout, NULL, _IONBF, 0);              /* nothing lost to an exec */
    const char *mode = argv[1], *host = argv[2];   /* host: a host path outside the root */
    /* 1. /proc/self/exe after the running program's file became a symlink to a host file. */
    if (!strcmp(mode, "exe")) {                    /* phase 1: run a copy of ourselves */
        if (copy_self("/copy") < 0) { printf("copy: %s\n", strerrorname_np(errno)); return 1; }
        char *args[] = {argv[0], "exe-swapped", (char *)host, NULL};
        execv("/copy", args);
        printf("execv: %s\n", strerrorname_np(errno));
        return 1;
    }
    if (!strcmp(mode, "exe-swapped")) {            /* phase 2: the copy is running */
        printf("unlink copy: %s\n", err(unlink("/copy")));
        printf("symlink copy: %s\n", err(symlink(host, "/copy")));
        show_head("read /proc/self/exe", "/proc/self/exe");
        struct stat st, real;
        stat("/proc/self/exe", &st);
        int fd = open("/proc/self/exe", O_RDONLY);
        fstat(fd, &real);
        printf("stat /proc/self/exe is the program: %d\n", st.st_ino == real.st_ino && st.st_size > 4096);
        close(fd);
        char *args[] = {"again", "exe-again", (char *)host, NULL};
        execv("/proc/self/exe", args);             /* runs the program, not the host file */
        printf("exec /proc/self/exe: %s\n", strerrorname_np(errno));
        return 1;
    }
    if (!strcmp(mode, "exe-again")) {
        printf("exec /proc/self/exe: ran %s\n", argv[0]);
        return 0;
    }
    if (!strcmp(mode, "execveat")) {               /* 2. AT_SYMLINK_NOFOLLOW on a link out */
        char *args[] = {"x", NULL};
        symlink(host, "/prog-link");
        printf("execveat nofollow: %s\n", err(syscall(SYS_execveat, AT_FDCWD, "prog-link", args, environ,
                                                       AT_SYMLINK_NOFOLLOW)));
        printf("execve through the link: %s\n", err(execv("/prog-link", args)));
        int dir = open("/", O_RDONLY | O_DIRECTORY);
        printf("execveat dirfd nofollow: %s\n", err(syscall(SYS_execveat, dir, "prog-link", args, environ,
                                                            AT_SYMLINK_NOFOLLOW)));
        return 0;
    }
    if (!strcmp(mode, "fd-reopen")) {              /* 3. /proc/self/fd/N after a swap */
        int fd = open("/mine", O_RDONLY);
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        printf("rename away: %s\n", err(rename("/mine", "/mine.old")));
        printf("symlink in its place: %s\n", err(symlink(host, "/mine")));
        show_head("reopen after the swap", path);
        printf("unlink the old name: %s\n", err(unlink("/mine.old")));
        show_head("reopen the deleted file", path);
        int d = open("/sub", O_RDONLY | O_DIRECTORY);
        char dpath[64];
        snprintf(dpath, sizeof dpath, "/proc/self/fd/%d/inner", d);
        rename("/sub", "/sub.old");
        symlink(argv[3], "/sub");                  /* a host directory outside the root */
        show_head("walk through a reopened dir fd", dpath);
        return 0;
    }
    if (!strcmp(mode, "flip")) {                   /* 4a. flip /d between a dir and a link out */
        double end = now() + atof(argv[3]);
        long flips = 0;
        while (now() < end) {
            if (rename("/d", "/d.real") == 0) {
                symlink(host, "/d");
                unlink("/d");
                rename("/d.real", "/d");
                flips++;
            }
        }
        printf("flips: %ld\n", flips);
        return 0;
    }
    if (!strcmp(mode, "use")) {                    /* 4b. open and create under /d meanwhile */
        double end = now() + atof(argv[3]);
        long reads = 0, escapes = 0, made = 0;
        char buf[16], name[64];
        while (now() < end) {
            int fd = open("/d/file", O_RDONLY);
            if (fd >= 0) {
                ssize_t n = read(fd, buf, sizeof buf);
                if (n >= 6 && !memcmp(buf, "SECRET", 6)) escapes++;
                else reads++;
                close(fd);
            }
            snprintf(name, sizeof name, "/d/made-%ld", made);
            fd = open(name, O_WRONLY | O_CREAT | O_EXCL, 0644);
            if (fd >= 0) {
                write(fd, "x", 1);
                close(fd);
                made++;
            }
            struct stat st;
            if (stat("/d/file", &st) == 0 && st.st_size == 6) escapes++;   /* the secret's size */
        }
        printf("reads: %ld\nescapes: %ld\nmade: %ld\n", reads, escapes, made);
        return 0;
    }
    return 2;
}
