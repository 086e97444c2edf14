// execve() replaces the program and keeps the process: the pid, descriptors without
// FD_CLOEXEC, ignored signals; caught signals go back to SIG_DFL, the MTE tagged-address
// control to 0, and /proc/self/exe and cmdline name the new program. `#!` scripts run
// their interpreter with the script's path; a vfork child's exec wakes its parent; bad
// programs fail with Linux's errno and the caller goes on.
// exit: 0
// qemu: differs: qemu-user hands execve to the host kernel, where /proc/self/exe is qemu itself
// linux: differs: mteemu numbers guest processes from 1000 (the first is the guest's pid 1000); under the oracle's init they start near 80
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_usr1(int sig) { (void)sig; }

static void show_args(const char *who, int argc, char **argv) {
    printf("%s:", who);
    for (int i = 0; i < argc; i++)
        printf(" [%s]", argv[i]);
    printf("\n");
}

static int child(int argc, char **argv) {
    show_args("child argv", argc, argv);
    printf("child: same pid %d, EXEC_TEST=%s, OTHER=%s\n", atoi(argv[2]) == getpid(), getenv("EXEC_TEST"),
           getenv("OTHER") ? getenv("OTHER") : "(unset)");
    printf("child: fd 3 kept %d, fd 4 (cloexec) closed %d\n", fcntl(3, F_GETFD) == 0,
           fcntl(4, F_GETFD) == -1 && errno == EBADF);
    struct sigaction sa;
    sigaction(SIGUSR1, NULL, &sa);
    printf("child: SIGUSR1 %s, ", sa.sa_handler == SIG_DFL ? "default" : "handled");
    sigaction(SIGUSR2, NULL, &sa);
    printf("SIGUSR2 %s\n", sa.sa_handler == SIG_IGN ? "ignored" : "other");
    printf("child: tagged addr ctrl %d\n", (int)prctl(PR_GET_TAGGED_ADDR_CTRL, 0, 0, 0, 0));
    char cmd[256] = {0};
    int fd = open("/proc/self/cmdline", O_RDONLY);
    int n = read(fd, cmd, sizeof cmd - 1);
    close(fd);
    printf("child: cmdline has %d NULs, starts %s\n", n > 0 ? (int)(memchr(cmd, 0, n) != NULL) : 0, cmd);
    return 0;
}

static void expect_error(const char *what, const char *path) {
    char *args[] = {(char *)path, NULL};
    errno = 0;
    execv(path, args);
    printf("exec %s: %s\n", what, strerrorname_np(errno));
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "child"))
        return child(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "script")) {
        show_args("script argv", argc, argv);
        return 7;
    }
    if (argc > 1 && !strcmp(argv[1], "vchild"))
        return 5;

    /* Errors first: the caller goes on after each. */
    expect_error("missing", "./no-such-program");
    int fd = open("data.txt", O_WRONLY | O_CREAT | O_TRUNC, 0755);
    write(fd, "just text\n", 10);
    close(fd);
    expect_error("text", "./data.txt");
    mkdir("dir", 0755);
    expect_error("directory", "./dir");
    fd = open("noexec.sh", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write(fd, "#!/proc/self/exe script\n", 24);
    close(fd);
    expect_error("without x bit", "./noexec.sh");

    /* A script whose interpreter is this program, in a forked child. */
    fd = open("run.sh", O_WRONLY | O_CREAT | O_TRUNC, 0755);
    write(fd, "#!/proc/self/exe script\n", 24);
    close(fd);
    pid_t pid = fork();
    if (pid == 0) {
        char *args[] = {"run.sh", "one", "two", NULL};
        execv("./run.sh", args);
        _exit(99);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("script exit %d\n", WEXITSTATUS(status));
    fflush(stdout);

    /* vfork + exec: the parent sleeps until the child has a program of its own. */
    pid = vfork();
    if (pid == 0) {
        char *args[] = {"execve", "vchild", NULL};
        execv("/proc/self/exe", args);
        _exit(98);
    }
    waitpid(pid, &status, 0);
    printf("vfork child exit %d\n", WEXITSTATUS(status));
    fflush(stdout);

    /* Exec ourselves: what survives and what does not. */
    int keep = open("keep.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int drop = open("drop.txt", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    dup2(keep, 3);
    dup3(drop, 4, O_CLOEXEC);
    signal(SIGUSR1, on_usr1);
    signal(SIGUSR2, SIG_IGN);
    prctl(PR_SET_TAGGED_ADDR_CTRL, 1 | 2 | (0xfffeUL << 3), 0, 0, 0);
    char pidstr[16];
    snprintf(pidstr, sizeof pidstr, "%d", getpid());
    char *args[] = {"execve", "child", pidstr, NULL};
    char *env[] = {"EXEC_TEST=hello", NULL};
    execve("/proc/self/exe", args, env);
    printf("execve returned: %s\n", strerrorname_np(errno));
    return 1;
}
