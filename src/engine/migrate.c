/*
 * ramflow - the source side of a migration.
 *
 *   connect main channel -> HELLO -> ACCEPT -> open data channels
 *   round 1: every page; round r > 1: pages dirtied since round r - 1
 *   after each round: SYNC on every data channel, ROUND on the main one
 *   when the dirty pages left fit downtime-limit at the measured rate (or
 *   after max-rounds): pause the writers, last round, FINAL syncs, END
 *   wait for COMPLETE (with digests when verifying)
 *
 * The source's memory is only ever read.  On failure or cancel the writers
 * are resumed, an ERROR goes to the destination, and the first error is
 * returned.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <stdatomic.h>

#include "channel/channel.h"
#include "compress/method.h"
#include "engine/engine.h"
#include "engine/stats.h"
#include "ram/ram.h"
#include "util/bitmap.h"
#include "util/clock.h"
#include "util/digest.h"
#include "wire/bytes.h"

typedef struct Source {
    /* fixed after setup */
    const RfParams *params;
    const RfMigrateOptions *opts;
    RfRamSource *src;
    const RfMethodOps *method;
    unsigned timeout_ms;
    unsigned nblocks;
    const RfRamBlock *blocks[RF_MAX_BLOCKS];
    uint8_t *hosts[RF_MAX_BLOCKS];
    RfSourceFile files[RF_MAX_BLOCKS]; /* where the channels may pread */
    bool any_file;                     /* some block has a file */
    uint64_t *bitmaps[RF_MAX_BLOCKS];
    uint64_t ram_bytes;
    RfConn *main;
    RfSendGroup *group;
    uint8_t session[16];
    uint64_t caps; /* capabilities negotiated in ACCEPT (RF_CAP() bits) */
    /* progress of the migration thread */
    double t0, cpu0, thread_cpu0, last_tick, last_auto;
    uint64_t last_tick_wire;
    uint64_t sent_pages, round_left;
    unsigned round;
    bool paused;
    bool tracking;
    uint32_t acked_round; /* the destination passed this round's SYNC */
    /* live parameters (read_live) */
    uint64_t downtime_limit;
    unsigned max_rounds;
    RfReport *rep;
    double setup_s;
    uint64_t precopy_bytes; /* data-channel bytes when the source paused */
    RfRejoin *rejoin;       /* 'reconnect' negotiated: how to reconnect */
    /* multifd-compression 'auto': `method` is what a destination without
     * 'packet-method' gets; with it, the selector picks per packet */
    bool auto_asked, auto_on;
    RfAutoConfig autocfg;
    char auto_note[160];
} Source;

static void set_status(Source *s, RfStatus st)
{
    if (s->opts->status) {
        s->opts->status(st, s->opts->opaque);
    }
}

/* Parameters the handle may change while we run (QEMU's live ones). */
static void read_live(Source *s)
{
    RfEngineShared *sh = s->opts->shared;
    if (!sh) {
        return;
    }
    pthread_mutex_lock(&sh->lock);
    s->downtime_limit = sh->downtime_limit;
    s->max_rounds = sh->max_rounds;
    bool bw = sh->bandwidth_changed;
    uint64_t rate = sh->max_bandwidth;
    sh->bandwidth_changed = false;
    pthread_mutex_unlock(&sh->lock);
    if (bw && s->group) {
        rf_send_group_set_bandwidth(s->group, rate);
    }
}

/* What rf_migration_query shows, from the migration thread's figures. */
static void publish(Source *s, double now, double mbps)
{
    if (!s->opts->shared) {
        return;
    }
    RfChanStats st = {0};
    if (s->group) {
        rf_send_group_stats(s->group, &st);
    }
    RfMigrationInfo i = {
        .is_source = true,
        .pass = s->round,
        .total_time_ms = (uint64_t)((now - s->t0) * 1000),
        .setup_time_ms = (uint64_t)(s->setup_s * 1000),
        .expected_downtime_ms = (uint64_t)s->rep->expected_downtime_ms,
        .ram_total = s->ram_bytes,
        .ram_transferred = st.wire_bytes + (s->main ? rf_conn_bytes_out(s->main) : 0),
        .ram_remaining = s->round_left * RF_PAGE_SIZE,
        .ram_duplicate = st.zero_pages,
        .ram_normal = st.normal_pages,
        .ram_normal_bytes = st.normal_pages * RF_PAGE_SIZE,
        .ram_mbps = mbps,
        .ram_pages_per_second =
            now > s->t0 ? (double)s->sent_pages / (now - s->t0) : 0,
        .dirty_sync_count = s->round > 1 ? s->round - 1 : 0,
        .dirty_pages_rate = s->rep->dirty_pages_rate,
        .precopy_bytes = s->paused ? s->precopy_bytes
                                   : st.wire_bytes,
    };
    rf_engine_publish(s->opts->shared, &i);
}

static void source_resume(Source *s)
{
    if (s->paused && s->opts->resume) {
        s->opts->resume(s->opts->opaque);
    }
    s->paused = false;
}

/* Every connection gets the stall limit, the cancel flag and TCP
 * liveness before its first message. */
static bool conn_setup(Source *s, RfConn *c, RfError **errp)
{
    return rf_engine_conn_setup(c, s->timeout_ms, s->opts->cancel,
                                s->opts->tcp_keepalive_s,
                                s->opts->tcp_user_timeout_ms, errp);
}

/* 'auto' after the ACCEPT: the candidates the destination decodes (its
 * extension record), or, without 'packet-method', the fixed fallback. */
static bool auto_setup(Source *s, const RfAccept *acc, RfError **errp)
{
    if (!s->auto_asked) {
        return true;
    }
    if (!(acc->caps & RF_CAP(RF_CAP_PACKET_METHOD))) {
        snprintf(s->auto_note, sizeof(s->auto_note), "the destination "
                 "cannot decode per-packet methods: fixed %s",
                 s->method->name);
        return true;
    }
    uint16_t len = 0;
    const uint8_t *rec = rf_wire_ext_find(&acc->ext, RF_CAP_PACKET_METHOD,
                                          &len);
    uint32_t mask = UINT32_C(1) << RF_METHOD_NONE;
    if (rec && len == RF_EXT_METHODS_SIZE) {
        mask |= get_u32(rec);
    }
    if (!rf_auto_candidates(s->params, mask, &s->autocfg, errp)) {
        return false;
    }
    s->auto_on = true;
    return true;
}

static bool open_main(Source *s, const char *uri, RfError **errp)
{
    if (s->opts->main_conn) {
        /* The caller's socket: limits before the TLS handshake. */
        RfConn *inner = s->opts->main_conn;
        inner->timeout_ms = s->timeout_ms;
        inner->cancel = s->opts->cancel;
        s->main = rf_secure_tls(s->opts->secure)
                      ? rf_secure_client_wrap(s->opts->secure, inner, NULL,
                                              errp)
                      : inner;
    } else {
        s->main = rf_secure_connect(s->opts->secure, uri, s->timeout_ms,
                                    s->opts->cancel, errp);
    }
    if (!s->main || !conn_setup(s, s->main, errp)) {
        rf_error_prefix(errp, "main channel");
        return false;
    }
    bool tls = rf_conn_security(s->main) != NULL;
    RfHello *h = calloc(1, sizeof(*h));
    RfAccept *acc = calloc(1, sizeof(*acc));
    uint8_t *buf = malloc(RF_MSG_MAX_PAYLOAD);
    bool ok = h && acc && buf;
    if (!ok) {
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory");
        goto out;
    }
    h->version = RF_WIRE_VERSION;
    h->page_size = RF_PAGE_SIZE;
    h->method = s->method->id;
    h->level = (uint8_t)rf_params_level(s->params, s->method->level_param);
    h->channels = (uint16_t)s->params->multifd_channels;
    /* Offer everything; require what this migration's options use. */
    /* Over TLS, the data channels must prove they belong to this
     * session; without TLS there is nothing to bind to. */
    /* crc32c (on by default) is offered and required, or neither. */
    uint64_t crc = s->params->crc32c ? RF_CAP(RF_CAP_CRC32C) : 0;
    /* reconnect is offered unless multifd-reconnect-attempts is 0; never
     * required: without it a broken channel fails the migration. */
    uint64_t rec = s->params->multifd_reconnect_attempts
                       ? RF_CAPS_RECONNECT : 0;
    h->caps_supported = (RF_CAPS_IMPLEMENTED & ~RF_CAP(RF_CAP_CRC32C)) |
                        crc | rec | (tls ? RF_CAPS_TLS : 0) |
                        (s->auto_asked ? RF_CAPS_PACKET_METHOD : 0);
    h->caps_required =
        RF_CAPS_SOURCE_NEEDS | crc | (tls ? RF_CAPS_TLS : 0) |
        (s->opts->verify ? RF_CAP(RF_CAP_VERIFY) : 0) |
        (s->opts->save_state ? RF_CAP(RF_CAP_DEVICE_STATE) : 0);
    memcpy(h->session, s->session, sizeof(h->session));
    h->nblocks = s->nblocks;
    for (unsigned i = 0; i < s->nblocks; i++) {
        snprintf(h->blocks[i].name, sizeof(h->blocks[i].name), "%s",
                 s->blocks[i]->name);
        h->blocks[i].size = s->blocks[i]->size;
    }
    size_t n = rf_wire_hello_encode(h, buf, RF_MSG_MAX_PAYLOAD);
    uint32_t len;
    RfError *local = NULL;
    ok = n && rf_msg_send(s->main, RF_MSG_HELLO, buf, (uint32_t)n, &local) &&
         rf_msg_expect(s->main, "destination", RF_MSG_ACCEPT, buf,
                       RF_MSG_MAX_PAYLOAD, &len, &local);
    if (local && !tls && rf_error_kind(local) == RF_ERR_IO) {
        /* A TLS destination drops a plaintext HELLO without a word. */
        rf_error_set(errp, RF_ERR_IO, "%s (the destination closed the "
                     "connection at the handshake: it may use TLS, then "
                     "give this side tls-creds or tls-psk too, or not "
                     "allow this host: allow-peer)", rf_error_msg(local));
        rf_error_free(local);
    } else {
        rf_error_propagate(errp, local);
    }
    ok = ok && rf_wire_accept_decode(buf, len, acc, errp) &&
         rf_wire_caps_check_accept(h->caps_supported, h->caps_required,
                                   acc->caps, errp);
    if (!n) {
        rf_error_set(errp, RF_ERR_GENERIC, "cannot encode the hello");
    }
    s->caps = ok ? acc->caps : 0;
    ok = ok && auto_setup(s, acc, errp);
out:
    free(acc);
    free(h);
    free(buf);
    return ok;
}

/* With 'reconnect': what the channels need to reconnect, filled in as
 * open_channels() builds each hello. */
static bool rejoin_setup(Source *s, const char *uri, RfError **errp)
{
    if (!(s->caps & RF_CAP(RF_CAP_RECONNECT))) {
        return true;
    }
    s->rejoin = calloc(1, sizeof(*s->rejoin));
    if (!s->rejoin) {
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory");
        return false;
    }
    snprintf(s->rejoin->uri, sizeof(s->rejoin->uri), "%s", uri);
    s->rejoin->secure = s->opts->secure;
    s->rejoin->timeout_ms = s->timeout_ms;
    s->rejoin->keepalive_s = s->opts->tcp_keepalive_s;
    s->rejoin->user_timeout_ms = s->opts->tcp_user_timeout_ms;
    return true;
}

static bool open_channels(Source *s, const char *uri, RfError **errp)
{
    unsigned n = s->params->multifd_channels;
    RfConn *conns[255] = {0};
    bool bind = s->caps & RF_CAP(RF_CAP_TLS_BINDING);
    if (!rejoin_setup(s, uri, errp)) {
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        conns[i] = rf_secure_connect(s->opts->secure, uri, s->timeout_ms,
                                     s->opts->cancel, errp);
        if (conns[i] && !conn_setup(s, conns[i], errp)) {
            rf_conn_close(conns[i]);
            conns[i] = NULL;
        }
        uint8_t hello[RF_CHAN_OPEN_MAX + RF_CHAN_GEN_SIZE];
        RfChanHello ch = {.version = RF_WIRE_VERSION, .channel = (uint16_t)i};
        memcpy(ch.session, s->session, sizeof(ch.session));
        rf_wire_chan_hello_encode(&ch, hello);
        size_t len = RF_CHAN_HELLO_SIZE;
        if (conns[i] && bind) {
            if (!rf_chan_binding(s->main, s->session, i,
                                 hello + RF_CHAN_HELLO_SIZE, errp)) {
                rf_conn_close(conns[i]);
                conns[i] = NULL;
            }
            len += RF_CHAN_BINDING_SIZE;
        }
        if (s->rejoin) {
            /* Kept for reconnects: the binding is computed here, on this
             * thread, never on a channel's while the main one is busy. */
            memcpy(s->rejoin->hello[i], hello, len);
            s->rejoin->hello_len = len;
            rf_wire_chan_gen_encode(0, hello + len);
            len += RF_CHAN_GEN_SIZE;
        }
        if (!conns[i] || !rf_conn_send(conns[i], hello, len, errp)) {
            rf_error_prefix(errp, "channel %u", i);
            for (unsigned k = 0; k <= i; k++) {
                rf_conn_close(conns[k]);
            }
            return false;
        }
    }
    RfSendGroupConfig cfg = {
        .conns = conns,
        .n = n,
        .method = s->method,
        .level = rf_params_level(s->params, s->method->level_param),
        .max_bandwidth = s->params->max_bandwidth,
        .block_hosts = s->hosts,
        .block_files = s->any_file ? s->files : NULL,
        .crc32c = s->caps & RF_CAP(RF_CAP_CRC32C),
        .reconnect_attempts = s->rejoin ? s->params->multifd_reconnect_attempts
                                        : 0,
        .reconnect_backoff_ms = s->params->multifd_reconnect_backoff_ms,
        .rejoin = rf_engine_rejoin,
        .rejoin_ctx = s->rejoin,
        .autocfg = s->auto_on ? &s->autocfg : NULL,
        .max_cpu = s->params->max_cpu_milli / 1000.0,
        .cancel = s->opts->cancel,
    };
    s->group = rf_send_group_new(&cfg, errp);
    return s->group != NULL;
}

static uint64_t wire_bytes(Source *s)
{
    RfChanStats st;
    rf_send_group_stats(s->group, &st);
    return st.wire_bytes + rf_conn_bytes_out(s->main);
}

/* The destination's STATS: only with 'packet-method', for the selector. */
static bool take_stats(Source *s, const uint8_t *buf, uint32_t len,
                       RfError **errp)
{
    if (!(s->caps & RF_CAP(RF_CAP_PACKET_METHOD))) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "main channel: STATS from the "
                     "destination without capability 'packet-method'");
        return false;
    }
    RfStats st;
    if (!rf_wire_stats_decode(buf, len, &st, errp)) {
        rf_error_prefix(errp, "main channel");
        return false;
    }
    RfAutoSel *sel = s->group ? rf_send_group_autosel(s->group) : NULL;
    if (sel) {
        rf_autosel_peer(sel, &st);
    }
    return true;
}

/* Reads what the destination sent on the main channel, waiting up to
 * wait_ms for the first message: ROUND_ACKs advance acked_round; anything
 * else before COMPLETE is an error (usually its ERROR). */
static bool read_acks(Source *s, int wait_ms, RfError **errp)
{
    while (rf_msg_ready(s->main, wait_ms)) {
        RfMsgHdr h;
        uint8_t buf[4200];
        uint32_t r;
        if (!rf_msg_recv(s->main, "destination", &h, buf, sizeof(buf),
                         errp)) {
            return false;
        }
        if (h.type == RF_MSG_STATS) {
            if (!take_stats(s, buf, h.length, errp)) {
                return false;
            }
            wait_ms = 0;
            continue;
        }
        if (h.type != RF_MSG_ROUND_ACK) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "main channel: unexpected message type %u from the "
                         "destination", h.type);
            return false;
        }
        if (!rf_wire_round_decode(buf, h.length, &r, errp)) {
            return false;
        }
        if (r > s->acked_round) {
            s->acked_round = r;
            if (s->group) {
                rf_send_group_acked(s->group, r);
            }
        }
        wait_ms = 0;
    }
    return true;
}

static bool check_cancel(Source *s, RfError **errp)
{
    if (s->opts->cancel && atomic_load(s->opts->cancel)) {
        rf_error_set(errp, RF_ERR_CANCELLED, "migration cancelled");
        return false;
    }
    return !rf_send_group_failed(s->group);
}

#define AUTO_TICK_S 0.01

/* The round's pages left, counted at the share of normal (not zero)
 * pages among those sent so far: 'auto' predicts the end from rates of
 * normal-page bytes, and counted whole, the zero pages of a zero-heavy
 * image made its prediction 3.6 times the actual time. */
static uint64_t normal_bytes_left(Source *s)
{
    RfChanStats st = {0};
    rf_send_group_stats(s->group, &st);
    uint64_t seen = st.normal_pages + st.zero_pages;
    double share = seen ? (double)st.normal_pages / (double)seen : 1.0;
    return (uint64_t)((double)s->round_left * share * RF_PAGE_SIZE);
}

static bool tick(Source *s, RfError **errp)
{
    if (!check_cancel(s, errp)) {
        return false;
    }
    double now = rf_now();
    RfAutoSel *sel = rf_send_group_autosel(s->group);
    if (sel && now - s->last_auto >= AUTO_TICK_S) {
        /* 'auto' decides on windows shorter than the progress interval
         * (its own clock, which also says when a window is due), with
         * the destination's latest STATS.  Asked every 50 ms, a
         * decision came up to 50 ms after it was due (and the STATS
         * read as late): at the start, on a 1 Gbit/s link, up to 6 MB
         * more raw pages. */
        s->last_auto = now;
        if (!read_acks(s, 0, errp)) {
            return false;
        }
        if (rf_autosel_due(sel)) {
            rf_autosel_tick(sel, normal_bytes_left(s));
        }
    }
    if (now - s->last_tick < 0.25) {
        return true;
    }
    if (!read_acks(s, 0, errp)) {
        return false;
    }
    read_live(s);
    uint64_t wire = wire_bytes(s);
    char choice[48] = "";
    if (sel) {
        rf_autosel_describe(sel, choice, sizeof(choice));
    }
    if (s->opts->progress) {
        RfProgress p = {
            .is_source = true,
            .round = s->round,
            .total_bytes = s->ram_bytes,
            .sent_pages = s->sent_pages,
            .remaining_pages = s->round_left,
            .wire_bytes = wire,
            .elapsed_s = now - s->t0,
            .throughput_bps = (double)(wire - s->last_tick_wire) * 8 /
                              (now - s->last_tick),
            .method = sel ? choice : NULL,
        };
        s->opts->progress(&p, s->opts->opaque);
    }
    publish(s, now, (double)(wire - s->last_tick_wire) * 8 / 1e6 /
                        (now - s->last_tick));
    s->last_tick = now;
    s->last_tick_wire = wire;
    return true;
}

/* Collects the dirty pages of every block into the bitmaps.
 * @return the number of dirty pages. */
static bool sync_dirty(Source *s, uint64_t *count, RfError **errp)
{
    *count = 0;
    for (unsigned b = 0; b < s->nblocks; b++) {
        if (!rf_ram_source_dirty_sync(s->src, b, s->bitmaps[b], errp)) {
            return false;
        }
        *count += rf_bitmap_count(s->bitmaps[b],
                                  s->blocks[b]->size / RF_PAGE_SIZE);
    }
    return true;
}

/* Sends every page marked in the bitmaps, in batches of up to 128 pages
 * of one block, clearing the bitmaps. */
static bool send_round(Source *s, uint64_t dirty, RfError **errp)
{
    uint32_t idx[RF_PACKET_MAX_PAGES];
    s->round_left = dirty;
    for (unsigned b = 0; b < s->nblocks; b++) {
        uint64_t pages = s->blocks[b]->size / RF_PAGE_SIZE;
        uint64_t *map = s->bitmaps[b];
        uint32_t n = 0;
        for (uint64_t p = rf_bitmap_next(map, pages, 0); p < pages;
             p = rf_bitmap_next(map, pages, p + 1)) {
            idx[n++] = (uint32_t)p;
            if (n == RF_PACKET_MAX_PAGES) {
                if (!rf_send_group_queue(s->group, b, idx, n, s->round) ||
                    !tick(s, errp)) {
                    return false;
                }
                s->sent_pages += n;
                s->round_left -= n;
                n = 0;
            }
        }
        if (n) {
            if (!rf_send_group_queue(s->group, b, idx, n, s->round)) {
                return false;
            }
            s->sent_pages += n;
            s->round_left -= n;
        }
        memset(map, 0, rf_bitmap_words(pages) * sizeof(uint64_t));
    }
    return true;
}

/* The device state (vCPUs) goes on the main channel before END; the
 * destination loads it while the last pages land. */
static bool send_state(Source *s, RfReport *rep, RfError **errp)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (!s->opts->save_state(s->opts->opaque, &buf, &len, errp)) {
        rf_error_prefix(errp, "saving the device state");
        return false;
    }
    if (len > RF_MSG_MAX_PAYLOAD) {
        free(buf);
        rf_error_set(errp, RF_ERR_GENERIC,
                     "device state of %zu bytes exceeds the %u-byte limit",
                     len, RF_MSG_MAX_PAYLOAD);
        return false;
    }
    bool ok = rf_msg_send(s->main, RF_MSG_STATE, buf, (uint32_t)len, errp);
    free(buf);
    rep->state_bytes = len;
    return ok;
}

static bool send_round_end(Source *s, bool final, RfReport *rep,
                           RfError **errp)
{
    if (!rf_send_group_sync(s->group, s->round, final)) {
        return false;
    }
    if (final && s->opts->save_state && !send_state(s, rep, errp)) {
        return false;
    }
    uint8_t buf[16];
    size_t n = final ? rf_wire_end_encode(s->round, s->opts->verify, buf,
                                          sizeof(buf))
                     : rf_wire_round_encode(s->round, buf, sizeof(buf));
    return rf_msg_send(s->main, final ? RF_MSG_END : RF_MSG_ROUND, buf,
                       (uint32_t)n, errp);
}

/* Waits until the destination has passed round r's SYNC, watching for
 * cancel, channel failures and a silent peer. */
static bool wait_acked(Source *s, uint32_t r, RfError **errp)
{
    double start = rf_now();
    while (s->acked_round < r) {
        if (!check_cancel(s, errp) || !read_acks(s, 20, errp)) {
            return false;
        }
        if (rf_now() - start > s->timeout_ms / 1000.0) {
            rf_error_set(errp, RF_ERR_TIMEOUT,
                         "the destination did not confirm round %u within "
                         "%u ms", r, s->timeout_ms);
            return false;
        }
    }
    return true;
}

/* Auto-converge: a round that did not fit raises the throttle. */
static void throttle_up(Source *s, RfReport *rep)
{
    if (!s->opts->auto_converge || !s->opts->throttle) {
        return;
    }
    unsigned pct = rep->throttle_pct ? rep->throttle_pct + 10 : 20;
    rep->throttle_pct = pct > 99 ? 99 : pct;
    s->opts->throttle(rep->throttle_pct, s->opts->opaque);
}

/* Runs the rounds.  Sets rep->rounds, converged, and the pause time. */
static bool run_rounds(Source *s, RfReport *rep, double *paused_at,
                       RfError **errp)
{
    double rate = 0; /* pages per second of the last round */
    uint64_t prev_dirty = 0; /* pages sent in the previous round */
    double last_sync = rf_now();
    for (s->round = 1;; s->round++) {
        publish(s, rf_now(), 0);
        if (s->opts->round_start) {
            s->opts->round_start(s->round, s->opts->opaque);
        }
        if (!check_cancel(s, errp)) {
            return false;
        }
        uint64_t dirty = 0;
        bool final = false;
        if (s->round == 1) {
            last_sync = rf_now();
            for (unsigned b = 0; b < s->nblocks; b++) {
                rf_bitmap_fill(s->bitmaps[b],
                               s->blocks[b]->size / RF_PAGE_SIZE);
            }
            dirty = s->ram_bytes / RF_PAGE_SIZE;
            prev_dirty = dirty;
        } else {
            if (!sync_dirty(s, &dirty, errp)) {
                return false;
            }
            double now = rf_now();
            rep->dirty_pages_rate = (double)dirty / (now - last_sync);
            last_sync = now;
            double expect_ms = rate > 0 ? (double)dirty / rate * 1000 : 0;
            read_live(s);
            double limit = (double)s->downtime_limit;
            rep->expected_downtime_ms = expect_ms;
            rep->converged = expect_ms <= limit;
            /* Beyond QEMU's rule (stop as soon as it fits): while each
             * round at least halves the dirty set, one more short round
             * costs little and divides the downtime, so keep going until
             * the estimate is a quarter of the limit. */
            bool shrinking = dirty * 2 < prev_dirty;
            final = (rep->converged && !(shrinking && expect_ms > limit / 4))
                    || s->round > s->max_rounds;
            prev_dirty = dirty;
            if (!final) {
                throttle_up(s, rep);
            }
        }
        if (final) {
            /* Let the previous round drain first (ROUND_ACK), so the
             * pause covers only the last pages. */
            if (!wait_acked(s, s->round - 1, errp)) {
                return false;
            }
            /* Stop the writers, then pick up what they wrote since. */
            *paused_at = rf_now();
            RfChanStats st;
            rf_send_group_stats(s->group, &st);
            s->precopy_bytes = st.wire_bytes;
            set_status(s, RF_STATUS_DEVICE);
            if (s->opts->pause) {
                s->opts->pause(s->opts->opaque);
            }
            s->paused = true;
            uint64_t more;
            if (!sync_dirty(s, &more, errp)) {
                return false;
            }
            dirty = more;
        }
        double t = rf_now();
        if (!send_round(s, dirty, errp) ||
            !send_round_end(s, final, rep, errp)) {
            return false;
        }
        double dt = rf_now() - t;
        if (dirty && dt > 0) {
            rate = (double)dirty / dt;
        }
        if (final) {
            rep->rounds = s->round;
            return true;
        }
    }
}

/* The CPU this process and its threads used since the migration began. */
static RfCpuFigures cpu_since_start(const Source *s)
{
    return (RfCpuFigures){
        .migration_s = rf_thread_cpu() - s->thread_cpu0,
        .channels_s = rf_send_group_cpu(s->group),
        .process_s = rf_process_cpu() - s->cpu0,
    };
}

/* After END: waits for COMPLETE, compares digests.  Sets *done_at to the
 * moment the destination had everything (digest time excluded) and *cpu
 * to the CPU used until COMPLETE arrived: the digests below are outside
 * the time the report's CPU% is taken over, so their CPU is too. */
static bool finish(Source *s, RfReport *rep, double *done_at,
                   RfCpuFigures *cpu, RfError **errp)
{
    uint8_t mine[RF_MAX_BLOCKS][16];
    if (!rf_send_group_flush(s->group)) {
        return false;
    }
    uint8_t *buf = malloc(RF_MSG_MAX_PAYLOAD);
    RfComplete *c = calloc(1, sizeof(*c));
    uint32_t len;
    bool ok = buf && c;
    /* ROUND_ACKs of the last rounds may still come first. */
    RfMsgHdr h = {.type = RF_MSG_ROUND_ACK};
    while (ok && (h.type == RF_MSG_ROUND_ACK || h.type == RF_MSG_STATS)) {
        ok = rf_msg_recv(s->main, "destination", &h, buf, RF_MSG_MAX_PAYLOAD,
                         errp);
    }
    if (ok && h.type != RF_MSG_COMPLETE) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "main channel: expected COMPLETE from the destination, "
                     "got message type %u", h.type);
        ok = false;
    }
    len = h.length;
    ok = ok && rf_wire_complete_decode(buf, len, c, errp);
    if (ok) {
        *done_at = rf_now() - c->digest_us / 1e6;
        *cpu = cpu_since_start(s);
        rep->recv_cpu_pct = c->recv_cpu_pct;
        rep->dest_memory_warm = c->prefault_warm;
        snprintf(rep->peer_method_detail, sizeof(rep->peer_method_detail),
                 "%s", c->method_detail);
    }
    if (ok && s->opts->verify) {
        /* The source is paused: its memory is what it sent. */
        for (unsigned b = 0; b < s->nblocks; b++) {
            rf_digest(s->hosts[b], s->blocks[b]->size, 2, mine[b]);
        }
        if (c->ndigests != s->nblocks) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "COMPLETE carries %u digests for %u blocks",
                         c->ndigests, s->nblocks);
            ok = false;
        }
        for (unsigned b = 0; ok && b < s->nblocks; b++) {
            if (memcmp(mine[b], c->digests[b], 16) != 0) {
                rf_error_set(errp, RF_ERR_VERIFY,
                             "verify: block '%s' differs on the destination "
                             "(XXH3-128 digests disagree)",
                             s->blocks[b]->name);
                ok = false;
            }
        }
        rep->verified = ok;
    }
    free(buf);
    free(c);
    return ok;
}

/* When channels fail, the destination usually said why on the main
 * channel: prefer its message to our "connection reset". */
static void explain_failure(Source *s, RfError **errp)
{
    RfError *local = NULL;
    if (s->group) {
        rf_send_group_take_error(s->group, &local);
    }
    /* After a cancel the operator wants out: no wait for its reason. */
    bool cancel = s->opts->cancel && atomic_load(s->opts->cancel);
    rf_msg_explain_failure(s->main, "destination",
                           local && !cancel ? 2000 : 0, errp);
    rf_error_propagate(errp, local);
}

/* 'auto': the summary line in the report, the whole log for the caller
 * (rf_migration_auto_json). */
static void auto_report(Source *s, RfReport *rep, double total_s)
{
    RfAutoSel *sel = rf_send_group_autosel(s->group);
    snprintf(rep->auto_summary, sizeof(rep->auto_summary), "%s",
             s->auto_note);
    if (!sel) {
        return;
    }
    rf_autosel_finish(sel, total_s);
    rf_autosel_summary(sel, rep->auto_summary, sizeof(rep->auto_summary));
    if (s->opts->auto_json) {
        size_t n = rf_autosel_json(sel, NULL, 0) + 1;
        char *j = malloc(n);
        if (j) {
            rf_autosel_json(sel, j, n);
            free(*s->opts->auto_json);
            *s->opts->auto_json = j;
        }
    }
}

static bool setup(Source *s, const char *uri, RfRamSource *src,
                  const RfParams *params, const RfMigrateOptions *opts,
                  RfError **errp)
{
    s->params = params;
    s->opts = opts;
    s->src = src;
    s->timeout_ms = opts->timeout_ms ? opts->timeout_ms
                                     : RF_DEFAULT_TIMEOUT_MS;
    s->downtime_limit = params->downtime_limit;
    s->max_rounds = params->max_rounds;
    if (!rf_params_check(params, errp)) {
        return false;
    }
    s->auto_asked = strcmp(params->multifd_compression, "auto") == 0;
    /* 'auto' facing a destination without per-packet methods: zstd
     * (level multifd-zstd-level) shrinks most memory at little cost. */
    s->method = s->auto_asked ? rf_method_find("zstd") : NULL;
    if (!s->method) {
        s->method = rf_method_find(s->auto_asked ? "none"
                                                 : params->multifd_compression);
    }
    if (!rf_ram_source_check(src, errp)) {
        return false;
    }
    s->nblocks = src->ops->block_count(src);
    for (unsigned b = 0; b < s->nblocks; b++) {
        s->blocks[b] = src->ops->block(src, b);
        s->hosts[b] = s->blocks[b]->host;
        s->files[b].name = s->blocks[b]->name;
        s->files[b].fd = rf_ram_source_fd(src, b, &s->files[b].offset);
        s->any_file |= s->files[b].fd >= 0;
        s->ram_bytes += s->blocks[b]->size;
        uint64_t words = rf_bitmap_words(s->blocks[b]->size / RF_PAGE_SIZE);
        s->bitmaps[b] = calloc(words ? words : 1, sizeof(uint64_t));
        if (!s->bitmaps[b]) {
            rf_error_set(errp, RF_ERR_GENERIC, "out of memory for bitmaps");
            return false;
        }
    }
    if (getrandom(s->session, sizeof(s->session), 0) !=
        (ssize_t)sizeof(s->session)) {
        for (unsigned i = 0; i < sizeof(s->session); i++) {
            s->session[i] = (uint8_t)(rand() ^ (int)(rf_now() * 1e6));
        }
    }
    s->t0 = rf_now();
    s->cpu0 = rf_process_cpu();
    s->thread_cpu0 = rf_thread_cpu();
    s->last_tick = s->t0;
    char peer[300];
    if (s->opts->main_conn) {
        /* The data channels go where the caller's socket goes. */
        if (!rf_conn_peer_uri(s->opts->main_conn, peer, sizeof(peer),
                              errp)) {
            rf_conn_close(s->opts->main_conn);
            return false;
        }
        uri = peer;
    }
    if (!open_main(s, uri, errp) || !open_channels(s, uri, errp) ||
        !rf_ram_source_dirty_start(src, errp)) {
        return false;
    }
    s->tracking = true;
    return true;
}

bool rf_migrate(const char *uri, RfRamSource *src, const RfParams *params,
                const RfMigrateOptions *opts, RfReport *rep, RfError **errp)
{
    static const RfMigrateOptions no_opts;
    Source s = {0};
    RfReport local_rep;
    RfError *err = NULL;
    double paused_at = 0;
    if (!rep) {
        rep = &local_rep;
    }
    memset(rep, 0, sizeof(*rep));
    rep->size = sizeof(*rep);
    rep->is_source = true;
    if (!opts) {
        opts = &no_opts;
    }
    s.opts = opts; /* set_status reads it before setup() runs */
    s.rep = rep;
    s.opts = opts;
    set_status(&s, RF_STATUS_SETUP);
    bool ok = setup(&s, uri, src, params, opts, &err);
    double setup_done = rf_now();
    s.setup_s = setup_done - s.t0;
    if (ok) {
        set_status(&s, RF_STATUS_ACTIVE);
    }
    double end = 0;
    RfCpuFigures cpu = {0};
    ok = ok && run_rounds(&s, rep, &paused_at, &err) &&
         finish(&s, rep, &end, &cpu, &err);

    if (!ok) {
        explain_failure(&s, &err);
        /* A cancel may surface first as a channel's "cancelled while
         * sending": the operator asked for it, say so plainly. */
        if (opts->cancel && atomic_load(opts->cancel)) {
            rf_error_free(err);
            err = NULL;
            rf_error_set(&err, RF_ERR_CANCELLED, "migration cancelled");
        }
        if (!err) {
            rf_error_set(&err, RF_ERR_GENERIC, "migration failed");
        }
        if (s.main) {
            rf_msg_send_error(s.main, err);
        }
        if (s.group) {
            RfError *why = NULL;
            rf_error_set(&why, rf_error_kind(err), "%s", rf_error_msg(err));
            rf_send_group_abort(s.group, why);
        }
        source_resume(&s);
    } else {
        RfChanStats st;
        rf_send_group_stats(s.group, &st);
        rf_stats_fill_report(rep, &st, rf_conn_bytes_out(s.main) + rf_conn_bytes_in(s.main),
                             end - s.t0);
        rep->send_cpu_pct = rf_stats_fill_cpu(rep, end - s.t0, &cpu);
        rep->setup_time_s = setup_done - s.t0;
        rep->precopy_bytes = s.precopy_bytes;
        rep->downtime_ms = (end - paused_at) * 1000;
        rep->ram_bytes = s.ram_bytes;
        rep->channels = params->multifd_channels;
        snprintf(rep->method, sizeof(rep->method), "%s",
                 s.auto_on ? "auto" : s.method->name);
        snprintf(rep->method_detail, sizeof(rep->method_detail), "%s",
                 rf_send_group_describe(s.group));
        auto_report(&s, rep, end - s.t0);
    }
    if (rep->throttle_pct && opts->throttle) {
        opts->throttle(0, opts->opaque);
    }
    if (s.tracking) {
        rf_ram_source_dirty_stop(src);
    }
    snprintf(rep->security, sizeof(rep->security), "%s",
             s.main && rf_conn_security(s.main) ? rf_conn_security(s.main)
                                                : "none");
    rf_send_group_free(s.group);
    free(s.rejoin);
    rf_conn_close(s.main);
    for (unsigned b = 0; b < s.nblocks; b++) {
        free(s.bitmaps[b]);
    }
    rf_error_propagate(errp, err);
    return ok;
}
