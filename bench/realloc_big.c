/* realloc_big: one buffer grown by realloc to a large size, with other live blocks around.
 *
 *   realloc_big [max_mib] [steps]
 *
 * The buffer starts at 4 KiB and doubles up to max_mib MiB (default 256); after each doubling
 * to L it also grows `steps` times (default 16) by 4 KiB (L + 4 KiB, L + 8 KiB, ...; fewer
 * while L is small), as a log or a byte vector appended to does. Every new page is written.
 * Other blocks stay live meanwhile: a few of assorted sizes before it starts, and one more
 * (100 B - 8 KiB) after each doubling, so the buffer's neighbours are taken and growing in
 * place is not free. An allocator that copies big blocks holds old + new copies at once (peak
 * about 1.5 x max_mib) and pays for the copies in time; one that remaps them (mremap) does not.
 * Output, besides the checksum and the peak RSS the launcher measures:
 *   ms grow <ms>            time of the whole growth (all reallocs and page writes)
 *   count reallocs <n>      number of realloc calls
 *   count moved <n>         how many of them returned a different address
 *   rss_kib end <KiB>       VmRSS with the full buffer live
 *   rss_kib freed <KiB>     VmRSS after freeing everything (no waiting)
 */
#define _GNU_SOURCE
#include "bench_common.h"

#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096


static unsigned char *buf;
static size_t cur;                 /* current size of buf */
static long reallocs, moved;

/* Grows buf to n bytes, checks that the old contents came along, writes each new page. */
static void grow_to(size_t n)
{
    unsigned char *p = realloc(buf, n);
    if (!p) {
        fprintf(stderr, "realloc(%zu) returned NULL\n", n);
        exit(3);
    }
    reallocs++;
    moved += buf && p != buf;
    if (cur && (p[0] != 0 || p[(cur - 1) & ~(size_t)(PAGE - 1)] != (unsigned char)((cur - 1) / PAGE))) {
        fprintf(stderr, "realloc to %zu lost the old contents\n", n);
        exit(4);
    }
    for (size_t off = (cur + PAGE - 1) & ~(size_t)(PAGE - 1); off < n; off += PAGE)
        p[off] = (unsigned char)(off / PAGE);
    buf = p;
    cur = n;
}

int main(int argc, char **argv)
{
    long long max_mib = arg_ll(argc, argv, 1, 256);
    long long steps = arg_ll(argc, argv, 2, 16);
    size_t max = (size_t)max_mib << 20;
    if (max < 2 * PAGE) {
        fprintf(stderr, "max_mib must be >= 1\n");
        return 2;
    }

    uint64_t rng = 0xB16B, sum = 0;
    /* Neighbours: assorted live blocks before the buffer exists, more added as it grows. */
    enum { MAXN = 64 };
    unsigned char *nb[MAXN];
    size_t nlen[MAXN];
    int nn = 0;
    static const size_t first[] = {48, 1000, 40 << 10, 200 << 10, 2 << 20};
    for (size_t i = 0; i < sizeof(first) / sizeof(first[0]); i++) {
        nlen[nn] = first[i];
        nb[nn] = xmalloc(first[i]);
        memset(nb[nn], nn + 1, first[i]);
        nn++;
    }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t level = PAGE; level < max; level *= 2) {
        grow_to(level);
        for (long long j = 1; j <= steps && (size_t)j * PAGE < level / 2; j++)
            grow_to(level + (size_t)j * PAGE);
        if (nn < MAXN) {            /* one more neighbour, right after the buffer moved */
            nlen[nn] = rng_range(&rng, 100, 8192);
            nb[nn] = xmalloc(nlen[nn]);
            memset(nb[nn], nn + 1, nlen[nn]);
            nn++;
        }
    }
    grow_to(max);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long rss_end = vm_rss_kib();

    /* Read back one byte per page of the buffer and the neighbours' tags, then free all. */
    for (size_t off = 0; off < cur; off += PAGE) {
        if (buf[off] != (unsigned char)(off / PAGE)) {
            fprintf(stderr, "buffer page %zu corrupted\n", off / PAGE);
            return 4;
        }
        sum = sum * 31 + buf[off];
    }
    free(buf);
    for (int i = 0; i < nn; i++) {
        sum += check_tag(nb[i], nlen[i], (unsigned char)(i + 1));
        free(nb[i]);
    }
    long rss_freed = vm_rss_kib();

    printf("ms grow %.1f\n", (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
    printf("count reallocs %ld\ncount moved %ld\n", reallocs, moved);
    printf("rss_kib end %ld\nrss_kib freed %ld\n", rss_end, rss_freed);
    print_checksum(sum);
    return 0;
}
