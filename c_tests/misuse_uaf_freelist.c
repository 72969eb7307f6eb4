/* A use-after-free write over the first 8 bytes of a freed small block, where the free list's
 * link lives, planting an attacker-chosen address. Links are encoded and range-checked, so the
 * allocations that follow detect the corrupted link instead of returning that address.
 * EXPECT: my_alloc: malloc(): corrupted free list (use after free?) in block */
#include "misuse.h"

int main(void) {
    busy_heap();
    void *keep[8];
    for (int i = 0; i < 8; i++) keep[i] = malloc(56);
    char *p = malloc(56);
    memset(p, 'p', 56);
    free(p);
    volatile uint64_t *dangling = (volatile uint64_t *)p;
    *dangling = 0x4141414141410ULL; /* the use after free */
    for (int i = 0; i < 4; i++) {
        void *volatile q = malloc(56); /* detected in one of these */
        if (q == (void *)(uintptr_t)0x4141414141410ULL) {
            fprintf(stderr, "misuse_uaf_freelist: malloc returned the planted address\n");
            return 1;
        }
    }
    for (int i = 0; i < 8; i++) free(keep[i]);
    return 0; /* not reached */
}
