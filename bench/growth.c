/* growth: buffers grown with realloc, as string builders and dynamic arrays do.
 *
 *   growth [strings] [string_rounds] [vectors] [vector_rounds]
 *
 * Phase 1 (strings): `strings` buffers are appended to in turn, 1-16 bytes at a time,
 *   each realloc'd to exactly the new length (+1 for a NUL), until it reaches a random
 *   target length of 64 B - 64 KiB; then it is freed and a new one starts. Growing many
 *   buffers in turn means a neighbour often blocks growth in place.
 * Phase 2 (vectors): `vectors` arrays start at 16 bytes and double with realloc up to a
 *   random cap of 4 KiB - 4 MiB, writing the new half each time (so the copy and the
 *   page faults are real), then are freed and restarted.
 */
#include <string.h>

#include "bench_common.h"

struct buf {
    unsigned char *p;
    size_t len, target;
};

int main(int argc, char **argv)
{
    long long nstr = arg_ll(argc, argv, 1, 256);
    long long str_rounds = arg_ll(argc, argv, 2, 10000);
    long long nvec = arg_ll(argc, argv, 3, 16);
    long long vec_rounds = arg_ll(argc, argv, 4, 30);
    if (nstr < 1 || nvec < 1) {
        fprintf(stderr, "strings and vectors must be >= 1\n");
        return 2;
    }

    uint64_t rng = 0xABCDEF, sum = 0;
    struct buf *b = xmalloc(sizeof(*b) * (size_t)(nstr > nvec ? nstr : nvec));

    /* Phase 1: strings, a few bytes per append. A "round" is one append to every string. */
    for (long long i = 0; i < nstr; i++) {
        b[i].p = NULL;
        b[i].len = 0;
        b[i].target = rng_log_size(&rng, 64, 65536);
    }
    for (long long r = 0; r < str_rounds; r++) {
        for (long long i = 0; i < nstr; i++) {
            struct buf *s = &b[i];
            size_t add = rng_range(&rng, 1, 16);
            unsigned char *np = realloc(s->p, s->len + add + 1);
            if (!np) {
                fprintf(stderr, "realloc failed\n");
                return 3;
            }
            /* The old contents must have moved with the block: check the last byte. */
            if (s->len && np[s->len - 1] != (unsigned char)(s->len - 1)) {
                fprintf(stderr, "realloc lost data at %zu\n", s->len - 1);
                return 4;
            }
            for (size_t k = 0; k < add; k++)
                np[s->len + k] = (unsigned char)(s->len + k);
            s->len += add;
            np[s->len] = 0;
            s->p = np;
            if (s->len >= s->target) {
                sum += s->len + s->p[s->len / 2];
                free(s->p);
                s->p = NULL;
                s->len = 0;
                s->target = rng_log_size(&rng, 64, 65536);
            }
        }
    }
    for (long long i = 0; i < nstr; i++) {
        sum += b[i].len;
        free(b[i].p);
    }

    /* Phase 2: vectors, doubling. A "round" grows every vector from 16 B to its cap. */
    for (long long r = 0; r < vec_rounds; r++) {
        for (long long i = 0; i < nvec; i++) {
            b[i].len = 16;
            b[i].p = xmalloc(16);
            memset(b[i].p, (int)i, 16);
            b[i].target = rng_log_size(&rng, 4096, 4 << 20);
        }
        int growing = 1;
        while (growing) {
            growing = 0;
            for (long long i = 0; i < nvec; i++) {
                struct buf *v = &b[i];
                if (v->len >= v->target)
                    continue;
                growing = 1;
                unsigned char *np = realloc(v->p, v->len * 2);
                if (!np) {
                    fprintf(stderr, "realloc failed\n");
                    return 3;
                }
                if (np[v->len - 1] != (unsigned char)i) {
                    fprintf(stderr, "realloc lost data\n");
                    return 4;
                }
                memset(np + v->len, (int)i, v->len);
                v->p = np;
                v->len *= 2;
            }
        }
        for (long long i = 0; i < nvec; i++) {
            sum += b[i].len + b[i].p[b[i].len - 1];
            free(b[i].p);
        }
    }

    free(b);
    print_checksum(sum);
    return 0;
}
