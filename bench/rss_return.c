/* rss_return: does freed memory go back to the OS, and how soon?
 *
 *   rss_return [large_mib] [small_mb] [small_block]
 *
 * Two phases, each measured against its own starting point:
 *   large: large_mib blocks of 1 MiB (default 1024 = 1 GiB), every page written;
 *   small: small_mb * 10^6 bytes (default 500) in blocks of small_block bytes (default 64),
 *          every block written in full.
 * In each phase VmRSS (from /proc/self/status) is sampled: at the start, after allocating,
 * right after freeing everything, 1 s later (sleep(1): it is part of the measurement, it
 * gives time-driven decay or a background thread a chance), and after one malloc(64)+free
 * following that second (for allocators that only return memory when they are called).
 * Target for my_alloc: after freeing everything, back within 2 MiB of the start within 1 s.
 * A phase with size 0 is skipped.
 *
 * The blocks are chained through their first word (an intrusive list), so the program needs
 * no pointer array of its own that would blur the RSS figures, and freed in allocation order.
 * The samples are kept in a static array and printed at the end, so that stdio's buffer is
 * allocated after the measurements. Output, besides the checksum: one line per sample,
 *   rss_kib <phase>_<point> <KiB>      (points: start peak freed later poked)
 *   ms <phase>_<alloc|free> <ms>       (how long allocating and freeing took)
 * VmRSS is the kernel's per-process counter; on recent kernels it is approximate by at most
 * a few hundred KiB on this 2-core machine (per-CPU batching), well under the 2 MiB target.
 */
#define _GNU_SOURCE
#include "bench_common.h"

#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096


static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Samples, printed at the end. */
static struct {
    const char *unit, *phase, *point;
    double value;
} samples[32];
static int nsamples;

static void record(const char *unit, const char *phase, const char *point, double value)
{
    if (nsamples < (int)(sizeof(samples) / sizeof(samples[0])))
        samples[nsamples++] = (typeof(samples[0])){unit, phase, point, value};
}

/* One phase: `count` blocks of `size` bytes, written, freed, then the RSS watched for 1 s.
 * Every page of a block (every byte of a small one) is written with a value derived from the
 * block's index; the free pass reads them back into the checksum. */
static uint64_t phase(const char *name, size_t count, size_t size)
{
    uint64_t sum = 0;
    record("rss_kib", name, "start", vm_rss_kib());

    double t0 = now_ms();
    void *head = NULL, **tail = &head;     /* chain in allocation order */
    for (size_t i = 0; i < count; i++) {
        unsigned char *p = xmalloc(size);
        unsigned char v = (unsigned char)(i * 131 + 7);
        if (size <= PAGE)
            memset(p, v, size);
        else
            for (size_t off = 0; off < size; off += PAGE)
                p[off] = v;
        p[size - 1] = v;
        *tail = p;                          /* link word: the block's first 8 bytes */
        tail = (void **)p;
    }
    *tail = NULL;
    double t1 = now_ms();
    record("rss_kib", name, "peak", vm_rss_kib());

    size_t i = 0;
    for (void *p = head; p; i++) {
        unsigned char *c = p;
        unsigned char v = (unsigned char)(i * 131 + 7);
        size_t probe = size > PAGE ? PAGE : 8;  /* a byte past the link word */
        if (c[probe] != v || c[size - 1] != v) {
            fprintf(stderr, "corrupted block %zu at %p\n", i, p);
            exit(4);
        }
        sum = sum * 31 + c[size - 1];
        void *next = *(void **)p;
        free(p);
        p = next;
    }
    double t2 = now_ms();
    record("rss_kib", name, "freed", vm_rss_kib());
    record("ms", name, "alloc", t1 - t0);
    record("ms", name, "free", t2 - t1);

    sleep(1);                               /* part of the measurement: "1 s later" */
    record("rss_kib", name, "later", vm_rss_kib());
    free(xmalloc(64));                      /* one call, for allocators that act on calls */
    record("rss_kib", name, "poked", vm_rss_kib());
    return sum;
}

int main(int argc, char **argv)
{
    long long large_mib = arg_ll(argc, argv, 1, 1024);
    long long small_mb = arg_ll(argc, argv, 2, 500);
    long long small_block = arg_ll(argc, argv, 3, 64);
    if (small_block < 16) {
        fprintf(stderr, "small_block must be >= 16\n");
        return 2;
    }

    /* Warm-up: create whatever the allocator sets up on first use (arenas, thread cache,
     * size-class metadata) so that "start" includes its fixed cost. */
    uint64_t rng = 0x55E7, sum = 0;
    void *warm[256];
    for (int i = 0; i < 256; i++) {
        warm[i] = xmalloc(rng_log_size(&rng, 16, 64 << 10));
        *(unsigned char *)warm[i] = (unsigned char)i;
    }
    for (int i = 0; i < 256; i++) {
        sum += *(unsigned char *)warm[i];
        free(warm[i]);
    }
    free(xmalloc(1 << 20));

    record("rss_kib", "program", "start", vm_rss_kib());
    if (large_mib > 0)
        sum = sum * 1000003 + phase("large", (size_t)large_mib, 1 << 20);
    if (small_mb > 0)
        sum = sum * 1000003 + phase("small", (size_t)(small_mb * 1000000 / small_block), (size_t)small_block);

    for (int i = 0; i < nsamples; i++)
        printf("%s %s_%s %.0f\n", samples[i].unit, samples[i].phase, samples[i].point, samples[i].value);
    print_checksum(sum);
    return 0;
}
