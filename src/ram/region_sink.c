/*
 * ramflow - the region RAM sink: the destination receives into memory
 * regions of this process that the caller mapped and keeps owning (an
 * embedding VMM's guest RAM, pre-allocated or on huge pages).
 *
 * The regions are checked when the sink is made (layout.c, as the region
 * source does).  prepare() matches each block of the source's layout to a
 * region, by name or as the only one on both sides, and refuses a block
 * whose size differs from its region's: the memory is never resized,
 * remapped or pre-faulted, so the engine writes only inside the regions
 * (it checks every page index against the block's size).  The memory keeps
 * what it held until pages arrive; round 1 sends every page, zero pages
 * included, so nothing of the old contents survives a completed
 * migration.
 *
 * prepare() may run again for a later migration into the same regions
 * (after a failed one, say): it only matches, it holds nothing.
 */
#include <stdlib.h>

#include "ram/layout.h"
#include "ram/ram.h"

typedef struct RegionSink {
    RfRamSink base; /* first: the ops table */
    unsigned nregions;
    const char *names[RF_MAX_BLOCKS]; /* point into regions[] */
    unsigned n;                       /* blocks of the last layout */
    uint8_t *host[RF_MAX_BLOCKS];     /* block i's memory */
    RfRamBlock regions[];
} RegionSink;

static bool rsk_prepare(RfRamSink *s, const RfRamBlock *layout, unsigned n,
                        RfError **errp)
{
    RegionSink *rk = (RegionSink *)s;
    unsigned match[RF_MAX_BLOCKS];
    rk->n = 0;
    if (!rf_layout_check(layout, n, errp) ||
        !rf_layout_match(layout, n, rk->names, rk->nregions,
                         "region of that name", match, errp)) {
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        const RfRamBlock *r = &rk->regions[match[i]];
        if (r->size != layout[i].size) {
            rf_error_set(errp, RF_ERR_MISMATCH, "block '%s' is %llu bytes "
                         "at the source but region '%s' here is %llu bytes",
                         layout[i].name, (unsigned long long)layout[i].size,
                         r->name, (unsigned long long)r->size);
            return false;
        }
        rk->host[i] = r->host;
    }
    rk->n = n;
    return true;
}

static uint8_t *rsk_host(RfRamSink *s, unsigned i)
{
    RegionSink *rk = (RegionSink *)s;
    return i < rk->n ? rk->host[i] : NULL;
}

/* Not pre-faulted by us: the caller's memory is as warm as it made it. */
static bool rsk_wait_ready(RfRamSink *s)
{
    (void)s;
    return false;
}

static void rsk_free(RfRamSink *s)
{
    free(s); /* the memory itself is the caller's */
}

static const RfRamSinkOps region_sink_ops = {
    .size = sizeof(RfRamSinkOps),
    .name = "region",
    .prepare = rsk_prepare,
    .host = rsk_host,
    .wait_ready = rsk_wait_ready,
    .free = rsk_free,
};

RfRamSink *rf_region_sink_new(const RfRegion *regions, unsigned n,
                              RfError **errp)
{
    RfRamBlock checked[RF_MAX_BLOCKS];
    if (!rf_regions_check(regions, n, checked, errp)) {
        return NULL;
    }
    RegionSink *rk = calloc(1, sizeof(*rk) + n * sizeof(rk->regions[0]));
    if (!rk) {
        rf_error_set(errp, RF_ERR_GENERIC, "regions: out of memory");
        return NULL;
    }
    rk->base.ops = &region_sink_ops;
    rk->nregions = n;
    for (unsigned i = 0; i < n; i++) {
        rk->regions[i] = checked[i];
        rk->names[i] = rk->regions[i].name;
    }
    return &rk->base;
}
