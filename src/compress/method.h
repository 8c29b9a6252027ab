/*
 * ramflow - compression method interface.
 *
 * A method is one file exporting one `const RfMethodOps` table, listed in
 * registry.c.  The engine and channels know methods only through this
 * table.  Per-channel state sits behind one opaque pointer allocated in
 * *_setup and freed in *_cleanup; nothing is allocated per packet.
 *
 * Raw packets: a method may answer send_prepare with out->raw = true and an
 * iovec over the uncompressed pages (from guest memory or from its own
 * copy) when compressing would not shrink the packet.  The channel then
 * flags the packet RF_PKT_RAW and the receiving channel reads the payload
 * itself: recv is only called for packets without that flag.  The `none`
 * method always answers raw.
 *
 * Receiving: the channel passes recv the pages of its own scratch buffer
 * (contiguous), never guest memory, and a read function that checks the
 * packet's CRC as the payload's last byte arrives; it copies the pages
 * into guest memory only after recv succeeded.
 */
#ifndef RF_COMPRESS_METHOD_H
#define RF_COMPRESS_METHOD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "ramflow/ramflow.h"

/* Wire method bytes (one byte in every packet header and in the hello). */
enum {
    RF_METHOD_NONE = 0,
    RF_METHOD_ZLIB = 1,
    RF_METHOD_ZSTD = 2,
    RF_METHOD_QATZIP = 3,
};

/* The normal pages of one packet, in the order of their offsets. */
typedef struct RfPageList {
    uint8_t *const *pages; /* host address of each page, RF_PAGE_SIZE each */
    uint32_t npages;       /* 1..RF_PACKET_MAX_PAGES */
} RfPageList;

/* What send_prepare returns: the payload to write after the header. */
typedef struct RfSendPayload {
    struct iovec iov[RF_PACKET_MAX_PAGES];
    int iovcnt;
    uint32_t len; /* sum of the iov lengths */
    bool raw;     /* the iov holds the pages uncompressed */
    bool borrowed; /* the iov points into guest memory, which may change
                    * (rf_payload_raw_pages): the channel copies it
                    * before taking a CRC */
} RfSendPayload;

/* Reads exactly the bytes the iov describes from the channel, or fails
 * with an error.  Supplied by the channel to recv. */
typedef bool (*RfReadFn)(void *ctx, const struct iovec *iov, int iovcnt,
                         RfError **errp);

/* A compressed payload to be read and decoded into pages. */
typedef struct RfRecvPayload {
    uint32_t len;          /* payload bytes on the wire, <= max_payload() */
    uint8_t *const *pages; /* destination address of each normal page */
    uint32_t npages;
    RfReadFn read;
    void *read_ctx;
} RfRecvPayload;

typedef struct RfMethodOps {
    const char *name;        /* "zstd": the multifd-compression value */
    uint8_t id;              /* RF_METHOD_*: the wire byte */
    const char *level_param; /* "multifd-zstd-level", or NULL */
    int level_min, level_max, level_default; /* range of level_param */

    /* Largest payload a sender may produce for npages normal pages; the
     * receiver rejects a larger payload_size before reading it. */
    size_t (*max_payload)(uint32_t npages);

    /* Called once per sending channel, before any packet, with the level
     * from the parameters.  Allocates *state. */
    bool (*send_setup)(void **state, int level, RfError **errp);
    /* Frees what send_setup allocated; state may be NULL. */
    void (*send_cleanup)(void *state);
    /* Compresses the packet's normal pages (npages >= 1) and fills *out.
     * The pages may change while being read (the guest runs): the output
     * must stay decodable (copy first if the format checksums its input).
     * out->iov may point into state until the next call. */
    bool (*send_prepare)(void *state, const RfPageList *pages,
                         RfSendPayload *out, RfError **errp);

    /* Called once per receiving channel.  Allocates *state. */
    bool (*recv_setup)(void **state, RfError **errp);
    void (*recv_cleanup)(void *state);
    /* Reads in->len payload bytes through in->read and decodes them into
     * in->pages.  Must fail (never write elsewhere) unless the payload
     * decodes to exactly npages * RF_PAGE_SIZE bytes.  Error messages name
     * the field or check that failed; the caller prefixes the channel. */
    bool (*recv)(void *state, const RfRecvPayload *in, RfError **errp);

    /* Optional: a one-line description of what this build/session uses,
     * e.g. "software (ISA-L): libqatzip.so.3 not found".  state is a
     * send or recv state. */
    const char *(*describe)(void *state);
} RfMethodOps;

/* --- registry (registry.c) ------------------------------------------- */

/* @return the method named `name`, or NULL if unknown or not built. */
const RfMethodOps *rf_method_find(const char *name);
/* @return the method with wire byte `id`, or NULL. */
const RfMethodOps *rf_method_by_id(uint8_t id);
/* @return true if `name` is a method ramflow knows even when not built
 * (so errors can say "not built in" rather than "unknown"). */
bool rf_method_known(const char *name);
/* @return the name of wire byte id, built or not, or NULL if unknown. */
const char *rf_method_name_for_id(uint8_t id);

/* Helpers for methods (method_util.c). */

/* @return true if the pages are consecutive in memory. */
bool rf_pages_contiguous(const RfPageList *pl);
/* Copies the pages into dst (npages * RF_PAGE_SIZE bytes). */
void rf_pages_gather(const RfPageList *pl, uint8_t *dst);
/* Copies src (npages * RF_PAGE_SIZE bytes) out to the pages. */
void rf_pages_scatter(uint8_t *const *pages, uint32_t npages,
                      const uint8_t *src);
/* Fills out with a raw payload pointing at the pages themselves. */
void rf_payload_raw_pages(const RfPageList *pl, RfSendPayload *out);
/* Fills out with a raw payload of one buffer (a gathered copy). */
void rf_payload_raw_buffer(const uint8_t *buf, uint32_t npages,
                           RfSendPayload *out);
/* Fills out with one compressed buffer. */
void rf_payload_buffer(const uint8_t *buf, uint32_t len,
                       RfSendPayload *out);

/* An RfReadFn over a payload already in memory (a method's own output,
 * a stored packet): reads consume the buffer in order and fail once it
 * runs out. */
typedef struct RfBufReader {
    const uint8_t *p;
    size_t left;
} RfBufReader;
bool rf_buf_read(void *reader, const struct iovec *iov, int iovcnt,
                 RfError **errp);

#endif /* RF_COMPRESS_METHOD_H */
