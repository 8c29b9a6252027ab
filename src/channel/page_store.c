/*
 * ramflow - writing received pages into the destination's blocks.
 *
 * Through the mapping, or, where the sink gives a file descriptor for a
 * block, with pwrite(2): on a host that shadows page tables (this
 * project's nested machine) the first write to each page of a mapping
 * faults, and 1 GiB written that way took 1.25 s where pwrite of the
 * same pages took 0.10 s (0.43 s page by page); into a fresh file, 1.5 s
 * against 0.18 s (docs/benchmarks.md).  The mapping is then not touched
 * at all: zero pages are checked with pread(2).
 *
 * A block the sink calls zeroed (fresh memory) needs no work for a zero
 * page until the migration writes that page: a bitmap per block records
 * the pages written.  Pages of one round are in one packet each, and a
 * later round's packets are applied only after every channel passed the
 * round's SYNC barrier, so a zero page never races the write it follows.
 */
#include "channel/page_store.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ramflow/ramflow.h"
#include "util/page_io.h"
#include "util/zero.h"

/* Zero pages checked with one pread: small enough for a stack buffer. */
#define ZERO_CHECK_PAGES 16

typedef struct StoreBlock {
    RfStoreBlock d;
    _Atomic uint64_t *written; /* zeroed blocks: pages written, else NULL */
} StoreBlock;

struct RfPageStore {
    unsigned n;
    StoreBlock b[];
};

static const uint8_t zero_page[RF_PAGE_SIZE];

RfPageStore *rf_page_store_new(const RfStoreBlock *blocks, unsigned n,
                               RfError **errp)
{
    RfPageStore *st = calloc(1, sizeof(*st) + n * sizeof(st->b[0]));
    if (!st) {
        goto oom;
    }
    st->n = n;
    for (unsigned i = 0; i < n; i++) {
        st->b[i].d = blocks[i];
        if (blocks[i].zeroed) {
            st->b[i].written = calloc((blocks[i].pages + 63) / 64,
                                      sizeof(uint64_t));
            if (!st->b[i].written) {
                rf_page_store_free(st);
                goto oom;
            }
        }
    }
    return st;
oom:
    rf_error_set(errp, RF_ERR_GENERIC, "out of memory for the page store "
                 "of %u blocks", n);
    return NULL;
}

void rf_page_store_free(RfPageStore *st)
{
    if (!st) {
        return;
    }
    for (unsigned i = 0; i < st->n; i++) {
        free(st->b[i].written);
    }
    free(st);
}

static void mark_written(StoreBlock *b, uint32_t page)
{
    if (b->written) {
        atomic_fetch_or_explicit(&b->written[page / 64], 1ull << (page % 64),
                                 memory_order_relaxed);
    }
}

static bool was_written(StoreBlock *b, uint32_t page)
{
    return (atomic_load_explicit(&b->written[page / 64],
                                 memory_order_relaxed) >> (page % 64)) & 1;
}

/* rf_page_io on block b, failures named.  They are RF_ERR_GENERIC, not
 * RF_ERR_IO: a receiving channel takes RF_ERR_IO for a broken connection
 * and waits for a reconnect, which cannot help a full file system. */
static bool block_io(StoreBlock *b, const uint32_t *idx, uint32_t n,
                     uint8_t *buf, bool write, RfError **errp)
{
    RfPageIoFail f;
    if (rf_page_io(b->d.fd, b->d.fd_offset, idx, n, buf, write, &f)) {
        return true;
    }
    rf_error_set(errp, RF_ERR_GENERIC, "block '%s': %s %u pages at page %u "
                 "of the destination's file: %s", b->d.name,
                 write ? "writing" : "reading", f.npages, f.page,
                 strerror(f.err));
    return false;
}

bool rf_page_store_write(RfPageStore *st, unsigned bi, const uint32_t *idx,
                         uint32_t n, const uint8_t *src, RfError **errp)
{
    StoreBlock *b = &st->b[bi];
    for (uint32_t i = 0; i < n; i++) {
        mark_written(b, idx[i]);
    }
    if (b->d.fd < 0) {
        for (uint32_t i = 0; i < n; i++) {
            memcpy(b->d.host + (uint64_t)idx[i] * RF_PAGE_SIZE,
                   src + (size_t)i * RF_PAGE_SIZE, RF_PAGE_SIZE);
        }
        return true;
    }
    /* pwrite does not write to its buffer: the cast only lets one helper
     * serve both directions. */
    return block_io(b, idx, n, (uint8_t *)src, true, errp);
}

/* Checks the n pages idx[0..n) through the file, and writes zeros over
 * those that are not zero. */
static bool zero_run_fd(StoreBlock *b, const uint32_t *idx, uint32_t n,
                        RfError **errp)
{
    uint8_t buf[ZERO_CHECK_PAGES * RF_PAGE_SIZE];
    if (!block_io(b, idx, n, buf, false, errp)) {
        return false;
    }
    for (uint32_t k = 0; k < n; k++) {
        if (!rf_page_is_zero(buf + (size_t)k * RF_PAGE_SIZE) &&
            !block_io(b, &idx[k], 1, (uint8_t *)zero_page, true, errp)) {
            return false;
        }
    }
    return true;
}

bool rf_page_store_zero(RfPageStore *st, unsigned bi, const uint32_t *idx,
                        uint32_t n, RfError **errp)
{
    StoreBlock *b = &st->b[bi];
    for (uint32_t i = 0; i < n;) {
        if (b->written && !was_written(b, idx[i])) {
            i++; /* still as the sink made it: zero */
            continue;
        }
        if (b->d.fd < 0) {
            /* Test before writing, so a zero page costs a read, not a
             * write fault. */
            uint8_t *p = b->d.host + (uint64_t)idx[i] * RF_PAGE_SIZE;
            if (!rf_page_is_zero(p)) {
                memset(p, 0, RF_PAGE_SIZE);
            }
            i++;
            continue;
        }
        uint32_t run = 1;
        while (run < ZERO_CHECK_PAGES && i + run < n &&
               idx[i + run] == idx[i] + run &&
               !(b->written && !was_written(b, idx[i + run]))) {
            run++;
        }
        if (!zero_run_fd(b, &idx[i], run, errp)) {
            return false;
        }
        i += run;
    }
    return true;
}
