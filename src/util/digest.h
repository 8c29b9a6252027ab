/* ramflow - memory digests for --verify. */
#ifndef RF_UTIL_DIGEST_H
#define RF_UTIL_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* XXH3-128 of [p, p + len), written big-endian (canonical) into out.
 * Large regions are hashed in 64 MiB pieces by up to `threads` threads and
 * the piece digests hashed again, so the result depends only on len. */
void rf_digest(const uint8_t *p, uint64_t len, unsigned threads,
               uint8_t out[16]);

/* Whether a and b (len bytes each) differ, in time independent of where:
 * for secrets (channel bindings), so timing tells an attacker nothing. */
bool rf_bytes_differ(const void *a, const void *b, size_t len);

#endif
