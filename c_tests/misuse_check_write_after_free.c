/* Checking mode: a freed block is filled with a pattern and held in the quarantine of freed
 * blocks; a write into it after the free (beyond its link word) is found when the block leaves
 * the quarantine, or, as here where it never does, by the scan of the quarantine at exit.
 * ENV: MY_ALLOC_CHECK=1
 * EXPECT: my_alloc: exit(): write after free into the block at */
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
        void *volatile q = malloc(100); /* the freed block stays in quarantine */
        (void)q;
    }
    free(keep);
    return 0; /* detected at exit */
}
