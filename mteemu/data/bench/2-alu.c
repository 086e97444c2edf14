// name: ALU-bound loop
// target: 1.2
// insns: 3000000000
// ~2 s under qemu-aarch64 on these machines: 5 instructions a loop, no memory traffic.
#include <stdio.h>
int main(void) {
    unsigned long a = 1, b = 2, c = 3;
    for (unsigned long i = 0; i < 600000000UL; i++)
        __asm__ volatile("add %0,%0,%1\n eor %1,%1,%2\n add %2,%2,%0" : "+r"(a), "+r"(b), "+r"(c));
    printf("%lu\n", a ^ b ^ c);
    return 0;
}
