/* large: blocks of 64 KiB - 32 MiB allocated, touched (a write to every page), and freed.
 *
 *   large [ops] [live_slots]
 *
 * Sizes are log-uniform. A few blocks (`live_slots`) stay live at once and are replaced
 * at random, as image buffers or I/O buffers are. This measures how the allocator gets
 * and returns big regions (mmap/munmap, caching, madvise) and the page faults that follow:
 * an allocator that keeps freed pages mapped saves faults but holds more RSS.
 */
#include "bench_common.h"

#define PAGE 4096

int main(int argc, char **argv)
{
    long long ops = arg_ll(argc, argv, 1, 700);
    long long slots = arg_ll(argc, argv, 2, 4);
    if (slots < 1) {
        fprintf(stderr, "live_slots must be >= 1\n");
        return 2;
    }

    uint64_t rng = 0x1A46E, sum = 0;
    unsigned char **ptr = xmalloc(sizeof(*ptr) * (size_t)slots);
    size_t *len = xmalloc(sizeof(*len) * (size_t)slots);
    for (long long i = 0; i < slots; i++) {
        ptr[i] = NULL;
        len[i] = 0;
    }

    for (long long op = 0; op < ops; op++) {
        size_t i = (size_t)rng_below(&rng, (uint64_t)slots);
        if (ptr[i]) {
            /* Read back one byte per page: catches a block that was not really ours. */
            for (size_t off = 0; off < len[i]; off += PAGE * 16)
                sum += ptr[i][off];
            sum += check_tag(ptr[i], len[i], (unsigned char)len[i]);
            free(ptr[i]);
        }
        size_t n = rng_log_size(&rng, 64 << 10, 32 << 20);
        unsigned char *p = xmalloc(n);
        for (size_t off = 0; off < n; off += PAGE)
            p[off] = (unsigned char)(off >> 12);
        put_tag(p, n, (unsigned char)n);
        ptr[i] = p;
        len[i] = n;
    }
    for (long long i = 0; i < slots; i++) {
        if (ptr[i]) {
            sum += check_tag(ptr[i], len[i], (unsigned char)len[i]);
            free(ptr[i]);
        }
    }
    free(ptr);
    free(len);
    print_checksum(sum);
    return 0;
}
