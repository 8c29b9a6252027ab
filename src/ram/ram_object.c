/*
 * ramflow - the RfRamSource and RfRamSink objects themselves: custom ones
 * made from a caller's ops table, the dirty-log provider that can replace
 * any source's tracker, and the calls the public API and the engine make
 * on every kind of source or sink.
 */
#include <stdlib.h>
#include <string.h>

#include "ram/dirty_bitmap.h"
#include "ram/layout.h"
#include "ram/ram.h"

/* Copies a caller's table of `size` bytes into a full one, so that a
 * caller built against an older, shorter table leaves the newer members
 * NULL. */
static void copy_ops(void *dst, size_t dst_size, const void *src,
                     size_t src_size)
{
    memset(dst, 0, dst_size);
    memcpy(dst, src, src_size < dst_size ? src_size : dst_size);
    *(size_t *)dst = dst_size;
}

RfRamSource *rf_ram_source_new(const RfRamSourceOps *ops, void *opaque,
                               RfError **errp)
{
    if (!ops || ops->size < offsetof(RfRamSourceOps, dirty_stop)) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "RAM source ops: missing, or 'size' not set to "
                     "sizeof(RfRamSourceOps)");
        return NULL;
    }
    RfRamSource *s = calloc(1, sizeof(*s));
    if (!s) {
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory");
        return NULL;
    }
    copy_ops(&s->ops_copy, sizeof(s->ops_copy), ops, ops->size);
    if (!s->ops_copy.block_count || !s->ops_copy.block ||
        !s->ops_copy.dirty_sync) {
        free(s);
        rf_error_set(errp, RF_ERR_PARAM,
                     "RAM source ops: block_count, block and dirty_sync "
                     "are required");
        return NULL;
    }
    s->ops = &s->ops_copy;
    s->opaque = opaque;
    s->custom = true;
    return s;
}

void *rf_ram_source_opaque(const RfRamSource *src)
{
    return src ? src->opaque : NULL;
}

static void free_log_marks(RfRamSource *src)
{
    for (unsigned i = 0; src->log_marks && i < src->log_nblocks; i++) {
        rf_dirty_bitmap_destroy(&src->log_marks[i]);
    }
    free(src->log_marks);
    src->log_marks = NULL;
}

/* With a provider, rf_ram_source_mark_dirty's marks are kept here (the
 * source's own mark store may belong to the tracker being replaced). */
static bool alloc_log_marks(RfRamSource *src, RfError **errp)
{
    unsigned n = rf_ram_source_block_count(src);
    src->log_marks = calloc(n ? n : 1, sizeof(*src->log_marks));
    src->log_nblocks = n;
    for (unsigned i = 0; src->log_marks && i < n; i++) {
        const RfRamBlock *b = src->ops->block(src, i);
        if (!b || !rf_dirty_bitmap_init(&src->log_marks[i],
                                        b->size / RF_PAGE_SIZE)) {
            src->log_nblocks = i;
            free_log_marks(src);
            break;
        }
    }
    if (!src->log_marks) {
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory for dirty marks");
        return false;
    }
    return true;
}

bool rf_ram_source_set_dirty_log(RfRamSource *src, const RfDirtyLog *log,
                                 RfError **errp)
{
    if (!src) {
        rf_error_set(errp, RF_ERR_PARAM, "no RAM source");
        return false;
    }
    if (atomic_load(&src->running)) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "cannot change the dirty log while a migration runs");
        return false;
    }
    if (!log) {
        src->has_log = false;
        return true;
    }
    if (log->size < offsetof(RfDirtyLog, stop)) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "dirty log: 'size' not set to sizeof(RfDirtyLog)");
        return false;
    }
    RfDirtyLog copy;
    copy_ops(&copy, sizeof(copy), log, log->size);
    if (!copy.sync) {
        rf_error_set(errp, RF_ERR_PARAM, "dirty log: 'sync' is required");
        return false;
    }
    if (!src->log_marks && !alloc_log_marks(src, errp)) {
        return false;
    }
    src->log = copy;
    src->has_log = true;
    return true;
}

bool rf_ram_source_dirty_start(RfRamSource *s, RfError **errp)
{
    bool ok;
    if (s->has_log) {
        /* Afresh, as a source's own tracker starts: round 1 sends all. */
        for (unsigned i = 0; i < s->log_nblocks; i++) {
            rf_dirty_bitmap_clear(&s->log_marks[i]);
        }
        ok = !s->log.start || s->log.start(s->log.opaque, errp);
    } else {
        ok = !s->ops->dirty_start || s->ops->dirty_start(s, errp);
    }
    if (ok) {
        atomic_store(&s->running, true);
    }
    return ok;
}

/* Clears the bits past the block's last page in the bitmap's last word:
 * a provider (or source) may set them, and the engine counts whole
 * words. */
static void clear_tail(RfRamSource *s, unsigned block, uint64_t *bitmap)
{
    const RfRamBlock *b = s->ops->block(s, block);
    uint64_t pages = b ? b->size / RF_PAGE_SIZE : 0;
    if (pages % 64) {
        bitmap[pages / 64] &= (1ull << (pages % 64)) - 1;
    }
}

bool rf_ram_source_dirty_sync(RfRamSource *s, unsigned block,
                              uint64_t *bitmap, RfError **errp)
{
    if (!s->has_log) {
        if (!s->ops->dirty_sync(s, block, bitmap, errp)) {
            return false;
        }
        clear_tail(s, block, bitmap);
        return true;
    }
    if (!s->log.sync(s->log.opaque, block, bitmap, errp)) {
        rf_error_prefix(errp, "dirty log, block %u", block);
        return false;
    }
    clear_tail(s, block, bitmap);
    if (block < s->log_nblocks) {
        rf_dirty_bitmap_take(&s->log_marks[block], bitmap);
    }
    return true;
}

void rf_ram_source_dirty_stop(RfRamSource *s)
{
    if (!atomic_exchange(&s->running, false)) {
        return;
    }
    if (s->has_log) {
        if (s->log.stop) {
            s->log.stop(s->log.opaque);
        }
    } else if (s->ops->dirty_stop) {
        s->ops->dirty_stop(s);
    }
}

const char *rf_ram_source_describe(const RfRamSource *src)
{
    if (!src) {
        return "no source";
    }
    if (src->has_log) {
        return "dirty-log provider";
    }
    if (!src->ops->describe) {
        return "explicit marks";
    }
    const char *d = src->ops->describe((RfRamSource *)src);
    return d ? d : "explicit marks";
}

void rf_ram_source_mark_dirty(RfRamSource *src, unsigned block,
                              uint64_t offset, uint64_t len)
{
    if (src && src->has_log) {
        if (block >= src->log_nblocks || len == 0) {
            return;
        }
        uint64_t pages = src->log_marks[block].pages;
        uint64_t first = offset / RF_PAGE_SIZE;
        if (first >= pages) {
            return;
        }
        uint64_t last = (offset + len - 1) / RF_PAGE_SIZE;
        if (last >= pages || offset + len < offset) {
            last = pages - 1;
        }
        rf_dirty_bitmap_mark(&src->log_marks[block], first, last - first + 1);
        return;
    }
    if (src && src->ops->mark_dirty) {
        src->ops->mark_dirty(src, block, offset, len);
    }
}

unsigned rf_ram_source_block_count(const RfRamSource *src)
{
    return src ? src->ops->block_count((RfRamSource *)src) : 0;
}

bool rf_ram_source_block(const RfRamSource *src, unsigned i,
                         const char **name, uint64_t *size, uint8_t **host)
{
    if (!src || i >= rf_ram_source_block_count(src)) {
        return false;
    }
    const RfRamBlock *b = src->ops->block((RfRamSource *)src, i);
    if (!b) {
        return false;
    }
    if (name) {
        *name = b->name;
    }
    if (size) {
        *size = b->size;
    }
    if (host) {
        *host = b->host;
    }
    return true;
}

bool rf_ram_source_check(RfRamSource *src, RfError **errp)
{
    unsigned n = src->ops->block_count(src);
    if (n < 1 || n > RF_MAX_BLOCKS) {
        rf_error_set(errp, RF_ERR_PARAM, "RAM source has %u blocks, 1-%u "
                     "allowed", n, RF_MAX_BLOCKS);
        return false;
    }
    RfRamBlock *copy = calloc(n, sizeof(*copy));
    if (!copy) {
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory");
        return false;
    }
    bool ok = true;
    for (unsigned i = 0; ok && i < n; i++) {
        const RfRamBlock *b = src->ops->block(src, i);
        if (!b) {
            rf_error_set(errp, RF_ERR_PARAM, "RAM source: block %u of %u "
                         "is missing (block() gave NULL)", i, n);
            ok = false;
        } else if (!b->host || (uintptr_t)b->host % RF_PAGE_SIZE) {
            rf_error_set(errp, RF_ERR_PARAM, "RAM source: block %u's "
                         "address %p is not a non-NULL multiple of %u", i,
                         (void *)b->host, RF_PAGE_SIZE);
            ok = false;
        } else {
            copy[i] = *b;
        }
    }
    ok = ok && rf_blocks_check(copy, n, RF_ERR_PARAM, "RAM source", errp);
    free(copy);
    return ok;
}

/* Built-in sources free themselves in ops->free; a custom one's ops->free
 * frees only what the caller's opaque holds. */
void rf_ram_source_free(RfRamSource *src)
{
    if (!src) {
        return;
    }
    free_log_marks(src);
    if (src->custom) {
        if (src->ops->free) {
            src->ops->free(src);
        }
        free(src);
    } else {
        src->ops->free(src);
    }
}

RfRamSink *rf_ram_sink_new(const RfRamSinkOps *ops, void *opaque,
                           RfError **errp)
{
    if (!ops || ops->size < offsetof(RfRamSinkOps, wait_ready)) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "RAM sink ops: missing, or 'size' not set to "
                     "sizeof(RfRamSinkOps)");
        return NULL;
    }
    RfRamSink *s = calloc(1, sizeof(*s));
    if (!s) {
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory");
        return NULL;
    }
    copy_ops(&s->ops_copy, sizeof(s->ops_copy), ops, ops->size);
    if (!s->ops_copy.prepare || !s->ops_copy.host) {
        free(s);
        rf_error_set(errp, RF_ERR_PARAM,
                     "RAM sink ops: prepare and host are required");
        return NULL;
    }
    s->ops = &s->ops_copy;
    s->opaque = opaque;
    s->custom = true;
    return s;
}

void *rf_ram_sink_opaque(const RfRamSink *sink)
{
    return sink ? sink->opaque : NULL;
}

bool rf_ram_sink_wait_ready(RfRamSink *s)
{
    return s->ops->wait_ready ? s->ops->wait_ready(s) : false;
}

int rf_ram_source_fd(RfRamSource *s, unsigned i, uint64_t *offset)
{
    *offset = 0;
    int fd = s->ops->fd ? s->ops->fd(s, i, offset) : -1;
    return fd >= 0 ? fd : -1;
}

int rf_ram_sink_fd(RfRamSink *s, unsigned i, uint64_t *offset)
{
    *offset = 0;
    int fd = s->ops->fd ? s->ops->fd(s, i, offset) : -1;
    return fd >= 0 ? fd : -1;
}

bool rf_ram_sink_zeroed(RfRamSink *s, unsigned i)
{
    return s->ops->zeroed && s->ops->zeroed(s, i);
}

void rf_ram_sink_finish(RfRamSink *s, bool ok)
{
    if (s->ops->finish) {
        s->ops->finish(s, ok);
    }
}

void rf_ram_sink_free(RfRamSink *sink)
{
    if (!sink) {
        return;
    }
    if (sink->custom) {
        if (sink->ops->free) {
            sink->ops->free(sink);
        }
        free(sink);
    } else {
        sink->ops->free(sink);
    }
}
