// name: glibc heap tagging, spread sizes (a word index)
// target: 5
// options: -E GLIBC_TUNABLES=glibc.mem.tagging=3
// A program as one would write it, not a malloc loop: words of 3 to 40 letters built with
// malloc/realloc into records of varying size, kept in a hash table of chained nodes,
// some deleted and re-inserted, then walked. Tens to hundreds of bytes per allocation.
// `argv[1]` words (default 150000).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node {
    struct node *next;
    unsigned count;
    char *word;
    unsigned *positions;
    unsigned npos, cap;
};

#define BUCKETS 4096
static struct node *table[BUCKETS];

static unsigned hash(const char *s) {
    unsigned h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

int main(int argc, char **argv) {
    unsigned words = argc > 1 ? (unsigned)atoi(argv[1]) : 150000;
    unsigned long state = 7, total = 0;
    char buf[64];
    for (unsigned i = 0; i < words; i++) {
        state = state * 6364136223846793005UL + 1442695040888963407UL;
        unsigned len = 3 + (state >> 40) % 38;
        for (unsigned j = 0; j < len; j++)
            buf[j] = (char)('a' + (state >> (j % 50)) % ((j & 3) + 2));
        buf[len] = 0;
        unsigned h = hash(buf) % BUCKETS;
        struct node **at = &table[h], *n;
        for (n = *at; n && strcmp(n->word, buf); n = n->next)
            ;
        if (!n) {
            n = calloc(1, sizeof *n);
            n->word = strdup(buf);
            n->next = *at;
            *at = n;
        }
        if (n->npos == n->cap) {
            n->cap = n->cap ? n->cap * 2 : 2;
            n->positions = realloc(n->positions, n->cap * sizeof *n->positions);
        }
        n->positions[n->npos++] = i;
        n->count++;
        if ((state >> 20) % 7 == 0) {                 /* now and then a word leaves the index */
            *at = n->next == NULL && *at == n ? NULL : *at;
            for (struct node **p = &table[h]; *p; p = &(*p)->next)
                if (*p == n) {
                    *p = n->next;
                    break;
                }
            total += n->count;
            free(n->positions);
            free(n->word);
            free(n);
        }
    }
    for (unsigned b = 0; b < BUCKETS; b++)
        for (struct node *n = table[b]; n; n = n->next)
            total += n->count + strlen(n->word);
    printf("%lu\n", total);
    return 0;
}
