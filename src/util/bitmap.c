/* ramflow - page bitmaps. */
#include "util/bitmap.h"

#include <string.h>

void rf_bitmap_fill(uint64_t *map, uint64_t nbits)
{
    uint64_t words = rf_bitmap_words(nbits);
    memset(map, 0xff, words * sizeof(uint64_t));
    if (nbits % 64) {
        map[words - 1] = (1ull << (nbits % 64)) - 1;
    }
}

uint64_t rf_bitmap_count(const uint64_t *map, uint64_t nbits)
{
    uint64_t n = 0, words = rf_bitmap_words(nbits);
    for (uint64_t i = 0; i < words; i++) {
        n += (uint64_t)__builtin_popcountll(map[i]);
    }
    return n;
}

uint64_t rf_bitmap_next(const uint64_t *map, uint64_t nbits, uint64_t from)
{
    if (from >= nbits) {
        return nbits;
    }
    uint64_t w = from / 64;
    uint64_t word = map[w] & (~0ull << (from % 64));
    uint64_t words = rf_bitmap_words(nbits);
    while (!word) {
        if (++w >= words) {
            return nbits;
        }
        word = map[w];
    }
    uint64_t bit = w * 64 + (uint64_t)__builtin_ctzll(word);
    return bit < nbits ? bit : nbits;
}
