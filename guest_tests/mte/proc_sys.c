/* /proc and /sys describe the emulated machine and the guest's own processes, never
   the host: one CPU with the `mte` feature, the board's memory, the process's own
   mappings, memory (read and written through /proc/self/mem, no tag checks, and into
   read-only code as a debugger does), descriptors, threads and children; Linux's
   mte_tcf_preferred knob round-trips and changes which mode a thread asking for both
   gets; no KSM; an empty huge page pool. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include "mte.h"
// env: MTEEMU_PROBE=hello
// qemu: differs: qemu-user shows the host's /proc and /sys, and qemu 7.2 has no mte_tcf_preferred
// linux: differs: /proc shows only the guest's own processes, and KSM, THP and /proc/sys files mteemu does not model are absent (README: known differences)
// variant prefsync: --mte-tcf-preferred sync

static char text[16384];

static int slurp(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -errno;
    size_t n = 0;
    ssize_t r;
    while (n < size - 1 && (r = read(fd, buf + n, size - 1 - n)) > 0)
        n += r;
    buf[n] = 0;
    close(fd);
    return (int)n;
}

static long field(const char *path, const char *name) {
    if (slurp(path, text, sizeof text) < 0)
        return -1;
    char *p = strstr(text, name);
    return p ? atol(p + strlen(name)) : -1;
}

/* The /proc/self/maps line that covers addr: its permissions ("rw-p"), or "none". */
static const char *perms_of(const void *addr) {
    static char perms[5];
    slurp("/proc/self/maps", text, sizeof text);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) == 3 && lo <= (unsigned long)addr &&
            (unsigned long)addr < hi)
            return perms;
    }
    return "none";
}

static int global = 1234;
static const char constant[] = "a constant string";
static void *thread_main(void *arg) {
    char path[64], link[64] = {0};
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)gettid());
    int fd = open(path, O_WRONLY);
    write(fd, "worker\n", 7);
    close(fd);
    readlink("/proc/thread-self", link, sizeof link - 1);
    *(int *)arg = strstr(link, "/task/") != NULL && atoi(strstr(link, "/task/") + 6) == gettid();
    return NULL;
}

__attribute__((noipa)) static int patched(void) { return 1; }

static int sync_mode_fault_is_precise(void) {
    /* A thread asking for sync|async gets the preferred mode: is a tag-check fault precise? */
    mte_enable(PR_MTE_TCF_SYNC | PR_MTE_TCF_ASYNC, ALL_TAGS);
    char *p = tagged_mmap(4096);
    catch_segv(0);
    int precise = 0;
    if (FAULTED())
        precise = fault_code == SEGV_MTESERR;
    else {
        *(volatile char *)set_tag(p, 3) = 1;          /* tag 3 against allocation tag 0 */
        getpid();                                     /* an async fault arrives at a kernel entry */
    }
    signal(SIGSEGV, SIG_DFL);
    prctl(PR_SET_TAGGED_ADDR_CTRL, 0, 0, 0, 0);
    munmap(p, 4096);
    return precise;
}

int main(int argc, char **argv) {
    struct sysinfo si;
    sysinfo(&si);
    printf("cpus online (sysconf): %ld, /sys online: ", sysconf(_SC_NPROCESSORS_ONLN));
    slurp("/sys/devices/system/cpu/online", text, sizeof text);
    printf("%s", text);
    printf("MemTotal matches sysinfo: %d\n", field("/proc/meminfo", "MemTotal:") * 1024 == (long)si.totalram);
    printf("HugePages_Total: %ld, nr_hugepages: %ld\n", field("/proc/meminfo", "HugePages_Total:"),
           field("/proc/sys/vm/nr_hugepages", ""));
    slurp("/proc/cpuinfo", text, sizeof text);
    char *features = strstr(text, "Features\t: ");
    printf("cpuinfo processors: %d, Features has mte: %d, HWCAP2_MTE: %d\n",
           (int)(strstr(text, "processor\t: 1") == NULL && strstr(text, "processor\t: 0") != NULL),
           features && strstr(strtok(features, "\n"), " mte") != NULL, !!(getauxval(AT_HWCAP2) & HWCAP2_MTE));

    /* auxv, cmdline, environ: what this process was started with. */
    unsigned long aux[2 * 64] = {0}, hwcap2 = 0;
    int fd = open("/proc/self/auxv", O_RDONLY);
    read(fd, aux, sizeof aux);
    close(fd);
    for (int i = 0; aux[i]; i += 2)
        if (aux[i] == AT_HWCAP2)
            hwcap2 = aux[i + 1];
    printf("auxv AT_HWCAP2 matches getauxval: %d\n", hwcap2 == getauxval(AT_HWCAP2));
    int n = slurp("/proc/self/cmdline", text, sizeof text);
    printf("cmdline is argv[0]: %d\n", n == (int)strlen(argv[0]) + 1 && !strcmp(text, argv[0]));
    n = slurp("/proc/self/environ", text, sizeof text);
    printf("environ holds MTEEMU_PROBE=hello: %d\n", n > 0 && memmem(text, n, "MTEEMU_PROBE=hello", 19) != NULL);
    char exe[512] = {0}, real[512] = {0};
    readlink("/proc/self/exe", exe, sizeof exe - 1);
    realpath(argv[0], real);
    printf("exe is the program: %d\n", !strcmp(exe, real));

    /* status and stat name this process. */
    printf("status Pid is getpid: %d, PPid is getppid: %d\n", field("/proc/self/status", "\nPid:\t") == getpid(),
           field("/proc/self/status", "\nPPid:\t") == getppid());
    slurp("/proc/self/stat", text, sizeof text);
    printf("stat starts with pid: %d\n", atoi(text) == getpid());

    /* maps: this process's own mappings, with their permissions. */
    char *ro = mmap(0, 8192, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int local = 0;
    char *heap = malloc(100);
    const void *where[] = {&global, constant, (void *)main, &local, heap, ro, (void *)16};
    const char *names[] = {"global", "constant", "code", "stack", "heap", "read-only mmap", "unmapped"};
    printf("maps:");
    for (int i = 0; i < 7; i++)
        printf(" %s %s%s", names[i], perms_of(where[i]), i < 6 ? "," : "\n");
    slurp("/proc/self/smaps", text, sizeof text);
    printf("smaps has Rss and VmFlags: %d\n", strstr(text, "Rss:") && strstr(text, "VmFlags:"));

    /* mem: the process's memory, read and written; a read-only page written as a debugger does. */
    fd = open("/proc/self/mem", O_RDWR);
    int value = 0;
    pread(fd, &value, sizeof value, (off_t)&global);
    int replacement = 4321;
    pwrite(fd, &replacement, sizeof replacement, (off_t)&global);
    char copy[18] = {0};
    pread(fd, copy, 17, (off_t)constant);
    long written = pwrite(fd, "X", 1, (off_t)ro);
    errno = 0;
    long unmapped = pread(fd, copy, 1, 16);
    printf("mem: read %d, global now %d, constant \"%s\", write to read-only page %ld (now '%c'), "
           "unmapped %ld %s\n", value, global, copy, written, ro[0], unmapped, strerrorname_np(errno));
    /* Code patched as a debugger patches it: mov w0, #2; ret — over read-only text. */
    int before_patch = patched();
    unsigned insns[2] = {0x52800040, 0xd65f03c0};
    long patched_bytes = pwrite(fd, insns, sizeof insns, (off_t)patched);
    printf("code patched through mem: %ld bytes, %d before, %d after\n", patched_bytes, before_patch, patched());
    /* A tagged page is read through /proc/self/mem without a tag check. */
    mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS);
    char *tagged = tagged_mmap(4096);
    char *ptr = set_tag(tagged, 5);
    stg(ptr);
    strcpy(ptr, "tagged data");
    memset(copy, 0, sizeof copy);
    long got = pread(fd, copy, 11, (off_t)tagged);       /* the untagged address: no check */
    printf("mem of a tagged page with the wrong tag: %ld \"%s\"\n", got, copy);
    prctl(PR_SET_TAGGED_ADDR_CTRL, 0, 0, 0, 0);
    close(fd);

    /* fd and fdinfo: descriptors as this process has them. */
    fd = open(argv[0], O_RDONLY);
    lseek(fd, 7, SEEK_SET);
    char path[64], link[512] = {0};
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    readlink(path, link, sizeof link - 1);
    printf("fd link names the program: %d, ", !strcmp(link, real));
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    printf("fdinfo pos: %ld\n", field(path, "pos:\t"));
    int fds = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; (e = readdir(d));)
        fds += e->d_name[0] != '.';
    closedir(d);
    printf("fd entries: %d (stdio, the program, the directory itself)\n", fds);
    int again = open(path, O_RDONLY);                  /* opening fdinfo through its path works */
    close(again);
    close(fd);

    /* Threads: task/<tid>/comm written by the thread itself; thread-self. */
    pthread_t th;
    int thread_self_ok = 0;
    pthread_create(&th, NULL, thread_main, &thread_self_ok);
    pthread_join(th, NULL);
    printf("thread-self names the thread: %d\n", thread_self_ok);

    /* Children: /proc/<pid> of a child, a zombie after it exits; only guest pids in /proc. */
    pid_t child = fork();
    if (child == 0)
        _exit(7);
    usleep(10000);
    snprintf(path, sizeof path, "/proc/%d/status", (int)child);
    slurp(path, text, sizeof text);
    printf("child state: %s\n", strstr(text, "Z (zombie)") ? "zombie" : "other");
    waitpid(child, NULL, 0);
    printf("child gone after wait: %d\n", access(path, F_OK) != 0 && errno == ENOENT);
    int guest_pids_only = 1, entries = 0;
    d = opendir("/proc");
    for (struct dirent *e; (e = readdir(d));) {
        int pid = atoi(e->d_name);
        entries++;
        if (pid > 0 && pid != getpid())
            guest_pids_only = 0;
    }
    closedir(d);
    printf("/proc lists only this process: %d (%d entries)\n", guest_pids_only, entries > 10);

    /* mte_tcf_preferred: the option's value; root may change it, and the mode follows. */
    slurp("/sys/devices/system/cpu/cpu0/mte_tcf_preferred", text, sizeof text);
    printf("mte_tcf_preferred: %s", text);
    printf("sync|async thread faults precisely: %d\n", sync_mode_fault_is_precise());
    fd = open("/sys/devices/system/cpu/cpu0/mte_tcf_preferred", O_WRONLY);
    if (fd >= 0) {
        long bad = write(fd, "fast\n", 5);
        int bad_errno = errno;
        write(fd, "sync\n", 5);
        close(fd);
        slurp("/sys/devices/system/cpu/cpu0/mte_tcf_preferred", text, sizeof text);
        printf("after writing sync: %s", text);
        printf("sync|async thread faults precisely: %d (a bad value: %ld %s)\n", sync_mode_fault_is_precise(),
               bad, strerrorname_np(bad_errno));
    } else {
        printf("after writing sync: sync\nsync|async thread faults precisely: 1 (a bad value: -1 EINVAL)\n");
    }

    /* No KSM in the emulated kernel, consistently. */
    errno = 0;
    int ksm_dir = access("/sys/kernel/mm/ksm", F_OK);
    printf("KSM: /sys/kernel/mm/ksm %s, MADV_MERGEABLE %s\n", ksm_dir ? strerrorname_np(errno) : "exists",
           madvise(ro, 4096, 12) ? strerrorname_np(errno) : "accepted");
    printf("THP: ");
    slurp("/sys/kernel/mm/transparent_hugepage/enabled", text, sizeof text);
    printf("%s", text);
    errno = 0;
    printf("unmodelled /proc/sys file: %s\n", access("/proc/sys/net/core/somaxconn", F_OK) ? strerrorname_np(errno) : "exists");
    return 0;
}
