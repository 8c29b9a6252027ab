/*
 * ramflow - data channels: one sender thread per channel on the source,
 * one receiver thread per channel on the destination.
 *
 * Source: the engine hands each batch (up to 128 page indexes of one
 * block) to the next idle channel; the channel's thread tests pages for
 * zero, compresses the rest through the method's ops table and writes
 * header, page indexes and payload with one vectored send.  At the end of
 * a round the engine queues a SYNC on every channel.
 *
 * Destination: each thread reads packets, checks every header field
 * against what was negotiated, and writes pages into the sink's memory.
 * At a SYNC it waits until every channel has reached the same SYNC: this
 * barrier is what keeps an older copy of a page (round N, channel A) from
 * landing after a newer one (round N+1, channel B).
 */
#ifndef RF_CHANNEL_CHANNEL_H
#define RF_CHANNEL_CHANNEL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "channel/autosel.h"
#include "channel/page_store.h"
#include "channel/transport.h"
#include "compress/method.h"

/* Counters of one side, summed over its channels. */
typedef struct RfChanStats {
    uint64_t normal_pages;
    uint64_t zero_pages;
    uint64_t payload_bytes; /* page data after compression */
    uint64_t wire_bytes;    /* everything written/read on data channels */
    uint64_t packets;       /* page packets (SYNC not counted) */
    uint64_t raw_packets;   /* page packets sent uncompressed */
    uint64_t reconnects;    /* broken connections replaced ('reconnect') */
} RfChanStats;

/* ---- sending side ------------------------------------------------------ */

typedef struct RfSendGroup RfSendGroup;

/* Capability 'reconnect' (docs/protocol.md 5.1): opens a replacement
 * connection for channel ch, sends its channel hello with generation gen
 * (> 0) and reads the destination's RESUME.  The connection's cancel flag
 * must be `cancel`.  @return it with *next_seq, or NULL with the error. */
typedef RfConn *(*RfRejoinFn)(void *ctx, unsigned ch, uint32_t gen,
                              atomic_int *cancel, uint64_t *next_seq,
                              RfError **errp);

/* A source block as a file the channels may read with pread. */
typedef struct RfSourceFile {
    const char *name; /* the block's, for messages */
    int fd;           /* -1: read through block_hosts only */
    uint64_t offset;  /* where the block starts in fd */
} RfSourceFile;

typedef struct RfSendGroupConfig {
    RfConn **conns;               /* n connected data channels (owned) */
    unsigned n;
    const RfMethodOps *method;
    int level;
    uint64_t max_bandwidth;       /* bytes/s over all channels, 0 = none */
    uint8_t *const *block_hosts;  /* source memory of each block */
    const RfSourceFile *block_files; /* the same as files, or NULL */
    bool crc32c;                  /* 'crc32c' negotiated: CRC each packet */
    /* 'reconnect' negotiated and attempts > 0: a channel whose connection
     * breaks (an I/O error) reconnects through rejoin, up to attempts
     * times, waiting backoff_ms before the first and twice as long before
     * each next, and re-sends what the destination had not applied.
     * Otherwise a broken connection fails the group. */
    unsigned reconnect_attempts;
    unsigned reconnect_backoff_ms;
    RfRejoinFn rejoin;
    void *rejoin_ctx;
    atomic_int *cancel;           /* the migration's; may be NULL */
    /* 'packet-method' negotiated and the method is 'auto': the channels
     * take method and level from a selector made from this (method and
     * level above are then unused) and name them in every packet. */
    const RfAutoConfig *autocfg;
    double max_cpu;               /* cores for the process, 0 = no limit */
} RfSendGroupConfig;

/* Sets up the method on every channel and starts the threads.  Takes
 * ownership of the connections even on failure. */
RfSendGroup *rf_send_group_new(const RfSendGroupConfig *cfg, RfError **errp);
/* Hands a batch of page indexes (ascending) of one block to the next idle
 * channel, waiting while all are busy.  @return false once the group has
 * failed (the error is kept for rf_send_group_take_error). */
bool rf_send_group_queue(RfSendGroup *g, uint32_t block, const uint32_t *idx,
                         uint32_t n, uint32_t round);
/* The destination passed round's SYNC on every channel (ROUND_ACK): the
 * channels forget what they would re-send of that round and before. */
void rf_send_group_acked(RfSendGroup *g, uint32_t round);
/* Queues a SYNC packet for `round` on every channel (FINAL on the last). */
bool rf_send_group_sync(RfSendGroup *g, uint32_t round, bool final);
/* Waits until every channel has written everything queued. */
bool rf_send_group_flush(RfSendGroup *g);
bool rf_send_group_failed(RfSendGroup *g);
void rf_send_group_take_error(RfSendGroup *g, RfError **errp);
/* Records an error from outside (cancel, main channel) and wakes every
 * thread: blocked sends fail at once. */
void rf_send_group_abort(RfSendGroup *g, RfError *why);
void rf_send_group_stats(RfSendGroup *g, RfChanStats *out);
/* CPU seconds of the channel threads so far. */
double rf_send_group_cpu(RfSendGroup *g);
/* Changes max-bandwidth (bytes/s over all channels, 0 = none) at once. */
void rf_send_group_set_bandwidth(RfSendGroup *g, uint64_t bytes_per_s);
/* The method's describe() of channel 0, or "". */
const char *rf_send_group_describe(RfSendGroup *g);
/* The 'auto' selector, or NULL for a fixed method. */
RfAutoSel *rf_send_group_autosel(RfSendGroup *g);
/* Stops the threads, cleans the method up, closes the connections. */
void rf_send_group_free(RfSendGroup *g);

/* ---- receiving side ---------------------------------------------------- */

typedef struct RfRecvGroup RfRecvGroup;

typedef struct RfRecvGroupConfig {
    RfConn **conns;               /* n accepted data channels, index = id */
    unsigned n;
    const RfMethodOps *method;
    unsigned nblocks;
    const uint64_t *block_pages;
    const RfStoreBlock *blocks;   /* destination memory of each block */
    bool crc32c;                  /* 'crc32c' negotiated: check each CRC */
    /* 'reconnect' negotiated: a channel whose connection breaks waits up
     * to reconnect_wait_ms for rf_recv_group_replace() instead of
     * failing the group. */
    bool reconnect;
    unsigned reconnect_wait_ms;
    /* 'packet-method' negotiated: each packet names its method, any of
     * those built here (method above is only the HELLO's). */
    bool packet_method;
    double max_cpu;               /* cores for the process, 0 = no limit */
} RfRecvGroupConfig;

RfRecvGroup *rf_recv_group_new(const RfRecvGroupConfig *cfg, RfError **errp);
/* @return true once every channel has read its FINAL sync. */
bool rf_recv_group_done(RfRecvGroup *g);
/* Waits up to timeout_ms for every channel to finish (FINAL or failure).
 * @return true if all read their FINAL sync. */
bool rf_recv_group_wait(RfRecvGroup *g, unsigned timeout_ms);
bool rf_recv_group_failed(RfRecvGroup *g);
void rf_recv_group_take_error(RfRecvGroup *g, RfError **errp);
void rf_recv_group_abort(RfRecvGroup *g, RfError *why);
/* Hands channel ch a replacement connection (owned by the group from
 * now on), from a channel hello that passed every check.  The channel's
 * old connection is shut down; its thread answers RESUME on the new one
 * and reads on from the first packet it had not applied. */
void rf_recv_group_replace(RfRecvGroup *g, unsigned ch, RfConn *conn);
/* The last round whose SYNC every channel has passed. */
uint32_t rf_recv_group_round(RfRecvGroup *g);
void rf_recv_group_stats(RfRecvGroup *g, RfChanStats *out);
double rf_recv_group_cpu(RfRecvGroup *g);
/* Fills the channel figures of a STATS message (recv_cpu_ns,
 * recv_wait_ns, wire_bytes, per-method cost); the caller adds the
 * process and host figures. */
void rf_recv_group_peer_stats(RfRecvGroup *g, RfStats *st);
/* @return the mask of wire methods this build decodes (bit i = id i). */
uint32_t rf_recv_methods_mask(void);
const char *rf_recv_group_describe(RfRecvGroup *g);
void rf_recv_group_free(RfRecvGroup *g);

/* ---- shared bandwidth limit (bwlimit.c) --------------------------------- */

typedef struct RfBwLimit RfBwLimit;
RfBwLimit *rf_bwlimit_new(uint64_t bytes_per_s);
/* Waits as long as needed so that the total stays under the rate; returns
 * early (false) if *stop becomes true. */
bool rf_bwlimit_consume(RfBwLimit *b, uint64_t bytes, atomic_bool *stop);
/* Changes the rate (0 = unlimited) while senders run. */
void rf_bwlimit_set_rate(RfBwLimit *b, uint64_t bytes_per_s);
void rf_bwlimit_free(RfBwLimit *b);

#endif
