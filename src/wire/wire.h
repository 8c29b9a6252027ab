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

/* Version 2 added capability negotiation (HELLO and ACCEPT carry
 * capability bits).  Later features are capability bits, not versions. */
#define RF_WIRE_VERSION 2u

/* ---- capabilities (docs/protocol.md section 4.10) -------------------- */

/*
 * A capability is one protocol feature, named by a bit number 0..63.  The
 * source's HELLO offers the bits it implements (caps_supported) and names
 * those it cannot do without (caps_required, a subset); the destination
 * answers ACCEPT with the negotiated set, source-supported AND
 * destination-supported, or refuses (ERROR kind MISMATCH) naming what is
 * missing.  A feature may be used only when its bit is negotiated.  Bits
 * are never reused, and a peer ignores bits it does not know unless they
 * are required.
 */
typedef enum {
    RF_CAP_ROUND_ACK = 0,     /* dst sends ROUND_ACK after SYNC barriers */
    RF_CAP_DEVICE_STATE = 1,  /* src may send STATE; dst loads it */
    RF_CAP_VERIFY = 2,        /* END verify = 1; COMPLETE carries digests */
    RF_CAP_RAW_PACKETS = 3,   /* packets with the RAW flag */
    RF_CAP_ZERO_PAGES = 4,    /* packets with zero-page indexes */
    RF_CAP_FINAL_SYNC = 5,    /* SYNC packets with the FINAL flag */
    RF_CAP_CRC32C = 6,        /* CRC32C of each packet */
    RF_CAP_PACKET_METHOD = 7, /* method chosen per packet ('auto') */
    RF_CAP_TLS_BINDING = 8,   /* channels bound to the TLS session */
    RF_CAP_RECONNECT = 9,     /* a broken data channel may reconnect */
} RfCapBit;

#define RF_CAP(bit) (UINT64_C(1) << (bit))

/* Every capability this build implements. */
#define RF_CAPS_IMPLEMENTED                                                  \
    (RF_CAP(RF_CAP_ROUND_ACK) | RF_CAP(RF_CAP_DEVICE_STATE) |                \
     RF_CAP(RF_CAP_VERIFY) | RF_CAP(RF_CAP_RAW_PACKETS) |                    \
     RF_CAP(RF_CAP_ZERO_PAGES) | RF_CAP(RF_CAP_FINAL_SYNC) |                 \
     RF_CAP(RF_CAP_CRC32C))

/* Implemented too, but offered by a source only while its parameter
 * multifd-reconnect-attempts is above 0; a destination supports it. */
#define RF_CAPS_RECONNECT RF_CAP(RF_CAP_RECONNECT)

/* Implemented too, but offered by a source only when its method is
 * 'auto'; a destination supports it and names in its ACCEPT's extension
 * record for the bit (RF_EXT_METHODS_SIZE bytes: u32 mask, bit i = wire
 * method i) the methods it decodes. */
#define RF_CAPS_PACKET_METHOD RF_CAP(RF_CAP_PACKET_METHOD)
#define RF_EXT_METHODS_SIZE 4u

/* Implemented too, but offered only over TLS (there is no session to bind
 * to without it). */
#define RF_CAPS_TLS RF_CAP(RF_CAP_TLS_BINDING)
/* What ramflow's source always relies on: it waits for ROUND_ACK before
 * the final round and sends RAW, zero-page and FINAL packets.  It adds
 * VERIFY and DEVICE_STATE when its options ask for them, and CRC32C
 * unless the parameter crc32c is off (it then does not offer it
 * either). */
#define RF_CAPS_SOURCE_NEEDS                                                 \
    (RF_CAP(RF_CAP_ROUND_ACK) | RF_CAP(RF_CAP_RAW_PACKETS) |                 \
     RF_CAP(RF_CAP_ZERO_PAGES) | RF_CAP(RF_CAP_FINAL_SYNC))
/* What ramflow's destination relies on: it ends at the FINAL syncs. */
#define RF_CAPS_DEST_NEEDS RF_CAP(RF_CAP_FINAL_SYNC)

/* @return the name of capability `bit` ("device-state"), or NULL when
 * the bit is not assigned (or above 63). */
const char *rf_wire_cap_name(unsigned bit);

/* Writes the capabilities of `caps`, lowest bit first, as
 * "capability 'verify', unknown capability bit 40" into out (always
 * NUL-terminated when cap > 0, cut short if it does not fit).
 * @return the length the whole text needs, as snprintf. */
size_t rf_wire_caps_format(uint64_t caps, char *out, size_t cap);

/* The destination's decision on a HELLO: *negotiated = src_supported &
 * dst_supported, unless a side requires what the other lacks; then fails
 * with kind MISMATCH naming each missing capability, e.g. "destination
 * lacks capability 'device-state' required by the source".  A required
 * bit nobody knows is named "unknown capability bit N".  Supported bits
 * that are unknown here are simply not negotiated.  dst_required must be
 * a subset of dst_supported (kind PARAM otherwise); the HELLO decoder
 * already checked the same of the source's sets. */
bool rf_wire_caps_negotiate(uint64_t src_supported, uint64_t src_required,
                            uint64_t dst_supported, uint64_t dst_required,
                            uint64_t *negotiated, RfError **errp);

/* The source's check of the ACCEPT it got: the negotiated set offers
 * nothing the source did not, and keeps everything it requires (kind
 * PROTOCOL otherwise: the destination should have refused). */
bool rf_wire_caps_check_accept(uint64_t src_supported, uint64_t src_required,
                               uint64_t negotiated, RfError **errp);

/* ---- main (control) channel ------------------------------------------ */

#define RF_MSG_MAGIC 0x4D434652u /* "RFCM" */
#define RF_MSG_HDR_SIZE 12u
#define RF_MSG_MAX_PAYLOAD (1u << 20)

typedef enum {
    RF_MSG_INVALID = 0,
    RF_MSG_HELLO = 1,    /* src -> dst: session, parameters, block layout */
    RF_MSG_ACCEPT = 2,   /* dst -> src: negotiated capabilities; open the
                          * data channels */
    RF_MSG_ERROR = 3,    /* either way: u32 kind + UTF-8 message; fatal */
    RF_MSG_ROUND = 4,    /* src -> dst: round N finished on every channel */
    RF_MSG_END = 5,      /* src -> dst: last round sent; u8 verify flag */
    RF_MSG_COMPLETE = 6, /* dst -> src: everything applied; stats, digests */
    RF_MSG_STATE = 7,    /* src -> dst: device (vCPU) state, opaque bytes */
    RF_MSG_ROUND_ACK = 8, /* dst -> src: every channel passed SYNC(round) */
    RF_MSG_STATS = 9,     /* dst -> src, with 'packet-method': what its
                           * channels and CPUs did (for 'auto') */
    RF_MSG_MAX = 9,
} RfMsgType;

typedef struct RfMsgHdr {
    uint16_t type;    /* RfMsgType */
    uint32_t length;  /* payload bytes, <= RF_MSG_MAX_PAYLOAD */
} RfMsgHdr;

typedef struct RfBlockDesc {
    char name[RF_BLOCK_NAME_MAX + 1]; /* NUL-terminated */
    uint64_t size;                    /* bytes, multiple of RF_PAGE_SIZE */
} RfBlockDesc;

/* A HELLO or ACCEPT's extension records (docs/protocol.md 4.2), kept as
 * they were on the wire.  Each record is data for one capability: u8 bit,
 * u16 length, then the data; bits ascending.  This version defines no
 * data for any capability, so records are only ever those of capabilities
 * it does not know, which it skips. */
#define RF_WIRE_EXT_MAX 4096u
typedef struct RfWireExt {
    uint16_t len;                   /* bytes of records, <= RF_WIRE_EXT_MAX */
    uint8_t bytes[RF_WIRE_EXT_MAX];
} RfWireExt;

/* Appends a record for capability `bit` (above every bit already there)
 * with len bytes of data.  @return false if it does not fit. */
bool rf_wire_ext_add(RfWireExt *e, unsigned bit, const void *data,
                     uint16_t len);
/* @return the data of the record for `bit` and its length in *len, or
 * NULL if there is none.  The records were checked when decoded. */
const uint8_t *rf_wire_ext_find(const RfWireExt *e, unsigned bit,
                                uint16_t *len);

typedef struct RfHello {
    uint16_t version;        /* RF_WIRE_VERSION */
    uint32_t page_size;      /* RF_PAGE_SIZE */
    uint64_t caps_supported; /* RF_CAP() bits the source implements */
    uint64_t caps_required;  /* the subset it cannot do without */
    uint8_t method;          /* RF_METHOD_* */
    uint8_t level;           /* informational */
    uint16_t channels;       /* 1..255 */
    uint32_t nblocks;        /* 1..RF_MAX_BLOCKS */
    uint8_t session[16];
    RfBlockDesc blocks[RF_MAX_BLOCKS];
    RfWireExt ext;
} RfHello;

/* The destination's yes to a HELLO. */
typedef struct RfAccept {
    uint64_t caps; /* negotiated: source supported & destination supported */
    RfWireExt ext;
} RfAccept;

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

/* The destination's STATS (docs/protocol.md 4.11): cumulative figures
 * since its data channels opened, sent about every 250 ms. */
#define RF_STATS_MAX_METHODS 8u
typedef struct RfStatsMethod {
    uint8_t method;      /* wire method id */
    uint64_t raw_bytes;  /* normal page bytes decoded from its packets */
    uint64_t decode_ns;  /* channel-thread CPU spent decoding them */
} RfStatsMethod;
typedef struct RfStats {
    uint64_t wall_ns;        /* since the data channels opened */
    uint64_t cpu_ns;         /* the destination process's CPU */
    uint64_t host_idle_ns;   /* its host's idle CPU time, all CPUs (0 if */
    uint64_t host_total_ns;  /* unknown) and all CPU time, from boot */
    uint32_t ncpus;          /* online CPUs */
    uint32_t max_cpu_milli;  /* its CPU budget in 1/1000 core, 0 = none */
    uint32_t running;        /* runnable threads on its host (procs_running),
                              * 0 if unknown */
    uint64_t recv_cpu_ns;    /* CPU of its channel threads */
    uint64_t recv_wait_ns;   /* time its channel threads waited for data */
    uint64_t wire_bytes;     /* read on its data channels */
    uint8_t nmethods;        /* <= RF_STATS_MAX_METHODS */
    RfStatsMethod methods[RF_STATS_MAX_METHODS];
} RfStats;

/* Frame header: encode into 12 bytes / decode and check magic, type,
 * length. */
void rf_wire_msg_hdr_encode(uint8_t out[RF_MSG_HDR_SIZE], uint16_t type,
                            uint32_t length);
bool rf_wire_msg_hdr_decode(const uint8_t in[RF_MSG_HDR_SIZE],
                            RfMsgHdr *out, RfError **errp);

/* Payload encoders: @return bytes written, or 0 if cap is too small. */
size_t rf_wire_hello_encode(const RfHello *h, uint8_t *out, size_t cap);
size_t rf_wire_accept_encode(const RfAccept *a, uint8_t *out, size_t cap);
size_t rf_wire_error_encode(uint32_t kind, const char *msg, uint8_t *out,
                            size_t cap);
/* ROUND and ROUND_ACK share one layout (u32 round). */
size_t rf_wire_round_encode(uint32_t round, uint8_t *out, size_t cap);
size_t rf_wire_end_encode(uint32_t final_round, bool verify, uint8_t *out,
                          size_t cap);
size_t rf_wire_complete_encode(const RfComplete *c, uint8_t *out,
                               size_t cap);
size_t rf_wire_stats_encode(const RfStats *st, uint8_t *out, size_t cap);

/* Payload decoders: check every field (versions, sizes, counts, name
 * termination and uniqueness, no trailing bytes).  The HELLO decoder
 * checks that caps_required is within caps_supported, and both decoders
 * that extension records are well formed, in ascending bit order, for
 * offered bits (caps_supported; ACCEPT: caps) and for bits this build
 * does not know (it knows no capability that carries data). */
bool rf_wire_hello_decode(const uint8_t *in, size_t len, RfHello *out,
                          RfError **errp);
bool rf_wire_accept_decode(const uint8_t *in, size_t len, RfAccept *out,
                           RfError **errp);
/* Copies the message (always NUL-terminated, truncated to cap - 1).
 * *kind is the kind as sent: any value but 0, including kinds a newer
 * peer added; rf_wire_error_kind() turns it into an RfErrorKind. */
bool rf_wire_error_decode(const uint8_t *in, size_t len, uint32_t *kind,
                          char *msg, size_t cap, RfError **errp);
/* The highest error kind this build knows. */
#define RF_WIRE_ERR_KIND_MAX RF_ERR_AUTH
/* @return the RfErrorKind of a received ERROR kind: itself when this
 * build knows it, RF_ERR_GENERIC otherwise. */
RfErrorKind rf_wire_error_kind(uint32_t wire_kind);
bool rf_wire_round_decode(const uint8_t *in, size_t len, uint32_t *round,
                          RfError **errp);
bool rf_wire_end_decode(const uint8_t *in, size_t len,
                        uint32_t *final_round, bool *verify, RfError **errp);
bool rf_wire_complete_decode(const uint8_t *in, size_t len, RfComplete *out,
                             RfError **errp);
/* Checks nmethods, method ids below 32 and each listed once. */
bool rf_wire_stats_decode(const uint8_t *in, size_t len, RfStats *out,
                          RfError **errp);

/* ---- data channels ---------------------------------------------------- */

#define RF_CHAN_MAGIC 0x48434652u /* "RFCH" */
#define RF_CHAN_HELLO_SIZE 24u

typedef struct RfChanHello {
    uint16_t version;
    uint16_t channel;     /* 0..channels-1 */
    uint8_t session[16];
} RfChanHello;

/* With RF_CAP_TLS_BINDING, the channel hello is followed by this many
 * bytes: the main channel's TLS exporter value for RF_CHAN_BINDING_LABEL
 * with context session[16] || channel (u16 big-endian). */
#define RF_CHAN_BINDING_SIZE 32u
#define RF_CHAN_BINDING_LABEL "EXPORTER-ramflow-data-channel"

void rf_wire_chan_hello_encode(const RfChanHello *h,
                               uint8_t out[RF_CHAN_HELLO_SIZE]);
bool rf_wire_chan_hello_decode(const uint8_t in[RF_CHAN_HELLO_SIZE],
                               RfChanHello *out, RfError **errp);

/* ---- reconnect (docs/protocol.md 5.1) --------------------------------- */

/* With RF_CAP_RECONNECT, the channel hello (and binding) is followed by
 * this many bytes: u32 generation, 0 on a channel's first connection and
 * one more on each replacement connection of that channel. */
#define RF_CHAN_GEN_SIZE 4u
/* The destination answers a replacement connection (generation > 0)
 * with RESUME: u32 magic "RFRS", u32 reserved 0, u64 next_seq (the seq
 * of the first packet of that channel it has not applied). */
#define RF_RESUME_MAGIC 0x53524652u /* "RFRS" */
#define RF_RESUME_SIZE 16u

void rf_wire_chan_gen_encode(uint32_t gen, uint8_t out[RF_CHAN_GEN_SIZE]);
uint32_t rf_wire_chan_gen_decode(const uint8_t in[RF_CHAN_GEN_SIZE]);
void rf_wire_resume_encode(uint64_t next_seq, uint8_t out[RF_RESUME_SIZE]);
bool rf_wire_resume_decode(const uint8_t in[RF_RESUME_SIZE],
                           uint64_t *next_seq, RfError **errp);

#define RF_PKT_MAGIC 0x4B504652u /* "RFPK" */
#define RF_PKT_HDR_SIZE 40u
#define RF_PKT_SYNC 0x01u  /* round boundary; no pages */
#define RF_PKT_RAW 0x02u   /* payload is the normal pages uncompressed */
#define RF_PKT_FINAL 0x04u /* with SYNC: last packet of this channel */
#define RF_PKT_FLAGS_ALL (RF_PKT_SYNC | RF_PKT_RAW | RF_PKT_FINAL)
#define RF_PKT_CRC_OFFSET 32u /* u32 crc, then u32 reserved */

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
    uint32_t crc;          /* CRC32C with 'crc32c' negotiated, else 0 */
    uint8_t level;         /* with 'packet-method': the method's level
                            * (informational), else 0 */
} RfPacketHdr;

/* What a receiving channel negotiated: used to check each header. */
typedef struct RfPacketLimits {
    uint8_t method;               /* without 'packet-method' */
    /* 'packet-method' negotiated: any method of this mask (bit i = wire
     * method i) may come, bounded by max_payload_of[method]. */
    bool packet_method;
    uint32_t methods_mask;
    size_t (*max_payload_of[32])(uint32_t npages);
    uint32_t nblocks;
    const uint64_t *block_pages;  /* pages in each block */
    size_t (*max_payload)(uint32_t npages); /* method's bound */
    bool crc;                     /* 'crc32c' negotiated */
} RfPacketLimits;

void rf_wire_packet_hdr_encode(const RfPacketHdr *h,
                               uint8_t out[RF_PKT_HDR_SIZE]);
/* Decodes and checks magic, version, method (the session's, or one of
 * the mask with 'packet-method'), flags, reserved 0 (level may be set
 * with 'packet-method'), crc 0
 * unless lim->crc, block id, page counts (<= RF_PACKET_MAX_PAGES, none
 * in a SYNC), payload size (0 in a SYNC, exactly normal * RF_PAGE_SIZE
 * when RAW, <= max_payload otherwise).  The crc itself is checked by the
 * receiving channel once it has read the whole packet. */
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

/* ---- CRC32C of a packet (docs/protocol.md 6.1, crc32c.c) ------------- */

/*
 * CRC-32C (Castagnoli, as iSCSI: reflected polynomial 0x82F63B78, initial
 * value and final XOR 0xFFFFFFFF; "123456789" gives 0xE3069283), computed
 * with ISA-L's crc32_iscsi.  A packet's CRC covers its 40-byte header
 * with the crc field as 0, its page indexes as sent, and its payload as
 * sent, in that order.  Running state: start with rf_wire_crc_begin(),
 * feed bytes with rf_wire_crc_update(), finish with rf_wire_crc_end().
 */
uint32_t rf_wire_crc32c(const void *buf, size_t len);
/* @return the running state after the header in (its crc field read as
 * 0, whatever it holds). */
uint32_t rf_wire_crc_begin(const uint8_t in[RF_PKT_HDR_SIZE]);
uint32_t rf_wire_crc_update(uint32_t state, const void *buf, size_t len);
static inline uint32_t rf_wire_crc_end(uint32_t state)
{
    return ~state;
}
/* Writes crc into an encoded header's crc field. */
void rf_wire_packet_set_crc(uint8_t out[RF_PKT_HDR_SIZE], uint32_t crc);

#endif /* RF_WIRE_H */
