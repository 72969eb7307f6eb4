/* malloc_large: the pattern of mimalloc-bench's "malloc-large" test: large blocks, 5 to 25 MiB,
 * allocated and freed in a loop with a few of them live, every page of each one written.
 *
 *   malloc_large [ops] [live_slots]
 *
 * Each op replaces a random one of `live_slots` blocks by a new block of uniformly random size
 * between 5 and 25 MiB and writes one byte in each of its pages. What this measures is mostly
 * the page faults: an allocator that unmaps a freed block and maps the next one afresh pays a
 * fault (and the kernel's zeroing) for every page of every block; one that keeps freed memory
 * mapped and reuses it pays far fewer, at the cost of resident memory. Unlike large.c (64 KiB
 * to 32 MiB, log-uniform, so mostly smaller blocks), every block here is big.
 */
#include "bench_common.h"

#define PAGE 4096
#define MIB (1 << 20)
#define MIN_SIZE (5 * MIB)
#define MAX_SIZE (25 * MIB)

/* Read back every page's byte: a block that was not really ours changes the sum. */
static uint64_t release(unsigned char *p, size_t n, unsigned char tag)
{
    uint64_t sum = 0;
    for (size_t off = 0; off < n; off += PAGE)
        sum += p[off] ^ (unsigned char)(off / PAGE);
    sum += check_tag(p, n, tag) + n;
    free(p);
    return sum;
}

int main(int argc, char **argv)
{
    long long ops = arg_ll(argc, argv, 1, 600);
    long long slots = arg_ll(argc, argv, 2, 4);
    if (slots < 1) {
        fprintf(stderr, "live_slots must be >= 1\n");
        return 2;
    }

    uint64_t rng = 0x1A26E5, sum = 0;
    unsigned char **blk = xmalloc(sizeof(*blk) * (size_t)slots);
    size_t *len = xmalloc(sizeof(*len) * (size_t)slots);
    for (long long i = 0; i < slots; i++)
        blk[i] = NULL;

    for (long long op = 0; op < ops; op++) {
        size_t i = (size_t)rng_below(&rng, (uint64_t)slots);
        if (blk[i])
            sum += release(blk[i], len[i], (unsigned char)len[i]);
        size_t n = rng_range(&rng, MIN_SIZE, MAX_SIZE);
        unsigned char *p = xmalloc(n);
        unsigned char mark = (unsigned char)op;
        for (size_t off = 0; off < n; off += PAGE)
            p[off] = mark ^ (unsigned char)(off / PAGE);
        put_tag(p, n, (unsigned char)n);
        blk[i] = p;
        len[i] = n;
        sum += mark;
    }
    for (long long i = 0; i < slots; i++)
        if (blk[i])
            sum += release(blk[i], len[i], (unsigned char)len[i]);

    free(blk);
    free(len);
    print_checksum(sum);
    return 0;
}
