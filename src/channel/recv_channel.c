/*
 * ramflow - receiving side of the data channels.
 *
 * Each thread loops: read a 40-byte header and check it against what was
 * negotiated (which bounds everything it reads next), read the page
 * indexes, then read the payload into the channel's scratch buffer (RAW)
 * or let the method read and decode it into that buffer.  With 'crc32c'
 * the CRC of the whole packet is checked as its last byte arrives, before
 * a method decodes anything.  Then the indexes (each inside the block,
 * none twice; seq and round were checked with the header), and only then
 * are the pages written from scratch into guest memory (page_store.c:
 * through the mapping or the sink's file descriptor): a packet rejected
 * for any reason (bad CRC, a payload that does not decode to exactly its
 * pages, a bad index, a connection that breaks mid-payload) leaves no
 * byte in guest pages, and writes go only to pages inside the block.
 *
 * Sync: a channel that reads SYNC(round r) waits at a barrier until every
 * channel has read its SYNC(r).  Only then may any of them apply a page of
 * round r+1, so a stale copy of round r still in flight on another channel
 * can never overwrite a newer one.  The barrier is keyed by round: a SYNC
 * of another round, or FINAL where the others are not (or the reverse),
 * can never complete it, so it fails the group at once instead of
 * leaving every channel waiting for ever.
 *
 * Reconnect ('reconnect' negotiated, docs/protocol.md 5.1): a channel
 * whose connection breaks (an I/O error: end of stream, reset) waits for
 * the engine to hand it a replacement (rf_recv_group_replace), answers
 * RESUME with the seq of the first packet it has not applied, and reads
 * on.  A packet cut short was never applied (scratch buffer), so the
 * source's re-sent packets continue exactly where this channel stopped.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "channel/channel.h"
#include "channel/counters.h"
#include "channel/cpu_budget.h"
#include "channel/page_store.h"
#include "util/clock.h"
#include "util/failure.h"
#include "util/zero.h"
#include "wire/wire.h"

#define RF_RECV_METHODS 8 /* wire method ids a 'packet-method' packet uses */

typedef struct RecvChannel {
    /* fixed after setup */
    RfRecvGroup *group;
    unsigned id;
    RfConn *conn;              /* swapped by its thread under the lock */
    void *method_state;
    pthread_t thread;
    RfThreadCpu cpu;           /* CPU time, for the report */
    bool started;
    /* under group->lock */
    RfConn *pending;           /* a replacement connection, not yet used */
    uint64_t bytes_prev;       /* bytes read on replaced connections */
    /* thread-local */
    uint8_t head[RF_PKT_HDR_SIZE];
    uint32_t idx[RF_PACKET_MAX_PAGES];
    uint8_t *scratch;          /* RF_PACKET_MAX_PAGES decoded pages */
    uint8_t *scratch_pages[RF_PACKET_MAX_PAGES]; /* its pages, for recv */
    uint64_t seq;              /* number of the packet being read */
    uint32_t crc;              /* its running CRC32C ('crc32c') */
    uint32_t crc_want;         /* what its header says */
    uint32_t crc_left;         /* payload bytes not read yet */
    uint32_t expect_round;
    /* 'packet-method': a decode state per wire method, made on first use */
    void *mstate[RF_RECV_METHODS];
    /* counters */
    RfChanCounters count;
    /* 'packet-method' (STATS): per method the page bytes and the CPU ns
     * its packets took */
    _Atomic uint64_t m_raw[RF_RECV_METHODS], m_ns[RF_RECV_METHODS];
    atomic_bool finished; /* read its FINAL sync */
} RecvChannel;

struct RfRecvGroup {
    const RfMethodOps *method;
    bool crc; /* 'crc32c' negotiated: every packet's CRC is checked */
    unsigned nblocks;
    const uint64_t *block_pages;
    RfPageStore *store;       /* the blocks' memory */
    RfPacketLimits limits;
    bool reconnect;           /* 'reconnect': wait for a replacement */
    unsigned reconnect_wait_ms;
    bool packet_method;       /* each packet names its method */
    double t_start;           /* when the threads started */
    RfCpuBudget *budget;      /* max-cpu, else NULL */
    unsigned n;
    RecvChannel *ch;
    RfFailure failure;
    /* barrier, under lock */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned arrived;      /* channels waiting at the open barrier */
    uint32_t open_round;   /* its round, FINAL or not, and who opened it */
    bool open_final;
    unsigned open_first;
    uint32_t passed_round; /* last round every channel has passed */
    unsigned finished;
};

static void wake_all(RfRecvGroup *g)
{
    pthread_mutex_lock(&g->lock);
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static void fail(RfRecvGroup *g, RfError *err)
{
    bool first = rf_failure_set(&g->failure, err);
    pthread_mutex_lock(&g->lock); /* channels swap connections under it */
    for (unsigned i = 0; first && i < g->n; i++) {
        rf_conn_shutdown(g->ch[i].conn);
        if (g->ch[i].pending) {
            rf_conn_shutdown(g->ch[i].pending);
        }
    }
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* A channel's SYNC that does not belong to the open barrier: a peer
 * that sent different rounds (or FINAL on some channels only) could
 * never complete it.  Called under the lock, with arrived > 0. */
static bool barrier_matches(RfRecvGroup *g, uint32_t round, bool final,
                            RfError **errp)
{
    if (round == g->open_round && final == g->open_final) {
        return true;
    }
    /* Same round: what differs is FINAL, so name the barrier's kind. */
    const char *kind = g->open_final ? "FINAL "
                       : round == g->open_round ? "non-final " : "";
    rf_error_set(errp, RF_ERR_PROTOCOL,
                 "%s for round %u while channel %u is at the %sbarrier of "
                 "round %u", final ? "FINAL SYNC" : "SYNC", round,
                 g->open_first, kind, g->open_round);
    return false;
}

/* Blocks until every channel has read SYNC(round), FINAL or not alike.
 * @return false if the SYNC does not match the barrier the others wait
 * at (error in *errp), or if the group failed meanwhile. */
static bool sync_barrier(RecvChannel *c, uint32_t round, bool final,
                         RfError **errp)
{
    RfRecvGroup *g = c->group;
    pthread_mutex_lock(&g->lock);
    if (g->arrived == 0) {
        g->open_round = round;
        g->open_final = final;
        g->open_first = c->id;
    } else if (!barrier_matches(g, round, final, errp)) {
        pthread_mutex_unlock(&g->lock);
        return false;
    }
    if (final) {
        g->finished++;
    }
    if (++g->arrived == g->n) {
        g->arrived = 0;
        g->passed_round = round;
        pthread_cond_broadcast(&g->cond);
    } else {
        while (g->passed_round != round && !rf_failure_failed(&g->failure)) {
            pthread_cond_wait(&g->cond, &g->lock);
        }
    }
    bool ok = g->passed_round == round;
    pthread_mutex_unlock(&g->lock);
    return ok;
}

/* Checks the packet's CRC once every byte of it has been read.  Without
 * 'crc32c' there is nothing to check. */
static bool crc_check(RecvChannel *c, RfError **errp)
{
    if (!c->group->crc) {
        return true;
    }
    uint32_t computed = rf_wire_crc_end(c->crc);
    if (computed != c->crc_want) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet seq %llu: CRC32C mismatch (computed 0x%08x, "
                     "packet says 0x%08x)", (unsigned long long)c->seq,
                     computed, c->crc_want);
        return false;
    }
    return true;
}

/* Reads payload bytes (for the method, or a RAW payload) into the
 * scratch buffer, adding them to the CRC.  The read that brings the last
 * byte checks the CRC: a method decodes only a payload that passed. */
static bool read_fn(void *ctx, const struct iovec *iov, int iovcnt,
                    RfError **errp)
{
    RecvChannel *c = ctx;
    struct iovec local[RF_PACKET_MAX_PAGES + 1];
    if (iovcnt > (int)(sizeof(local) / sizeof(local[0]))) {
        rf_error_set(errp, RF_ERR_GENERIC, "read of %d segments", iovcnt);
        return false;
    }
    memcpy(local, iov, (size_t)iovcnt * sizeof(*iov));
    if (!rf_conn_recvv(c->conn, local, iovcnt, errp)) {
        return false;
    }
    if (!c->group->crc) {
        return true;
    }
    size_t got = 0;
    for (int i = 0; i < iovcnt; i++) {
        c->crc = rf_wire_crc_update(c->crc, iov[i].iov_base, iov[i].iov_len);
        got += iov[i].iov_len;
    }
    if (got > c->crc_left) {
        rf_error_set(errp, RF_ERR_GENERIC,
                     "%s read %zu payload bytes, %u were left",
                     c->group->method->name, got, c->crc_left);
        return false;
    }
    c->crc_left -= (uint32_t)got;
    return c->crc_left ? true : crc_check(c, errp);
}

/* 'packet-method': the method the packet names (the header decoder
 * allowed only those built here) and this channel's state for it (set
 * up on the method's first packet, and again after a reconnect). */
static bool packet_method_state(RecvChannel *c, uint8_t id,
                                const RfMethodOps **m, void **state,
                                RfError **errp)
{
    *m = id < RF_RECV_METHODS ? rf_method_by_id(id) : NULL;
    if (!*m) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "packet method %u is not built "
                     "into this destination", id);
        return false;
    }
    if (!c->mstate[id] && !(*m)->recv_setup(&c->mstate[id], errp)) {
        rf_error_prefix(errp, "%s setup", (*m)->name);
        return false;
    }
    *state = c->mstate[id];
    return true;
}

/*
 * Reads the page indexes and the payload of a page packet, and decodes
 * the payload into the channel's scratch buffer.  Nothing reaches guest
 * memory here: a packet whose CRC does not match, or whose payload does
 * not decode to exactly normal pages, is rejected with the pages as they
 * were.
 */
static bool read_packet(RecvChannel *c, const RfPacketHdr *h, RfError **errp)
{
    RfRecvGroup *g = c->group;
    uint32_t total = (uint32_t)h->normal + h->zero;
    size_t idx_len = total * sizeof(uint32_t);
    if (!rf_conn_recv(c->conn, c->idx, idx_len, errp)) {
        return false;
    }
    if (g->crc) {
        /* Over the indexes as sent, before they are decoded in place. */
        c->crc = rf_wire_crc_update(c->crc, c->idx, idx_len);
    }
    if (h->normal == 0) {
        return crc_check(c, errp);
    }
    if (h->flags & RF_PKT_RAW) {
        struct iovec iov = {.iov_base = c->scratch,
                            .iov_len = h->payload_size};
        return read_fn(c, &iov, 1, errp);
    }
    RfRecvPayload in = {
        .len = h->payload_size,
        .pages = c->scratch_pages,
        .npages = h->normal,
        .read = read_fn,
        .read_ctx = c,
    };
    const RfMethodOps *m = g->method;
    void *state = c->method_state;
    if (g->packet_method && !packet_method_state(c, h->method, &m, &state,
                                                 errp)) {
        return false;
    }
    return m->recv(state, &in, errp);
}

/* Checks the page indexes, then writes the decoded pages and the zero
 * pages: the only place a packet's bytes reach guest memory. */
static bool apply_packet(RecvChannel *c, const RfPacketHdr *h,
                         RfError **errp)
{
    RfRecvGroup *g = c->group;
    uint32_t total = (uint32_t)h->normal + h->zero;
    if (!rf_wire_page_index_decode(c->idx, total, g->block_pages[h->block],
                                   errp)) {
        return false;
    }
    if (!rf_page_store_write(g->store, h->block, c->idx, h->normal,
                             c->scratch, errp) ||
        !rf_page_store_zero(g->store, h->block, c->idx + h->normal, h->zero,
                            errp)) {
        return false;
    }
    rf_chan_count_packet(&c->count, h->normal, h->zero, h->payload_size,
                         h->normal && (h->flags & RF_PKT_RAW) &&
                             h->method != RF_METHOD_NONE);
    return true;
}

/* The header's seq and round: checked with the header, before anything
 * more of the packet is read. */
static bool check_order(RecvChannel *c, const RfPacketHdr *h, RfError **errp)
{
    if (h->seq != c->seq) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet field 'seq': %llu, expected %llu",
                     (unsigned long long)h->seq, (unsigned long long)c->seq);
        return false;
    }
    if (h->round < c->expect_round) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet field 'round': %u, expected at least %u "
                     "(rounds start at 1 and only move forward)",
                     h->round, c->expect_round);
        return false;
    }
    return true;
}

/* Reads and applies packet c->seq.  @return 1 for a page packet or a
 * SYNC that passed its barrier, 0 after the FINAL SYNC, -1 on error. */
static int recv_one(RecvChannel *c, RfError **errp)
{
    RfRecvGroup *g = c->group;
    RfPacketHdr h;
    /* One deadline for the packet's header and payload (transport.h). */
    rf_conn_frame_begin(c->conn);
    if (!rf_conn_recv(c->conn, c->head, RF_PKT_HDR_SIZE, errp) ||
        !rf_wire_packet_hdr_decode(c->head, &g->limits, &h, errp)) {
        return -1;
    }
    /* A method's state is set up before the clock starts: the cost
     * the STATS report per method is decoding, not setting up. */
    const RfMethodOps *pm;
    void *pstate;
    if (g->packet_method && !(h.flags & RF_PKT_SYNC) &&
        !packet_method_state(c, h.method, &pm, &pstate, errp)) {
        return -1;
    }
    double cpu0 = g->packet_method ? rf_thread_cpu() : 0;
    if (g->crc) {
        c->crc = rf_wire_crc_begin(c->head);
        c->crc_want = h.crc;
        c->crc_left = h.payload_size;
    }
    bool sync = h.flags & RF_PKT_SYNC;
    if (!check_order(c, &h, errp) ||
        !(sync ? crc_check(c, errp) : read_packet(c, &h, errp))) {
        return -1;
    }
    if (!sync) {
        if (!apply_packet(c, &h, errp)) {
            return -1;
        }
        if (g->packet_method && h.method < RF_RECV_METHODS) {
            atomic_fetch_add_explicit(&c->m_raw[h.method],
                                      (uint64_t)h.normal * RF_PAGE_SIZE,
                                      memory_order_relaxed);
            atomic_fetch_add_explicit(
                &c->m_ns[h.method], (uint64_t)((rf_thread_cpu() - cpu0) * 1e9),
                memory_order_relaxed);
        }
        return rf_cpu_budget_pace(g->budget, NULL) ? 1 : -1;
    }
    bool final = h.flags & RF_PKT_FINAL;
    if (!sync_barrier(c, h.round, final, errp)) {
        return -1;
    }
    c->expect_round = h.round + 1;
    if (final) {
        atomic_store(&c->finished, true);
        return 0;
    }
    return 1;
}

/* Waits (up to reconnect_wait_ms, or until the group fails) for a
 * replacement connection and puts it in the channel's place.
 * @return it, or NULL. */
static RfConn *wait_replacement(RecvChannel *c)
{
    RfRecvGroup *g = c->group;
    double end = rf_now() + g->reconnect_wait_ms / 1000.0;
    RfConn *old = NULL, *conn = NULL;
    pthread_mutex_lock(&g->lock);
    while (!c->pending && !rf_failure_failed(&g->failure) &&
           rf_now() < end) {
        rf_cond_wait_ms(&g->cond, &g->lock, 100);
    }
    if (c->pending && !rf_failure_failed(&g->failure)) {
        conn = c->pending;
        c->pending = NULL;
        old = c->conn;
        c->bytes_prev += rf_conn_bytes_in(old);
        c->conn = conn;
    }
    pthread_mutex_unlock(&g->lock);
    rf_conn_close(old);
    return conn;
}

/* 'packet-method': frees the per-method states (made again on use). */
static void free_packet_methods(RecvChannel *c)
{
    for (unsigned id = 0; id < RF_RECV_METHODS; id++) {
        if (c->mstate[id]) {
            rf_method_by_id((uint8_t)id)->recv_cleanup(c->mstate[id]);
            c->mstate[id] = NULL;
        }
    }
}

/* The connection broke with `cause`: with 'reconnect', takes the
 * replacement the source opens, starts the method afresh (as the source
 * does) and answers RESUME(c->seq) on it.  Any other error, or no
 * replacement in time, is the channel's failure. */
static bool rejoin(RecvChannel *c, RfError *cause, RfError **errp)
{
    RfRecvGroup *g = c->group;
    while (g->reconnect && rf_error_kind(cause) == RF_ERR_IO &&
           !rf_failure_failed(&g->failure)) {
        /* If only this side saw the break, the source learns it now. */
        rf_conn_shutdown(c->conn);
        RfConn *conn = wait_replacement(c);
        if (!conn) {
            if (rf_failure_failed(&g->failure)) {
                break;
            }
            rf_error_set(errp, RF_ERR_TIMEOUT, "connection lost (%s) and no "
                         "replacement within %u ms", rf_error_msg(cause),
                         g->reconnect_wait_ms);
            rf_error_free(cause);
            return false;
        }
        RfError *err = NULL;
        free_packet_methods(c);
        g->method->recv_cleanup(c->method_state);
        c->method_state = NULL;
        if (!g->method->recv_setup(&c->method_state, &err)) {
            rf_error_free(cause);
            rf_error_propagate(errp, err);
            return false;
        }
        uint8_t out[RF_RESUME_SIZE];
        rf_wire_resume_encode(c->seq, out);
        if (rf_conn_send(conn, out, sizeof(out), &err)) {
            rf_error_free(cause);
            atomic_fetch_add(&c->count.reconnects, 1);
            return true;
        }
        rf_error_free(cause);
        cause = err; /* broke again: wait for the next one */
    }
    rf_error_propagate(errp, cause);
    return false;
}

static bool recv_loop(RecvChannel *c, RfError **errp)
{
    for (c->seq = 0;;) {
        RfError *err = NULL;
        int r = recv_one(c, &err);
        if (r > 0) {
            c->seq++;
        } else if (r == 0) {
            return true;
        } else if (!rejoin(c, err, errp)) {
            return false;
        }
    }
}

static void *recv_thread(void *arg)
{
    RecvChannel *c = arg;
    RfError *err = NULL;
    rf_thread_cpu_start(&c->cpu);
    if (!recv_loop(c, &err)) {
        if (!err) {
            rf_error_set(&err, RF_ERR_GENERIC, "stopped");
        }
        rf_error_prefix(&err, "channel %u", c->id);
        fail(c->group, err);
    }
    wake_all(c->group);
    rf_thread_cpu_exit(&c->cpu);
    return NULL;
}

/* The scratch buffer a packet is decoded into before it is applied: one
 * packet's pages, page-aligned and contiguous (so methods decode into it
 * in one go). */
static bool scratch_setup(RecvChannel *c)
{
    void *p = NULL;
    if (posix_memalign(&p, RF_PAGE_SIZE,
                       (size_t)RF_PACKET_MAX_PAGES * RF_PAGE_SIZE) != 0) {
        return false;
    }
    c->scratch = p;
    for (uint32_t i = 0; i < RF_PACKET_MAX_PAGES; i++) {
        c->scratch_pages[i] = c->scratch + (size_t)i * RF_PAGE_SIZE;
    }
    return true;
}

RfRecvGroup *rf_recv_group_new(const RfRecvGroupConfig *cfg, RfError **errp)
{
    RfRecvGroup *g = calloc(1, sizeof(*g));
    RecvChannel *ch = calloc(cfg->n, sizeof(*ch));
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
    g->nblocks = cfg->nblocks;
    g->block_pages = cfg->block_pages;
    g->store = rf_page_store_new(cfg->blocks, cfg->nblocks, errp);
    g->limits = (RfPacketLimits){
        .method = cfg->method->id,
        .nblocks = cfg->nblocks,
        .block_pages = cfg->block_pages,
        .max_payload = cfg->method->max_payload,
        .crc = cfg->crc32c,
        .packet_method = cfg->packet_method,
        .methods_mask = cfg->packet_method ? rf_recv_methods_mask() : 0,
    };
    for (unsigned id = 0; cfg->packet_method && id < RF_RECV_METHODS; id++) {
        const RfMethodOps *m = rf_method_by_id((uint8_t)id);
        g->limits.max_payload_of[id] = m ? m->max_payload : NULL;
    }
    g->packet_method = cfg->packet_method;
    g->budget = rf_cpu_budget_new(cfg->max_cpu);
    g->crc = cfg->crc32c;
    g->reconnect = cfg->reconnect;
    g->reconnect_wait_ms = cfg->reconnect_wait_ms;
    g->n = cfg->n;
    g->ch = ch;
    rf_failure_init(&g->failure);
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    for (unsigned i = 0; i < cfg->n; i++) {
        ch[i].group = g;
        ch[i].id = i;
        ch[i].conn = cfg->conns[i];
        ch[i].expect_round = 1;
    }
    if (!g->store) {
        rf_recv_group_free(g);
        return NULL;
    }
    for (unsigned i = 0; i < cfg->n; i++) {
        if (!scratch_setup(&ch[i])) {
            rf_error_set(errp, RF_ERR_GENERIC,
                         "channel %u: out of memory for its scratch buffer",
                         i);
            rf_recv_group_free(g);
            return NULL;
        }
        RfError *err = NULL;
        /* 'packet-method' sets a method's state up on its first packet
         * (recv_one), so that a migration that stays raw pays for none. */
        if (!g->method->recv_setup(&ch[i].method_state, &err)) {
            rf_error_prefix(&err, "channel %u: %s setup", i, g->method->name);
            rf_error_propagate(errp, err);
            rf_recv_group_free(g);
            return NULL;
        }
    }
    g->t_start = rf_now();
    for (unsigned i = 0; i < cfg->n; i++) {
        if (pthread_create(&ch[i].thread, NULL, recv_thread, &ch[i]) != 0) {
            rf_error_set(errp, RF_ERR_GENERIC,
                         "channel %u: cannot start its thread", i);
            rf_recv_group_abort(g, NULL);
            rf_recv_group_free(g);
            return NULL;
        }
        ch[i].started = true;
    }
    return g;
}

bool rf_recv_group_done(RfRecvGroup *g)
{
    pthread_mutex_lock(&g->lock);
    bool done = g->finished == g->n && g->arrived == 0;
    pthread_mutex_unlock(&g->lock);
    return done && !rf_failure_failed(&g->failure);
}

bool rf_recv_group_wait(RfRecvGroup *g, unsigned timeout_ms)
{
    double deadline = rf_now() + timeout_ms / 1000.0;
    pthread_mutex_lock(&g->lock);
    while (!(g->finished == g->n && g->arrived == 0) &&
           !rf_failure_failed(&g->failure)) {
        if (timeout_ms && rf_now() >= deadline) {
            break;
        }
        rf_cond_wait_ms(&g->cond, &g->lock, 100);
    }
    bool done = g->finished == g->n && g->arrived == 0;
    pthread_mutex_unlock(&g->lock);
    return done && !rf_failure_failed(&g->failure);
}

bool rf_recv_group_failed(RfRecvGroup *g)
{
    return rf_failure_failed(&g->failure);
}

void rf_recv_group_take_error(RfRecvGroup *g, RfError **errp)
{
    rf_failure_take(&g->failure, errp);
}

void rf_recv_group_abort(RfRecvGroup *g, RfError *why)
{
    if (!why) {
        rf_error_set(&why, RF_ERR_CANCELLED, "migration aborted");
    }
    fail(g, why);
}

void rf_recv_group_replace(RfRecvGroup *g, unsigned ch, RfConn *conn)
{
    RfConn *older = NULL;
    pthread_mutex_lock(&g->lock);
    if (ch >= g->n || rf_failure_failed(&g->failure)) {
        older = conn;
    } else {
        RecvChannel *c = &g->ch[ch];
        older = c->pending; /* the source gave up on that one */
        c->pending = conn;
        /* The source gave up on the current one: a thread still reading
         * it (the break not seen yet) fails its read and comes here. */
        rf_conn_shutdown(c->conn);
        pthread_cond_broadcast(&g->cond);
    }
    pthread_mutex_unlock(&g->lock);
    rf_conn_close(older);
}

uint32_t rf_recv_group_round(RfRecvGroup *g)
{
    pthread_mutex_lock(&g->lock);
    uint32_t r = g->passed_round;
    pthread_mutex_unlock(&g->lock);
    return r;
}

/* The CPU seconds of the channel threads so far: ramflow's own share of
 * the process, for the report. */
double rf_recv_group_cpu(RfRecvGroup *g)
{
    double sum = 0;
    for (unsigned i = 0; i < g->n; i++) {
        RecvChannel *c = &g->ch[i];
        if (c->started) {
            sum += rf_thread_cpu_read(c->thread, &c->cpu);
        }
    }
    return sum;
}

void rf_recv_group_stats(RfRecvGroup *g, RfChanStats *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&g->lock); /* a reconnect swaps c->conn */
    for (unsigned i = 0; i < g->n; i++) {
        RecvChannel *c = &g->ch[i];
        rf_chan_counters_sum(out, &c->count,
                             c->bytes_prev + rf_conn_bytes_in(c->conn));
    }
    pthread_mutex_unlock(&g->lock);
}

uint32_t rf_recv_methods_mask(void)
{
    uint32_t mask = 0;
    for (unsigned id = 0; id < RF_RECV_METHODS; id++) {
        if (rf_method_by_id((uint8_t)id)) {
            mask |= 1u << id;
        }
    }
    return mask;
}

void rf_recv_group_peer_stats(RfRecvGroup *g, RfStats *st)
{
    RfChanStats cs;
    rf_recv_group_stats(g, &cs);
    st->wire_bytes = cs.wire_bytes;
    st->recv_cpu_ns = (uint64_t)(rf_recv_group_cpu(g) * 1e9);
    st->recv_wait_ns = 0;
    st->nmethods = 0;
    uint64_t raw[RF_RECV_METHODS] = {0}, ns[RF_RECV_METHODS] = {0};
    /* A channel thread that is neither on a CPU nor waiting for one
     * waits for data, almost always (the barrier's waits are short).
     * Time runnable, waiting for a CPU, is not waiting for data: on a
     * host short of CPU it made a loopback destination look idle. */
    double wall = rf_now() - g->t_start;
    for (unsigned i = 0; i < g->n; i++) {
        RecvChannel *c = &g->ch[i];
        double busy = c->started ? rf_thread_cpu_read(c->thread, &c->cpu) +
                                       rf_thread_delay_read(&c->cpu)
                                 : 0;
        st->recv_wait_ns += wall > busy ? (uint64_t)((wall - busy) * 1e9)
                                        : 0;
        for (unsigned id = 0; id < RF_RECV_METHODS; id++) {
            raw[id] += atomic_load(&c->m_raw[id]);
            ns[id] += atomic_load(&c->m_ns[id]);
        }
    }
    for (unsigned id = 0; id < RF_RECV_METHODS; id++) {
        if (raw[id] && st->nmethods < RF_STATS_MAX_METHODS) {
            st->methods[st->nmethods++] = (RfStatsMethod){
                .method = (uint8_t)id, .raw_bytes = raw[id],
                .decode_ns = ns[id]};
        }
    }
}

const char *rf_recv_group_describe(RfRecvGroup *g)
{
    if (g->n && g->method->describe) {
        return g->method->describe(g->ch[0].method_state);
    }
    return "";
}

void rf_recv_group_free(RfRecvGroup *g)
{
    if (!g) {
        return;
    }
    for (unsigned i = 0; i < g->n; i++) {
        RecvChannel *c = &g->ch[i];
        if (c->started && !atomic_load(&c->finished)) {
            /* Still reading or waiting at a barrier: failing the group
             * shuts every connection down and wakes the barrier's
             * waiters, which wait until the round passes or the group
             * fails. */
            RfError *why = NULL;
            rf_error_set(&why, RF_ERR_CANCELLED, "receive group freed");
            fail(g, why);
            break;
        }
    }
    wake_all(g);
    /* Every thread is joined before any connection is closed: a thread
     * that fails late (fail()) still shuts down every channel's
     * connection. */
    for (unsigned i = 0; i < g->n; i++) {
        RecvChannel *c = &g->ch[i];
        if (c->started) {
            pthread_join(c->thread, NULL);
        }
    }
    for (unsigned i = 0; i < g->n; i++) {
        RecvChannel *c = &g->ch[i];
        if (c->method_state) {
            g->method->recv_cleanup(c->method_state);
        }
        free_packet_methods(c);
        free(c->scratch);
        rf_conn_close(c->pending);
        rf_conn_close(c->conn);
    }
    rf_cpu_budget_free(g->budget);
    rf_page_store_free(g->store);
    rf_failure_destroy(&g->failure);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
    free(g->ch);
    free(g);
}
