// name: tagged buffers through read/write/readv/writev
// target: 5
// accesses: 83886080
// 64 KiB tagged buffers (a different tag every 4 KiB, as an allocator's chunks) sent
// through a pipe 320 times each way with write/read and writev/readv in 4 KiB pieces: the
// kernel tag-checks every syscall buffer (uaccess) in sync mode.
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include "mte.h"
#define LEN (64 << 10)
#define PIECE 4096
int main(void) {
    char *a = tagged(LEN), *b = tagged(LEN);
    for (size_t i = 0; i < LEN; i += 16) {
        unsigned t = 1 + (i / PIECE) % 15;
        __asm__ volatile("stg %0, [%0]\n\tstg %1, [%1]" : : "r"(with_tag(a + i, t)), "r"(with_tag(b + i, t)) : "memory");
    }
    int fds[2];
    pipe(fds);
    unsigned long sum = 0;
    for (int round = 0; round < 320; round++) {
        for (size_t i = 0; i < LEN; i += PIECE) {
            unsigned t = 1 + (i / PIECE) % 15;
            char *src = with_tag(a + i, t), *dst = with_tag(b + i, t);
            src[0] = (char)round;
            if (round & 1) {
                struct iovec in[2] = {{src, PIECE / 2}, {src + PIECE / 2, PIECE / 2}};
                struct iovec out[2] = {{dst, PIECE / 2}, {dst + PIECE / 2, PIECE / 2}};
                writev(fds[1], in, 2);
                readv(fds[0], out, 2);
            } else {
                write(fds[1], src, PIECE);
                read(fds[0], dst, PIECE);
            }
            sum += (unsigned char)dst[0];
        }
    }
    printf("%lu\n", sum);
    return 0;
}
