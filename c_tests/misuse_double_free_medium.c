/* Double free of a medium block (100 KB: not a quick class, below the mapping threshold) that the
 * first free coalesced with its free left neighbour. Its header is then stale bytes inside the
 * merged free block; it is left marked free, so the second free is still a double free.
 * EXPECT: my_alloc: free(): double free of */
#include "misuse.h"

#include <malloc.h>

#define N 8
#define SIZE 100000

int main(void) {
    busy_heap();
    char *blk[N];
    for (int i = 0; i < N; i++) {
        blk[i] = malloc(SIZE);
        if (!blk[i]) return 1;
        memset(blk[i], 'A' + i, SIZE);
    }
    /* Two neighbours in memory: left, then m. */
    char *left = NULL, *m = NULL;
    if (!adjacent_pair(blk, N, &left, &m)) {
        fprintf(stderr, "misuse_double_free_medium: no two adjacent blocks found\n");
        return 1;
    }
    char *volatile p = m;
    free(left);
    free(p); /* coalesces with left: m's header is now inside a free block */
    free(p); /* the misuse */
    return 0; /* not reached */
}
