/* cache_thrash: the active false-sharing test of the Hoard allocator's benchmarks (Berger et
 * al., "Hoard: A Scalable Memory Allocator for Multithreaded Applications", ASPLOS 2000; the
 * "cache-thrash" entry of mimalloc-bench).
 *
 *   cache_thrash [threads] [iterations] [object_size] [repetitions]
 *
 * Every thread, `iterations` times: allocate one small object, write each of its bytes
 * `repetitions` times, free it. The threads share nothing, so the work should scale with the
 * cores; it does not if the allocator hands objects of one cache line to different threads
 * (active false sharing): each write then steals the line from the other core.
 */
#include <pthread.h>

#include "bench_common.h"

static long long iterations, object_size, repetitions;
static pthread_barrier_t start;

struct worker {
    int id;
    uint64_t sum;
};

static void *run(void *arg)
{
    struct worker *w = arg;
    uint64_t sum = 0;
    pthread_barrier_wait(&start);
    for (long long it = 0; it < iterations; it++) {
        volatile unsigned char *p = xmalloc((size_t)object_size);
        for (long long r = 0; r < repetitions; r++)
            for (long long b = 0; b < object_size; b++)
                p[b] = (unsigned char)(r + b + w->id);
        for (long long b = 0; b < object_size; b++)
            sum += p[b];
        free((void *)p);
    }
    w->sum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    int nthreads = (int)arg_ll(argc, argv, 1, 2);
    iterations = arg_ll(argc, argv, 2, 2500);
    object_size = arg_ll(argc, argv, 3, 8);
    repetitions = arg_ll(argc, argv, 4, 100000);
    if (nthreads < 1 || object_size < 1) {
        fprintf(stderr, "need threads >= 1 and object_size >= 1\n");
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
