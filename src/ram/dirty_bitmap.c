/* ramflow - atomic dirty-page bitmap (see dirty_bitmap.h). */
#include "ram/dirty_bitmap.h"

#include <stdlib.h>

bool rf_dirty_bitmap_init(RfDirtyBitmap *b, uint64_t pages)
{
    b->pages = pages;
    b->nwords = (size_t)((pages + 63) / 64);
    b->words = calloc(b->nwords ? b->nwords : 1, sizeof(*b->words));
    return b->words != NULL;
}

void rf_dirty_bitmap_destroy(RfDirtyBitmap *b)
{
    free((void *)b->words);
    b->words = NULL;
    b->nwords = 0;
    b->pages = 0;
}

void rf_dirty_bitmap_mark(RfDirtyBitmap *b, uint64_t first, uint64_t count)
{
    if (first >= b->pages || count == 0) {
        return;
    }
    if (count > b->pages - first) {
        count = b->pages - first;
    }
    uint64_t last = first + count - 1;
    size_t w = (size_t)(first / 64), wl = (size_t)(last / 64);
    for (; w <= wl; w++) {
        uint64_t mask = ~0ull;
        if (w == first / 64) {
            mask &= ~0ull << (first % 64);
        }
        if (w == wl) {
            mask &= ~0ull >> (63 - last % 64);
        }
        atomic_fetch_or_explicit(&b->words[w], mask, memory_order_release);
    }
}

void rf_dirty_bitmap_clear(RfDirtyBitmap *b)
{
    for (size_t i = 0; i < b->nwords; i++) {
        atomic_store_explicit(&b->words[i], 0, memory_order_relaxed);
    }
}

void rf_dirty_bitmap_take(RfDirtyBitmap *b, uint64_t *out)
{
    for (size_t i = 0; i < b->nwords; i++) {
        /* A plain load first skips the locked exchange for clean words,
         * the common case in late rounds. */
        if (atomic_load_explicit(&b->words[i], memory_order_relaxed)) {
            out[i] |= atomic_exchange_explicit(&b->words[i], 0,
                                               memory_order_acquire);
        }
    }
}
