/* mteemu's Linux oracle: PID 1 of the initramfs (mteemu/oracle/). Built static for arm64
 * by oracle/build.py; runs under Debian's arm64 kernel in qemu-system-aarch64 with MTE.
 *
 * It mounts what a test expects of a Debian system (/proc, /sys, devtmpfs on /dev, tmpfs
 * on /dev/shm and /tmp), loads the virtio modules the cloud kernel keeps out of its image
 * (their order is in /oracle/modules), and runs each test of /oracle/manifest as a child
 * (PID > 1) with its own argv, environment, uid/gid, working directory and stdin, stdout
 * and stderr in files. After each test it appends one record to the raw disk /dev/vda and
 * flushes it, so the host gets every finished test back byte for byte even if the guest
 * dies later. Then it powers the machine off.
 *
 * Manifest: a sequence of tests, each a list of NUL-terminated strings:
 *   "T", timeout seconds, uid, gid, capability bounding set (hex), cwd, stdin file, program,
 *   argc, argv..., envc, env...
 * Record on the disk (little-endian, each padded to 512 bytes):
 *   "MTEO" u32 index, u32 kind (0 exited, 1 killed by a signal, 2 timed out,
 *   3 could not be started), i32 value (status, signal, errno), u64 stdout length,
 *   u64 stderr length, then stdout and stderr. A record without the magic ends the list.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void say(const char *fmt, const char *what) {
    /* Into the kernel log, so the host can tell which test its messages came from. */
    int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
    char line[512];
    int n = snprintf(line, sizeof line, fmt, what);
    if (fd >= 0) {
        if (write(fd, line, (size_t)n) < 0) {
        }
        close(fd);
    }
}

static void die(const char *why) {
    say("mteemu-oracle: init failed: %s\n", why);
    sync();
    reboot(RB_POWER_OFF);
    for (;;)
        pause();
}

static char *slurp(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return NULL;
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (buf)
        buf[got] = 0;
    *len = got;
    return buf;
}

static void load_modules(void) {
    /* No modules.dep (depmod writes it at install): passes over the list until each one
       loaded or a pass loads nothing (a module whose dependencies come later fails first). */
    size_t len;
    char *list = slurp("/oracle/modules", &len);
    if (list == NULL)
        return;
    char *names[32];
    int n = 0, done[32] = {0};
    for (char *name = strtok(list, "\n"); name && n < 32; name = strtok(NULL, "\n"))
        names[n++] = name;
    for (int progress = 1, left = n; progress && left;) {
        progress = 0;
        for (int i = 0; i < n; i++) {
            if (done[i])
                continue;
            int fd = open(names[i], O_RDONLY | O_CLOEXEC);
            if (fd >= 0 && (syscall(SYS_finit_module, fd, "", 0) == 0 || errno == EEXIST)) {
                done[i] = progress = 1;
                left--;
            }
            if (fd >= 0)
                close(fd);
        }
    }
    for (int i = 0; i < n; i++)
        if (!done[i])
            say("mteemu-oracle: cannot load %s\n", names[i]);
}

static int open_disk(void) {
    for (int i = 0; i < 500; i++) {             /* the block device appears asynchronously */
        /* Close-on-exec: a test must neither inherit it (its fd 3) nor write over the results. */
        int fd = open("/dev/vda", O_WRONLY | O_SYNC | O_CLOEXEC);
        if (fd >= 0)
            return fd;
        usleep(10000);
    }
    die("no /dev/vda");
    return -1;
}

static uint64_t disk_at;

static void put(int disk, const void *data, size_t len) {
    const char *p = data;
    while (len) {
        ssize_t w = pwrite(disk, p, len, (off_t)disk_at);
        if (w <= 0)
            die("cannot write the results disk");
        p += w;
        len -= (size_t)w;
        disk_at += (uint64_t)w;
    }
}

static void copy_file(int disk, const char *path, uint64_t len) {
    static char buf[1 << 16];
    int fd = open(path, O_RDONLY);
    uint64_t done = 0;
    while (fd >= 0 && done < len) {
        ssize_t r = read(fd, buf, sizeof buf < len - done ? sizeof buf : (size_t)(len - done));
        if (r <= 0)
            break;
        put(disk, buf, (size_t)r);
        done += (uint64_t)r;
    }
    if (fd >= 0)
        close(fd);
    memset(buf, 0, sizeof buf);
    while (done < len) {                        /* the file shrank: keep the record's length */
        size_t n = len - done < sizeof buf ? (size_t)(len - done) : sizeof buf;
        put(disk, buf, n);
        done += n;
    }
}

static uint64_t size_of(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

#define MAX_OUTPUT (64ULL << 20)    /* of stdout and of stderr each (a sparse file can claim exabytes) */

static void record(int disk, uint32_t index, uint32_t kind, int32_t value) {
    char out[64], err[64];
    snprintf(out, sizeof out, "/oracle/out/%u.stdout", index);
    snprintf(err, sizeof err, "/oracle/out/%u.stderr", index);
    uint64_t lo = size_of(out), le = size_of(err);
    lo = lo < MAX_OUTPUT ? lo : MAX_OUTPUT;
    le = le < MAX_OUTPUT ? le : MAX_OUTPUT;
    unsigned char head[32] = "MTEO";
    memcpy(head + 4, &index, 4);
    memcpy(head + 8, &kind, 4);
    memcpy(head + 12, &value, 4);
    memcpy(head + 16, &lo, 8);
    memcpy(head + 24, &le, 8);
    put(disk, head, sizeof head);
    copy_file(disk, out, lo);
    copy_file(disk, err, le);
    static const char zeros[512];
    if (disk_at % 512)
        put(disk, zeros, 512 - disk_at % 512);
    unsigned char end[4] = {0};                 /* no magic after the last record */
    if (pwrite(disk, end, sizeof end, (off_t)disk_at) < 0)
        die("cannot write the results disk");
    fsync(disk);
}

static volatile sig_atomic_t alarmed;
static void on_alarm(int sig) { (void)sig; alarmed = 1; }

static void run_one(int disk, uint32_t index, char **f) {
    /* f: timeout, uid, gid, capbnd, cwd, stdin, program, argc, argv..., envc, env... */
    unsigned timeout = (unsigned)strtoul(f[0], NULL, 10);
    uid_t uid = (uid_t)strtoul(f[1], NULL, 10);
    gid_t gid = (gid_t)strtoul(f[2], NULL, 10);
    unsigned long long capbnd = strtoull(f[3], NULL, 16);
    const char *cwd = f[4], *in = f[5], *prog = f[6];
    int argc = atoi(f[7]);
    char **argv = f + 8;
    int envc = atoi(f[8 + argc]);
    char **envp = f + 9 + argc;
    char *saved_a = argv[argc], *saved_e = envp[envc];
    argv[argc] = NULL;                          /* the next field's pointer, restored below */
    envp[envc] = NULL;
    char out[64], err[64];
    snprintf(out, sizeof out, "/oracle/out/%u.stdout", index);
    snprintf(err, sizeof err, "/oracle/out/%u.stderr", index);
    say("mteemu-oracle: test %s start\n", argv[0]);
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        die("pipe");
    pid_t pid = fork();
    if (pid == 0) {
        int fi = open(in, O_RDONLY), fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644),
            fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = 0;
        if (fi < 0 || fo < 0 || fe < 0 || dup2(fi, 0) < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
            e = errno;
        if (!e && fi > 2)
            close(fi);
        if (!e && fo > 2)
            close(fo);
        if (!e && fe > 2)
            close(fe);
        /* The capabilities of the caller on the host: exec as root regains the bounding
           set, so that is what is cut (CAP_SYS_RESOURCE, say, where the host lacks it). */
        for (int cap = 0; !e && cap < 64; cap++)
            if (!(capbnd >> cap & 1) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
                e = errno;
        if (!e && (chdir(cwd) != 0 || setgid(gid) != 0 || setuid(uid) != 0))
            e = errno;
        if (!e) {
            setsid();
            signal(SIGPIPE, SIG_DFL);
            execve(prog, argv, envp);
            e = errno;
        }
        if (write(pipefd[1], &e, sizeof e) < 0) {
        }
        _exit(127);
    }
    close(pipefd[1]);
    int exec_errno = 0;
    ssize_t got = read(pipefd[0], &exec_errno, sizeof exec_errno);
    close(pipefd[0]);
    argv[argc] = saved_a;
    envp[envc] = saved_e;
    int status = 0;
    alarmed = 0;
    alarm(timeout);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno == EINTR && alarmed) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
        } else if (errno != EINTR) {
            break;
        }
    }
    alarm(0);
    kill(-pid, SIGKILL);                        /* what it left behind in its session */
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    say("mteemu-oracle: test %s end\n", argv[0]);
    if (got == (ssize_t)sizeof exec_errno)
        record(disk, index, 3, exec_errno);
    else if (alarmed)
        record(disk, index, 2, (int32_t)timeout);
    else if (WIFSIGNALED(status))
        record(disk, index, 1, WTERMSIG(status));
    else
        record(disk, index, 0, WEXITSTATUS(status));
}

int main(void) {
    mount("proc", "/proc", "proc", 0, NULL);
    mount("sysfs", "/sys", "sysfs", 0, NULL);
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    mkdir("/dev/shm", 01777);
    mount("tmpfs", "/dev/shm", "tmpfs", 0, "mode=1777");
    mount("tmpfs", "/tmp", "tmpfs", 0, "mode=1777");
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;                   /* no SA_RESTART: waitpid() returns EINTR */
    sigaction(SIGALRM, &sa, NULL);
    load_modules();
    int disk = open_disk();
    size_t len;
    char *m = slurp("/oracle/manifest", &len);
    if (m == NULL)
        die("no manifest");
    size_t nfields = 0;
    for (size_t i = 0; i < len; i++)
        nfields += m[i] == 0;
    char **fields = calloc(nfields + 1, sizeof *fields);
    size_t k = 0;
    for (size_t i = 0; i < len; i += strlen(m + i) + 1)
        fields[k++] = m + i;
    mkdir("/oracle/out", 0755);
    uint32_t index = 0;
    for (size_t i = 0; i < k;) {
        if (strcmp(fields[i], "T") != 0)
            die("malformed manifest");
        char **f = fields + i + 1;
        int argc = atoi(f[7]);
        int envc = atoi(f[8 + argc]);
        run_one(disk, index++, f);
        i += 1 + 9 + (size_t)argc + (size_t)envc;
    }
    say("mteemu-oracle: %s\n", "all tests ran");
    sync();
    reboot(RB_POWER_OFF);
    return 0;
}
