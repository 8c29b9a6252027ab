/* ramflow - engine internals shared by the source and destination sides. */
#ifndef RF_ENGINE_ENGINE_H
#define RF_ENGINE_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "channel/secure.h"
#include "channel/transport.h"
#include "engine/params.h"
#include "ramflow/ramflow.h"
#include "wire/wire.h"

#define RF_DEFAULT_TIMEOUT_MS 30000u

/* ---- what the engine shares with the handle (handle.c) ----------------
 *
 * The handle's query, live parameter changes and status run on other
 * threads than the engine: they meet here, under `lock`. */
typedef struct RfEngineShared {
    pthread_mutex_t lock;
    RfMigrationInfo info;     /* published by the engine, status excluded */
    uint64_t max_bandwidth;   /* live parameters, re-read by the engine */
    uint64_t downtime_limit;
    unsigned max_rounds;
    bool bandwidth_changed;   /* max_bandwidth changed since last read */
} RfEngineShared;

/* Publishes the engine's figures for rf_migration_query (info->size and
 * status are left alone). */
void rf_engine_publish(RfEngineShared *sh, const RfMigrationInfo *info);

/* ---- the engine's entry points (migrate.c, incoming.c) ----------------
 *
 * Blocking; the handle (handle.c) runs them on the migration thread.
 * Tests call them directly. */

/*! RfMigrateOptions : source-side options besides the parameters. */
typedef struct RfMigrateOptions {
    bool verify;                 /* compare block digests at the end */
    unsigned timeout_ms;         /* peer silence before failing; 0 = 30000 */
    atomic_int *cancel;          /* set non-zero to cancel; may be NULL */
    /* TCP keepalive idle seconds and TCP_USER_TIMEOUT ms on every TCP
     * connection; 0 = derived from timeout_ms (rf_engine_conn_setup). */
    unsigned tcp_keepalive_s, tcp_user_timeout_ms;
    /* Called at each status change (setup, active, device); the end
     * statuses are the handle's to decide. */
    void (*status)(RfStatus st, void *opaque);
    /* Called about 4 times a second from the migration thread. */
    void (*progress)(const RfProgress *p, void *opaque);
    /* Called before each round's dirty sync (round is 1-based); tests use
     * it to rewrite pages every round. */
    void (*round_start)(unsigned round, void *opaque);
    /* Called to stop and restart whatever writes the source's memory, for
     * the final round and after a failure.  May be NULL. */
    void (*pause)(void *opaque);
    void (*resume)(void *opaque);
    /* Called once while paused, after the last dirty sync: the device
     * state (e.g. vCPU registers) to send to the destination, malloc'd
     * (the engine frees it), at most 1 MiB.  May be NULL: no state. */
    bool (*save_state)(void *opaque, uint8_t **buf, size_t *len,
                       RfError **errp);
    /* Auto-converge (QEMU's capability, off by default): while a round
     * does not converge, the engine raises the throttle (20%, then +10%
     * per round up to 99%) through this hook; 0 when done. */
    bool auto_converge;
    void (*throttle)(unsigned pct, void *opaque);
    /* 'auto': receives its decision log as a JSON object (malloc'd; the
     * caller frees the previous one).  May be NULL. */
    char **auto_json;
    /* A connected main channel to use instead of connecting to the URI
     * (the data channels then connect to its peer); owned by the engine.
     * May be NULL. */
    RfConn *main_conn;
    /* TLS credentials for every connection (the caller's; NULL =
     * plaintext).  With TLS, each data channel proves it belongs to the
     * main channel's session (RF_CAP_TLS_BINDING). */
    RfSecure *secure;
    /* Shared with the handle; may be NULL. */
    RfEngineShared *shared;
    void *opaque;
} RfMigrateOptions;

/*! RfIncomingOptions : destination-side options. */
typedef struct RfIncomingOptions {
    /* Expected method; empty = accept the source's choice. */
    char expect_method[RF_METHOD_NAME_MAX + 1];
    unsigned expect_channels;    /* 0 = accept the source's count */
    unsigned timeout_ms;         /* 0 = 30000 */
    atomic_int *cancel;
    unsigned tcp_keepalive_s, tcp_user_timeout_ms; /* as the source's */
    void (*status)(RfStatus st, void *opaque);
    /* About 4 times a second, and when a round's SYNC completed. */
    void (*progress)(const RfProgress *p, void *opaque);
    void (*round_done)(unsigned round, void *opaque);
    /* Called once the socket listens, with the actual URI (port 0 is
     * replaced by the port chosen). */
    void (*listening)(const char *uri, void *opaque);
    /* Called with the source's device state (STATE message), before
     * COMPLETE is sent; failing it fails the migration.  May be NULL:
     * then a STATE message is refused. */
    bool (*load_state)(void *opaque, const uint8_t *buf, size_t len,
                       RfError **errp);
    /* A listener and/or an accepted main channel to use instead of
     * listening at the URI; owned by the engine.  May be NULL. */
    RfListener *listener;
    RfConn *main_conn;
    /* TLS credentials and peer filter (the caller's; NULL = plaintext,
     * any peer).  Without TLS, listening on an address other hosts can
     * reach is refused unless `insecure`. */
    RfSecure *secure;
    bool insecure;
    /* Refuse a source announcing more memory than this; 0 = the sink's
     * own limit only. */
    uint64_t max_memory;
    double max_cpu;              /* cores for the process, 0 = no limit */
    /* Called on the migration thread for each connection dropped before
     * or during the handshake (filter, TLS, bad hello, stray data
     * channel), with its peer and the reason.  May be NULL. */
    void (*rejected)(const char *peer, const char *why, void *opaque);
    RfEngineShared *shared;
    void *opaque;
} RfIncomingOptions;

/* Migrates src to the destination at uri (or opts->main_conn).  Blocks.
 * On failure or cancel, src's memory is untouched and its writers
 * resumed.  @return true on success, false with an error. */
bool rf_migrate(const char *uri, RfRamSource *src, const RfParams *params,
                const RfMigrateOptions *opts, RfReport *report,
                RfError **errp);

/* Listens at uri (or uses opts->listener / main_conn), accepts one
 * migration and writes it into sink.  Blocks. */
bool rf_incoming(const char *uri, RfRamSink *sink,
                 const RfIncomingOptions *opts, RfReport *report,
                 RfError **errp);


/* ---- main channel messages (mainchan.c) ------------------------------- */

/* " (the peer speaks TLS: ...)" when the first two bytes that arrived
 * where a message header was expected are a TLS record's, else "". */
const char *rf_msg_tls_hint(const uint8_t raw[2]);
/* Sends one framed message. */
bool rf_msg_send(RfConn *c, RfMsgType type, const void *payload,
                 uint32_t len, RfError **errp);
/* Gives a connection the engine's limits: the stall limit timeout_ms
 * (per whole call, per frame on the main channel, per packet on a data
 * channel), the cancel flag its waits watch, and on TCP keepalive (idle
 * keepalive_s, 0 = half the timeout, at least 1 s) and TCP_USER_TIMEOUT
 * (user_timeout_ms, 0 = the timeout), so a partition is noticed within
 * about the timeout even by an idle socket. */
bool rf_engine_conn_setup(RfConn *c, unsigned timeout_ms, atomic_int *cancel,
                          unsigned keepalive_s, unsigned user_timeout_ms,
                          RfError **errp);

/* Sends an ERROR message carrying err's kind and text (best effort). */
void rf_msg_send_error(RfConn *c, const RfError *err);
/* Waits up to ms for the main channel to become readable (or closed).
 * @return true if a read would not block. */
bool rf_msg_ready(RfConn *c, int ms);
/* Reads one framed message into buf (cap >= RF_MSG_MAX_PAYLOAD is always
 * enough); header and payload together must arrive within c->timeout_ms.  An ERROR message from the peer is turned into an error with
 * the peer's kind and "<peer> reported: <message>". */
bool rf_msg_recv(RfConn *c, const char *peer, RfMsgHdr *hdr, uint8_t *buf,
                 size_t cap, RfError **errp);
/* After a failure: waits up to wait_ms for the peer's ERROR message, which
 * usually explains the failure better than a reset connection.
 * @return that error ("<peer> reported: ..."), or NULL. */
RfError *rf_msg_peer_error(RfConn *c, const char *peer, int wait_ms);
/* After a failure: if *err is unset or only says that our own I/O failed
 * (the peer closed while we sent a progress message), the peer's ERROR
 * message, when one is waiting or comes within wait_ms, replaces it. */
void rf_msg_explain_failure(RfConn *c, const char *peer, int wait_ms,
                            RfError **err);
/* The binding a data channel sends after its hello (RF_CAP_TLS_BINDING):
 * the TLS exporter of the main channel `main` for session and channel. */
bool rf_chan_binding(RfConn *main, const uint8_t session[16],
                     unsigned channel, uint8_t out[RF_CHAN_BINDING_SIZE],
                     RfError **errp);
/* Reads one message and checks it has type `want`. */
bool rf_msg_expect(RfConn *c, const char *peer, RfMsgType want, uint8_t *buf,
                   size_t cap, uint32_t *len, RfError **errp);

/* ---- reconnect (reconnect.c, docs/protocol.md 5.1) -------------------- */

/* A channel hello with its binding (without the generation). */
#define RF_CHAN_OPEN_MAX (RF_CHAN_HELLO_SIZE + RF_CHAN_BINDING_SIZE)

/* What a source channel needs to open a replacement connection: set up
 * by the migration thread before the channels start, read-only after. */
typedef struct RfRejoin {
    char uri[RF_URI_CAP];
    RfSecure *secure;
    unsigned timeout_ms, keepalive_s, user_timeout_ms;
    size_t hello_len;                    /* bytes of each hello[] */
    uint8_t hello[255][RF_CHAN_OPEN_MAX];
} RfRejoin;

/* The source's RfRejoinFn (channel.h), ctx an RfRejoin: connects,
 * sends channel ch's hello with generation gen, reads RESUME. */
RfConn *rf_engine_rejoin(void *ctx, unsigned ch, uint32_t gen,
                         atomic_int *cancel, uint64_t *next_seq,
                         RfError **errp);

#endif
