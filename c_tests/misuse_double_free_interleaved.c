/* Double free with other frees in between (free(a); free(b); free(a)), the pattern that defeats a
 * check of only the most recently freed block: still diagnosed from a's header.
 * EXPECT: my_alloc: free(): double free of */
#include "misuse.h"

int main(void) {
    busy_heap();
    char *a = malloc(40), *b = malloc(40), *c = malloc(40);
    memset(a, 1, 40);
    memset(b, 2, 40);
    memset(c, 3, 40);
    char *volatile pa = a, *volatile pb = b;
    free(pa);
    free(pb);
    free(pa); /* the misuse */
    free(c);
    return 0; /* not reached */
}
