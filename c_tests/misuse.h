/* Shared by the misuse_*.c tests: ordinary allocation work done before the misuse, so that the
 * heap is not trivially empty when the misuse happens: live and freed blocks of many small sizes
 * (thread cache, quick lists), medium blocks in the bins, and a live mapped block. The live
 * blocks stay reachable from a global array for the life of the test. */
#ifndef MY_ALLOC_MISUSE_H
#define MY_ALLOC_MISUSE_H

#include "check.h"

#include <malloc.h>
#include <stdint.h>
#include <string.h>

#define BUSY_BLOCKS 300

static void *busy_live[BUSY_BLOCKS] __attribute__((unused));

static void __attribute__((unused)) busy_heap(void) {
    unsigned long long s = 0x5DEECE66DULL;
    for (int i = 0; i < BUSY_BLOCKS; i++) {
        size_t n;
        unsigned long long r = rng_next(&s) % 100;
        if (r < 80) n = 1 + rng_next(&s) % 512;            /* small */
        else if (r < 97) n = 512 + rng_next(&s) % 20000;   /* up to the quick limit */
        else n = 40000 + rng_next(&s) % 150000;            /* medium: bins */
        if (i == BUSY_BLOCKS / 2) n = 2 << 20;              /* mapped */
        busy_live[i] = malloc(n);
        if (!busy_live[i]) abort();
        memset(busy_live[i], (int)(i & 0xff), n < 4096 ? n : 4096);
    }
    /* Free a third of them (not the mapped one) so free lists and bins are populated. */
    for (int i = 0; i < BUSY_BLOCKS; i += 3) {
        if (i == BUSY_BLOCKS / 2) continue;
        free(busy_live[i]);
        busy_live[i] = NULL;
    }
}


/* Finds two of the n blocks (all of one size) that are neighbours in memory, first then second.
 * Returns 0 when none are. */
static int __attribute__((unused)) adjacent_pair(char **blk, int n, char **first, char **second) {
    size_t stride = malloc_usable_size(blk[0]) + BLOCK_HEADER_BYTES;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (blk[j] == blk[i] + stride) {
                *first = blk[i];
                *second = blk[j];
                return 1;
            }
    return 0;
}

#endif
