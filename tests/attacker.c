/* A guest that attacks mteemu's isolation, one attack per argv[1]; each prints what it
   achieved, one line per attempt ("name: result"). Built by tests/test_isolation.py. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static void show(const char *what, long rc) {
    printf("%s: %s\n", what, rc < 0 ? strerrorname_np(errno) : "ok");
    fflush(stdout);
}

/* --root escape through /proc/self/exe, as the issue describes it. */
static void exe_escape(const char *outside) {
    char path[512];
    show("open exe for writing", open("/proc/self/exe", O_WRONLY));
    show("open exe O_TRUNC", open("/proc/self/exe", O_RDONLY | O_TRUNC));
    show("chmod exe 04777", chmod("/proc/self/exe", 04777));
    show("chown exe", chown("/proc/self/exe", 0, 0));
    show("truncate exe", truncate("/proc/self/exe", 0));
    show("unlink exe", unlink("/proc/self/exe"));
    show("mkdir exe", mkdir("/proc/self/exe", 0755));
    show("chdir exe", chdir("/proc/self/exe"));
    int fd = open("mine", O_WRONLY | O_CREAT, 0755);
    write(fd, "replaced", 8);
    close(fd);
    show("rename over exe", rename("mine", "/proc/self/exe"));
    show("link exe into the root", link("/proc/self/exe", "exe-link"));
    show("symlink at exe", symlink("/", "/proc/self/exe"));
    snprintf(path, sizeof path, "/proc/self/exe/../../../..%s/secret.txt", outside);
    show("walk .. from exe", open(path, O_RDONLY));
    snprintf(path, sizeof path, "/proc/self/cwd/../../../..%s/secret.txt", outside);
    show("walk .. from cwd", open(path, O_RDONLY));
    snprintf(path, sizeof path, "/proc/self/root/../..%s/secret.txt", outside);
    show("walk .. from root", open(path, O_RDONLY));
    snprintf(path, sizeof path, "%s/planted.txt", outside);
    show("create outside", open(path, O_WRONLY | O_CREAT, 0644));
    fd = open("/proc/self/exe", O_RDONLY);
    char magic[4] = {0};
    show("read exe", read(fd, magic, 4) == 4 && !memcmp(magic, "\177ELF", 4) ? 0 : -1);
    show("fchmod the exe fd", fchmod(fd, 04777));
    close(fd);
    char link[512] = {0};
    readlink("/proc/self/exe", link, sizeof link - 1);
    printf("exe link: %s\n", link);
}

/* Host code execution through /proc/self/mem: the guest's /proc is its own. */
static void mem_attack(void) {
    char maps[8192] = {0};
    int fd = open("/proc/self/maps", O_RDONLY);
    read(fd, maps, sizeof maps - 1);
    close(fd);
    printf("maps mention host objects: %d\n", strstr(maps, "libc") || strstr(maps, "python") ||
           strstr(maps, "unicorn") || strstr(maps, "[vsyscall]"));
    fd = open("/proc/self/mem", O_RDWR);
    show("open /proc/self/mem rw", fd);
    unsigned char code[16];
    memset(code, 0xcc, sizeof code);
    for (unsigned long host = 0x7f0000000000UL; host < 0x800000000000UL; host += 0x10000000000UL)
        if (pwrite(fd, code, sizeof code, host) > 0)
            printf("wrote host memory at %#lx\n", host);
    show("write beyond the guest's address space", pwrite(fd, code, sizeof code, 0x7ffff7a00000UL));
    static volatile int guest_var = 1;
    int two = 2;
    pwrite(fd, &two, sizeof two, (off_t)&guest_var);
    printf("guest variable through mem: %d\n", guest_var);
    show("socket after", socket(AF_INET, SOCK_STREAM, 0));
    show("kill a host pid", kill(1, 0));
}

/* Host kernel settings: the guest's /proc/sys and /sys are the model's. */
static void settings(void) {
    int fd = open("/proc/sys/vm/nr_hugepages", O_WRONLY);
    show("open nr_hugepages for writing", fd);
    if (fd >= 0)
        show("write nr_hugepages 7", write(fd, "7\n", 2));
    close(fd);
    char buf[64] = {0};
    fd = open("/proc/sys/vm/nr_hugepages", O_RDONLY);
    read(fd, buf, sizeof buf - 1);
    close(fd);
    printf("nr_hugepages reads: %s", buf);
    show("open ksm run", open("/sys/kernel/mm/ksm/run", O_WRONLY));
    show("write meminfo", open("/proc/meminfo", O_WRONLY));
    show("write pid_max", open("/proc/sys/kernel/pid_max", O_WRONLY));
    show("create in /proc", open("/proc/planted", O_WRONLY | O_CREAT, 0644));
    show("mkdir in /sys", mkdir("/sys/planted", 0755));
    show("unlink /proc/self/status", unlink("/proc/self/status"));
    show("chmod /proc/self/status", chmod("/proc/self/status", 0777));
    memset(buf, 0, sizeof buf);
    fd = open("/proc/sys/kernel/hostname", O_RDONLY);
    read(fd, buf, sizeof buf - 1);
    close(fd);
    printf("hostname: %s", buf);
    show("host /proc/1", access("/proc/1/status", F_OK));
    symlink("/proc/self/status", "via-link");
    fd = open("via-link", O_RDONLY);
    memset(buf, 0, sizeof buf);
    read(fd, buf, 5);
    printf("guest symlink into /proc reads: %s\n", buf);
    memset(buf, 0, sizeof buf);
    readlink("/dev/stdin", buf, sizeof buf - 1);
    printf("fd 0 through /dev/stdin: %d\n", access("/dev/stdin", F_OK) == 0);
}

/* Metadata of the host objects behind stdio. */
static void stdio_meta(void) {
    show("fchmod 0 04777", fchmod(0, 04777));
    show("fchmod 1 0", fchmod(1, 0));
    show("fchmod 2 0", fchmod(2, 0));
    show("fchown 0", syscall(SYS_fchown, 0, 0, 0));
    show("chmod /dev/stdin", chmod("/dev/stdin", 0));
    show("chmod /proc/self/fd/1", chmod("/proc/self/fd/1", 0));
    show("ftruncate 0", ftruncate(0, 0));
    int flags = fcntl(0, F_GETFL);
    show("set O_NONBLOCK on stdin", fcntl(0, F_SETFL, flags | O_NONBLOCK));
    char c;
    show("read stdin", read(0, &c, 1));
}

/* The PC outside what Linux lets a program execute. */
static void on_fault(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    printf("signal %d si_code %d si_addr %#lx\n", sig, si->si_code, (unsigned long)si->si_addr);
    fflush(stdout);
    _exit(0);
}

static void pc(const char *target) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGILL, &sa, NULL);
    unsigned long to = strtoul(target, NULL, 0);
    if (!strcmp(target, "main+2"))
        to = (unsigned long)pc + 2;
    ((void (*)(void))to)();
    printf("returned\n");
}

static void bad_return(int sig, siginfo_t *si, void *ucv) {
    (void)sig;
    (void)si;
    ((ucontext_t *)ucv)->uc_mcontext.pc = ~3UL;     /* sigreturn to the top of the address space */
}

static void sigreturn_to_top(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    sa.sa_sigaction = bad_return;
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
    printf("returned\n");
}

static void spin(void) {
    printf("spinning\n");
    fflush(stdout);
    for (volatile unsigned long i = 0;; i++)
        ;
}

static void yes(void) {
    for (;;)
        if (write(1, "y\n", 2) < 0) {
            printf("write failed: %s\n", strerrorname_np(errno));
            return;
        }
}

static void mem_through_link(void) {
    static volatile int var = 5;
    symlink("/proc/self/mem", "m");
    int fd = open("m", O_RDWR);
    int nine = 9;
    pwrite(fd, &nine, sizeof nine, (off_t)&var);
    printf("var: %d\n", var);
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "exe"))
        exe_escape(argv[2]);
    else if (!strcmp(what, "mem"))
        mem_attack();
    else if (!strcmp(what, "settings"))
        settings();
    else if (!strcmp(what, "stdio"))
        stdio_meta();
    else if (!strcmp(what, "pc"))
        pc(argv[2]);
    else if (!strcmp(what, "sigreturn"))
        sigreturn_to_top();
    else if (!strcmp(what, "spin"))
        spin();
    else if (!strcmp(what, "blocked")) {
        /* The escapes that were already closed, tried again. */
        char path[512];
        snprintf(path, sizeof path, "%s/secret.txt", argv[2]);
        show("hardlink an outside file in", link(path, "hl"));
        int fd = open("mine", O_WRONLY | O_CREAT, 0644);
        close(fd);
        snprintf(path, sizeof path, "%s/moved", argv[2]);
        show("rename out", rename("mine", path));
        snprintf(path, sizeof path, "../../../../../..%s/moved", argv[2]);
        show("rename out by dot-dot", rename("mine", path));
        struct { unsigned long long flags, mode, resolve; } how = {0, 0, 0};
        snprintf(path, sizeof path, "%s/secret.txt", argv[2]);
        show("openat2", syscall(437, AT_FDCWD, path, &how, sizeof how));
        char *args[] = {"sh", "-c", "id", NULL};
        show("execve /bin/sh", execve("/bin/sh", args, args + 3));
        snprintf(path, sizeof path, "/proc/self/root%s/secret.txt", argv[2]);
        show("open through /proc/self/root", open(path, O_RDONLY));
        show("open through /proc/self/cwd/..", open("/proc/self/cwd/../../../etc/passwd", O_RDONLY));
        show("chdir into /proc/self/fd", chdir("/proc/self/fd"));
        show("open ../../../../etc/passwd from there", open("../../../../etc/passwd", O_RDONLY));
        chdir("/");
        show("mknod a device", mknod("null-device", S_IFCHR | 0666, (1 << 8) | 3));
    }
    else if (!strcmp(what, "chown")) {
        int fd = open("owned", O_WRONLY | O_CREAT, 0644);
        show("chown a file it made", chown("owned", getuid(), getgid()));        /* to its owner */
        show("fchown it", fchown(fd, getuid(), getgid()));
        show("chown it to another owner", chown("owned", getuid() + 1, -1));
        show("chown a host file to its owner", chown("host_file", -1, getgid()));
        show("chown a host file to another owner", chown("host_file", getuid() + 1, -1));
    }
    else if (!strcmp(what, "nonblock")) {
        /* O_NONBLOCK on an inherited pipe with nothing in it: EAGAIN, not a wait. */
        char c;
        show("set O_NONBLOCK", fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK));
        show("read an empty stdin", read(0, &c, 1));
        printf("O_NONBLOCK reported: %d\n", !!(fcntl(0, F_GETFL) & O_NONBLOCK));
    }
    else if (!strcmp(what, "readstdin")) {
        char c;
        show("read stdin", read(0, &c, 1));
    }
    else if (!strcmp(what, "yes"))
        yes();
    else if (!strcmp(what, "memlink"))
        mem_through_link();
    else if (!strcmp(what, "tagcheck")) {
        /* A synchronous tag-check fault: the exit status must not depend on stderr. */
        syscall(SYS_prctl, 55, 1 | 2 | (0xfffeUL << 3), 0, 0, 0);
        char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | 0x20, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        *(volatile char *)((unsigned long)p | (3UL << 56)) = 1;
    }
    return 0;
}
