// name: system calls (getppid, then 64-byte pipe write and read)
// target: 8
// 100,000 getppid() and 100,000 64-byte write+read pairs through a pipe: the cost of a
// round trip into the kernel when the call itself does little.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100000;
    unsigned long sum = 0;
    for (int i = 0; i < n; i++)
        sum += getppid() > 0;                          /* the parent differs between emulators */
    int p[2];
    char buf[64] = {1};
    if (pipe(p))
        return 1;
    for (int i = 0; i < n; i++) {
        buf[0] = (char)i;
        if (write(p[1], buf, sizeof buf) != sizeof buf || read(p[0], buf, sizeof buf) != sizeof buf)
            return 2;
        sum += (unsigned char)buf[0];
    }
    printf("%lu\n", sum);
    return 0;
}
