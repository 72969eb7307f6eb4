/* alloc_test: the pattern of OLogN Technologies' alloc-test (described on ithare.com, "Testing
 * Memory Allocators: ptmalloc2 vs tcmalloc vs hoard vs jemalloc While Trying to Simulate
 * Real-World Loads"), the "alloc-test1" and "alloc-testN" entries of mimalloc-bench: every
 * thread allocates and frees intensively, objects up to 1 KiB with a Pareto-like size
 * distribution, and some objects live much longer than others.
 *
 *   alloc_test [threads] [ops_per_thread] [slots]
 *
 * Each thread has `slots` slots, initially empty. Each op picks a slot: an empty one gets a new
 * object, a full one is freed, so about half the ops allocate and the live set hovers around
 * half the slots. Slot choice is skewed towards the low slots (the cube of a uniform number),
 * so objects there are replaced often and objects in the high slots live long: the mix of
 * short-lived and long-lived objects that fragments an allocator's pages. Sizes: bounded
 * Pareto (alpha 1) between 8 B and 1 KiB, most of them small.
 */
#include <pthread.h>

#include "bench_common.h"

#define MIN_SIZE 8
#define MAX_SIZE 1024

static long long ops, slots;
static pthread_barrier_t start;

static double unit(uint64_t *rng)
{
    return (double)(rng_next(rng) >> 11) / 9007199254740992.0;    /* [0, 1) */
}

/* Inverse-transform sampling of a Pareto density (alpha = 1) cut to [MIN_SIZE, MAX_SIZE]. */
static size_t pareto_size(uint64_t *rng)
{
    double u = unit(rng);
    size_t n = (size_t)(MIN_SIZE / (1.0 - u * (1.0 - (double)MIN_SIZE / MAX_SIZE)));
    return n > MAX_SIZE ? MAX_SIZE : n;
}

struct worker {
    int id;
    uint64_t sum;
};

static void *run(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = 0xA110C7E5 + (uint64_t)w->id * 0x9E3779B97F4A7C15ull, sum = 0;
    unsigned char **blk = xmalloc(sizeof(*blk) * (size_t)slots);
    uint16_t *len = xmalloc(sizeof(*len) * (size_t)slots);
    for (long long i = 0; i < slots; i++)
        blk[i] = NULL;
    pthread_barrier_wait(&start);

    for (long long op = 0; op < ops; op++) {
        double u = unit(&rng);
        size_t i = (size_t)(u * u * u * (double)slots);
        if (blk[i]) {
            sum += check_tag(blk[i], len[i], (unsigned char)(len[i] + i)) + len[i];
            free(blk[i]);
            blk[i] = NULL;
        } else {
            size_t n = pareto_size(&rng);
            blk[i] = xmalloc(n);
            len[i] = (uint16_t)n;
            put_tag(blk[i], n, (unsigned char)(n + i));
        }
    }

    for (long long i = 0; i < slots; i++) {
        if (blk[i]) {
            sum += check_tag(blk[i], len[i], (unsigned char)(len[i] + i)) + len[i];
            free(blk[i]);
        }
    }
    free(blk);
    free(len);
    w->sum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    int nthreads = (int)arg_ll(argc, argv, 1, 1);
    ops = arg_ll(argc, argv, 2, 12000000);
    slots = arg_ll(argc, argv, 3, 100000);
    if (nthreads < 1 || slots < 1) {
        fprintf(stderr, "need threads >= 1 and slots >= 1\n");
        return 2;
    }

    struct worker *w = xmalloc(sizeof(*w) * (size_t)nthreads);
    pthread_t *th = xmalloc(sizeof(*th) * (size_t)nthreads);
    pthread_barrier_init(&start, NULL, (unsigned)nthreads);
    for (int t = 0; t < nthreads; t++) {
        w[t].id = t;
        w[t].sum = 0;
        if (pthread_create(&th[t], NULL, run, &w[t])) {
            fprintf(stderr, "pthread_create failed\n");
            return 3;
        }
    }
    uint64_t sum = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(th[t], NULL);
        sum += w[t].sum;
    }
    free(w);
    free(th);
    print_checksum(sum);
    return 0;
}
