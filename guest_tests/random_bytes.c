/* Prints 16 bytes from getrandom(2) and the 16 AT_RANDOM bytes: the same under
   one --seed, different under another (not comparable with qemu-aarch64). */
// exit: 0
// qemu: differs: the bytes are mteemu's own seeded ones (fixed under --seed)
// linux: differs: getrandom and /dev/urandom come from --seed 0 under mteemu; Linux's are random
#include <stdio.h>
#include <sys/auxv.h>
#include <sys/random.h>

int main(void) {
    unsigned char buf[16];
    if (getrandom(buf, sizeof buf, 0) != sizeof buf)
        return 1;
    const unsigned char *at_random = (const unsigned char *)getauxval(AT_RANDOM);
    for (int i = 0; i < 16; i++)
        printf("%02x", buf[i]);
    printf(" ");
    for (int i = 0; i < 16; i++)
        printf("%02x", at_random[i]);
    printf("\n");
    return 0;
}
