/* Test helper shared by the unit tests that check what is resident. */
#ifndef RF_TESTS_RESIDENT_H
#define RF_TESTS_RESIDENT_H

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

/* Pages of [p, p + len) resident in memory (mincore); len a multiple of
 * 4096.  Call from a cmocka test: a failure fails it. */
static inline uint64_t resident_pages(void *p, size_t len)
{
    size_t n = len / 4096;
    unsigned char *vec = malloc(n);
    assert_non_null(vec);
    assert_int_equal(mincore(p, len, vec), 0);
    uint64_t in = 0;
    for (size_t i = 0; i < n; i++) {
        in += vec[i] & 1;
    }
    free(vec);
    return in;
}

#endif /* RF_TESTS_RESIDENT_H */
