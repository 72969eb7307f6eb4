/* fragment: can freed small blocks be reused for larger requests?
 *
 *   fragment [small_count] [min_small] [max_small]
 *
 * 1. allocate small_count blocks (default 2 million) of uniform random size in
 *    [min_small, max_small] (default 16-128 B), each written in full;
 * 2. free every other one: the holes are small and isolated, the live half pins the pages;
 * 3. allocate blocks of 1-64 KiB (log-uniform sizes, written in full) until they total as many
 *    bytes as step 2 freed.
 * The live data at the end is the same as after step 1, so an allocator with little overhead
 * per small block and no waste on the larger ones stays near the step-1 RSS. The peak RSS
 * comes from the launcher (ru_maxrss); the program prints VmRSS after each step:
 *   rss_kib <small|half|end|freed> <KiB>   (freed: after freeing everything, no waiting)
 *   live_kib <small|half|end> <KiB>        (bytes requested and live, with the program's
 *                                           own pointer arrays, for reference)
 */
#define _GNU_SOURCE
#include "bench_common.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>


int main(int argc, char **argv)
{
    long long count = arg_ll(argc, argv, 1, 2000000);
    long long lo = arg_ll(argc, argv, 2, 16);
    long long hi = arg_ll(argc, argv, 3, 128);
    if (count < 2 || lo < 1 || hi < lo) {
        fprintf(stderr, "need small_count >= 2 and 1 <= min_small <= max_small\n");
        return 2;
    }

    uint64_t rng = 0xF4A6, sum = 0;
    long rss[4], live[3];
    unsigned char **small = xmalloc(sizeof(*small) * (size_t)count);
    unsigned short *len = xmalloc(sizeof(*len) * (size_t)count);

    /* 1. small blocks, each filled with its tag */
    size_t small_bytes = 0;
    for (long long i = 0; i < count; i++) {
        size_t n = rng_range(&rng, (size_t)lo, (size_t)hi);
        small[i] = xmalloc(n);
        memset(small[i], (unsigned char)i, n);
        len[i] = (unsigned short)n;
        small_bytes += n;
    }
    rss[0] = vm_rss_kib();
    size_t arrays = (size_t)count * (sizeof(*small) + sizeof(*len));   /* our own bookkeeping */
    live[0] = (long)((arrays + small_bytes) >> 10);

    /* 2. free every other one (odd indices) */
    size_t freed = 0;
    for (long long i = 1; i < count; i += 2) {
        sum += check_tag(small[i], len[i], (unsigned char)i);
        freed += len[i];
        free(small[i]);
        small[i] = NULL;
    }
    rss[1] = vm_rss_kib();
    live[1] = (long)((arrays + small_bytes - freed) >> 10);

    /* 3. larger blocks, as many bytes as were freed; the pointer array grows by doubling */
    size_t nbig = 0, cap = 1024, big_bytes = 0;
    unsigned char **big = xmalloc(sizeof(*big) * cap);
    size_t *blen = xmalloc(sizeof(*blen) * cap);
    while (big_bytes < freed) {
        if (nbig == cap) {
            cap *= 2;
            big = realloc(big, sizeof(*big) * cap);
            blen = realloc(blen, sizeof(*blen) * cap);
            if (!big || !blen) {
                fprintf(stderr, "realloc failed\n");
                return 3;
            }
        }
        size_t n = rng_log_size(&rng, 1 << 10, 64 << 10);
        big[nbig] = xmalloc(n);
        memset(big[nbig], (unsigned char)(nbig * 7), n);
        blen[nbig++] = n;
        big_bytes += n;
    }
    rss[2] = vm_rss_kib();
    arrays += cap * (sizeof(*big) + sizeof(*blen));
    live[2] = (long)((arrays + small_bytes - freed + big_bytes) >> 10);

    /* Read everything back and free it. */
    for (size_t i = 0; i < nbig; i++) {
        sum += check_tag(big[i], blen[i], (unsigned char)(i * 7));
        free(big[i]);
    }
    for (long long i = 0; i < count; i += 2) {
        sum += check_tag(small[i], len[i], (unsigned char)i);
        free(small[i]);
    }
    free(big);
    free(blen);
    free(small);
    free(len);
    rss[3] = vm_rss_kib();

    printf("rss_kib small %ld\nrss_kib half %ld\nrss_kib end %ld\nrss_kib freed %ld\n",
           rss[0], rss[1], rss[2], rss[3]);
    printf("live_kib small %ld\nlive_kib half %ld\nlive_kib end %ld\n", live[0], live[1], live[2]);
    printf("count big %zu\n", nbig);
    print_checksum(sum);
    return 0;
}
