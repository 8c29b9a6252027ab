/*
 * ramflow - sending side of the data channels.
 *
 * Threading: the engine thread owns job hand-out; each channel has one job
 * slot guarded by the group lock.  A filled slot is marked `busy`; the
 * channel thread processes it without the lock (zero test, compression,
 * vectored send), then clears `busy` and signals the engine.  Jobs on one
 * channel are written in the order they were queued, which is what makes
 * the SYNC packets meaningful.
 *
 * With 'reconnect' (docs/protocol.md 5.1) each channel logs what it sent
 * (resend_log.h); when its connection breaks, during a send or while idle
 * (the destination never writes on a data connection, so anything
 * readable there is its end), the channel's thread reconnects through the
 * engine's rejoin call within the attempts budget and re-sends from the
 * destination's next_seq on.  The engine sees a slow channel, nothing else.
 */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "channel/channel.h"
#include "channel/cpu_budget.h"
#include "channel/resend_log.h"
#include "util/clock.h"
#include "channel/counters.h"
#include "util/failure.h"
#include "util/page_io.h"
#include "util/zero.h"
#include "wire/wire.h"

typedef enum { JOB_PAGES, JOB_SYNC, JOB_QUIT } JobKind;

#define SWEEP_PAGES 64 /* 256 KiB: ratios close to a whole packet's */

typedef struct SendJob {
    JobKind kind;
    uint32_t block;
    uint32_t round;
    bool final;
    uint32_t n;
    uint32_t idx[RF_PACKET_MAX_PAGES];
} SendJob;

typedef struct SendChannel {
    /* fixed after setup */
    RfSendGroup *group;
    unsigned id;
    RfConn *conn;
    void *method_state;
    pthread_t thread;
    RfThreadCpu cpu;           /* CPU time, for the report */
    bool started;
    /* under group->lock */
    bool busy;
    uint64_t bytes_prev; /* bytes sent on connections since replaced */
    SendJob job;
    pthread_cond_t wake;
    /* thread-local while busy */
    uint64_t seq;
    RfResendLog log;     /* 'reconnect': packets not confirmed yet */
    uint32_t gen;        /* connections this channel had, minus one */
    unsigned used;       /* reconnect attempts since `used_since` */
    uint32_t used_since; /* the confirmed round when counting began */
    bool final_sent;     /* wrote its FINAL SYNC: no idle watch after */
    SendJob resend;      /* a logged packet being re-sent */
    uint32_t normal_idx[RF_PACKET_MAX_PAGES + RF_PACKET_MAX_PAGES];
    uint8_t *pages[RF_PACKET_MAX_PAGES];
    /* 'auto': normal pages of the last packet sent, still at pages[]
     * until the next packet is built (start_pace sweeps them) */
    uint32_t last_nn;
    int sched_fd;              /* its schedstat (run delay), -1 unopened */
    double queue_read_at; /* 'auto': its socket queue last read */
    bool start_held; /* start_pace saw its path slow */
    RfStartWaits waits; /* start_pace's, the receive window open */
    uint8_t head[RF_PKT_HDR_SIZE + 4 * RF_PACKET_MAX_PAGES];
    uint8_t *snap; /* with crc32c: a copy of borrowed raw pages */
    uint8_t *rbuf; /* block_files: the packet's pages as read */
    RfSendPayload payload;
    struct iovec iov[RF_PACKET_MAX_PAGES + 1];
    /* 'auto': a send state per candidate, decode states and a buffer for
     * samples, and the run of packets the choice could not shrink */
    void *cand_state[RF_AUTO_MAX_CANDS];
    void *dec_state[RF_AUTO_MAX_CANDS];
    uint8_t *sample_buf;
    unsigned sweeps;
    uint8_t *sample_pages[SWEEP_PAGES];
    unsigned raw_streak, skip_left;
    /* counters, read by the engine with relaxed atomics */
    RfChanCounters count;
} SendChannel;

struct RfSendGroup {
    const RfMethodOps *method;
    int level;
    bool crc; /* 'crc32c' negotiated: every packet carries its CRC */
    uint8_t *const *block_hosts;
    const RfSourceFile *block_files; /* or NULL */
    unsigned n;
    SendChannel *ch;
    RfBwLimit *bw;
    RfFailure failure;
    atomic_bool stop;
    pthread_mutex_t lock;
    pthread_cond_t idle; /* a channel became idle */
    unsigned next;       /* round-robin start for the next job */
    /* 'reconnect' (reconnect_on()) */
    unsigned attempts, backoff_ms;
    RfRejoinFn rejoin;
    void *rejoin_ctx;
    atomic_int *cancel;      /* the migration's */
    atomic_int abort;        /* set with stop: ends a rejoin's I/O */
    atomic_bool finishing;   /* the group is being freed: no reconnect */
    atomic_uint acked;       /* last round the destination confirmed */
    RfAutoSel *sel;          /* 'auto', else NULL */
    unsigned small_left;     /* 'auto': first packets still to cut small */
    unsigned none_cand;      /* 'auto': the index of none */
    RfCpuBudget *budget;     /* max-cpu, else NULL */
    char detail[192];        /* rf_send_group_describe() for 'auto' */
};

static bool reconnect_on(const RfSendGroup *g)
{
    return g->attempts > 0 && g->rejoin;
}

/* The group failed, is being freed, or the migration was cancelled: a
 * reconnecting channel gives up. */
static bool giving_up(RfSendGroup *g)
{
    return atomic_load(&g->stop) || atomic_load(&g->finishing) ||
           (g->cancel && atomic_load(g->cancel));
}

static void fail(RfSendGroup *g, RfError *err)
{
    bool first = rf_failure_set(&g->failure, err);
    if (first) {
        atomic_store(&g->stop, true);
        atomic_store(&g->abort, 1);
    }
    pthread_mutex_lock(&g->lock);
    /* Wake every thread: blocked sends fail, waiters see `stop`.  Under
     * the lock: a reconnecting channel swaps its connection under it. */
    for (unsigned i = 0; first && i < g->n; i++) {
        if (g->ch[i].conn) {
            rf_conn_shutdown(g->ch[i].conn);
        }
    }
    pthread_cond_broadcast(&g->idle);
    for (unsigned i = 0; i < g->n; i++) {
        pthread_cond_broadcast(&g->ch[i].wake);
    }
    pthread_mutex_unlock(&g->lock);
}

/*
 * With 'crc32c': puts the CRC of header, indexes and payload into the
 * header.  A payload that borrows guest pages (raw, straight from guest
 * memory) is copied first and the CRC taken over the copy, page by page
 * while it is in cache: the guest may write a page between the CRC and
 * the send, and the destination would reject that packet as corrupt.
 * Method buffers (compressed output, a method's own copy) do not change.
 */
static void seal_packet(SendChannel *c, uint32_t nn, size_t head_len)
{
    RfSendPayload *pl = &c->payload;
    uint32_t s = rf_wire_crc_begin(c->head);
    s = rf_wire_crc_update(s, c->head + RF_PKT_HDR_SIZE,
                           head_len - RF_PKT_HDR_SIZE);
    if (pl->borrowed) {
        for (uint32_t i = 0; i < nn; i++) {
            uint8_t *dst = c->snap + (size_t)i * RF_PAGE_SIZE;
            memcpy(dst, c->pages[i], RF_PAGE_SIZE);
            s = rf_wire_crc_update(s, dst, RF_PAGE_SIZE);
        }
        rf_payload_raw_buffer(c->snap, nn, pl);
    } else {
        for (int i = 0; i < pl->iovcnt; i++) {
            s = rf_wire_crc_update(s, pl->iov[i].iov_base,
                                   pl->iov[i].iov_len);
        }
    }
    rf_wire_packet_set_crc(c->head, rf_wire_crc_end(s));
}

/* The method, state and level a packet is sent with. */
typedef struct Use {
    const RfMethodOps *m;
    void *state;
    int level;
    unsigned cand; /* 'auto': the candidate */
} Use;

/* 'auto': candidate k's send state on this channel, set up on its first
 * use: a migration that never leaves none (a fast link) pays for no
 * compressor's contexts. */
static bool cand_ready(SendChannel *c, unsigned k, RfError **errp)
{
    const RfAutoCand *a = &rf_autosel_config(c->group->sel)->cands[k];
    if (!c->cand_state[k] &&
        !a->method->send_setup(&c->cand_state[k], a->level, errp)) {
        rf_error_prefix(errp, "%s setup", a->name);
        return false;
    }
    return true;
}

/* A fixed method, or the selector's choice; while the choice failed to
 * shrink the last packets (incompressible data), the next few go raw at
 * once rather than spending CPU on compressing them. */
static bool use_for_packet(SendChannel *c, Use *u, RfError **errp)
{
    RfSendGroup *g = c->group;
    if (!g->sel) {
        *u = (Use){g->method, c->method_state, g->level, 0};
        return true;
    }
    unsigned k = rf_autosel_choice(g->sel);
    if (k == g->none_cand && c->start_held) {
        k = rf_autosel_start_cand(g->sel);
    }
    if (k != g->none_cand && c->skip_left > 0) {
        c->skip_left--;
        k = g->none_cand;
    }
    if (!cand_ready(c, k, errp)) {
        return false;
    }
    const RfAutoCand *a = &rf_autosel_config(g->sel)->cands[k];
    *u = (Use){a->method, c->cand_state[k], a->level, k};
    return true;
}

#define RAW_RUN 4   /* packets that did not shrink, in a row... */
#define RAW_SKIP 8  /* ...send the next this many raw straight away */

static void note_raw_run(SendChannel *c, unsigned cand, bool no_gain)
{
    if (cand == c->group->none_cand) {
        return;
    }
    c->raw_streak = no_gain ? c->raw_streak + 1 : 0;
    if (c->raw_streak >= RAW_RUN) {
        c->raw_streak = 0;
        c->skip_left = RAW_SKIP;
    }
}

/* Compresses the pages with candidate k's state and decodes the result
 * again (into the sample buffer), timing both with the thread's CPU
 * clock.  Nothing of it is sent.  @return false if either failed. */
static bool try_candidate(SendChannel *c, unsigned k, const RfPageList *list,
                          uint32_t *wire, uint64_t *comp_ns,
                          uint64_t *dec_ns)
{
    const RfMethodOps *m = rf_autosel_config(c->group->sel)->cands[k].method;
    RfSendPayload out = {0};
    RfError *err = NULL;
    /* Set up again after a reconnect dropped it (reset_method). */
    if (!cand_ready(c, k, &err) ||
        (!c->dec_state[k] && !m->recv_setup(&c->dec_state[k], &err))) {
        rf_error_free(err);
        return false;
    }
    double t0 = rf_thread_cpu();
    if (!m->send_prepare(c->cand_state[k], list, &out, &err)) {
        rf_error_free(err);
        return false;
    }
    double t1 = rf_thread_cpu();
    *dec_ns = 0;
    if (!out.raw) {
        /* A compressed payload is one buffer (rf_payload_buffer). */
        RfBufReader cur = {.p = out.iov[0].iov_base, .left = out.len};
        RfRecvPayload in = {.len = out.len, .pages = c->sample_pages,
                            .npages = list->npages, .read = rf_buf_read,
                            .read_ctx = &cur};
        if (!m->recv(c->dec_state[k], &in, &err)) {
            rf_error_free(err);
            return false;
        }
        *dec_ns = (uint64_t)((rf_thread_cpu() - t1) * 1e9);
    }
    *wire = out.raw ? list->npages * RF_PAGE_SIZE : out.len;
    *comp_ns = (uint64_t)((t1 - t0) * 1e9);
    return true;
}

/* Runs every candidate once on a few pages of text-like bytes: a
 * codec's first call pays for allocating and filling its tables, which
 * must not be taken for its cost per byte in the first samples. */
static void warm_up(SendChannel *c)
{
    enum { PAGES = 16 };
    static const char words[] = "migration page channel round sync zero ";
    uint8_t *src = c->sample_buf + (size_t)(SWEEP_PAGES - PAGES) *
                                       RF_PAGE_SIZE;
    uint8_t *pages[PAGES];
    for (size_t i = 0; i < (size_t)PAGES * RF_PAGE_SIZE; i++) {
        src[i] = (uint8_t)words[(i * 7 + i / 97) % (sizeof(words) - 1)];
    }
    for (unsigned i = 0; i < PAGES; i++) {
        pages[i] = src + (size_t)i * RF_PAGE_SIZE;
    }
    RfPageList list = {.pages = pages, .npages = PAGES};
    const RfAutoConfig *cfg = rf_autosel_config(c->group->sel);
    for (unsigned k = 0; k < cfg->ncands; k++) {
        uint32_t wire;
        uint64_t comp_ns, dec_ns;
        try_candidate(c, k, &list, &wire, &comp_ns, &dec_ns);
    }
}

/* 'auto': the sample buffer and every candidate's states, on the
 * channel's first sweep, so that a migration that never sweeps (a fast
 * link) pays for none of it.  @return false if something could not be set
 * up: the sweep is skipped, as one that failed would be. */
static bool sampling_ready(SendChannel *c)
{
    if (c->sample_buf) {
        return true;
    }
    const RfAutoConfig *cfg = rf_autosel_config(c->group->sel);
    for (unsigned k = 0; k < cfg->ncands; k++) {
        RfError *err = NULL;
        if (!cand_ready(c, k, &err)) {
            rf_error_free(err);
            return false;
        }
    }
    /* A sweep's pages, no more: each page first touched costs a fault,
     * dear on a nested guest. */
    c->sample_buf = malloc((size_t)SWEEP_PAGES * RF_PAGE_SIZE);
    if (!c->sample_buf) {
        return false;
    }
    /* Touched now, so that the first decodes into it do not pay for
     * faulting it in. */
    memset(c->sample_buf, 0, (size_t)SWEEP_PAGES * RF_PAGE_SIZE);
    for (unsigned i = 0; i < SWEEP_PAGES; i++) {
        c->sample_pages[i] = c->sample_buf + (size_t)i * RF_PAGE_SIZE;
    }
    warm_up(c);
    return true;
}


/*
 * 'auto': now and then (within the selector's CPU share) compresses a few
 * pages of the packet just sent with every candidate but none and
 * decodes the results again, to learn the candidates' ratios and both
 * sides' costs on the data actually migrating, all on the same pages.
 * Nothing of it is sent; a failure only loses that candidate's result.
 */
static void sweep(SendChannel *c, const RfPageList *list)
{
    RfSendGroup *g = c->group;
    if (!rf_autosel_sweep_due(g->sel, c->id)) {
        return;
    }
    double t0 = rf_thread_cpu();
    if (!sampling_ready(c)) {
        return;
    }
    RfPageList part = {.pages = list->pages,
                       .npages = list->npages < SWEEP_PAGES ? list->npages
                                                            : SWEEP_PAGES};
    const RfAutoConfig *cfg = rf_autosel_config(g->sel);
    /* The first candidate of a sweep reads the pages from further out in
     * the cache: each sweep starts with the next one, so that no
     * candidate is always first.  The channel's first sweep only warms up (its codecs' output
     * buffers are touched for the first time): it is not counted. */
    unsigned first = c->sweeps++ % cfg->ncands;
    for (unsigned i = 0; i < cfg->ncands; i++) {
        unsigned k = (first + i) % cfg->ncands;
        uint32_t wire;
        uint64_t comp_ns, dec_ns;
        if (k != g->none_cand &&
            try_candidate(c, k, &part, &wire, &comp_ns, &dec_ns) &&
            c->sweeps > 1) {
            rf_autosel_sampled(g->sel, c->id, k, part.npages * RF_PAGE_SIZE,
                               wire, comp_ns, dec_ns);
        }
    }
    rf_autosel_swept(g->sel, c->id, (uint64_t)((rf_thread_cpu() - t0) * 1e9));
}

/* The job's pages from the block's file into rbuf (page i at slot i).
 * Failures are RF_ERR_GENERIC: RF_ERR_IO would mean a broken connection
 * and start a reconnect, which cannot help a file that cannot be read. */
static bool read_pages(SendChannel *c, const RfSourceFile *f,
                       const SendJob *j, RfError **errp)
{
    RfPageIoFail fail;
    if (rf_page_io(f->fd, f->offset, j->idx, j->n, c->rbuf, false, &fail)) {
        return true;
    }
    rf_error_set(errp, RF_ERR_GENERIC, "block '%s': reading %u pages at "
                 "page %u of the source's file: %s", f->name, fail.npages,
                 fail.page, strerror(fail.err));
    return false;
}

/* 'auto': each channel's first packet (counted over the group) carries
 * at most START_PACKET_PAGES pages.  The first packets go raw, before
 * anything is known of the path: at full size, four channels put 2 MiB
 * of raw pages in their sockets at once, 0.16 s of a 100 Mbit/s link,
 * half of it still queued when the first decision came; small, the
 * start's pacing takes over sooner.  Four small packets per channel were
 * tried and dropped: at 10 Gbit/s, with their extra pacing waits, 16 of
 * 36 zero-heavy runs compressed before the first decision (7 of 36 with
 * one), and at 1 Gbit/s they were no faster. */
#define START_PACKET_PAGES 32

#define START_POLL_US 200
#define RECEIVER_HELD_MIN_S 0.002 /* tcp_info counts in 4 ms ticks */
/* After a packet, tcp_info is read only with this much queued. */
#define RWND_READ_QUEUE (64 * 1024)
/* After the first second the queue and the receive-window time are read
 * at most this often: a zero-heavy image's packets are cheap (some 1,500
 * a second per channel on loopback), and two system calls each would
 * add up. */
#define QUEUE_READ_EVERY_S 0.005

/* True when the receive window limited channel c for more than half of
 * the waited s since tcp_info said rwnd0 (-1: unknown, false). */
static bool receiver_held(SendChannel *c, long long rwnd0, double waited)
{
    if (rwnd0 < 0 || waited < RECEIVER_HELD_MIN_S) {
        return false;
    }
    long long rwnd = rf_conn_rwnd_limited_us(c->conn);
    return rwnd >= rwnd0 && (double)(rwnd - rwnd0) > waited * 1e6 / 2;
}

/* A pacing wait of `waited` s so far, in which channel c's queue drained
 * `drained` bytes: marks the channel start_held once its waits with the
 * receive window open, this one included, show a slow path
 * (rf_start_waits_slow).  Judged while it waits, not only at its end: at
 * 100 Mbit/s a wait lasts longer than the first window.  The mark stays
 * the channel's own: with every channel compressing once one was marked,
 * the first window did not see the link limit, and in 3 of 18 runs at
 * 1 Gbit/s the first decision took none (13-16 MB of raw pages). */
static void note_slow_path(SendChannel *c, long long drained, double waited,
                           long long rwnd0)
{
    if (c->start_held || !rf_start_waits_slow(&c->waits, drained, waited) ||
        receiver_held(c, rwnd0, waited)) {
        return;
    }
    c->start_held = true;
}

/* 'auto', until a decision had every candidate priced: waits while this
 * channel's socket holds more than rf_autosel_start_queue()
 * unacknowledged, so that the pages queued before the link is known (sent
 * raw) stay few; the first decision may then compress what follows.
 * While it waits it offers the last packet's pages to a sweep: time the
 * path holds the channel back costs the migration nothing, and on a slow
 * link a channel's next packet comes a tenth of a second later, after
 * the first decision (the host is busy with the start right after the
 * first packet, so the sweep gate turned that packet's sweep down).
 * Waits whose queue drained slowly (rf_start_waits_slow), the
 * destination's receive window open for most of them, mark the channel
 * start_held (note_slow_path): until the first decision it sends with
 * rf_autosel_start_cand() instead of raw.  A wait the receive window
 * held marks nothing: a destination busy with its start (on loopback a
 * channel waited 25-45 ms for it) is no slow link, and compressing for
 * it would not speed it up.  (Ending such a wait at once was tried: a
 * young connection's window is small, and at 100 Mbit/s channels then
 * left the pacing with 600 KiB queued and sent more raw.)
 * @return the ns waited, counted as time blocked in sending: the sweeps'
 * time is work, not waiting (a channel's first sweep takes some 20 ms,
 * its codecs' states faulted in, and counted as waiting it made a
 * 10 Gbit/s start look held back by the link). */
static uint64_t start_pace(SendChannel *c)
{
    RfSendGroup *g = c->group;
    if (!g->sel || !rf_autosel_starting(g->sel)) {
        return 0;
    }
    double t0 = rf_now(), swept = 0;
    long long q, q0 = -1, rwnd0 = -1;
    while ((q = rf_conn_unsent(c->conn)) >= 0 &&
           (uint64_t)q > rf_autosel_start_queue(g->sel, c->id) &&
           rf_autosel_starting(g->sel) && !giving_up(g)) {
        if (q0 < 0) {
            /* Only a wait needs it: one getsockopt less per packet. */
            q0 = q;
            rwnd0 = rf_conn_rwnd_limited_us(c->conn);
        }
        note_slow_path(c, q0 - q, rf_now() - t0 - swept, rwnd0);
        rf_autosel_queued(g->sel, c->id, (uint64_t)q);
        if (c->last_nn) {
            double s0 = rf_now();
            sweep(c, &(RfPageList){.pages = c->pages,
                                   .npages = c->last_nn});
            swept += rf_now() - s0;
        }
        struct timespec ts = {0, START_POLL_US * 1000};
        nanosleep(&ts, NULL);
    }
    double waited = rf_now() - t0 - swept;
    if (q >= 0 && q0 >= 0 && !c->start_held &&
        !receiver_held(c, rwnd0, waited)) {
        /* note_slow_path's rule with this wait counted, and one read of
         * tcp_info */
        rf_start_waits_add(&c->waits, q0 - q, waited);
        c->start_held = rf_start_waits_slow(&c->waits, 0, 0);
    }
    return waited > 0 ? (uint64_t)(waited * 1e9) : 0;
}

/*
 * Builds and writes one page packet: zero pages become indexes only.
 * Where the block is a file, its pages are read with pread into the
 * channel's own buffer (RfRamSourceOps.fd), the normal ones moved
 * together there, so a method compresses them in place without a gather
 * and a raw payload needs no snapshot for its CRC.
 */
static bool send_pages(SendChannel *c, const SendJob *j, RfError **errp)
{
    RfSendGroup *g = c->group;
    uint8_t *host = g->block_hosts[j->block];
    const RfSourceFile *f = g->block_files ? &g->block_files[j->block]
                                           : NULL;
    bool from_file = f && f->fd >= 0;
    uint32_t nn = 0, nz = 0;
    uint32_t *zero_idx = c->normal_idx + RF_PACKET_MAX_PAGES;
    uint64_t paced_ns = start_pace(c);
    c->last_nn = 0; /* pages[] is rebuilt */

    if (from_file && !read_pages(c, f, j, errp)) {
        return false;
    }
    for (uint32_t i = 0; i < j->n; i++) {
        uint8_t *p = from_file ? c->rbuf + (size_t)i * RF_PAGE_SIZE
                               : host + (uint64_t)j->idx[i] * RF_PAGE_SIZE;
        if (rf_page_is_zero(p)) {
            zero_idx[nz++] = j->idx[i];
            continue;
        }
        if (from_file && nn != i) {
            /* Slot nn held a zero page or one already moved down. */
            memcpy(c->rbuf + (size_t)nn * RF_PAGE_SIZE, p, RF_PAGE_SIZE);
            p = c->rbuf + (size_t)nn * RF_PAGE_SIZE;
        }
        c->pages[nn] = p;
        c->normal_idx[nn++] = j->idx[i];
    }
    /* Normal indexes then zero indexes, contiguous in normal_idx. */
    memmove(c->normal_idx + nn, zero_idx, nz * sizeof(uint32_t));

    RfSendPayload *pl = &c->payload;
    pl->iovcnt = 0;
    pl->len = 0;
    pl->raw = false;
    pl->borrowed = false;
    Use u;
    if (!use_for_packet(c, &u, errp)) {
        return false;
    }
    RfPageList list = {.pages = c->pages, .npages = nn};
    double t_comp = g->sel ? rf_thread_cpu() : 0;
    if (nn) {
        if (!u.m->send_prepare(u.state, &list, pl, errp)) {
            return false;
        }
        /* rbuf does not change under the CRC as guest memory may. */
        pl->borrowed = pl->borrowed && !from_file;
    }
    /* none's prepare only points at the pages: its time goes with the
     * rest of the packet's, one CPU clock read (a system call) less. */
    double t_comp_end = !g->sel ? 0
                        : u.m->id == RF_METHOD_NONE ? t_comp
                                                    : rf_thread_cpu();
    RfPacketHdr h = {
        .version = RF_WIRE_VERSION,
        .method = u.m->id,
        .level = g->sel ? (uint8_t)u.level : 0,
        .flags = pl->raw ? RF_PKT_RAW : 0,
        .block = j->block,
        .normal = (uint16_t)nn,
        .zero = (uint16_t)nz,
        .payload_size = pl->len,
        .round = j->round,
        .seq = c->seq++,
    };
    rf_wire_packet_hdr_encode(&h, c->head);
    size_t head_len = RF_PKT_HDR_SIZE +
        rf_wire_page_index_encode(c->normal_idx, nn + nz,
                                  c->head + RF_PKT_HDR_SIZE);
    if (g->crc) {
        seal_packet(c, nn, head_len);
    }
    c->iov[0].iov_base = c->head;
    c->iov[0].iov_len = head_len;
    memcpy(&c->iov[1], pl->iov, (size_t)pl->iovcnt * sizeof(struct iovec));
    uint64_t total = head_len + pl->len;
    if (g->bw && !rf_bwlimit_consume(g->bw, total, &g->stop)) {
        rf_error_set(errp, RF_ERR_CANCELLED, "stopped");
        return false;
    }
    double w_send = g->sel ? rf_now() : 0;
    double t_send = g->sel ? rf_thread_cpu() : 0;
    /* The write's time off the CPU is 'auto''s sign of a link that holds
     * the source back, but only the part asleep: on a host short of CPU
     * (both ends and the guest on two cores) a write also waits for a
     * CPU, and a loopback migration took that for a 200 MB/s link. */
    double d_send = g->sel ? rf_thread_delay_self(&c->sched_fd) : 0;
    if (!rf_conn_sendv(c->conn, c->iov, pl->iovcnt + 1, errp)) {
        return false;
    }
    rf_chan_count_packet(&c->count, nn, nz, pl->len,
                         pl->raw && u.m->id != RF_METHOD_NONE);
    if (g->sel) {
        double t_end = rf_thread_cpu();
        double queued_for_cpu = rf_thread_delay_self(&c->sched_fd) - d_send;
        double on_cpu_or_asleep = rf_now() - w_send - queued_for_cpu;
        if (rf_autosel_queue_wanted(g->sel, c->id) ||
            w_send - c->queue_read_at >= QUEUE_READ_EVERY_S) {
            c->queue_read_at = w_send;
            long long unsent = rf_conn_unsent(c->conn);
            if (unsent >= 0) {
                rf_autosel_queued(g->sel, c->id, (uint64_t)unsent);
            }
            /* The count is cumulative, so it may be read late: only a
             * queue can be held by the receive window, and a write that
             * blocked returns with one. */
            long long rwnd = unsent < 0 || unsent >= RWND_READ_QUEUE
                                 ? rf_conn_rwnd_limited_us(c->conn) : -1;
            if (rwnd >= 0) {
                rf_autosel_rwnd(g->sel, c->id, (uint64_t)rwnd);
            }
        }
        note_raw_run(c, u.cand, nn > 0 && pl->raw);
        rf_autosel_packet(g->sel, c->id, u.cand, nn * RF_PAGE_SIZE, pl->len,
                          (uint64_t)((t_comp_end - t_comp) * 1e9),
                          (uint64_t)((t_end - t_send) * 1e9),
                          (uint64_t)(fmax(on_cpu_or_asleep, t_end - t_send) * 1e9) +
                              paced_ns,
                          (uint64_t)((t_send - t_comp_end) * 1e9));
        if (nn) {
            sweep(c, &list);
        }
        c->last_nn = nn;
    }
    return rf_cpu_budget_pace(g->budget, &g->stop);
}

static bool send_sync(SendChannel *c, const SendJob *j, RfError **errp)
{
    if (c->group->sel) {
        rf_autosel_round_end(c->group->sel, c->id, j->round);
    }
    RfPacketHdr h = {
        .version = RF_WIRE_VERSION,
        .method = c->group->sel ? RF_METHOD_NONE : c->group->method->id,
        .flags = RF_PKT_SYNC | (j->final ? RF_PKT_FINAL : 0),
        .round = j->round,
        .seq = c->seq++,
    };
    rf_wire_packet_hdr_encode(&h, c->head);
    if (c->group->crc) {
        rf_wire_packet_set_crc(c->head,
                               rf_wire_crc_end(rf_wire_crc_begin(c->head)));
    }
    return rf_conn_send(c->conn, c->head, RF_PKT_HDR_SIZE, errp);
}

static bool send_job(SendChannel *c, const SendJob *j, RfError **errp)
{
    return j->kind == JOB_PAGES ? send_pages(c, j, errp)
                                : send_sync(c, j, errp);
}

/* Waits up to ms (in slices, so a cancel is seen within 100 ms).
 * @return false if the channel should give up instead. */
static bool backoff(SendChannel *c, unsigned ms)
{
    RfSendGroup *g = c->group;
    double end = rf_now() + ms / 1000.0;
    pthread_mutex_lock(&g->lock);
    for (;;) {
        double left = end - rf_now();
        if (giving_up(g) || left <= 0) {
            break;
        }
        rf_cond_wait_ms(&c->wake, &g->lock,
                        left > 0.1 ? 100 : (unsigned)(left * 1000) + 1);
    }
    pthread_mutex_unlock(&g->lock);
    return !giving_up(g);
}

/* Puts conn in the channel's place (under the lock, for the statistics
 * and fail()) and closes the old connection. */
static void swap_conn(SendChannel *c, RfConn *conn)
{
    RfSendGroup *g = c->group;
    pthread_mutex_lock(&g->lock);
    RfConn *old = c->conn;
    c->bytes_prev += rf_conn_bytes_out(old);
    c->conn = conn;
    if (atomic_load(&g->stop)) {
        rf_conn_shutdown(conn); /* fail() ran before the swap */
    }
    pthread_mutex_unlock(&g->lock);
    rf_conn_close(old);
}

/* A new connection starts the method afresh on both sides: a method may
 * carry state from packet to packet, and the lost packets took theirs. */
static bool reset_method(SendChannel *c, RfError **errp)
{
    RfSendGroup *g = c->group;
    if (g->sel) {
        const RfAutoConfig *cfg = rf_autosel_config(g->sel);
        /* Set up again on their next use (cand_ready). */
        for (unsigned k = 0; k < cfg->ncands; k++) {
            if (c->cand_state[k]) {
                cfg->cands[k].method->send_cleanup(c->cand_state[k]);
                c->cand_state[k] = NULL;
            }
        }
        return true;
    }
    g->method->send_cleanup(c->method_state);
    c->method_state = NULL;
    if (!g->method->send_setup(&c->method_state, g->level, errp)) {
        rf_error_prefix(errp, "%s setup", g->method->name);
        return false;
    }
    return true;
}

/* Re-sends the logged packets from next_seq on, with the same seq, round
 * and pages, reading the pages' contents now (docs/protocol.md 5.1 says
 * why newer contents are safe). */
static bool resend(SendChannel *c, uint64_t next_seq, RfError **errp)
{
    size_t len = rf_resend_log_len(&c->log);
    uint64_t first = len ? rf_resend_log_at(&c->log, 0)->seq : c->seq;
    if (next_seq < first || next_seq > c->seq) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "the destination resumes at packet %llu, but this "
                     "channel can re-send only packets %llu to %llu",
                     (unsigned long long)next_seq,
                     (unsigned long long)first, (unsigned long long)c->seq);
        return false;
    }
    c->seq = next_seq;
    for (size_t i = 0; i < len; i++) {
        const RfLogEntry *e = rf_resend_log_at(&c->log, i);
        if (e->seq < next_seq) {
            continue;
        }
        SendJob *j = &c->resend;
        j->kind = e->sync ? JOB_SYNC : JOB_PAGES;
        j->block = e->block;
        j->round = e->round;
        j->final = e->final;
        j->n = e->n;
        rf_resend_log_pages(&c->log, e, j->idx);
        if (!send_job(c, j, errp)) {
            return false;
        }
    }
    return true;
}

/* The channel's connection broke (cause; NULL: it was found closed while
 * idle).  Reconnects and re-sends within the budget: `attempts` tries
 * between two rounds the destination confirmed (so a link that breaks
 * again and again without progress cannot go on for ever), the first
 * after backoff_ms, each next after twice as long.
 * @return false with an error naming the cause and the attempts. */
static bool recover(SendChannel *c, const RfError *cause, RfError **errp)
{
    RfSendGroup *g = c->group;
    RfError *last = NULL;
    unsigned wait = g->backoff_ms;
    unsigned tried = 0;
    unsigned acked = atomic_load(&g->acked);
    if (acked > c->used_since) {
        c->used = 0; /* a round passed since the last break */
        c->used_since = acked;
    }
    rf_conn_shutdown(c->conn); /* the destination sees the break at once */
    for (; c->used < g->attempts; c->used++, tried++) {
        if (!backoff(c, wait)) {
            rf_error_free(last);
            rf_error_set(errp, RF_ERR_CANCELLED, "stopped while reconnecting");
            return false;
        }
        wait = wait > UINT_MAX / 2 ? UINT_MAX : wait * 2;
        uint64_t next = 0;
        RfError *err = NULL;
        RfConn *conn = g->rejoin(g->rejoin_ctx, c->id, ++c->gen, &g->abort,
                                 &next, &err);
        if (conn) {
            swap_conn(c, conn);
            if (reset_method(c, &err) && resend(c, next, &err)) {
                rf_error_free(last);
                c->used++;
                atomic_fetch_add(&c->count.reconnects, 1);
                return true;
            }
        }
        if (rf_error_kind(err) != RF_ERR_IO &&
            rf_error_kind(err) != RF_ERR_TIMEOUT) {
            /* Cancelled, or the destination refused: no retry helps. */
            rf_error_free(last);
            rf_error_propagate(errp, err);
            return false;
        }
        rf_error_free(last);
        last = err;
    }
    if (tried == g->attempts) {
        rf_error_set(errp, RF_ERR_IO, "connection lost (%s); %u reconnect "
                     "attempt%s failed, the last: %s",
                     cause ? rf_error_msg(cause) : "closed by the peer",
                     tried, tried == 1 ? "" : "s",
                     last ? rf_error_msg(last) : "none");
    } else {
        rf_error_set(errp, RF_ERR_IO, "connection lost (%s); all %u "
                     "reconnect attempts used since round %u was "
                     "confirmed%s%s",
                     cause ? rf_error_msg(cause) : "closed by the peer",
                     g->attempts, c->used_since, last ? ", the last: " : "",
                     last ? rf_error_msg(last) : "");
    }
    rf_error_free(last);
    return false;
}

/* Runs the job in the slot: logs it (with 'reconnect'), sends it, and
 * recovers the connection if the send breaks it. */
static bool run_job(SendChannel *c, RfError **errp)
{
    RfSendGroup *g = c->group;
    const SendJob *j = &c->job;
    if (j->kind == JOB_SYNC && j->final) {
        c->final_sent = true;
    }
    if (!reconnect_on(g)) {
        return send_job(c, j, errp);
    }
    rf_resend_log_prune(&c->log, atomic_load(&g->acked));
    if (!rf_resend_log_add(&c->log, c->seq, j->round, j->block,
                           j->kind == JOB_SYNC, j->final, j->idx,
                           j->kind == JOB_PAGES ? j->n : 0)) {
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory for the resend "
                     "log");
        return false;
    }
    RfError *err = NULL;
    if (send_job(c, j, &err)) {
        return true;
    }
    if (rf_error_kind(err) != RF_ERR_IO || giving_up(g)) {
        rf_error_propagate(errp, err);
        return false;
    }
    bool ok = recover(c, err, errp);
    rf_error_free(err);
    return ok;
}

/* Waits, lock held, for a job in the slot.  With 'reconnect', looks at
 * the idle connection every 100 ms until the FINAL SYNC is written: a
 * broken one is repaired before the next job needs it (its SYNC may be
 * what the destination waits for).  @return true if it broke; the
 * channel is then marked busy so no job is handed to it meanwhile. */
static bool wait_job_locked(SendChannel *c)
{
    RfSendGroup *g = c->group;
    while (!c->busy && !atomic_load(&g->stop)) {
        if (!reconnect_on(g) || c->final_sent ||
            atomic_load(&g->finishing)) {
            pthread_cond_wait(&c->wake, &g->lock);
            continue;
        }
        rf_cond_wait_ms(&c->wake, &g->lock, 100);
        if (c->busy || atomic_load(&g->stop)) {
            break;
        }
        /* c->conn changes only on this thread: safe to poll unlocked. */
        pthread_mutex_unlock(&g->lock);
        bool broken = rf_conn_wait_readable(c->conn, 0);
        pthread_mutex_lock(&g->lock);
        if (broken && !c->busy && !atomic_load(&g->stop)) {
            c->busy = true;
            return true;
        }
    }
    return false;
}

static void *send_thread(void *arg)
{
    SendChannel *c = arg;
    RfSendGroup *g = c->group;
    c->sched_fd = -1;
    rf_thread_cpu_start(&c->cpu);
    for (;;) {
        pthread_mutex_lock(&g->lock);
        bool broken = wait_job_locked(c);
        pthread_mutex_unlock(&g->lock);
        if (atomic_load(&g->stop) || (!broken && c->job.kind == JOB_QUIT)) {
            break;
        }
        RfError *err = NULL;
        bool ok = broken ? recover(c, NULL, &err) : run_job(c, &err);
        if (!ok && !err) {
            rf_error_set(&err, RF_ERR_CANCELLED, "stopped");
        }
        if (!ok) {
            rf_error_prefix(&err, "channel %u", c->id);
            fail(g, err);
            break;
        }
        pthread_mutex_lock(&g->lock);
        c->busy = false;
        pthread_cond_broadcast(&g->idle);
        pthread_mutex_unlock(&g->lock);
    }
    rf_thread_delay_close(&c->sched_fd);
    rf_thread_cpu_exit(&c->cpu);
    return NULL;
}

RfSendGroup *rf_send_group_new(const RfSendGroupConfig *cfg, RfError **errp)
{
    RfSendGroup *g = calloc(1, sizeof(*g));
    SendChannel *ch = calloc(cfg->n, sizeof(*ch));
    if (!g || !ch) {
        free(g);
        free(ch);
        for (unsigned i = 0; i < cfg->n; i++) {
            rf_conn_close(cfg->conns[i]);
        }
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory for %u channels",
                     cfg->n);
        return NULL;
    }
    g->method = cfg->method;
    g->level = cfg->level;
    g->crc = cfg->crc32c;
    g->attempts = cfg->reconnect_attempts;
    g->backoff_ms = cfg->reconnect_backoff_ms;
    g->rejoin = cfg->rejoin;
    g->rejoin_ctx = cfg->rejoin_ctx;
    g->cancel = cfg->cancel;
    atomic_init(&g->abort, 0);
    atomic_init(&g->finishing, false);
    atomic_init(&g->acked, 0);
    g->block_hosts = cfg->block_hosts;
    g->block_files = cfg->block_files;
    g->n = cfg->n;
    g->ch = ch;
    g->budget = rf_cpu_budget_new(cfg->max_cpu);
    if (cfg->autocfg) {
        RfAutoConfig ac = *cfg->autocfg;
        ac.channels = cfg->n;
        ac.max_cpu = cfg->max_cpu;
        g->none_cand = ac.ncands;
        for (unsigned k = 0; k < ac.ncands; k++) {
            if (ac.cands[k].method->id == RF_METHOD_NONE) {
                g->none_cand = k;
            }
        }
        g->sel = g->none_cand < ac.ncands ? rf_autosel_new(&ac) : NULL;
        g->small_left = g->sel ? g->n : 0;
        if (!g->sel) {
            rf_cpu_budget_free(g->budget);
            free(g);
            free(ch);
            for (unsigned i = 0; i < cfg->n; i++) {
                rf_conn_close(cfg->conns[i]);
            }
            rf_error_set(errp, RF_ERR_PARAM, "auto: no usable candidate set "
                         "(none must be among them)");
            return NULL;
        }
    }
    /* Always there, so max-bandwidth can be set during the migration. */
    g->bw = rf_bwlimit_new(cfg->max_bandwidth);
    rf_failure_init(&g->failure);
    atomic_init(&g->stop, false);
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->idle, NULL);
    for (unsigned i = 0; i < cfg->n; i++) {
        ch[i].group = g;
        ch[i].id = i;
        ch[i].conn = cfg->conns[i];
        pthread_cond_init(&ch[i].wake, NULL);
    }
    for (unsigned i = 0; i < cfg->n; i++) {
        if ((g->crc && !(ch[i].snap = malloc((size_t)RF_PACKET_MAX_PAGES *
                                             RF_PAGE_SIZE))) ||
            (g->block_files && !(ch[i].rbuf = malloc(
                                     (size_t)RF_PACKET_MAX_PAGES *
                                     RF_PAGE_SIZE)))) {
            rf_error_set(errp, RF_ERR_GENERIC,
                         "channel %u: out of memory for its page buffers", i);
            rf_send_group_free(g);
            return NULL;
        }
        RfError *err = NULL;
        /* 'auto' sets its candidates up on first use (cand_ready). */
        if (!cfg->autocfg &&
            !g->method->send_setup(&ch[i].method_state, cfg->level, &err)) {
            rf_error_prefix(&err, "channel %u: %s setup", i,
                            g->method->name);
            rf_error_propagate(errp, err);
            rf_send_group_free(g);
            return NULL;
        }
    }
    for (unsigned i = 0; i < cfg->n; i++) {
        if (pthread_create(&ch[i].thread, NULL, send_thread, &ch[i]) != 0) {
            rf_error_set(errp, RF_ERR_GENERIC,
                         "channel %u: cannot start its thread", i);
            rf_send_group_free(g);
            return NULL;
        }
        ch[i].started = true;
    }
    return g;
}

/* Waits for channel `want` (or any channel if want < 0, skipping those
 * marked in skip if not NULL) to be idle and returns it, with the lock
 * held.  NULL (lock released) once failed. */
static SendChannel *wait_idle_locked(RfSendGroup *g, int want,
                                     const bool *skip)
{
    pthread_mutex_lock(&g->lock);
    for (;;) {
        if (atomic_load(&g->stop)) {
            pthread_mutex_unlock(&g->lock);
            return NULL;
        }
        if (g->cancel && atomic_load(g->cancel)) {
            /* A channel may be reconnecting: stop it too. */
            pthread_mutex_unlock(&g->lock);
            RfError *why = NULL;
            rf_error_set(&why, RF_ERR_CANCELLED, "migration cancelled");
            fail(g, why);
            return NULL;
        }
        if (want >= 0) {
            if (!g->ch[want].busy) {
                return &g->ch[want];
            }
        } else {
            for (unsigned k = 0; k < g->n; k++) {
                unsigned i = (g->next + k) % g->n;
                if (!g->ch[i].busy && !(skip && skip[i])) {
                    g->next = (i + 1) % g->n;
                    return &g->ch[i];
                }
            }
        }
        /* Timed: the cancel flag is looked at every 100 ms. */
        rf_cond_wait_ms(&g->idle, &g->lock, 100);
    }
}

static void start_locked(RfSendGroup *g, SendChannel *c)
{
    c->busy = true;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&g->lock);
}

static bool queue_job(RfSendGroup *g, uint32_t block, const uint32_t *idx,
                      uint32_t n, uint32_t round);

/* 'auto' cuts each channel's first packet small (START_PACKET_PAGES). */
bool rf_send_group_queue(RfSendGroup *g, uint32_t block, const uint32_t *idx,
                         uint32_t n, uint32_t round)
{
    while (g->small_left > 0 && n > START_PACKET_PAGES) {
        g->small_left--;
        if (!queue_job(g, block, idx, START_PACKET_PAGES, round)) {
            return false;
        }
        idx += START_PACKET_PAGES;
        n -= START_PACKET_PAGES;
    }
    if (g->small_left > 0) {
        g->small_left--;
    }
    return queue_job(g, block, idx, n, round);
}

static bool queue_job(RfSendGroup *g, uint32_t block, const uint32_t *idx,
                      uint32_t n, uint32_t round)
{
    /* 'auto' parks the channels beyond the active count: no pages. */
    unsigned active = g->sel ? rf_autosel_active(g->sel) : g->n;
    bool parked[255];
    for (unsigned i = 0; active < g->n && i < g->n; i++) {
        parked[i] = i >= active;
    }
    SendChannel *c = wait_idle_locked(g, -1, active < g->n ? parked : NULL);
    if (!c) {
        return false;
    }
    c->job.kind = JOB_PAGES;
    c->job.block = block;
    c->job.round = round;
    c->job.n = n;
    memcpy(c->job.idx, idx, n * sizeof(uint32_t));
    start_locked(g, c);
    return true;
}

void rf_send_group_acked(RfSendGroup *g, uint32_t round)
{
    unsigned cur = atomic_load(&g->acked);
    while (round > cur &&
           !atomic_compare_exchange_weak(&g->acked, &cur, round)) {
    }
}

/* Each channel gets its SYNC as soon as it is idle, in any order: a
 * reconnecting channel's RESUME may wait for another channel's SYNC (the
 * destination's thread for it sits at that round's barrier). */
bool rf_send_group_sync(RfSendGroup *g, uint32_t round, bool final)
{
    bool done[255] = {false};
    for (unsigned k = 0; k < g->n; k++) {
        SendChannel *c = wait_idle_locked(g, -1, done);
        if (!c) {
            return false;
        }
        done[c->id] = true;
        c->job.kind = JOB_SYNC;
        c->job.round = round;
        c->job.final = final;
        start_locked(g, c);
    }
    return true;
}

bool rf_send_group_flush(RfSendGroup *g)
{
    for (unsigned i = 0; i < g->n; i++) {
        if (!wait_idle_locked(g, (int)i, NULL)) {
            return false;
        }
        pthread_mutex_unlock(&g->lock);
    }
    return true;
}

bool rf_send_group_failed(RfSendGroup *g)
{
    return rf_failure_failed(&g->failure);
}

void rf_send_group_take_error(RfSendGroup *g, RfError **errp)
{
    rf_failure_take(&g->failure, errp);
}

void rf_send_group_abort(RfSendGroup *g, RfError *why)
{
    fail(g, why);
}

void rf_send_group_set_bandwidth(RfSendGroup *g, uint64_t bytes_per_s)
{
    if (g->bw) {
        rf_bwlimit_set_rate(g->bw, bytes_per_s);
    }
}

/* The CPU seconds of the channel threads so far: ramflow's own share of
 * the process, for the report. */
double rf_send_group_cpu(RfSendGroup *g)
{
    double sum = 0;
    for (unsigned i = 0; i < g->n; i++) {
        SendChannel *c = &g->ch[i];
        if (c->started) {
            sum += rf_thread_cpu_read(c->thread, &c->cpu);
        }
    }
    return sum;
}

void rf_send_group_stats(RfSendGroup *g, RfChanStats *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&g->lock); /* a reconnect swaps c->conn */
    for (unsigned i = 0; i < g->n; i++) {
        SendChannel *c = &g->ch[i];
        rf_chan_counters_sum(out, &c->count,
                             c->bytes_prev + rf_conn_bytes_out(c->conn));
    }
    pthread_mutex_unlock(&g->lock);
}

RfAutoSel *rf_send_group_autosel(RfSendGroup *g)
{
    return g->sel;
}

const char *rf_send_group_describe(RfSendGroup *g)
{
    if (g->sel) {
        /* The candidates, and what a back end says of itself (qatzip:
         * hardware or software). */
        const RfAutoConfig *cfg = rf_autosel_config(g->sel);
        size_t off = (size_t)snprintf(g->detail, sizeof(g->detail),
                                      "auto:");
        for (unsigned k = 0; k < cfg->ncands && off < sizeof(g->detail);
             k++) {
            const RfMethodOps *m = cfg->cands[k].method;
            const char *d = m->describe && g->n && g->ch[0].cand_state[k]
                                ? m->describe(g->ch[0].cand_state[k]) : "";
            off += (size_t)snprintf(g->detail + off, sizeof(g->detail) - off,
                                    " %s%s%s%s", cfg->cands[k].name,
                                    *d ? " (" : "", d, *d ? ")" : "");
        }
        return g->detail;
    }
    if (g->n && g->method->describe) {
        return g->method->describe(g->ch[0].method_state);
    }
    return "";
}

void rf_send_group_free(RfSendGroup *g)
{
    if (!g) {
        return;
    }
    /* A healthy group first finishes what was queued (returns false at
     * once if it failed meanwhile), then every thread gets a QUIT job.
     * No channel starts a reconnect from now on. */
    atomic_store(&g->finishing, true);
    rf_send_group_flush(g);
    pthread_mutex_lock(&g->lock);
    for (unsigned i = 0; i < g->n; i++) {
        SendChannel *c = &g->ch[i];
        if (!c->busy) {
            c->job.kind = JOB_QUIT;
            c->busy = true;
        }
        pthread_cond_broadcast(&c->wake);
    }
    pthread_mutex_unlock(&g->lock);
    /* Every thread is joined before any channel is torn down: a thread
     * that fails late (fail()) still shuts down every channel's
     * connection and signals every channel's condition variable. */
    for (unsigned i = 0; i < g->n; i++) {
        SendChannel *c = &g->ch[i];
        if (c->started) {
            pthread_join(c->thread, NULL);
        }
    }
    for (unsigned i = 0; i < g->n; i++) {
        SendChannel *c = &g->ch[i];
        if (c->method_state) {
            g->method->send_cleanup(c->method_state);
        }
        for (unsigned k = 0; g->sel && k < rf_autosel_config(g->sel)->ncands;
             k++) {
            const RfMethodOps *m = rf_autosel_config(g->sel)->cands[k].method;
            if (c->cand_state[k]) {
                m->send_cleanup(c->cand_state[k]);
            }
            if (c->dec_state[k]) {
                m->recv_cleanup(c->dec_state[k]);
            }
        }
        free(c->sample_buf);
        free(c->snap);
        free(c->rbuf);
        rf_resend_log_free(&c->log);
        rf_conn_close(c->conn);
        pthread_cond_destroy(&c->wake);
    }
    rf_bwlimit_free(g->bw);
    rf_cpu_budget_free(g->budget);
    rf_autosel_free(g->sel);
    rf_failure_destroy(&g->failure);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->idle);
    free(g->ch);
    free(g);
}
