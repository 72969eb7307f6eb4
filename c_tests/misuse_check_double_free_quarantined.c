/* Checking mode: a freed block waits in the quarantine before the heap may reuse it; freeing it
 * again meanwhile is a double free, even after other frees.
 * ENV: MY_ALLOC_CHECK=1
 * EXPECT: my_alloc: free(): double free of (the block is in the quarantine of freed blocks) */
#include "misuse.h"

int main(void) {
    busy_heap();
    char *p = malloc(100);
    free(p);
    for (int i = 0; i < 10; i++)
        free(malloc(100));
    void *volatile again = p;
    free(again); /* the double free */
    return 0; /* not reached */
}
