/* realloc of a pointer that was already freed (a double free through realloc).
 * EXPECT: my_alloc: realloc(): double free of */
#include "misuse.h"

int main(void) {
    busy_heap();
    char *a = malloc(200), *b = malloc(200);
    memset(a, 'a', 200);
    memset(b, 'b', 200);
    char *volatile p = a;
    free(p);
    char *q = realloc(p, 400); /* the misuse */
    free(q);
    free(b);
    return 0; /* not reached */
}
