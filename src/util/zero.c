/* ramflow - fast test for an all-zero page. */
#include "util/zero.h"

#include <stdint.h>

#include "ramflow/ramflow.h"

#if defined(__SSE2__)
#include <emmintrin.h>

bool rf_page_is_zero(const void *p)
{
    const __m128i *v = p;
    for (size_t i = 0; i < RF_PAGE_SIZE / 16; i += 16) {
        __m128i acc = _mm_or_si128(_mm_or_si128(v[i], v[i + 1]),
                                   _mm_or_si128(v[i + 2], v[i + 3]));
        for (size_t j = 4; j < 16; j += 4) {
            acc = _mm_or_si128(acc,
                               _mm_or_si128(_mm_or_si128(v[i + j],
                                                         v[i + j + 1]),
                                            _mm_or_si128(v[i + j + 2],
                                                         v[i + j + 3])));
        }
        if (_mm_movemask_epi8(_mm_cmpeq_epi8(acc, _mm_setzero_si128()))
            != 0xFFFF) {
            return false;
        }
    }
    return true;
}
#else
bool rf_page_is_zero(const void *p)
{
    const uint64_t *w = p;
    for (size_t i = 0; i < RF_PAGE_SIZE / 8; i += 32) {
        uint64_t acc = 0;
        for (size_t j = 0; j < 32; j++) {
            acc |= w[i + j];
        }
        if (acc) {
            return false;
        }
    }
    return true;
}
#endif
