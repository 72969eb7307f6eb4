/* Shared helpers for the allocator benchmarks in bench/.
 *
 * Every benchmark:
 *   - takes optional positional arguments for its scale (defaults = full size),
 *   - uses the seeded RNG below, so every allocator sees the same request stream,
 *   - prints one line "checksum <hex>" on stdout, computed from bytes read back out of
 *     the allocated objects, so the work cannot be optimised away and a wrong result
 *     (e.g. an allocator handing out overlapping blocks) shows up as a different checksum,
 *   - exits non-zero if it detects a corrupted object or malloc returns NULL.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* splitmix64: tiny, fast, good enough statistically; state is one word per thread. */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n) (n > 0); the modulo bias is irrelevant at these n. */
static inline uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return rng_next(s) % n;
}

/* Uniform in [lo, hi]. */
static inline size_t rng_range(uint64_t *s, size_t lo, size_t hi)
{
    return lo + (size_t)rng_below(s, (uint64_t)(hi - lo + 1));
}

/* Log-uniform in [lo, hi] (lo a power of two): pick an octave uniformly, then a size
 * uniformly inside it. Real programs allocate many more small than large objects. */
static inline size_t rng_log_size(uint64_t *s, size_t lo, size_t hi)
{
    int octaves = 0;
    while ((lo << (octaves + 1)) <= hi)
        octaves++;
    size_t base = lo << rng_below(s, (uint64_t)octaves + 1);
    size_t top = base * 2 - 1;
    if (top > hi)
        top = hi;
    return rng_range(s, base, top);
}

/* Positional argument i as a non-negative integer, or def when absent. Accepts 1e6 style. */
static inline long long arg_ll(int argc, char **argv, int i, long long def)
{
    if (i >= argc)
        return def;
    char *end;
    errno = 0;
    double v = strtod(argv[i], &end);
    if (errno || *end || v < 0) {
        fprintf(stderr, "%s: bad argument %d: '%s'\n", argv[0], i, argv[i]);
        exit(2);
    }
    return (long long)v;
}

static inline void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "malloc(%zu) returned NULL\n", n);
        exit(3);
    }
    return p;
}

/* Mark an object: a tag byte at both ends (and the middle). check_tag() verifies them
 * before the object is freed; a mismatch means someone else wrote into our block. */
static inline void put_tag(void *p, size_t n, unsigned char tag)
{
    unsigned char *c = (unsigned char *)p;
    c[0] = tag;
    c[n / 2] = tag;
    c[n - 1] = tag;
}

static inline unsigned check_tag(const void *p, size_t n, unsigned char tag)
{
    const volatile unsigned char *c = (const volatile unsigned char *)p;
    if (c[0] != tag || c[n / 2] != tag || c[n - 1] != tag) {
        fprintf(stderr, "corrupted object %p size %zu: tag %02x, found %02x %02x %02x\n",
                p, n, tag, c[0], c[n / 2], c[n - 1]);
        exit(4);
    }
    return tag;
}

static inline void print_checksum(uint64_t sum)
{
    printf("checksum %016llx\n", (unsigned long long)sum);
}

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* VmRSS in KiB, read without stdio (which would allocate a FILE and a buffer and blur the
 * figure). Exits with status 5 if /proc/self/status cannot be read. */
static inline long vm_rss_kib(void)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
    if (fd >= 0)
        close(fd);
    char *p = n > 0 ? (buf[n] = 0, strstr(buf, "VmRSS:")) : NULL;
    if (!p) {
        fprintf(stderr, "cannot read VmRSS from /proc/self/status\n");
        exit(5);
    }
    return strtol(p + 6, NULL, 10);
}

#endif
