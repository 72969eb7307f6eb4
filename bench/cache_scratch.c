/* cache_scratch: the passive false-sharing test of the Hoard allocator's benchmarks (Berger et
 * al., "Hoard: A Scalable Memory Allocator for Multithreaded Applications", ASPLOS 2000; the
 * "cache-scratch" entry of mimalloc-bench).
 *
 *   cache_scratch [threads] [iterations] [object_size] [repetitions]
 *
 * The main thread allocates one small object per thread, one after the other, so they are
 * likely neighbours in one cache line, and hands one to each thread. Each thread frees the
 * object it was given, then, `iterations` times, allocates an object of its own, writes each
 * of its bytes `repetitions` times and frees it. An allocator that gives a thread back the
 * memory it just freed hands out neighbouring bytes to different threads (passive false
 * sharing), and their writes fight over one cache line.
 */
#include <pthread.h>

#include "bench_common.h"

static long long iterations, object_size, repetitions;
static pthread_barrier_t start;

struct worker {
    int id;
    unsigned char *given;        /* allocated by main, freed by this thread */
    uint64_t sum;
};

static void *run(void *arg)
{
    struct worker *w = arg;
    uint64_t sum = 0;
    pthread_barrier_wait(&start);
    sum += check_tag(w->given, (size_t)object_size, (unsigned char)w->id);
    free(w->given);
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
    for (int t = 0; t < nthreads; t++) {
        w[t].id = t;
        w[t].sum = 0;
        w[t].given = xmalloc((size_t)object_size);
        put_tag(w[t].given, (size_t)object_size, (unsigned char)t);
    }
    pthread_barrier_init(&start, NULL, (unsigned)nthreads);
    for (int t = 0; t < nthreads; t++) {
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
