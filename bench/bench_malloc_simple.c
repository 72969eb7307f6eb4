/* bench_malloc_simple: the pattern of glibc's simpler malloc benchmark,
 * benchtests/bench-malloc-simple in the glibc sources: batches of same-sized blocks allocated
 * and then all freed, for a few sizes and batch lengths, in three situations.
 *
 *   bench_malloc_simple [rounds] [threads]
 *
 * Sizes 16, 256, 1024 and 4096 B; batches of 25, 100, 400 and 1600 blocks, so that short
 * batches fit a thread cache and long ones do not. Each (size, batch) pair allocates
 * rounds * 1600 blocks in all, each written once and read back before its free, in order.
 * The three phases, in this order:
 *   1. the main thread of a process that has never started a thread,
 *   2. `threads` threads at once, each doing the same work,
 *   3. the main thread again, now that the process is multi-threaded (an allocator may have
 *      taken a faster path in phase 1 that it can no longer use).
 * The glibc benchmark times each phase; here the program prints them ("ms <phase> <value>")
 * and the runner's measure is the wall time of the whole.
 */
#include <pthread.h>
#include <time.h>

#include "bench_common.h"

#define LONGEST_BATCH 1600

static const size_t block_sizes[] = {16, 256, 1024, 4096};
static const int batch_lengths[] = {25, 100, 400, LONGEST_BATCH};

static long long rounds;

static uint64_t one_pass(void)
{
    static __thread unsigned char *blk[LONGEST_BATCH];
    uint64_t sum = 0;
    for (size_t s = 0; s < sizeof(block_sizes) / sizeof(block_sizes[0]); s++) {
        size_t n = block_sizes[s];
        for (size_t b = 0; b < sizeof(batch_lengths) / sizeof(batch_lengths[0]); b++) {
            int len = batch_lengths[b];
            long long batches = rounds * LONGEST_BATCH / len;
            for (long long k = 0; k < batches; k++) {
                for (int i = 0; i < len; i++) {
                    blk[i] = xmalloc(n);
                    blk[i][0] = (unsigned char)(i + k);
                }
                for (int i = 0; i < len; i++) {
                    sum += blk[i][0];
                    free(blk[i]);
                }
            }
        }
    }
    return sum;
}

static void *thread_pass(void *arg)
{
    *(uint64_t *)arg = one_pass();
    return NULL;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    rounds = arg_ll(argc, argv, 1, 25);
    int nthreads = (int)arg_ll(argc, argv, 2, 2);
    if (nthreads < 1) {
        fprintf(stderr, "threads must be >= 1\n");
        return 2;
    }

    double t0 = now_ms();
    uint64_t sum = one_pass();
    double t1 = now_ms();

    pthread_t *th = xmalloc(sizeof(*th) * (size_t)nthreads);
    uint64_t *sums = xmalloc(sizeof(*sums) * (size_t)nthreads);
    for (int t = 0; t < nthreads; t++) {
        if (pthread_create(&th[t], NULL, thread_pass, &sums[t])) {
            fprintf(stderr, "pthread_create failed\n");
            return 3;
        }
    }
    for (int t = 0; t < nthreads; t++) {
        pthread_join(th[t], NULL);
        sum += sums[t];
    }
    double t2 = now_ms();

    sum += one_pass();
    double t3 = now_ms();

    free(th);
    free(sums);
    printf("ms single_threaded %.1f\nms threads %.1f\nms main_after_threads %.1f\n",
           t1 - t0, t2 - t1, t3 - t2);
    print_checksum(sum);
    return 0;
}
