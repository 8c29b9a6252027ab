/*
 * ramflow - the destination side of a migration.
 *
 *   listen -> accept main channel -> HELLO: check version, method, layout
 *   prepare memory (pre-faulting starts in the background) -> ACCEPT
 *   accept the data channels (hello: session, unique id) -> wait for the
 *   memory to be warm -> receiver threads run
 *   main thread: ROUND messages, END, then wait for every FINAL sync,
 *   digests if asked, COMPLETE
 *
 * Any failure (bad packet on a channel, peer gone, cancel) is sent to the
 * source as ERROR on the main channel, naming the channel and field.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>

#include "channel/channel.h"
#include "compress/method.h"
#include "engine/engine.h"
#include "engine/stats.h"
#include "ram/ram.h"
#include "util/clock.h"
#include "util/digest.h"
#include "util/hostcpu.h"
#include "wire/bytes.h"

typedef struct Dest {
    const RfIncomingOptions *opts;
    RfRamSink *sink;
    unsigned timeout_ms;
    RfListener *listener;
    RfConn *main;
    RfHello *hello;
    uint64_t caps; /* capabilities negotiated in ACCEPT (RF_CAP() bits) */
    const RfMethodOps *method;
    RfRecvGroup *group;
    RfConn *conns[255];
    uint64_t block_pages[RF_MAX_BLOCKS];
    uint8_t *hosts[RF_MAX_BLOCKS];
    RfStoreBlock store[RF_MAX_BLOCKS]; /* how the receivers write them */
    bool prepared;
    bool warm;
    uint32_t final_round;
    bool verify;
    double t0, cpu0, thread_cpu0;
    double paused_at;     /* STATE or END arrived: the source is paused */
    uint32_t acked_round; /* last ROUND_ACK sent */
    double last_stats;    /* when the last STATS went */
    uint8_t *msgbuf;      /* RF_MSG_MAX_PAYLOAD bytes for main messages */
    uint64_t ram_bytes;
    double setup_s, last_tick;
    uint64_t last_wire;
    unsigned rejected;    /* connections dropped by the engine itself */
    uint64_t alive_bytes; /* bytes_in() when it last moved ... */
    double alive_at;      /* ... and when */
    uint32_t gen[255];    /* 'reconnect': each channel's last generation */
    unsigned rejoin_strays; /* strays while the channels ran */
} Dest;

/* A stray connection never gets more than this to send its hello, so
 * one that stalls cannot hold the accept loop for the whole timeout. */
#define HELLO_WAIT_MAX_MS 10000u

/* Stray connections tolerated while the data channels are accepted,
 * besides the deadline: a flood ends the migration instead of spinning. */
#define MAX_STRAY_CHANNELS 64u

static atomic_int *cancel_ptr(Dest *d)
{
    return d->opts->cancel;
}

static bool cancelled(Dest *d, RfError **errp)
{
    if (d->opts->cancel && atomic_load(d->opts->cancel)) {
        rf_error_set(errp, RF_ERR_CANCELLED, "migration cancelled");
        return true;
    }
    return false;
}

/* Drops a connection that is not (yet) part of this migration: closes
 * it, counts it and tells the caller why. */
static void reject(Dest *d, RfConn *c, const char *why)
{
    char peer[RF_URI_CAP];
    if (!c || !rf_conn_peer_uri(c, peer, sizeof(peer), NULL)) {
        snprintf(peer, sizeof(peer), "unknown");
    }
    rf_conn_close(c);
    d->rejected++;
    if (d->opts->rejected) {
        d->opts->rejected(peer, why, d->opts->opaque);
    }
}

/* Every connection gets the stall limit, the cancel flag and TCP
 * liveness before its first read. */
static bool conn_setup(Dest *d, RfConn *c, RfError **errp)
{
    return rf_engine_conn_setup(c, d->timeout_ms, cancel_ptr(d),
                                d->opts->tcp_keepalive_s,
                                d->opts->tcp_user_timeout_ms, errp);
}

static unsigned hello_wait_ms(const Dest *d)
{
    return d->timeout_ms < HELLO_WAIT_MAX_MS ? d->timeout_ms
                                             : HELLO_WAIT_MAX_MS;
}

static void set_status(Dest *d, RfStatus st)
{
    if (d->opts->status) {
        d->opts->status(st, d->opts->opaque);
    }
}

/* Progress on the destination: the hook and rf_migration_query, about
 * four times a second. */
static void dest_tick(Dest *d, bool force)
{
    double now = rf_now();
    if (!d->group || (!force && now - d->last_tick < 0.25)) {
        return;
    }
    RfChanStats st;
    rf_recv_group_stats(d->group, &st);
    uint64_t wire = st.wire_bytes + rf_conn_bytes_in(d->main);
    double dt = now - d->last_tick;
    double bps = dt > 0 ? (double)(wire - d->last_wire) * 8 / dt : 0;
    uint64_t pages = st.normal_pages + st.zero_pages;
    if (d->opts->progress) {
        RfProgress p = {
            .is_source = false,
            .round = rf_recv_group_round(d->group) + 1,
            .total_bytes = d->ram_bytes,
            .sent_pages = pages,
            .wire_bytes = wire,
            .elapsed_s = now - d->t0,
            .throughput_bps = bps,
        };
        d->opts->progress(&p, d->opts->opaque);
    }
    if (d->opts->shared) {
        RfMigrationInfo i = {
            .is_source = false,
            .pass = rf_recv_group_round(d->group) + 1,
            .total_time_ms = (uint64_t)((now - d->t0) * 1000),
            .setup_time_ms = (uint64_t)(d->setup_s * 1000),
            .ram_total = d->ram_bytes,
            .ram_transferred = wire,
            .ram_duplicate = st.zero_pages,
            .ram_normal = st.normal_pages,
            .ram_normal_bytes = st.normal_pages * RF_PAGE_SIZE,
            .ram_mbps = bps / 1e6,
            .ram_pages_per_second = now > d->t0 ? pages / (now - d->t0) : 0,
            .dirty_sync_count = rf_recv_group_round(d->group),
        };
        rf_engine_publish(d->opts->shared, &i);
    }
    d->last_tick = now;
    d->last_wire = wire;
}

static bool check_hello(Dest *d, RfError **errp)
{
    RfHello *h = d->hello;
    uint64_t total = 0;
    for (unsigned i = 0; i < h->nblocks; i++) {
        total += h->blocks[i].size; /* blocks are < 2^48 each: no wrap */
    }
    if (d->opts->max_memory && total > d->opts->max_memory) {
        rf_error_set(errp, RF_ERR_MISMATCH,
                     "the source announces %" PRIu64 " bytes of memory in %u "
                     "block(s), more than max-memory (%" PRIu64 " bytes)",
                     total, h->nblocks, d->opts->max_memory);
        return false;
    }
    /* Device state needs a VM to load it into. */
    uint64_t supported = RF_CAPS_IMPLEMENTED | RF_CAPS_RECONNECT |
                         RF_CAPS_PACKET_METHOD |
                         (rf_conn_security(d->main) ? RF_CAPS_TLS : 0);
    if (!d->opts->load_state) {
        supported &= ~RF_CAP(RF_CAP_DEVICE_STATE);
    }
    /* A destination told its method takes exactly that one in every
     * packet; 'auto' (or nothing) takes whatever each packet names. */
    if (d->opts->expect_method[0] &&
        strcmp(d->opts->expect_method, "auto") != 0) {
        supported &= ~RF_CAPS_PACKET_METHOD;
    }
    RfError *local = NULL;
    if (!rf_wire_caps_negotiate(h->caps_supported, h->caps_required,
                                supported, RF_CAPS_DEST_NEEDS, &d->caps,
                                &local)) {
        bool vm = h->caps_required & ~supported &
                  RF_CAP(RF_CAP_DEVICE_STATE);
        rf_error_set(errp, rf_error_kind(local), "%s%s", rf_error_msg(local),
                     vm ? " (the source migrates a VM; this destination "
                          "has none to load its state into: use 'incoming "
                          "--guest')" : "");
        rf_error_free(local);
        return false;
    }
    d->method = rf_method_by_id(h->method);
    const char *name = rf_method_name_for_id(h->method);
    if (!d->method) {
        char list[128] = "";
        for (const char *const *n = rf_method_names(); *n; n++) {
            strncat(list, *n, sizeof(list) - strlen(list) - 3);
            if (n[1]) {
                strcat(list, ", ");
            }
        }
        if (name) {
            rf_error_set(errp, RF_ERR_MISMATCH,
                         "the source uses multifd-compression '%s', which "
                         "this destination's ramflow is built without "
                         "(available: %s)", name, list);
        } else {
            rf_error_set(errp, RF_ERR_MISMATCH,
                         "hello field 'method': unknown method byte %u "
                         "(available: %s)", h->method, list);
        }
        return false;
    }
    /* 'auto' expects packets naming their method, whatever the hello's. */
    bool expect_auto = strcmp(d->opts->expect_method, "auto") == 0;
    if (expect_auto && !(d->caps & RF_CAP(RF_CAP_PACKET_METHOD))) {
        rf_error_set(errp, RF_ERR_MISMATCH,
                     "multifd-compression mismatch: the destination expects "
                     "'auto', the source uses '%s' for every packet",
                     d->method->name);
        return false;
    }
    if (d->opts->expect_method[0] && !expect_auto &&
        strcmp(d->opts->expect_method, d->method->name) != 0) {
        rf_error_set(errp, RF_ERR_MISMATCH,
                     "multifd-compression mismatch: the destination expects "
                     "'%s', the source uses '%s'", d->opts->expect_method,
                     d->method->name);
        return false;
    }
    if (d->opts->expect_channels &&
        d->opts->expect_channels != h->channels) {
        rf_error_set(errp, RF_ERR_MISMATCH,
                     "multifd-channels mismatch: the destination expects %u, "
                     "the source uses %u", d->opts->expect_channels,
                     h->channels);
        return false;
    }
    return true;
}

static bool prepare_memory(Dest *d, RfError **errp)
{
    RfRamBlock *layout = calloc(d->hello->nblocks, sizeof(*layout));
    if (!layout) {
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory");
        return false;
    }
    for (unsigned i = 0; i < d->hello->nblocks; i++) {
        memcpy(layout[i].name, d->hello->blocks[i].name,
               sizeof(layout[i].name));
        layout[i].size = d->hello->blocks[i].size;
    }
    bool ok = d->sink->ops->prepare(d->sink, layout, d->hello->nblocks, errp);
    free(layout);
    if (!ok) {
        return false;
    }
    d->prepared = true;
    for (unsigned i = 0; i < d->hello->nblocks; i++) {
        d->hosts[i] = d->sink->ops->host(d->sink, i);
        d->block_pages[i] = d->hello->blocks[i].size / RF_PAGE_SIZE;
        d->ram_bytes += d->hello->blocks[i].size;
        if (!d->hosts[i]) {
            rf_error_set(errp, RF_ERR_GENERIC, "sink '%s' gave no memory for "
                         "block '%s'", d->sink->ops->name ? d->sink->ops->name
                         : "custom", d->hello->blocks[i].name);
            return false;
        }
        RfStoreBlock *sb = &d->store[i];
        sb->name = d->hello->blocks[i].name;
        sb->host = d->hosts[i];
        sb->pages = d->block_pages[i];
        sb->fd = rf_ram_sink_fd(d->sink, i, &sb->fd_offset);
        sb->zeroed = rf_ram_sink_zeroed(d->sink, i);
    }
    return true;
}

/* Reads the first message of a new main channel within a bounded wait.
 * @return 1 if it is a HELLO frame (in buf, *len bytes), 0 if the
 * connection is not a ramflow source (*why says what it sent), -1 on a
 * fatal error. */
static int read_hello(Dest *d, RfConn *c, uint8_t *buf, uint32_t *len,
                      char *why, size_t cap)
{
    unsigned keep = c->timeout_ms;
    c->timeout_ms = hello_wait_ms(d);
    rf_conn_frame_begin(c); /* the whole HELLO within that wait */
    uint8_t raw[RF_MSG_HDR_SIZE];
    RfMsgHdr hdr;
    RfError *err = NULL;
    int r = 0;
    if (!rf_conn_recv(c, raw, sizeof(raw), &err) ||
        !rf_wire_msg_hdr_decode(raw, &hdr, &err)) {
        snprintf(why, cap, "no ramflow hello: %s%s", rf_error_msg(err),
                 err && rf_error_kind(err) == RF_ERR_PROTOCOL
                     ? rf_msg_tls_hint(raw) : "");
    } else if (hdr.type != RF_MSG_HELLO || hdr.length > RF_MSG_MAX_PAYLOAD) {
        snprintf(why, cap, "first message is type %u of %u bytes, not a "
                 "HELLO", hdr.type, hdr.length);
    } else if (!rf_conn_recv(c, buf, hdr.length, &err)) {
        snprintf(why, cap, "HELLO cut short: %s", rf_error_msg(err));
    } else {
        *len = hdr.length;
        r = 1;
    }
    /* Cancel is the operator's: it ends the wait, not just this peer. */
    if (err && rf_error_kind(err) == RF_ERR_CANCELLED) {
        r = -1;
    }
    rf_error_free(err);
    rf_conn_frame_end(c);
    c->timeout_ms = keep;
    return r;
}

/* Waits for the source: the first connection that (through the secure
 * listener: passed the peer filter and TLS) sends a HELLO frame.  Anything
 * else (a port scanner, a banner, a stalled client) is dropped and the
 * wait goes on. */
static bool accept_main(Dest *d, uint8_t *buf, uint32_t *len, RfError **errp)
{
    if (d->opts->main_conn) {
        /* The caller's socket: limits before the TLS handshake. */
        d->opts->main_conn->timeout_ms = d->timeout_ms;
        d->opts->main_conn->cancel = cancel_ptr(d);
        d->main = rf_secure_tls(d->opts->secure)
                      ? rf_secure_server_wrap(d->opts->secure,
                                              d->opts->main_conn, errp)
                      : d->opts->main_conn;
        if (!d->main || !conn_setup(d, d->main, errp)) {
            return false;
        }
        char why[300];
        if (read_hello(d, d->main, buf, len, why, sizeof(why)) != 1) {
            if (cancelled(d, errp)) {
                return false;
            }
            rf_error_set(errp, RF_ERR_PROTOCOL, "main channel: %s", why);
            return false;
        }
        return true;
    }
    for (;;) {
        RfConn *c = rf_listener_accept(d->listener, 0, cancel_ptr(d), errp);
        if (!c) {
            return false;
        }
        if (!conn_setup(d, c, errp)) {
            rf_conn_close(c);
            return false;
        }
        char why[300];
        int r = read_hello(d, c, buf, len, why, sizeof(why));
        if (r == 1) {
            d->main = c;
            return true;
        }
        reject(d, c, why);
        if (cancelled(d, errp)) {
            return false;
        }
    }
}

/* Main channel: HELLO in, ACCEPT out (or ERROR with the reason).  Only
 * now, with a peer that authenticated (TLS) and announced a layout that
 * passed the checks, does the sink touch any file or memory. */
static bool handshake(Dest *d, RfError **errp)
{
    uint8_t *buf = malloc(RF_MSG_MAX_PAYLOAD);
    d->hello = calloc(1, sizeof(*d->hello));
    if (!buf || !d->hello) {
        free(buf);
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory");
        return false;
    }
    uint32_t len = 0;
    if (!accept_main(d, buf, &len, errp)) {
        free(buf);
        return false;
    }
    d->t0 = rf_now();
    d->cpu0 = rf_process_cpu();
    d->thread_cpu0 = rf_thread_cpu();
    RfError *err = NULL;
    bool ok = rf_wire_hello_decode(buf, len, d->hello, &err) &&
              check_hello(d, &err) && prepare_memory(d, &err);
    free(buf);
    if (!ok) {
        rf_error_prefix(&err, "handshake");
        rf_error_propagate(errp, err);
        return false;
    }
    d->verify = d->hello->caps_required & RF_CAP(RF_CAP_VERIFY);
    RfAccept acc = {.caps = d->caps};
    if (d->caps & RF_CAP(RF_CAP_PACKET_METHOD)) {
        /* The methods this destination decodes, for 'auto' to choose
         * from. */
        uint8_t mask[RF_EXT_METHODS_SIZE];
        put_u32(mask, rf_recv_methods_mask());
        rf_wire_ext_add(&acc.ext, RF_CAP_PACKET_METHOD, mask, sizeof(mask));
    }
    uint8_t out[32];
    size_t n = rf_wire_accept_encode(&acc, out, sizeof(out));
    return rf_msg_send(d->main, RF_MSG_ACCEPT, out, (uint32_t)n, errp);
}

/* A first connection has generation 0; a replacement's must be above
 * its channel's last, so a replayed or stale reconnect hello cannot take
 * a channel back. */
static bool gen_wrong(const Dest *d, bool rejoin, unsigned ch, uint32_t gen)
{
    return rejoin ? ch < 255 && gen <= d->gen[ch] : gen != 0;
}

/* Reads a data channel's hello (and binding, over TLS; and generation,
 * with 'reconnect') within a bounded wait.  A first connection
 * (rejoin false) must have generation 0 and a channel id not seen yet; a
 * replacement (rejoin true) a generation above the channel's last.
 * @return the channel index, or -1 with *why set. */
static int read_chan_hello(Dest *d, RfConn *c, bool rejoin, char *why,
                           size_t cap)
{
    bool bind = d->caps & RF_CAP(RF_CAP_TLS_BINDING);
    bool rec = d->caps & RF_CAP(RF_CAP_RECONNECT);
    uint8_t raw[RF_CHAN_HELLO_SIZE + RF_CHAN_BINDING_SIZE + RF_CHAN_GEN_SIZE];
    size_t len = RF_CHAN_HELLO_SIZE + (bind ? RF_CHAN_BINDING_SIZE : 0);
    size_t gen_at = len;
    len += rec ? RF_CHAN_GEN_SIZE : 0;
    unsigned n = d->hello->channels;
    RfChanHello h;
    RfError *err = NULL;
    int ch = -1;
    if (!conn_setup(d, c, &err)) {
        snprintf(why, cap, "%s", rf_error_msg(err));
        rf_error_free(err);
        return -1;
    }
    c->timeout_ms = hello_wait_ms(d);
    bool got = rf_conn_recv(c, raw, len, &err);
    uint32_t gen = got && rec ? rf_wire_chan_gen_decode(raw + gen_at) : 0;
    if (!got || !rf_wire_chan_hello_decode(raw, &h, &err)) {
        snprintf(why, cap, "data channel hello: %s", rf_error_msg(err));
    } else if (memcmp(h.session, d->hello->session, sizeof(h.session))) {
        snprintf(why, cap, "data channel hello: field 'session' does not "
                 "match the main channel's session");
    } else if (rec && gen_wrong(d, rejoin, h.channel, gen)) {
        snprintf(why, cap, "data channel hello: generation %u %s", gen,
                 rejoin ? "does not follow the channel's last (a replayed "
                          "or stale reconnect)"
                        : "before the channels all arrived (a reconnect "
                          "is accepted only once they have)");
    } else if (h.channel >= n || (!rejoin && d->conns[h.channel])) {
        snprintf(why, cap, "data channel hello: field 'channel': %u is %s "
                 "(channels 0-%u)", h.channel,
                 h.channel >= n ? "out of range" : "a duplicate", n - 1);
    } else if (bind) {
        uint8_t want[RF_CHAN_BINDING_SIZE];
        if (!rf_chan_binding(d->main, d->hello->session, h.channel, want,
                             &err)) {
            snprintf(why, cap, "%s", rf_error_msg(err));
        } else if (rf_bytes_differ(want, raw + RF_CHAN_HELLO_SIZE,
                                   sizeof(want))) {
            snprintf(why, cap, "data channel %u: its binding to the main "
                     "channel's TLS session is wrong (not this migration's "
                     "source)", h.channel);
        } else {
            ch = h.channel;
        }
    } else {
        ch = h.channel;
    }
    rf_error_free(err);
    c->timeout_ms = d->timeout_ms;
    if (ch >= 0 && rec) {
        d->gen[ch] = gen;
    }
    return ch;
}

/* 'reconnect': takes a connection waiting on the listener, if any, and
 * hands it to its channel when its hello shows it replaces one of this
 * migration's channels (the same checks as the first time); anything
 * else is a stray, dropped and counted.  After MAX_STRAY_CHANNELS strays
 * no more are accepted (a broken channel then fails the migration).
 * Runs on the migration thread, so callbacks stay there. */
static bool accept_rejoin(Dest *d, RfError **errp)
{
    if (!(d->caps & RF_CAP(RF_CAP_RECONNECT)) || !d->group ||
        d->rejoin_strays >= MAX_STRAY_CHANNELS) {
        return true;
    }
    RfError *err = NULL;
    RfConn *c = rf_secure_accept_poll(d->listener, 1, cancel_ptr(d), &err);
    if (!c) {
        bool cancel = rf_error_kind(err) == RF_ERR_CANCELLED;
        rf_error_free(err);
        return cancel ? !cancelled(d, errp) : true;
    }
    char why[300];
    int ch = read_chan_hello(d, c, true, why, sizeof(why));
    if (ch < 0) {
        reject(d, c, why);
        d->rejoin_strays++;
        return !cancelled(d, errp);
    }
    rf_recv_group_replace(d->group, (unsigned)ch, c);
    return true;
}

/* Accepts the source's data channels.  A connection that is not one of
 * them (a stray, a replay, another session's) is dropped and counted; the
 * migration fails only when the channels do not all arrive within the
 * timeout, or after MAX_STRAY_CHANNELS strays. */
static bool accept_channels(Dest *d, RfError **errp)
{
    unsigned n = d->hello->channels;
    double deadline = rf_now() + d->timeout_ms / 1000.0;
    unsigned strays = 0;
    for (unsigned got = 0; got < n;) {
        double left = deadline - rf_now();
        RfConn *c = left > 0
                        ? rf_listener_accept(d->listener,
                                             (unsigned)(left * 1000) + 1,
                                             cancel_ptr(d), errp)
                        : NULL;
        if (!c) {
            if (left <= 0) {
                rf_error_set(errp, RF_ERR_TIMEOUT, "timed out after %u ms",
                             d->timeout_ms);
            }
            rf_error_prefix(errp, "waiting for data channel %u of %u",
                            got + 1, n);
            return false;
        }
        char why[300];
        int ch = read_chan_hello(d, c, false, why, sizeof(why));
        if (ch < 0) {
            reject(d, c, why);
            if (cancelled(d, errp)) {
                return false;
            }
            if (++strays >= MAX_STRAY_CHANNELS) {
                rf_error_set(errp, RF_ERR_PROTOCOL, "%u stray connections "
                             "while waiting for data channel %u of %u; the "
                             "last: %s", strays, got + 1, n, why);
                return false;
            }
            continue;
        }
        d->conns[ch] = c;
        got++;
    }
    /* The receivers start now, while pre-faulting goes on: it works from
     * the start of memory in chunks, ahead of round 1's mostly ascending
     * writes, on the cores the receivers leave idle. */
    RfRecvGroupConfig cfg = {
        .conns = d->conns,
        .n = n,
        .method = d->method,
        .nblocks = d->hello->nblocks,
        .block_pages = d->block_pages,
        .blocks = d->store,
        .crc32c = d->caps & RF_CAP(RF_CAP_CRC32C),
        .reconnect = d->caps & RF_CAP(RF_CAP_RECONNECT),
        .reconnect_wait_ms = d->timeout_ms,
        .packet_method = d->caps & RF_CAP(RF_CAP_PACKET_METHOD),
        .max_cpu = d->opts->max_cpu,
    };
    d->group = rf_recv_group_new(&cfg, errp);
    memset(d->conns, 0, sizeof(d->conns)); /* owned by the group now */
    return d->group != NULL;
}

/* STATE: the source's device state, for the caller's VM. */
static void source_paused(Dest *d)
{
    if (!d->paused_at) {
        d->paused_at = rf_now();
        set_status(d, RF_STATUS_DEVICE);
    }
}

static bool load_state(Dest *d, const uint8_t *buf, uint32_t len,
                       RfError **errp)
{
    source_paused(d);
    if (!(d->caps & RF_CAP(RF_CAP_DEVICE_STATE))) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "main channel: STATE without the negotiated "
                     "capability 'device-state'");
        return false;
    }
    if (!d->opts->load_state) {
        rf_error_set(errp, RF_ERR_MISMATCH,
                     "the source sent %u bytes of device state (a VM) but "
                     "this destination has no VM to load it into (use "
                     "'incoming --guest')", len);
        return false;
    }
    if (!d->opts->load_state(d->opts->opaque, buf, len, errp)) {
        rf_error_prefix(errp, "loading the device state");
        return false;
    }
    return true;
}

/* Tells the source when every channel has passed a round's SYNC: it
 * waits for that before pausing, so the downtime does not include draining
 * the previous round from the sockets. */
static bool ack_rounds(Dest *d, RfError **errp)
{
    uint32_t r = rf_recv_group_round(d->group);
    if (r <= d->acked_round) {
        return true;
    }
    uint8_t buf[8];
    size_t n = rf_wire_round_encode(r, buf, sizeof(buf));
    d->acked_round = r;
    if (d->opts->round_done) {
        d->opts->round_done(r, d->opts->opaque);
    }
    return rf_msg_send(d->main, RF_MSG_ROUND_ACK, buf, (uint32_t)n, errp);
}

/* With 'packet-method', every 20 ms in the first quarter second, every
 * 50 ms in the rest of the first second and every 100 ms after it: the
 * STATS message, from which the source's 'auto' learns this side's CPU
 * and costs.  The first one is its baseline; 'auto' decides first when
 * a later one has come.  At 50 ms the second came 0.085-0.13 s into a
 * 1 Gbit/s migration (the first waits for this side's channels and its
 * busy start): the first decision then went without it, 0.1 s in. */
static bool send_stats(Dest *d, RfError **errp)
{
    if (!(d->caps & RF_CAP(RF_CAP_PACKET_METHOD)) || !d->group) {
        return true;
    }
    double now = rf_now();
    double age = now - d->t0;
    if (now - d->last_stats < (age < 0.25 ? 0.02 : age < 1.0 ? 0.05 : 0.1)) {
        return true;
    }
    d->last_stats = now;
    RfStats st = {0};
    rf_recv_group_peer_stats(d->group, &st);
    st.wall_ns = (uint64_t)((now - d->t0) * 1e9);
    st.cpu_ns = (uint64_t)((rf_process_cpu() - d->cpu0) * 1e9);
    rf_host_cpu(&st.host_idle_ns, &st.host_total_ns);
    st.ncpus = rf_host_ncpus();
    st.running = rf_host_running();
    st.max_cpu_milli = (uint32_t)(d->opts->max_cpu * 1000 + 0.5);
    uint8_t buf[256];
    size_t n = rf_wire_stats_encode(&st, buf, sizeof(buf));
    return !n || rf_msg_send(d->main, RF_MSG_STATS, buf, (uint32_t)n, errp);
}

/* Bytes received so far on every channel, main included. */
static uint64_t bytes_in(Dest *d)
{
    RfChanStats st;
    rf_recv_group_stats(d->group, &st);
    return st.wire_bytes + rf_conn_bytes_in(d->main);
}

/* The main thread's deadline: fails once no byte has come on any channel
 * for the timeout.  The channels' own reads have per-packet deadlines,
 * but a channel that passed FINAL reads no more, and the main channel is
 * quiet while data flows: this covers "every channel done, END or the
 * last FINAL never comes". */
static bool source_alive(Dest *d, const char *waiting, RfError **errp)
{
    uint64_t now_bytes = bytes_in(d);
    double now = rf_now();
    if (now_bytes != d->alive_bytes || !d->alive_at) {
        d->alive_bytes = now_bytes;
        d->alive_at = now;
        return true;
    }
    if ((now - d->alive_at) * 1000 < d->timeout_ms) {
        return true;
    }
    rf_error_set(errp, RF_ERR_TIMEOUT, "no data from the source on any "
                 "channel for %u ms while waiting for %s", d->timeout_ms,
                 waiting);
    return false;
}

/* Follows the main channel until END, watching the channels and cancel. */
static bool run(Dest *d, RfError **errp)
{
    uint8_t *buf = d->msgbuf;
    for (;;) {
        if (!ack_rounds(d, errp) || !send_stats(d, errp)) {
            return false;
        }
        if (cancelled(d, errp) || rf_recv_group_failed(d->group) ||
            !source_alive(d, "END", errp) || !accept_rejoin(d, errp)) {
            return false;
        }
        dest_tick(d, false);
        if (!rf_msg_ready(d->main, 10)) {
            continue;
        }
        RfMsgHdr h;
        if (!rf_msg_recv(d->main, "source", &h, buf, RF_MSG_MAX_PAYLOAD,
                         errp)) {
            return false;
        }
        if (h.type == RF_MSG_STATE) {
            if (!load_state(d, buf, h.length, errp)) {
                return false;
            }
        } else if (h.type == RF_MSG_ROUND) {
            uint32_t r;
            if (!rf_wire_round_decode(buf, h.length, &r, errp)) {
                return false;
            }
        } else if (h.type == RF_MSG_END) {
            source_paused(d);
            if (!rf_wire_end_decode(buf, h.length, &d->final_round,
                                    &d->verify, errp)) {
                return false;
            }
            if (d->verify && !(d->caps & RF_CAP(RF_CAP_VERIFY))) {
                rf_error_set(errp, RF_ERR_PROTOCOL,
                             "END asks for digests without the negotiated "
                             "capability 'verify'");
                return false;
            }
            return true;
        } else {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "main channel: unexpected message type %u from the "
                         "source", h.type);
            return false;
        }
    }
}

/* Waits for every channel's FINAL sync, then answers COMPLETE. */
static bool complete(Dest *d, RfReport *rep, RfError **errp)
{
    while (!rf_recv_group_wait(d->group, 20)) {
        if (rf_recv_group_failed(d->group) || cancelled(d, errp) ||
            !source_alive(d, "the channels' FINAL sync", errp) ||
            !accept_rejoin(d, errp)) {
            return false;
        }
        dest_tick(d, false);
    }
    /* After the data, not before: a cancel or a silent source must not
     * wait for the whole pre-fault, which by now has little left. */
    d->warm = rf_ram_sink_wait_ready(d->sink);
    if (rf_recv_group_round(d->group) != d->final_round) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "END names round %u but the channels' FINAL sync was "
                     "round %u", d->final_round, rf_recv_group_round(d->group));
        return false;
    }
    RfComplete *c = calloc(1, sizeof(*c));
    uint8_t *buf = malloc(RF_MSG_MAX_PAYLOAD);
    if (!c || !buf) {
        free(c);
        free(buf);
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory");
        return false;
    }
    /* Everything has landed: the migration is complete here.  Digests
     * come after, and their time is reported so the source can leave it
     * out of the downtime. */
    double end = rf_now();
    /* CPU up to the same moment: the digests are outside the time the
     * report's CPU% is taken over. */
    RfCpuFigures cpu = {
        .migration_s = rf_thread_cpu() - d->thread_cpu0,
        .channels_s = rf_recv_group_cpu(d->group),
        .prefault_s = d->sink->prefault_cpu_s,
        .process_s = rf_process_cpu() - d->cpu0,
    };
    if (d->verify) {
        c->ndigests = d->hello->nblocks;
        for (unsigned b = 0; b < d->hello->nblocks; b++) {
            rf_digest(d->hosts[b], d->hello->blocks[b].size, 2,
                      c->digests[b]);
        }
        c->digest_us = (uint32_t)((rf_now() - end) * 1e6);
    }
    rep->dest_downtime_ms = (end - d->paused_at) * 1000;
    RfChanStats st;
    rf_recv_group_stats(d->group, &st);
    rf_stats_fill_report(rep, &st, rf_conn_bytes_in(d->main) + rf_conn_bytes_out(d->main),
                         end - d->t0);
    rep->recv_cpu_pct = rf_stats_fill_cpu(rep, end - d->t0, &cpu);
    rep->rounds = d->final_round;
    rep->ram_bytes = 0;
    for (unsigned b = 0; b < d->hello->nblocks; b++) {
        rep->ram_bytes += d->hello->blocks[b].size;
    }
    rep->channels = d->hello->channels;
    rep->dest_memory_warm = d->warm;
    snprintf(rep->method, sizeof(rep->method), "%s", d->method->name);
    snprintf(rep->method_detail, sizeof(rep->method_detail), "%s",
             rf_recv_group_describe(d->group));
    c->recv_cpu_pct = rep->recv_cpu_pct;
    c->wire_bytes = st.wire_bytes;
    c->prefault_warm = d->warm;
    snprintf(c->method_detail, sizeof(c->method_detail), "%s",
             rep->method_detail);
    size_t n = rf_wire_complete_encode(c, buf, RF_MSG_MAX_PAYLOAD);
    bool ok = n && rf_msg_send(d->main, RF_MSG_COMPLETE, buf, (uint32_t)n,
                               errp);
    free(c);
    free(buf);
    return ok;
}

static bool serve(Dest *d, const char *uri, RfReport *rep, RfError **errp)
{
    set_status(d, RF_STATUS_SETUP);
    RfListener *l = d->opts->listener;
    if (!l) {
        if (!rf_secure_tls(d->opts->secure) && !d->opts->insecure &&
            !rf_uri_is_local(uri)) {
            rf_error_set(errp, RF_ERR_PARAM,
                         "refusing to listen on %s without TLS: anyone who "
                         "reaches it could write this destination's memory "
                         "(set tls-creds or tls-psk, listen on loopback, or "
                         "set insecure to accept the risk)", uri);
            return false;
        }
        l = rf_listen(uri, errp);
    }
    d->listener = l ? rf_secure_listener_wrap(d->opts->secure, l, errp)
                    : NULL;
    if (!d->listener) {
        return false;
    }
    if (d->opts->listening) {
        d->opts->listening(d->listener->uri, d->opts->opaque);
    }
    if (!handshake(d, errp)) {
        return false;
    }
    double setup_start = d->t0;
    if (!accept_channels(d, errp)) {
        return false;
    }
    rep->setup_time_s = rf_now() - setup_start;
    d->setup_s = rep->setup_time_s;
    d->last_tick = rf_now();
    dest_tick(d, true);
    set_status(d, RF_STATUS_ACTIVE);
    bool ok = run(d, errp) && complete(d, rep, errp);
    dest_tick(d, true);
    return ok;
}

bool rf_incoming(const char *uri, RfRamSink *sink,
                 const RfIncomingOptions *opts, RfReport *rep,
                 RfError **errp)
{
    static const RfIncomingOptions no_opts;
    Dest d = {0};
    RfReport local_rep;
    RfError *err = NULL;
    if (!rep) {
        rep = &local_rep;
    }
    memset(rep, 0, sizeof(*rep));
    rep->size = sizeof(*rep);
    d.opts = opts ? opts : &no_opts;
    d.sink = sink;
    d.timeout_ms = d.opts->timeout_ms ? d.opts->timeout_ms
                                      : RF_DEFAULT_TIMEOUT_MS;
    d.msgbuf = malloc(RF_MSG_MAX_PAYLOAD);
    bool ok = d.msgbuf ? serve(&d, uri, rep, &err) : false;
    if (!d.msgbuf) {
        rf_error_set(&err, RF_ERR_GENERIC, "out of memory");
    }
    if (!ok) {
        /* A channel that broke because the source gave up: the source's
         * ERROR message says why. */
        RfError *local = NULL;
        if (d.group) {
            rf_recv_group_take_error(d.group, &local);
        }
        bool cancel = d.opts->cancel && atomic_load(d.opts->cancel);
        rf_msg_explain_failure(d.main, "source", local && !cancel ? 1000 : 0,
                               &err);
        rf_error_propagate(&err, local);
        /* A cancel may surface first as a channel's "cancelled while
         * receiving": the operator asked for it, say so plainly. */
        if (cancel && (!err || rf_error_kind(err) == RF_ERR_CANCELLED) &&
            !strstr(rf_error_msg(err), "cancelled while waiting for a "
                                        "connection")) {
            rf_error_free(err);
            err = NULL;
            rf_error_set(&err, RF_ERR_CANCELLED, "migration cancelled");
        }
        if (!err) {
            rf_error_set(&err, RF_ERR_GENERIC, "migration failed");
        }
        /* Tell the source why, unless it told us. */
        if (d.main && !strstr(rf_error_msg(err), "source reported:")) {
            rf_msg_send_error(d.main, err);
        }
    }
    rep->rejected_connections = d.rejected +
                                rf_secure_rejected(d.opts->secure);
    snprintf(rep->security, sizeof(rep->security), "%s",
             d.main && rf_conn_security(d.main) ? rf_conn_security(d.main)
                                                : "none");
    if (!ok && d.group) {
        /* Marks the group failed, so no channel waits in a barrier. */
        rf_recv_group_abort(d.group, NULL);
    }
    rf_recv_group_free(d.group);
    for (unsigned i = 0; i < 255; i++) {
        rf_conn_close(d.conns[i]);
    }
    if (d.prepared) {
        /* finish(false) stops a pre-fault still running rather than
         * waiting for all of it. */
        if (ok) {
            rf_ram_sink_wait_ready(sink);
        }
        rf_ram_sink_finish(sink, ok);
    }
    rf_conn_close(d.main);
    rf_listener_close(d.listener);
    free(d.hello);
    free(d.msgbuf);
    rf_error_propagate(errp, err);
    return ok;
}
