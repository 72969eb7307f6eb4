/* Double free of a small block (a thread-cache / quick-list size): the second free finds the
 * block's header already marked free and aborts with a diagnosis.
 * EXPECT: my_alloc: free(): double free of */
#include "misuse.h"

int main(void) {
    busy_heap();
    char *a = malloc(32), *b = malloc(32), *c = malloc(32);
    memset(a, 'a', 32);
    memset(b, 'b', 32);
    memset(c, 'c', 32);
    char *volatile p = b;
    free(p);
    free(p); /* the misuse */
    free(a);
    free(c);
    return 0; /* not reached */
}
