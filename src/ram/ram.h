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

#include <stdbool.h>
#include <stdint.h>

#include "ramflow/ramflow.h"

typedef struct RfRamBlock {
    char name[RF_BLOCK_NAME_MAX + 1];
    uint64_t size;   /* bytes, multiple of RF_PAGE_SIZE */
    uint8_t *host;   /* mapped address */
} RfRamBlock;

typedef struct RfRamSourceOps {
    const char *name;
    unsigned (*block_count)(RfRamSource *s);
    const RfRamBlock *(*block)(RfRamSource *s, unsigned i);
    /* Starts tracking writes; from now on dirty_sync reports them. */
    bool (*dirty_start)(RfRamSource *s, RfError **errp);
    /* ORs the pages written since the previous sync (or since dirty_start)
     * into bitmap (one bit per page, bit i of word i/64) and clears them
     * from the tracker. */
    bool (*dirty_sync)(RfRamSource *s, unsigned block, uint64_t *bitmap,
                       RfError **errp);
    void (*dirty_stop)(RfRamSource *s);
    /* Marks pages dirty (the explicit API); may be NULL if the source
     * tracks writes by itself. */
    void (*mark_dirty)(RfRamSource *s, unsigned block, uint64_t offset,
                       uint64_t len);
    void (*free)(RfRamSource *s);
    /* One line saying how writes are tracked (rf_ram_source_describe);
     * may be NULL: "explicit marks". */
    const char *(*describe)(RfRamSource *s);
} RfRamSourceOps;

struct RfRamSource {
    const RfRamSourceOps *ops;
};

typedef struct RfRamSinkOps {
    const char *name;
    /* Creates the blocks described by the source; may start pre-faulting
     * memory in the background.  Fails (naming the block) if it cannot. */
    bool (*prepare)(RfRamSink *s, const RfRamBlock *layout, unsigned n,
                    RfError **errp);
    /* Host address of block i after prepare. */
    uint8_t *(*host)(RfRamSink *s, unsigned i);
    /* Waits for background pre-faulting; @return true if memory is warm. */
    bool (*wait_ready)(RfRamSink *s);
    /* Migration ended (ok = completed); flush or discard. */
    void (*finish)(RfRamSink *s, bool ok);
    void (*free)(RfRamSink *s);
} RfRamSinkOps;

struct RfRamSink {
    const RfRamSinkOps *ops;
};

/* Shared helper: pre-fault [addr, addr+len) for writing with `threads`
 * threads (MADV_POPULATE_WRITE, falling back to touching each page). */
void rf_ram_prefault(uint8_t *addr, uint64_t len, unsigned threads);

#endif /* RF_RAM_RAM_H */
