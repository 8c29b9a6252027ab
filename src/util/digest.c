/* ramflow - memory digests for --verify (XXH3-128 from libxxhash). */
#include "util/digest.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#define PIECE (64ull << 20)

typedef struct {
    const uint8_t *p;
    uint64_t len;
    uint64_t first, count, step;
    XXH128_canonical_t *out;
} DigestJob;

static void *digest_worker(void *arg)
{
    DigestJob *j = arg;
    for (uint64_t i = j->first; i < j->count; i += j->step) {
        uint64_t off = i * PIECE;
        uint64_t n = j->len - off < PIECE ? j->len - off : PIECE;
        XXH128_canonicalFromHash(&j->out[i], XXH3_128bits(j->p + off, n));
    }
    return NULL;
}

void rf_digest(const uint8_t *p, uint64_t len, unsigned threads,
               uint8_t out[16])
{
    uint64_t pieces = len ? (len + PIECE - 1) / PIECE : 1;
    XXH128_canonical_t *sums = calloc(pieces, sizeof(*sums));
    if (!sums) {
        /* Same result, one thread, no table: stream the piece digests. */
        XXH3_state_t st;
        XXH3_128bits_reset(&st);
        for (uint64_t i = 0; i < pieces; i++) {
            XXH128_canonical_t c;
            uint64_t off = i * PIECE;
            uint64_t n = len - off < PIECE ? len - off : PIECE;
            XXH128_canonicalFromHash(&c, XXH3_128bits(p + off, n));
            XXH3_128bits_update(&st, &c, sizeof(c));
        }
        XXH128_canonicalFromHash((XXH128_canonical_t *)out,
                                 XXH3_128bits_digest(&st));
        return;
    }
    if (threads < 1) {
        threads = 1;
    }
    if (threads > 16) {
        threads = 16;
    }
    pthread_t tid[16];
    DigestJob jobs[16];
    unsigned started = 0;
    for (unsigned t = 0; t < threads && t < pieces; t++) {
        jobs[t] = (DigestJob){p, len, t, pieces, threads, sums};
        if (t == 0 || pthread_create(&tid[t], NULL, digest_worker, &jobs[t])) {
            continue;
        }
        started |= 1u << t;
    }
    /* Thread 0's share (and any share whose thread failed to start) runs
     * here. */
    for (unsigned t = 0; t < threads && t < pieces; t++) {
        if (!(started & (1u << t))) {
            digest_worker(&jobs[t]);
        }
    }
    for (unsigned t = 1; t < threads && t < pieces; t++) {
        if (started & (1u << t)) {
            pthread_join(tid[t], NULL);
        }
    }
    XXH128_canonicalFromHash((XXH128_canonical_t *)out,
                             XXH3_128bits(sums, pieces * sizeof(*sums)));
    free(sums);
}

bool rf_bytes_differ(const void *a, const void *b, size_t len)
{
    const volatile uint8_t *x = a, *y = b;
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++) {
        acc |= (uint8_t)(x[i] ^ y[i]);
    }
    return acc != 0;
}
