/*
 * ramflow - RAM sources (source side) and sinks (destination side).
 *
 * A source exposes named blocks of guest memory, mapped into this process,
 * and tracks which pages were written since the last sync.  A sink receives
 * the layout from the source's hello and provides memory to write into.
 * Each kind is one file with one ops table; the engine only sees these
 * tables.
 */
#ifndef RF_RAM_RAM_H
#define RF_RAM_RAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ramflow/ramflow.h"

/* RfRamBlock, RfRamSourceOps and RfRamSinkOps are public (ramflow.h): a
 * caller plugs in its own memory through them, as the built-ins do. */

struct RfRamSource {
    const RfRamSourceOps *ops;
    void *opaque;            /* rf_ram_source_new's; NULL for built-ins */
    bool custom;             /* made by rf_ram_source_new: ops copied */
    RfRamSourceOps ops_copy; /* the caller's ops, NULL-padded */
    bool has_log;            /* a dirty-log provider replaces the tracker */
    RfDirtyLog log;
    struct RfDirtyBitmap *log_marks; /* per block: marks while has_log */
    unsigned log_nblocks;
    atomic_bool running;     /* between dirty_start and dirty_stop */
};

struct RfRamSink {
    const RfRamSinkOps *ops;
    void *opaque;
    bool custom;
    RfRamSinkOps ops_copy;
    /* CPU seconds the sink's background threads (pre-fault) used, set
     * when they have ended (wait_ready or finish); the engine reports
     * it. */
    double prefault_cpu_s;
};

/* The engine's way to the dirty tracker: the dirty-log provider if one is
 * set, else the source's own ops (ram_object.c). */
bool rf_ram_source_dirty_start(RfRamSource *s, RfError **errp);
bool rf_ram_source_dirty_sync(RfRamSource *s, unsigned block,
                              uint64_t *bitmap, RfError **errp);
void rf_ram_source_dirty_stop(RfRamSource *s);

/* Checks what the engine relies on before it migrates src: 1 to
 * RF_MAX_BLOCKS blocks, each non-NULL with a page-aligned host, a
 * non-empty unique name and a size that is a non-zero multiple of
 * RF_PAGE_SIZE (a custom source's ops give anything).
 * @return false with an RF_ERR_PARAM error naming the block. */
bool rf_ram_source_check(RfRamSource *src, RfError **errp);

/* The engine's way to a sink's optional ops (NULL-safe). */
bool rf_ram_sink_wait_ready(RfRamSink *s);
/* Source block i's fd and its offset there, or -1 (RfRamSourceOps.fd). */
int rf_ram_source_fd(RfRamSource *s, unsigned i, uint64_t *offset);
/* Block i's fd and its offset there, or -1 (see RfRamSinkOps.fd). */
int rf_ram_sink_fd(RfRamSink *s, unsigned i, uint64_t *offset);
/* @return true if block i was all zero after prepare (RfRamSinkOps). */
bool rf_ram_sink_zeroed(RfRamSink *s, unsigned i);
void rf_ram_sink_finish(RfRamSink *s, bool ok);

#endif /* RF_RAM_RAM_H */
