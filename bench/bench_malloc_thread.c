/* bench_malloc_thread: the pattern of glibc's own malloc benchmark, benchtests/bench-malloc-thread
 * in the glibc sources (run by `make bench-malloc` there, with 1 to N threads).
 *
 *   bench_malloc_thread [threads] [iterations_per_thread] [working_set]
 *
 * Each thread keeps `working_set` (1024) slots and, at each iteration, replaces a random slot
 * with a block of random size. Sizes follow an inverse-square distribution between 4 B and
 * 32 KiB, so most blocks are tiny and a few are tens of KiB. Every thread works on its own
 * blocks: this measures the per-thread fast paths and how they scale, and with more threads
 * than cores, how the allocator behaves when its threads are preempted. The glibc benchmark
 * runs for a fixed time and reports the time per iteration; this one runs a fixed number of
 * iterations per thread, so its wall time is the measure.
 */
#include <pthread.h>

#include "bench_common.h"

#define MIN_SIZE 4
#define MAX_SIZE 32768
#define SIZE_TABLE 8192          /* sizes drawn up front: the RNG's cost stays out of the loop */

static long long iterations, ws;
static size_t sizes[SIZE_TABLE];
static pthread_barrier_t start;

/* Inverse-transform sampling of a density proportional to 1/x^2 on [MIN_SIZE, MAX_SIZE]. */
static size_t inverse_square_size(uint64_t *rng)
{
    double u = (double)(rng_next(rng) >> 11) / 9007199254740992.0;   /* [0, 1) */
    double lo = 1.0 / MIN_SIZE, hi = 1.0 / MAX_SIZE;
    size_t n = (size_t)(1.0 / (lo - u * (lo - hi)));
    return n < MIN_SIZE ? MIN_SIZE : n > MAX_SIZE ? MAX_SIZE : n;
}

struct worker {
    int id;
    uint64_t sum;
};

static void *run(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = 0xB3A7C0DE + (uint64_t)w->id * 6364136223846793005ull, sum = 0;
    unsigned char **blk = xmalloc(sizeof(*blk) * (size_t)ws);
    size_t *len = xmalloc(sizeof(*len) * (size_t)ws);
    for (long long i = 0; i < ws; i++) {
        blk[i] = NULL;
        len[i] = 0;
    }
    pthread_barrier_wait(&start);

    for (long long it = 0; it < iterations; it++) {
        uint64_t r = rng_next(&rng);
        size_t i = (size_t)(r % (uint64_t)ws);
        if (blk[i]) {
            sum += check_tag(blk[i], len[i], (unsigned char)len[i]) + len[i];
            free(blk[i]);
        }
        len[i] = sizes[(r >> 32) % SIZE_TABLE];
        blk[i] = xmalloc(len[i]);
        put_tag(blk[i], len[i], (unsigned char)len[i]);
    }

    for (long long i = 0; i < ws; i++) {
        if (blk[i]) {
            sum += check_tag(blk[i], len[i], (unsigned char)len[i]) + len[i];
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
    iterations = arg_ll(argc, argv, 2, 40000000);
    ws = arg_ll(argc, argv, 3, 1024);
    if (nthreads < 1 || ws < 1) {
        fprintf(stderr, "need threads >= 1 and working_set >= 1\n");
        return 2;
    }

    uint64_t rng = 0x5123;
    for (int i = 0; i < SIZE_TABLE; i++)
        sizes[i] = inverse_square_size(&rng);

    struct worker *w = xmalloc(sizeof(*w) * (size_t)nthreads);
    pthread_t *th = xmalloc(sizeof(*th) * (size_t)nthreads);
    pthread_barrier_init(&start, NULL, (unsigned)nthreads);
    for (int t = 0; t < nthreads; t++) {
        w[t].id = t;
        w[t].sum = 0;
    }
    /* One thread runs in main, as a single-threaded program would (glibc has a faster path
     * for a process that never started a thread). */
    if (nthreads == 1)
        run(&w[0]);
    for (int t = 0; t < nthreads && nthreads > 1; t++) {
        if (pthread_create(&th[t], NULL, run, &w[t])) {
            fprintf(stderr, "pthread_create failed\n");
            return 3;
        }
    }
    uint64_t sum = 0;
    for (int t = 0; t < nthreads; t++) {
        if (nthreads > 1)
            pthread_join(th[t], NULL);
        sum += w[t].sum;
    }
    free(w);
    free(th);
    print_checksum(sum);
    return 0;
}
