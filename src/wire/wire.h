/*
 * ramflow - the wire protocol: byte layouts, encoding and validation.
 *
 * docs/protocol.md is the specification; this file implements it.  All
 * integers are little-endian.  Encoders write into caller buffers; decoders
 * check every field before the caller uses it and fail with a message that
 * names the field, the value received and what was allowed.  Nothing here
 * does I/O.
 */
#ifndef RF_WIRE_H
#define RF_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ramflow/ramflow.h"

#define RF_WIRE_VERSION 1u

/* ---- main (control) channel ------------------------------------------ */

#define RF_MSG_MAGIC 0x4D434652u /* "RFCM" */
#define RF_MSG_HDR_SIZE 12u
#define RF_MSG_MAX_PAYLOAD (1u << 20)

typedef enum {
    RF_MSG_INVALID = 0,
    RF_MSG_HELLO = 1,    /* src -> dst: session, parameters, block layout */
    RF_MSG_ACCEPT = 2,   /* dst -> src: hello accepted, open data channels */
    RF_MSG_ERROR = 3,    /* either way: u32 kind + UTF-8 message; fatal */
    RF_MSG_ROUND = 4,    /* src -> dst: round N finished on every channel */
    RF_MSG_END = 5,      /* src -> dst: last round sent; u8 verify flag */
    RF_MSG_COMPLETE = 6, /* dst -> src: everything applied; stats, digests */
    RF_MSG_STATE = 7,    /* src -> dst: device (vCPU) state, opaque bytes */
    RF_MSG_ROUND_ACK = 8, /* dst -> src: every channel passed SYNC(round) */
    RF_MSG_MAX = 8,
} RfMsgType;

typedef struct RfMsgHdr {
    uint16_t type;    /* RfMsgType */
    uint32_t length;  /* payload bytes, <= RF_MSG_MAX_PAYLOAD */
} RfMsgHdr;

typedef struct RfBlockDesc {
    char name[RF_BLOCK_NAME_MAX + 1]; /* NUL-terminated */
    uint64_t size;                    /* bytes, multiple of RF_PAGE_SIZE */
} RfBlockDesc;

typedef struct RfHello {
    uint16_t version;     /* RF_WIRE_VERSION */
    uint32_t page_size;   /* RF_PAGE_SIZE */
    uint8_t method;       /* RF_METHOD_* */
    uint8_t level;        /* informational */
    uint16_t channels;    /* 1..255 */
    uint32_t flags;       /* RF_HELLO_* */
    uint8_t session[16];
    uint32_t nblocks;     /* 1..RF_MAX_BLOCKS */
    RfBlockDesc blocks[RF_MAX_BLOCKS];
} RfHello;

#define RF_HELLO_VERIFY 0x1u /* the source will ask for digests */

/* The destination's final answer. */
typedef struct RfComplete {
    double recv_cpu_pct;      /* destination process CPU, 100 = 1 core */
    uint64_t wire_bytes;      /* bytes it read on all data channels */
    uint32_t prefault_warm;   /* 1 if RAM was pre-faulted before data */
    char method_detail[128];  /* its method's describe() */
    uint32_t ndigests;        /* 0, or nblocks when verify was asked */
    uint32_t digest_us;       /* time spent computing them, microseconds */
    uint8_t digests[RF_MAX_BLOCKS][16]; /* XXH3-128 of each block */
} RfComplete;

/* Frame header: encode into 12 bytes / decode and check magic, type,
 * length. */
void rf_wire_msg_hdr_encode(uint8_t out[RF_MSG_HDR_SIZE], uint16_t type,
                            uint32_t length);
bool rf_wire_msg_hdr_decode(const uint8_t in[RF_MSG_HDR_SIZE],
                            RfMsgHdr *out, RfError **errp);

/* Payload encoders: @return bytes written, or 0 if cap is too small. */
size_t rf_wire_hello_encode(const RfHello *h, uint8_t *out, size_t cap);
size_t rf_wire_error_encode(uint32_t kind, const char *msg, uint8_t *out,
                            size_t cap);
/* ROUND and ROUND_ACK share one layout (u32 round). */
size_t rf_wire_round_encode(uint32_t round, uint8_t *out, size_t cap);
size_t rf_wire_end_encode(uint32_t final_round, bool verify, uint8_t *out,
                          size_t cap);
size_t rf_wire_complete_encode(const RfComplete *c, uint8_t *out,
                               size_t cap);

/* Payload decoders: check every field (versions, sizes, counts, name
 * termination and uniqueness, no trailing bytes). */
bool rf_wire_hello_decode(const uint8_t *in, size_t len, RfHello *out,
                          RfError **errp);
/* Copies the message (always NUL-terminated, truncated to cap - 1). */
bool rf_wire_error_decode(const uint8_t *in, size_t len, uint32_t *kind,
                          char *msg, size_t cap, RfError **errp);
bool rf_wire_round_decode(const uint8_t *in, size_t len, uint32_t *round,
                          RfError **errp);
bool rf_wire_end_decode(const uint8_t *in, size_t len,
                        uint32_t *final_round, bool *verify, RfError **errp);
bool rf_wire_complete_decode(const uint8_t *in, size_t len, RfComplete *out,
                             RfError **errp);

/* ---- data channels ---------------------------------------------------- */

#define RF_CHAN_MAGIC 0x48434652u /* "RFCH" */
#define RF_CHAN_HELLO_SIZE 24u

typedef struct RfChanHello {
    uint16_t version;
    uint16_t channel;     /* 0..channels-1 */
    uint8_t session[16];
} RfChanHello;

void rf_wire_chan_hello_encode(const RfChanHello *h,
                               uint8_t out[RF_CHAN_HELLO_SIZE]);
bool rf_wire_chan_hello_decode(const uint8_t in[RF_CHAN_HELLO_SIZE],
                               RfChanHello *out, RfError **errp);

#define RF_PKT_MAGIC 0x4B504652u /* "RFPK" */
#define RF_PKT_HDR_SIZE 40u
#define RF_PKT_SYNC 0x01u  /* round boundary; no pages */
#define RF_PKT_RAW 0x02u   /* payload is the normal pages uncompressed */
#define RF_PKT_FINAL 0x04u /* with SYNC: last packet of this channel */
#define RF_PKT_FLAGS_ALL (RF_PKT_SYNC | RF_PKT_RAW | RF_PKT_FINAL)

typedef struct RfPacketHdr {
    uint16_t version;
    uint8_t method;
    uint8_t flags;
    uint32_t block;
    uint16_t normal;       /* normal pages, data in the payload */
    uint16_t zero;         /* zero pages, offsets only */
    uint32_t payload_size;
    uint32_t round;
    uint64_t seq;          /* per-channel packet number from 0 */
} RfPacketHdr;

/* What a receiving channel negotiated: used to check each header. */
typedef struct RfPacketLimits {
    uint8_t method;
    uint32_t nblocks;
    const uint64_t *block_pages;  /* pages in each block */
    size_t (*max_payload)(uint32_t npages); /* method's bound */
} RfPacketLimits;

void rf_wire_packet_hdr_encode(const RfPacketHdr *h,
                               uint8_t out[RF_PKT_HDR_SIZE]);
/* Decodes and checks magic, version, method, flags, block id, page counts
 * (<= RF_PACKET_MAX_PAGES, none in a SYNC), payload size (0 in a SYNC,
 * exactly normal * RF_PAGE_SIZE when RAW, <= max_payload otherwise). */
bool rf_wire_packet_hdr_decode(const uint8_t in[RF_PKT_HDR_SIZE],
                               const RfPacketLimits *lim, RfPacketHdr *out,
                               RfError **errp);
/* Page indexes follow the header: (normal + zero) little-endian u32.
 * Encodes n of them; @return bytes written (4 * n). */
size_t rf_wire_page_index_encode(const uint32_t *idx, uint32_t n,
                                 uint8_t *out);
/* Decodes n indexes in place (raw -> host order) and checks each is
 * < block_pages.  Fails naming the first bad index. */
bool rf_wire_page_index_decode(uint32_t *idx, uint32_t n,
                               uint64_t block_pages, RfError **errp);

#endif /* RF_WIRE_H */
