/* A buffer overflow off the end of one block that runs 16 bytes on, over the header of the
 * adjacent block of the same size and into its payload. Freeing that neighbour detects its smashed
 * header (default mode).
 * EXPECT: my_alloc: free(): corrupted block header */
#include "misuse.h"

#include <malloc.h>

#define N 40
#define SIZE 48 /* a 48-byte request: 64-byte blocks */

int main(void) {
    busy_heap();
    char *blk[N];
    for (int i = 0; i < N; i++) {
        blk[i] = malloc(SIZE);
        memset(blk[i], 'a' + i % 26, SIZE);
    }
    /* Find a block whose neighbour in memory is another of ours. */
    size_t usable = malloc_usable_size(blk[0]);
    char *a = NULL, *b = NULL;
    if (!adjacent_pair(blk, N, &a, &b)) {
        fprintf(stderr, "misuse_overflow_into_next: no two adjacent blocks found\n");
        return 1;
    }
    volatile char *va = a;
    for (size_t k = 0; k < usable + 16; k++) va[k] = 'X'; /* 16 bytes past the end */
    free(b); /* detected here */
    return 0; /* not reached */
}
