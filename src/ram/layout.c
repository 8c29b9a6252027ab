/*
 * ramflow - checking block lists (layout.h): the regions of a region
 * source or sink, the blocks of a source and the layout a sink receives,
 * and matching that layout to the sink's entries.  Messages name the region or block and the value.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ram/layout.h"

/* Checks region i alone and fills b's name, address and size. */
static bool region_check(const RfRegion *r, unsigned i, RfRamBlock *b,
                         RfError **errp)
{
    if (r->name) {
        size_t len = strnlen(r->name, RF_BLOCK_NAME_MAX + 1);
        if (len == 0 || len > RF_BLOCK_NAME_MAX) {
            rf_error_set(errp, RF_ERR_PARAM, "region %u: the name is %s "
                         "(1-%u bytes allowed, or NULL for \"region%u\")",
                         i, len ? "too long" : "empty", RF_BLOCK_NAME_MAX,
                         i);
            return false;
        }
        memcpy(b->name, r->name, len);
        b->name[len] = '\0';
    } else {
        snprintf(b->name, sizeof(b->name), "region%u", i);
    }
    uintptr_t a = (uintptr_t)r->addr;
    if (!r->addr || a % RF_PAGE_SIZE) {
        rf_error_set(errp, RF_ERR_PARAM, "region '%s': address %p is not "
                     "a non-NULL multiple of %u", b->name, r->addr,
                     RF_PAGE_SIZE);
        return false;
    }
    if (r->size == 0 || r->size % RF_PAGE_SIZE ||
        r->size - 1 > UINTPTR_MAX - a) {
        rf_error_set(errp, RF_ERR_PARAM, "region '%s': size %llu bytes: "
                     "must be a non-zero multiple of %u that fits the "
                     "address space", b->name,
                     (unsigned long long)r->size, RF_PAGE_SIZE);
        return false;
    }
    b->host = r->addr;
    b->size = r->size;
    return true;
}

/* Checks region i against the regions before it: names and ranges must
 * not collide (two trackers cannot share a page; two blocks written into
 * one page would mix). */
static bool region_check_others(const RfRamBlock *blocks, unsigned i,
                                RfError **errp)
{
    const RfRamBlock *b = &blocks[i];
    for (unsigned k = 0; k < i; k++) {
        const RfRamBlock *o = &blocks[k];
        if (strcmp(o->name, b->name) == 0) {
            rf_error_set(errp, RF_ERR_PARAM, "region %u: name '%s' is "
                         "already used by region %u", i, b->name, k);
            return false;
        }
        uintptr_t bs = (uintptr_t)b->host, os = (uintptr_t)o->host;
        if (bs < os + o->size && os < bs + b->size) {
            rf_error_set(errp, RF_ERR_PARAM, "region '%s' (%p+%llu) "
                         "overlaps region '%s' (%p+%llu)", b->name,
                         (void *)b->host, (unsigned long long)b->size,
                         o->name, (void *)o->host,
                         (unsigned long long)o->size);
            return false;
        }
    }
    return true;
}

bool rf_regions_check(const RfRegion *regions, unsigned n, RfRamBlock *out,
                      RfError **errp)
{
    if (n < 1 || n > RF_MAX_BLOCKS || !regions) {
        rf_error_set(errp, RF_ERR_PARAM, "regions: got %u%s, 1-%u allowed",
                     n, regions ? "" : " (NULL array)", RF_MAX_BLOCKS);
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        if (!region_check(&regions[i], i, &out[i], errp) ||
            !region_check_others(out, i, errp)) {
            return false;
        }
    }
    return true;
}

bool rf_blocks_check(const RfRamBlock *blocks, unsigned n, RfErrorKind kind,
                     const char *what, RfError **errp)
{
    if (n < 1 || n > RF_MAX_BLOCKS) {
        rf_error_set(errp, kind, "%s has %u blocks, 1-%u allowed", what, n,
                     RF_MAX_BLOCKS);
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        const RfRamBlock *b = &blocks[i];
        if (!memchr(b->name, '\0', sizeof(b->name)) || !b->name[0]) {
            rf_error_set(errp, kind, "%s: block %u has an empty or "
                         "unterminated name", what, i);
            return false;
        }
        if (b->size == 0 || b->size % RF_PAGE_SIZE ||
            b->size > (uint64_t)SIZE_MAX) {
            rf_error_set(errp, kind, "%s: block '%s' has size %llu bytes, "
                         "must be a non-zero multiple of %u", what, b->name,
                         (unsigned long long)b->size, RF_PAGE_SIZE);
            return false;
        }
        for (unsigned k = 0; k < i; k++) {
            if (strcmp(blocks[k].name, b->name) == 0) {
                rf_error_set(errp, kind, "%s: block name '%s' appears "
                             "twice", what, b->name);
                return false;
            }
        }
    }
    return true;
}

bool rf_layout_check(const RfRamBlock *layout, unsigned n, RfError **errp)
{
    return rf_blocks_check(layout, n, RF_ERR_PROTOCOL, "source layout",
                           errp);
}

/* Lists names as "'a', 'b'" into out, cut short if it does not fit. */
static void list_names(const char *const *names, unsigned count, char *out,
                       size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < count && used + 1 < outlen; i++) {
        size_t room = outlen - used;
        int w = snprintf(out + used, room, "%s'%s'", i ? ", " : "",
                         names[i]);
        used += (w < 0 || (size_t)w >= room) ? room - 1 : (size_t)w;
    }
}

bool rf_layout_match(const RfRamBlock *layout, unsigned n,
                     const char *const *names, unsigned count,
                     const char *what, unsigned *match, RfError **errp)
{
    for (unsigned i = 0; i < n; i++) {
        unsigned k = 0;
        if (n != 1 || count != 1) {
            while (k < count && strcmp(names[k], layout[i].name) != 0) {
                k++;
            }
        }
        if (k == count) {
            char list[512];
            list_names(names, count, list, sizeof(list));
            rf_error_set(errp, RF_ERR_MISMATCH, "block '%s' from the source "
                         "has no %s here (blocks here: %s)", layout[i].name,
                         what, list);
            return false;
        }
        match[i] = k;
    }
    return true;
}
