/* mixed: sizes from 16 B to 1 MiB, power-law distributed, with a live set that rises and
 * falls (as a program's working set does between phases).
 *
 *   mixed [ops] [max_live] [waves]
 *
 * Sizes follow a truncated Pareto law with exponent 1: P(size > s) = 16 / s, so about as
 * many bytes are requested in each power of two while small objects dominate by count.
 * The target live count moves along a triangle wave between max_live/16 and max_live,
 * `waves` times over the run; each op allocates while below the target and frees a
 * random live object while above it (with some noise both ways), so the heap repeatedly
 * grows, shrinks (a chance to return memory) and regrows.
 */
#include <string.h>

#include "bench_common.h"

#define MIN_SIZE 16
#define MAX_SIZE (1u << 20)

/* Inverse-CDF sample of the Pareto law, integers only: size = 16 * 2^32 / (u + 1). */
static size_t power_law_size(uint64_t *rng)
{
    for (;;) {
        uint64_t u = rng_next(rng) >> 32;
        uint64_t s = ((uint64_t)MIN_SIZE << 32) / (u + 1);
        if (s <= MAX_SIZE)
            return (size_t)s;
    }
}

int main(int argc, char **argv)
{
    long long ops = arg_ll(argc, argv, 1, 16000000);
    long long max_live = arg_ll(argc, argv, 2, 100000);
    long long waves = arg_ll(argc, argv, 3, 8);
    if (max_live < 16 || waves < 1) {
        fprintf(stderr, "need max_live >= 16 and waves >= 1\n");
        return 2;
    }

    uint64_t rng = 0x5EED5EED, sum = 0;
    unsigned char **ptr = xmalloc(sizeof(*ptr) * (size_t)max_live);
    size_t *len = xmalloc(sizeof(*len) * (size_t)max_live);
    long long live = 0;
    long long period = ops / waves > 0 ? ops / waves : 1;
    long long lo = max_live / 16;

    for (long long op = 0; op < ops; op++) {
        /* Triangle wave: up during the first half of each period, down in the second. */
        long long phase = op % period;
        long long half = period / 2 > 0 ? period / 2 : 1;
        long long dist = phase < half ? phase : period - phase;
        long long target = lo + (max_live - lo) * dist / half;

        /* Mostly follow the target, but 1 op in 4 goes the other way (replacement churn). */
        int alloc = live < target;
        if (rng_below(&rng, 4) == 0)
            alloc = !alloc;
        if (live == 0)
            alloc = 1;
        if (live == max_live)
            alloc = 0;

        if (alloc) {
            size_t n = power_law_size(&rng);
            unsigned char *p = xmalloc(n);
            /* Touch like a real program: small objects whole, large ones at the head. */
            memset(p, (int)(n & 0xff), n < 4096 ? n : 4096);
            put_tag(p, n, (unsigned char)n);
            ptr[live] = p;
            len[live] = n;
            live++;
        } else {
            long long i = (long long)rng_below(&rng, (uint64_t)live);
            sum += check_tag(ptr[i], len[i], (unsigned char)len[i]) + len[i];
            free(ptr[i]);
            live--;
            ptr[i] = ptr[live];          /* keep the live array dense */
            len[i] = len[live];
        }
    }
    for (long long i = 0; i < live; i++) {
        sum += check_tag(ptr[i], len[i], (unsigned char)len[i]);
        free(ptr[i]);
    }
    free(ptr);
    free(len);
    print_checksum(sum);
    return 0;
}
