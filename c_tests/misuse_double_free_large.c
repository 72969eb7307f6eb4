/* Double free of a large block (4 MiB, above the mapping threshold: its own mapping, unmapped by
 * the first free). The second free is recognised as a double free of a recently unmapped block,
 * not just as a foreign pointer.
 * EXPECT: my_alloc: free(): double free of mapped block (already unmapped) */
#include "misuse.h"

int main(void) {
    busy_heap();
    size_t n = 4 << 20;
    char *small = malloc(100);
    char *big = malloc(n);
    if (!small || !big) return 1;
    memset(big, 0x5a, n);
    memset(small, 0x11, 100);
    char *volatile p = big;
    free(p);
    free(p); /* the misuse */
    free(small);
    return 0; /* not reached */
}
