// printf/puts and a non-zero exit status.
// exit: 3
// qemu: same
#include <stdio.h>
int main(void) { puts("hello from arm64"); printf("%d + %d = %d\n", 2, 3, 2 + 3); return 3; }
