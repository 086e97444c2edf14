// build: -lm
// Floating point and SIMD-using string functions (memcpy, strlen, memset).
// exit: 0
// qemu: same
#include <math.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    double acc = 0;
    for (int i = 1; i <= 1000; i++) acc += sqrt((double)i) * sin(i * 0.001);
    float f = 1.0f; for (int i = 0; i < 10; i++) f = f * 1.5f + 0.25f;
    char src[1000], dst[1000];
    for (int i = 0; i < 999; i++) src[i] = 'a' + i % 26;
    src[999] = 0;
    memcpy(dst, src, sizeof src);
    memset(dst + 500, 'z', 100);
    printf("acc=%.6f f=%.4f len=%zu cmp=%d z=%c\n", acc, f, strlen(dst), memcmp(src, dst, 500), dst[550]);
    return 0;
}
