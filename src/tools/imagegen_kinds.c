/*
 * ramflow - the benchmark grid's two extra RAM images (issue 13):
 * incompressible pages, and a zero-heavy image.  The generated mix itself
 * lives in imagegen.c.
 */
#include <string.h>

#include "ramflow/ramflow.h"
#include "tools/imagegen.h"

#define PAGE RF_PAGE_SIZE

static bool check_size(const uint8_t *dst, uint64_t size, RfError **errp)
{
    if (size % PAGE != 0 || (size && !dst)) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "image size %llu is not a multiple of %u bytes "
                     "(or no buffer)", (unsigned long long)size, PAGE);
        return false;
    }
    return true;
}

/* splitmix64 over a counter: every 8 bytes depend only on the seed and
 * their offset, so the image needs no state. */
static uint64_t mix_at(uint64_t seed, uint64_t i)
{
    uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

bool rf_image_generate_random(uint8_t *dst, uint64_t size, uint64_t seed,
                              RfError **errp)
{
    if (!check_size(dst, size, errp)) {
        return false;
    }
    for (uint64_t i = 0; i < size / 8; i++) {
        uint64_t v = mix_at(seed, i);
        memcpy(dst + i * 8, &v, 8);
    }
    return true;
}

bool rf_image_generate_zero_heavy(uint8_t *dst, uint64_t size,
                                  uint64_t seed, unsigned threads,
                                  RfError **errp)
{
    if (!check_size(dst, size, errp) ||
        !rf_image_generate(dst, size, seed, threads, errp)) {
        return false;
    }
    uint64_t npages = size / PAGE;
    for (uint64_t p = 0; p < npages; p++) {
        if (p % RF_IMAGE_ZERO_GROUP < RF_IMAGE_ZERO_RUN) {
            memset(dst + p * PAGE, 0, PAGE);
        }
    }
    return true;
}
