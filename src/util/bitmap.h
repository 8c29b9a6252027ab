/* ramflow - page bitmaps: one bit per page, bit i in word i / 64. */
#ifndef RF_UTIL_BITMAP_H
#define RF_UTIL_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

static inline uint64_t rf_bitmap_words(uint64_t bits)
{
    return (bits + 63) / 64;
}

static inline void rf_bitmap_set(uint64_t *map, uint64_t bit)
{
    map[bit / 64] |= 1ull << (bit % 64);
}

static inline bool rf_bitmap_test(const uint64_t *map, uint64_t bit)
{
    return (map[bit / 64] >> (bit % 64)) & 1;
}

/* Sets bits [0, nbits) and clears the tail of the last word. */
void rf_bitmap_fill(uint64_t *map, uint64_t nbits);
/* @return the number of set bits among the first nbits. */
uint64_t rf_bitmap_count(const uint64_t *map, uint64_t nbits);
/* @return the first set bit >= from, or nbits if none. */
uint64_t rf_bitmap_next(const uint64_t *map, uint64_t nbits, uint64_t from);

#endif
