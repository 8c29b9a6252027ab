/*
 * ramflow - where the receiving channels put a packet's pages: the
 * destination's blocks, through their mapping or through the sink's file
 * descriptor (RfRamSinkOps.fd), and which zero pages need no work at all.
 */
#ifndef RF_CHANNEL_PAGE_STORE_H
#define RF_CHANNEL_PAGE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "ramflow/error.h"

/* One destination block as the sink gave it. */
typedef struct RfStoreBlock {
    const char *name;   /* for messages; outlives the store */
    uint8_t *host;      /* its mapping */
    uint64_t pages;     /* its size in pages */
    int fd;             /* the same memory as a file, or -1 */
    uint64_t fd_offset; /* where the block starts in fd */
    bool zeroed;        /* all zero before the migration wrote to it */
} RfStoreBlock;

typedef struct RfPageStore RfPageStore;

/* Copies the n block descriptions.  @return the store, or NULL with an
 * error when out of memory. */
RfPageStore *rf_page_store_new(const RfStoreBlock *blocks, unsigned n,
                               RfError **errp);
void rf_page_store_free(RfPageStore *st);

/* Writes n pages (contiguous at src, RF_PAGE_SIZE each) to pages idx[0..n)
 * of block b.  The indexes were checked against the block; consecutive
 * ones go in one write.  Safe from several threads for different pages.
 * @return false with an RF_ERR_GENERIC error if the sink's file refused a
 * write (a full file system). */
bool rf_page_store_write(RfPageStore *st, unsigned b, const uint32_t *idx,
                         uint32_t n, const uint8_t *src, RfError **errp);

/* Makes pages idx[0..n) of block b zero, touching only those that may not
 * be zero already.  @return false with an error as above. */
bool rf_page_store_zero(RfPageStore *st, unsigned b, const uint32_t *idx,
                        uint32_t n, RfError **errp);

#endif
