/* churn: small-object churn on one thread, sizes 8-512 bytes.
 *
 *   churn [batch] [lifo_rounds] [working_set] [random_ops]
 *
 * Phase 1 (LIFO): allocate `batch` objects, free them in reverse order; repeat.
 *   This is the stack-like pattern of temporaries; a thread cache should make it cheap.
 * Phase 2 (random order): a working set of `working_set` slots; each op picks a random
 *   slot, frees its object and allocates a new one of random size. Frees arrive in an
 *   order unrelated to allocation order, which fragments free lists.
 */
#include "bench_common.h"

int main(int argc, char **argv)
{
    long long batch = arg_ll(argc, argv, 1, 10000);
    long long lifo_rounds = arg_ll(argc, argv, 2, 1000);
    long long ws = arg_ll(argc, argv, 3, 20000);
    long long random_ops = arg_ll(argc, argv, 4, 10000000);
    if (batch < 1 || ws < 1) {
        fprintf(stderr, "batch and working_set must be >= 1\n");
        return 2;
    }

    uint64_t rng = 0x1234567;
    uint64_t sum = 0;
    unsigned char **ptr = xmalloc(sizeof(*ptr) * (size_t)(batch > ws ? batch : ws));
    size_t *len = xmalloc(sizeof(*len) * (size_t)(batch > ws ? batch : ws));

    /* Phase 1: LIFO batches. */
    for (long long r = 0; r < lifo_rounds; r++) {
        for (long long i = 0; i < batch; i++) {
            size_t n = rng_range(&rng, 8, 512);
            ptr[i] = xmalloc(n);
            len[i] = n;
            put_tag(ptr[i], n, (unsigned char)(i + r));
        }
        for (long long i = batch - 1; i >= 0; i--) {
            sum += check_tag(ptr[i], len[i], (unsigned char)(i + r)) + len[i];
            free(ptr[i]);
        }
    }

    /* Phase 2: random replacement in a working set. */
    for (long long i = 0; i < ws; i++) {
        len[i] = rng_range(&rng, 8, 512);
        ptr[i] = xmalloc(len[i]);
        put_tag(ptr[i], len[i], (unsigned char)len[i]);
    }
    for (long long op = 0; op < random_ops; op++) {
        size_t i = (size_t)rng_below(&rng, (uint64_t)ws);
        sum += check_tag(ptr[i], len[i], (unsigned char)len[i]) + len[i];
        free(ptr[i]);
        len[i] = rng_range(&rng, 8, 512);
        ptr[i] = xmalloc(len[i]);
        put_tag(ptr[i], len[i], (unsigned char)len[i]);
    }
    for (long long i = 0; i < ws; i++) {
        sum += check_tag(ptr[i], len[i], (unsigned char)len[i]);
        free(ptr[i]);
    }

    free(ptr);
    free(len);
    print_checksum(sum);
    return 0;
}
