// Create, write, read back, stat and unlink a file.
// exit: 0
// qemu: same
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
    char path[64]; snprintf(path, sizeof path, "mteemu-files-test-%d.txt", (int)getpid() % 1);
    unlink(path);
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (fd < 0) { perror("open"); return 1; }
    const char *msg = "line one\nline two\n";
    if (write(fd, msg, strlen(msg)) != (ssize_t)strlen(msg)) { perror("write"); return 1; }
    close(fd);
    struct stat st; if (stat(path, &st)) { perror("stat"); return 1; }
    FILE *f = fopen(path, "r"); char line[64]; int n = 0;
    while (fgets(line, sizeof line, f)) printf("read: %s", line), n++;
    fclose(f);
    printf("size=%lld lines=%d\n", (long long)st.st_size, n);
    if (unlink(path)) { perror("unlink"); return 1; }
    printf("exists after unlink: %d\n", access(path, F_OK) == 0);
    return 0;
}
