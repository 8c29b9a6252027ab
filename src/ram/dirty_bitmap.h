/*
 * ramflow - an atomic dirty-page bitmap, one bit per 4 KiB page.
 *
 * Writers (any thread) set bits with atomic OR; the migration thread takes
 * them with an atomic exchange per word, so a bit set concurrently with a
 * sync lands either in this sync or in the next one, never nowhere.
 * Marking is a release and taking is an acquire: a reader that sees a bit
 * also sees the write to the page that preceded the marking.
 */
#ifndef RF_RAM_DIRTY_BITMAP_H
#define RF_RAM_DIRTY_BITMAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct RfDirtyBitmap {
    _Atomic uint64_t *words;
    uint64_t pages;  /* bits in use */
    size_t nwords;   /* (pages + 63) / 64 */
} RfDirtyBitmap;

/* Allocates a clear bitmap of `pages` bits.  @return false if out of
 * memory. */
bool rf_dirty_bitmap_init(RfDirtyBitmap *b, uint64_t pages);
/* Frees the words; b may be zero-filled. */
void rf_dirty_bitmap_destroy(RfDirtyBitmap *b);
/* Sets pages [first, first + count); the part past the end is ignored. */
void rf_dirty_bitmap_mark(RfDirtyBitmap *b, uint64_t first, uint64_t count);
/* Clears every bit. */
void rf_dirty_bitmap_clear(RfDirtyBitmap *b);
/* ORs every set bit into out (nwords words) and clears it here. */
void rf_dirty_bitmap_take(RfDirtyBitmap *b, uint64_t *out);

#endif /* RF_RAM_DIRTY_BITMAP_H */
