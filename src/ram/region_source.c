/*
 * ramflow - the region RAM source: blocks are memory regions of this
 * process that the caller mapped and keeps owning (an embedding VMM's
 * guest RAM, a database's buffer pool...).
 *
 * Dirty tracking: one userfaultfd write-protect tracker per region
 * (uffd_dirty.h), running from dirty_start to dirty_stop, so the caller's
 * writers need not report anything.  Pages marked through
 * rf_ram_source_mark_dirty() are ORed in as well (one atomic bitmap per
 * region, dirty_bitmap.h), for writes the tracker cannot see.
 *
 * Opening checks every region (layout, names, overlaps: layout.c, shared
 * with the region sink) and then tracks each one once and stops at once:
 * what the kernel would refuse at the migration's start (an unmapped range, a read-only file mapping, a range
 * another userfaultfd tracks) is reported here, naming the region.
 *
 * The generic rf_ram_source_describe() of the public API lives here too.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ram/dirty_bitmap.h"
#include "ram/layout.h"
#include "ram/ram.h"
#include "ram/uffd_dirty.h"

typedef struct RegionBlock {
    RfRamBlock b;
    RfDirtyBitmap marks;    /* rf_ram_source_mark_dirty() */
    RfUffdTracker *tracker; /* between dirty_start and dirty_stop */
} RegionBlock;

typedef struct RegionSource {
    RfRamSource base; /* first: the ops table */
    bool force_sync;
    bool no_uffd;           /* RF_REGION_NO_UFFD: marks only */
    /* How writes are tracked (rf_ram_source_describe may run on any
     * thread while the migration thread restarts tracking). */
    _Atomic(const char *) mode;
    unsigned n;
    RegionBlock blk[];
} RegionSource;

/* Some regions fell back to synchronous faults (rf_uffd_track does so per
 * region when async registration fails for another reason than the
 * memory's kind). */
#define MODE_MIXED RF_UFFD_DESC_ASYNC ", synchronous WP faults for some " \
                   "regions"

static unsigned rs_block_count(RfRamSource *s)
{
    return ((RegionSource *)s)->n;
}

static const RfRamBlock *rs_block(RfRamSource *s, unsigned i)
{
    RegionSource *rs = (RegionSource *)s;
    return i < rs->n ? &rs->blk[i].b : NULL;
}

static void stop_all(RegionSource *rs)
{
    for (unsigned i = 0; i < rs->n; i++) {
        rf_uffd_stop(rs->blk[i].tracker);
        rs->blk[i].tracker = NULL;
    }
}

/* Starts one tracker per region.  A second start begins afresh (as after
 * a failed migration); if any region is refused, none stays tracked. */
static bool rs_dirty_start(RfRamSource *s, RfError **errp)
{
    RegionSource *rs = (RegionSource *)s;
    stop_all(rs);
    if (rs->no_uffd) {
        for (unsigned i = 0; i < rs->n; i++) {
            rf_dirty_bitmap_clear(&rs->blk[i].marks);
        }
        return true;
    }
    const char *mode = NULL;
    for (unsigned i = 0; i < rs->n; i++) {
        RegionBlock *blk = &rs->blk[i];
        rf_dirty_bitmap_clear(&blk->marks);
        blk->tracker = rf_uffd_track(blk->b.host, blk->b.size,
                                     rs->force_sync, errp);
        if (!blk->tracker) {
            rf_error_prefix(errp, "region '%s'", blk->b.name);
            stop_all(rs);
            return false;
        }
        const char *m = rf_uffd_describe(blk->tracker);
        mode = !mode || strcmp(mode, m) == 0 ? m : MODE_MIXED;
    }
    atomic_store(&rs->mode, mode);
    return true;
}

static bool rs_dirty_sync(RfRamSource *s, unsigned block, uint64_t *bitmap,
                          RfError **errp)
{
    RegionSource *rs = (RegionSource *)s;
    if (block >= rs->n) {
        rf_error_set(errp, RF_ERR_PARAM, "dirty sync: block %u out of range "
                     "(the source has %u)", block, rs->n);
        return false;
    }
    RegionBlock *blk = &rs->blk[block];
    if (rs->no_uffd) {
        rf_dirty_bitmap_take(&blk->marks, bitmap);
        return true;
    }
    if (!blk->tracker) {
        rf_error_set(errp, RF_ERR_GENERIC, "region '%s': dirty sync before "
                     "dirty tracking started", blk->b.name);
        return false;
    }
    rf_dirty_bitmap_take(&blk->marks, bitmap);
    if (!rf_uffd_sync(blk->tracker, bitmap, errp)) {
        rf_error_prefix(errp, "region '%s'", blk->b.name);
        return false;
    }
    return true;
}

static void rs_dirty_stop(RfRamSource *s)
{
    stop_all((RegionSource *)s);
}

static void rs_mark_dirty(RfRamSource *s, unsigned block, uint64_t offset,
                          uint64_t len)
{
    RegionSource *rs = (RegionSource *)s;
    if (block >= rs->n || len == 0 || offset >= rs->blk[block].b.size) {
        return;
    }
    uint64_t size = rs->blk[block].b.size;
    uint64_t end = size - offset < len ? size : offset + len;
    uint64_t first = offset / RF_PAGE_SIZE;
    uint64_t last = (end - 1) / RF_PAGE_SIZE;
    rf_dirty_bitmap_mark(&rs->blk[block].marks, first, last - first + 1);
}

static void rs_free(RfRamSource *s)
{
    RegionSource *rs = (RegionSource *)s;
    stop_all(rs);
    for (unsigned i = 0; i < rs->n; i++) {
        rf_dirty_bitmap_destroy(&rs->blk[i].marks);
    }
    free(rs); /* the memory itself is the caller's */
}

static const char *rs_describe(RfRamSource *s)
{
    return atomic_load(&((RegionSource *)s)->mode);
}

static const RfRamSourceOps region_source_ops = {
    .name = "region",
    .block_count = rs_block_count,
    .block = rs_block,
    .dirty_start = rs_dirty_start,
    .dirty_sync = rs_dirty_sync,
    .dirty_stop = rs_dirty_stop,
    .mark_dirty = rs_mark_dirty,
    .free = rs_free,
    .describe = rs_describe,
};

/* Tracks the region once and stops: fails now, naming the region, where
 * dirty_start would fail at the migration's start. */
static bool region_try_track(RegionSource *rs, unsigned i, const char **mode,
                             RfError **errp)
{
    RegionBlock *blk = &rs->blk[i];
    RfUffdTracker *t = rf_uffd_track(blk->b.host, blk->b.size,
                                     rs->force_sync, errp);
    if (!t) {
        rf_error_prefix(errp, "region '%s'", blk->b.name);
        return false;
    }
    const char *m = rf_uffd_describe(t);
    *mode = !*mode || strcmp(*mode, m) == 0 ? m : MODE_MIXED;
    rf_uffd_stop(t);
    return true;
}

RfRamSource *rf_region_source_open(const RfRegion *regions, unsigned n,
                                   unsigned flags, RfError **errp)
{
    RfRamBlock checked[RF_MAX_BLOCKS];
    if (!rf_regions_check(regions, n, checked, errp)) {
        return NULL;
    }
    RegionSource *rs = calloc(1, sizeof(*rs) + n * sizeof(rs->blk[0]));
    if (!rs) {
        rf_error_set(errp, RF_ERR_GENERIC, "regions: out of memory");
        return NULL;
    }
    rs->base.ops = &region_source_ops;
    rs->force_sync = flags & RF_REGION_UFFD_SYNC;
    bool force_sync = rs->force_sync;
    for (unsigned i = 0; i < n; i++) {
        RegionBlock *blk = &rs->blk[i];
        rs->n = i + 1; /* rs_free releases the bitmaps made so far */
        blk->b = checked[i];
        if (!rf_dirty_bitmap_init(&blk->marks, blk->b.size / RF_PAGE_SIZE)) {
            rf_error_set(errp, RF_ERR_GENERIC, "region '%s': out of memory "
                         "for its dirty bitmap", blk->b.name);
            goto fail;
        }
    }
    if (flags & RF_REGION_NO_UFFD) {
        rs->no_uffd = true;
        atomic_init(&rs->mode, "explicit marks");
        return &rs->base;
    }
    /* Say plainly when userfaultfd itself is missing, before blaming a
     * region for it. */
    const char *mode = rf_uffd_probe(force_sync, errp);
    if (!mode) {
        rf_error_prefix(errp, "regions");
        goto fail;
    }
    mode = NULL;
    for (unsigned i = 0; i < n; i++) {
        if (!region_try_track(rs, i, &mode, errp)) {
            goto fail;
        }
    }
    atomic_init(&rs->mode, mode);
    return &rs->base;

fail:
    rs_free(&rs->base);
    return NULL;
}
