/* hotpath: N pairs of malloc(32) + free, back to back, on one thread.
 *
 *   hotpath [N]
 *
 * Every pair after the first hits the allocator's fastest path (a cached block of the
 * same class), so under `valgrind --tool=callgrind` the instruction count of a run with
 * N pairs minus that of a run with N = 0, divided by N, is the cost of one malloc+free
 * pair on the hot path (plus the few instructions of this loop). One warm-up pair runs
 * even when N = 0, so first-call initialisation is in both runs and cancels out.
 */
#include "bench_common.h"

int main(int argc, char **argv)
{
    long long n = arg_ll(argc, argv, 1, 1000000);
    uint64_t sum = 0;

    /* Warm-up: initialises the allocator and its thread cache for this class. */
    unsigned char *p = xmalloc(32);
    p[0] = 1;
    sum += p[0];
    free(p);

    for (long long i = 0; i < n; i++) {
        p = malloc(32);
        /* One store and one load: keeps the pair from being elided and is ~2 instructions. */
        *(volatile unsigned char *)p = (unsigned char)i;
        sum += *(volatile unsigned char *)p;
        free(p);
    }
    print_checksum(sum);
    return 0;
}
