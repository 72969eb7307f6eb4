/* free of the old pointer after realloc moved the block (p = malloc(100); q = realloc(p, 100000);
 * free(p)): realloc already freed p, so this is a double free.
 * EXPECT: my_alloc: free(): double free of */
#include "misuse.h"

int main(void) {
    busy_heap();
    char *p = malloc(100);
    char *guard = malloc(100); /* keeps p from growing in place */
    memset(p, 'p', 100);
    memset(guard, 'g', 100);
    char *q = realloc(p, 100000);
    if (!q) return 1;
    if (q == p) {
        fprintf(stderr, "misuse_free_after_realloc_moved: realloc did not move the block\n");
        return 1;
    }
    char *volatile stale = p;
    free(stale); /* the misuse */
    free(q);
    free(guard);
    return 0; /* not reached */
}
