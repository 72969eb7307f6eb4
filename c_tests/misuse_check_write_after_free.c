/* Checking mode: a freed block is filled with a pattern; a write into it after the free (beyond its
 * link word) is found when the block is handed out again by a malloc of the same size.
 * ENV: MY_ALLOC_CHECK=1
 * EXPECT: my_alloc: malloc(): write after free into the block at */
#include "misuse.h"

int main(void) {
    busy_heap();
    char *keep = malloc(100);
    char *p = malloc(100);
    memset(keep, 'k', 100);
    memset(p, 'p', 100);
    free(p);
    volatile char *dangling = p;
    dangling[40] = 'W'; /* the use after free */
    for (int i = 0; i < 4; i++) {
        void *volatile q = malloc(100); /* detected when the freed block comes back */
        (void)q;
    }
    free(keep);
    return 0; /* not reached */
}
