/*
 * Engine tests, in one process: a destination thread and a source (the
 * real one, or a hand-written peer that sends crafted bytes).
 *
 * - multi-round ordering: pages rewritten in every round arrive with the
 *   last round's contents, over 8 channels (zstd skips when not built);
 * - the SYNC barrier, with a crafted two-channel source that holds a stale
 *   copy back on one channel until the newer copy's channel has gone as far
 *   as the destination lets it; channels whose SYNCs name different rounds
 *   (or FINAL on one only) fail the destination at once, naming both;
 * - a writer thread running during the migration: --verify passes;
 * - crafted bad input on a data channel: each fails with a message naming
 *   the channel and the field, and writes nothing outside the block (guard
 *   pages around the destination block fault on any such write);
 * - truncated stream, method mismatch, cancel;
 * - capability negotiation: a required capability the destination lacks
 *   is refused at the handshake by name, on both sides; a newer source's
 *   unknown optional bits are ignored and its required ones refused; a
 *   crafted destination's unknown error kind and bad ACCEPT.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "channel/resend_log.h"
#include "channel/transport.h"
#include "compress/method.h"
#include "engine/engine.h"
#include "ram/ram.h"
#include "ramflow/ramflow.h"
#include "testvm/writer.h"
#include "wire/wire.h"

#ifdef RF_HAVE_ZSTD
#include <zstd.h>
#endif

#define PAGES 2048u

typedef struct Fixture {
    char dir[64];
    char src_path[128], dst_path[128], sock[128], uri[160];
    uint8_t *src_map;
    RfRamSource *src;
    RfRamSink *sink;
    /* destination thread */
    pthread_t thread;
    RfIncomingOptions iopts;
    RfReport drep;
    RfError *derr;
    bool dok;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool listening;
    struct Strays *strays; /* test_strays_dropped */
} Fixture;

static void on_listening(const char *uri, void *opaque)
{
    Fixture *f = opaque;
    pthread_mutex_lock(&f->lock);
    f->listening = true;
    (void)uri;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static void *dest_thread(void *arg)
{
    Fixture *f = arg;
    f->dok = rf_incoming(f->uri, f->sink, &f->iopts, &f->drep, &f->derr);
    /* Unblock the waiter if listening never happened. */
    on_listening(NULL, f);
    return NULL;
}

static void start_dest(Fixture *f)
{
    f->iopts.listening = on_listening;
    f->iopts.opaque = f;
    if (!f->iopts.timeout_ms) {
        f->iopts.timeout_ms = 5000;
    }
    assert_int_equal(pthread_create(&f->thread, NULL, dest_thread, f), 0);
    pthread_mutex_lock(&f->lock);
    while (!f->listening) {
        pthread_cond_wait(&f->cond, &f->lock);
    }
    pthread_mutex_unlock(&f->lock);
}

static void join_dest(Fixture *f)
{
    pthread_join(f->thread, NULL);
}

static int setup(void **state)
{
    Fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/dev/shm/rf-engine-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->src_path, sizeof(f->src_path), "%s/src", f->dir);
    snprintf(f->dst_path, sizeof(f->dst_path), "%s/dst", f->dir);
    snprintf(f->sock, sizeof(f->sock), "%s/sock", f->dir);
    snprintf(f->uri, sizeof(f->uri), "unix:%s", f->sock);
    int fd = open(f->src_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, PAGES * RF_PAGE_SIZE), 0);
    f->src_map = mmap(NULL, PAGES * RF_PAGE_SIZE, PROT_READ | PROT_WRITE,
                      MAP_SHARED, fd, 0);
    close(fd);
    assert_true(f->src_map != MAP_FAILED);
    /* Mixed content: zero pages, patterned pages. */
    for (unsigned p = 0; p < PAGES; p++) {
        if (p % 5) {
            memset(f->src_map + (size_t)p * RF_PAGE_SIZE, (int)(p * 7 + 1),
                   RF_PAGE_SIZE);
        }
    }
    const char *s[1] = {f->src_path};
    const char *d[1] = {f->dst_path};
    f->src = rf_file_source_open(s, 1, NULL);
    f->sink = rf_file_sink_new(d, 1, 0, NULL);
    assert_non_null(f->src);
    assert_non_null(f->sink);
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    Fixture *f = *state;
    rf_ram_source_free(f->src);
    rf_ram_sink_free(f->sink);
    munmap(f->src_map, PAGES * RF_PAGE_SIZE);
    unlink(f->src_path);
    unlink(f->dst_path);
    unlink(f->sock);
    rmdir(f->dir);
    rf_error_free(f->derr);
    free(f);
    return 0;
}

static uint8_t *map_file(const char *path, size_t len)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    assert_true(p != MAP_FAILED);
    return p;
}

/* ---- multi-round ordering ------------------------------------------- */

typedef struct RoundCtx {
    Fixture *f;
    unsigned last_round;
} RoundCtx;

/* Rewrites the same 1024 pages with the round number before each round. */
static void rewrite_pages(unsigned round, void *opaque)
{
    RoundCtx *rc = opaque;
    for (unsigned p = 0; p < 1024; p++) {
        uint8_t *page = rc->f->src_map + (size_t)p * RF_PAGE_SIZE;
        memset(page, (int)(round & 0xff), RF_PAGE_SIZE);
        memcpy(page, &round, sizeof(round));
    }
    rf_ram_source_mark_dirty(rc->f->src, 0, 0, 1024ull * RF_PAGE_SIZE);
    rc->last_round = round;
}

static void run_ordering(void **state, const char *method, const char *crc)
{
    Fixture *f = *state;
    start_dest(f);
    RfParams p;
    rf_params_init(&p);
    assert_true(rf_params_set(&p, "multifd-channels", "8", NULL));
    assert_true(rf_params_set(&p, "multifd-compression", method, NULL));
    assert_true(rf_params_set(&p, "crc32c", crc, NULL));
    /* Never converges (every round dirties 1024 pages, limit 0 ms): the
     * final round comes after max-rounds. */
    assert_true(rf_params_set(&p, "downtime-limit", "0", NULL));
    assert_true(rf_params_set(&p, "max-rounds", "6", NULL));
    RoundCtx rc = {f, 0};
    RfMigrateOptions o = {.verify = true, .round_start = rewrite_pages,
                          .opaque = &rc};
    RfReport rep;
    RfError *err = NULL;
    bool ok = rf_migrate(f->uri, f->src, &p, &o, &rep, &err);
    join_dest(f);
    if (!ok) {
        fail_msg("migrate: %s", rf_error_msg(err));
    }
    assert_true(f->dok);
    assert_string_equal(rep.method, method);
    assert_int_equal(rep.rounds, 7);
    assert_false(rep.converged);
    assert_true(rep.verified);
    assert_int_equal(rc.last_round, 7);
    uint8_t *dst = map_file(f->dst_path, PAGES * RF_PAGE_SIZE);
    for (unsigned pg = 0; pg < 1024; pg++) {
        unsigned got;
        memcpy(&got, dst + (size_t)pg * RF_PAGE_SIZE, sizeof(got));
        if (got != 7) {
            fail_msg("page %u holds round %u's copy, expected round 7", pg,
                     got);
        }
    }
    assert_memory_equal(dst, f->src_map, PAGES * RF_PAGE_SIZE);
    munmap(dst, PAGES * RF_PAGE_SIZE);
}

static void test_ordering_none(void **state)
{
    run_ordering(state, "none", "on");
}

/* A source with crc32c off offers it not: no CRC is sent or checked. */
static void test_ordering_none_no_crc(void **state)
{
    run_ordering(state, "none", "off");
}

/* Skips when zstd is not built in; never runs another method instead. */
static void test_ordering_zstd(void **state)
{
#ifdef RF_HAVE_ZSTD
    /* config.h says it is built: the registry must have it. */
    assert_non_null(rf_method_find("zstd"));
    run_ordering(state, "zstd", "on");
#else
    (void)state;
    assert_null(rf_method_find("zstd"));
    skip();
#endif
}

/* ---- a writer running during the migration ---------------------------- */

static void test_live_writer(void **state)
{
    Fixture *f = *state;
    start_dest(f);
    RfParams p;
    rf_params_init(&p);
    assert_true(rf_params_set(&p, "multifd-channels", "4", NULL));
    RfWriter *w = rf_writer_start(f->src, 0, 5, NULL);
    assert_non_null(w);
    RfMigrateOptions o = {.verify = true, .pause = rf_writer_hook_pause,
                          .resume = rf_writer_hook_resume, .opaque = w};
    RfReport rep;
    RfError *err = NULL;
    bool ok = rf_migrate(f->uri, f->src, &p, &o, &rep, &err);
    uint64_t written = rf_writer_pages(w);
    join_dest(f);
    rf_writer_stop(w);
    if (!ok) {
        fail_msg("migrate: %s", rf_error_msg(err));
    }
    assert_true(rep.verified);
    assert_true(written > 0);
    assert_true(rep.rounds >= 2);
}

/* ---- a destination block between guard pages ---------------------------- */

/* A test-only sink: the block lives in an anonymous mapping with
 * GUARD_PAGES PROT_NONE pages right before and right after it, so that a
 * write outside the block faults at once instead of landing somewhere
 * harmless-looking.  (The file sink always maps its own file, whose size
 * says nothing about a write that went into the wrong place.)  A fault on
 * a guard page ends the test program with a message: a failure. */
#define GUARD_PAGES 16u

typedef struct GuardSink {
    RfRamSink base; /* first: the ops table */
    uint8_t *map;   /* guard pages, the block, guard pages */
    size_t map_len;
    uint8_t *block;
    uint64_t size;
} GuardSink;

/* The one guarded mapping, for the fault handler. */
static uint8_t *volatile guard_map, *volatile guard_block;
static volatile size_t guard_map_len, guard_block_len;

static void guard_say(const char *msg)
{
    ssize_t r = write(STDERR_FILENO, msg, strlen(msg));
    (void)r;
}

static void on_guard_fault(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    uint8_t *a = si->si_addr;
    if (guard_map && a >= guard_map && a < guard_block) {
        guard_say("FAIL: access to the guard pages BEFORE the "
                  "destination block\n");
        _exit(1);
    }
    if (guard_map && a >= guard_block + guard_block_len &&
        a < guard_map + guard_map_len) {
        guard_say("FAIL: access to the guard pages AFTER the "
                  "destination block\n");
        _exit(1);
    }
    /* Some other fault: die of it as usual. */
    signal(sig, SIG_DFL);
}

static bool guard_prepare(RfRamSink *s, const RfRamBlock *layout, unsigned n,
                          RfError **errp)
{
    GuardSink *g = (GuardSink *)s;
    if (n != 1 || g->map) {
        rf_error_set(errp, RF_ERR_MISMATCH, "guard sink: %u blocks", n);
        return false;
    }
    size_t guard = (size_t)GUARD_PAGES * RF_PAGE_SIZE;
    g->size = layout[0].size;
    g->map_len = g->size + 2 * guard;
    g->map = mmap(NULL, g->map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
                  -1, 0);
    if (g->map == MAP_FAILED) {
        g->map = NULL;
        rf_error_set(errp, RF_ERR_IO, "guard sink: mmap: %s",
                     strerror(errno));
        return false;
    }
    g->block = g->map + guard;
    if (mprotect(g->block, g->size, PROT_READ | PROT_WRITE) != 0) {
        rf_error_set(errp, RF_ERR_IO, "guard sink: mprotect: %s",
                     strerror(errno));
        return false;
    }
    guard_block_len = g->size;
    guard_map_len = g->map_len;
    guard_block = g->block;
    guard_map = g->map;
    return true;
}

static uint8_t *guard_host(RfRamSink *s, unsigned i)
{
    GuardSink *g = (GuardSink *)s;
    return i == 0 ? g->block : NULL;
}

static bool guard_wait_ready(RfRamSink *s)
{
    (void)s;
    return true;
}

static void guard_finish(RfRamSink *s, bool ok)
{
    (void)s;
    (void)ok;
}

static void guard_free(RfRamSink *s)
{
    GuardSink *g = (GuardSink *)s;
    if (g->map) {
        guard_map = NULL;
        munmap(g->map, g->map_len);
    }
    free(g);
}

static const RfRamSinkOps guard_sink_ops = {
    .name = "guard",
    .prepare = guard_prepare,
    .host = guard_host,
    .wait_ready = guard_wait_ready,
    .finish = guard_finish,
    .free = guard_free,
};

static RfRamSink *guard_sink_new(void)
{
    GuardSink *g = calloc(1, sizeof(*g));
    assert_non_null(g);
    g->base.ops = &guard_sink_ops;
    return &g->base;
}

/* The guarded block of a prepared guard sink. */
static uint8_t *guard_sink_block(RfRamSink *s)
{
    return ((GuardSink *)s)->block;
}

/* Routes SIGSEGV/SIGBUS to on_guard_fault until guard_catch_end(). */
static void guard_catch_begin(struct sigaction old[2])
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_guard_fault;
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGSEGV, &sa, &old[0]), 0);
    assert_int_equal(sigaction(SIGBUS, &sa, &old[1]), 0);
}

static void guard_catch_end(struct sigaction old[2])
{
    sigaction(SIGSEGV, &old[0], NULL);
    sigaction(SIGBUS, &old[1], NULL);
}

/* ---- a crafted peer ----------------------------------------------------- */

/* The capabilities and extension records a crafted source announces. */
typedef struct CraftedCaps {
    uint64_t supported, required;
    uint16_t ext_len;
    const uint8_t *ext;
} CraftedCaps;

static const CraftedCaps ramflow_caps = {RF_CAPS_IMPLEMENTED,
                                         RF_CAPS_SOURCE_NEEDS, 0, NULL};
/* An old source's: everything but 'crc32c'. */
static const CraftedCaps no_crc_caps = {
    RF_CAPS_IMPLEMENTED & ~RF_CAP(RF_CAP_CRC32C), RF_CAPS_SOURCE_NEEDS, 0,
    NULL};
/* Whether the last ACCEPT negotiated 'crc32c': crafted packets then carry
 * their CRC (crafted_seal). */
static bool crafted_crc;

/* Sends a HELLO for method `method`, `nchan` channels, one block of PAGES
 * pages, with the capabilities cc, on a new main channel. */
static RfConn *crafted_hello(Fixture *f, uint8_t method, unsigned nchan,
                             const CraftedCaps *cc)
{
    RfError *err = NULL;
    RfConn *main = rf_conn_connect(f->uri, 2000, &err);
    assert_non_null(main);
    RfHello *h = calloc(1, sizeof(*h));
    h->version = RF_WIRE_VERSION;
    h->page_size = RF_PAGE_SIZE;
    h->caps_supported = cc->supported;
    h->caps_required = cc->required;
    h->ext.len = cc->ext_len;
    if (cc->ext_len) {
        memcpy(h->ext.bytes, cc->ext, cc->ext_len);
    }
    h->method = method;
    h->channels = (uint16_t)nchan;
    memset(h->session, 0xab, sizeof(h->session));
    h->nblocks = 1;
    snprintf(h->blocks[0].name, sizeof(h->blocks[0].name), "ram");
    h->blocks[0].size = PAGES * RF_PAGE_SIZE;
    uint8_t buf[1024], hdr[RF_MSG_HDR_SIZE];
    size_t n = rf_wire_hello_encode(h, buf, sizeof(buf));
    free(h);
    assert_true(n > 0);
    rf_wire_msg_hdr_encode(hdr, RF_MSG_HELLO, (uint32_t)n);
    assert_true(rf_conn_send(main, hdr, sizeof(hdr), NULL));
    assert_true(rf_conn_send(main, buf, n, NULL));
    return main;
}

/* Reads the destination's answer to a HELLO: ACCEPT (@return true, its
 * caps in *caps) or ERROR (@return false, kind and text in *kind, msg). */
static bool crafted_answer(RfConn *main, uint64_t *caps, uint32_t *kind,
                           char *msg, size_t cap)
{
    uint8_t hdr[RF_MSG_HDR_SIZE], body[4200];
    RfMsgHdr mh;
    assert_true(rf_conn_recv(main, hdr, sizeof(hdr), NULL));
    assert_true(rf_wire_msg_hdr_decode(hdr, &mh, NULL));
    assert_true(mh.length <= sizeof(body));
    assert_true(rf_conn_recv(main, body, mh.length, NULL));
    if (mh.type == RF_MSG_ERROR) {
        assert_true(rf_wire_error_decode(body, mh.length, kind, msg, cap,
                                         NULL));
        return false;
    }
    assert_int_equal(mh.type, RF_MSG_ACCEPT);
    static RfAccept acc;
    assert_true(rf_wire_accept_decode(body, mh.length, &acc, NULL));
    *caps = acc.caps;
    crafted_crc = acc.caps & RF_CAP(RF_CAP_CRC32C);
    return true;
}

/* Connects a data channel with the test's own socket (adopted by the
 * transport), so that the test can look at the socket's queue: the
 * transport keeps its descriptors to itself. */
static RfConn *own_socket_conn(Fixture *f, int *fd)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    assert_true(strlen(f->sock) < sizeof(a.sun_path));
    memcpy(a.sun_path, f->sock, strlen(f->sock) + 1);
    *fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(*fd >= 0);
    assert_int_equal(connect(*fd, (struct sockaddr *)&a, sizeof(a)), 0);
    RfConn *c = rf_conn_from_fd(*fd, NULL);
    assert_non_null(c);
    return c;
}

/* Opens the main channel and `nchan` data channels as a (crafted) source
 * would, for method `method`, one block of PAGES pages; data == NULL
 * stops after the HELLO.  With fds, the data channels are the test's own
 * sockets and their descriptors go there. */
static void crafted_connect_caps(Fixture *f, uint8_t method, unsigned nchan,
                                 const CraftedCaps *cc, RfConn **main,
                                 RfConn **data, int *fds)
{
    RfError *err = NULL;
    *main = crafted_hello(f, method, nchan, cc);
    if (!data) {
        return;
    }
    uint64_t caps;
    uint32_t kind;
    char msg[200];
    if (!crafted_answer(*main, &caps, &kind, msg, sizeof(msg))) {
        fail_msg("destination refused the HELLO: %s", msg);
    }
    for (unsigned i = 0; i < nchan; i++) {
        data[i] = fds ? own_socket_conn(f, &fds[i])
                      : rf_conn_connect(f->uri, 2000, &err);
        assert_non_null(data[i]);
        RfChanHello ch = {.version = RF_WIRE_VERSION,
                          .channel = (uint16_t)i};
        memset(ch.session, 0xab, sizeof(ch.session));
        uint8_t chb[RF_CHAN_HELLO_SIZE];
        rf_wire_chan_hello_encode(&ch, chb);
        assert_true(rf_conn_send(data[i], chb, sizeof(chb), NULL));
    }
}

static void crafted_connect_fds(Fixture *f, uint8_t method, unsigned nchan,
                                RfConn **main, RfConn **data, int *fds)
{
    crafted_connect_caps(f, method, nchan, &ramflow_caps, main, data, fds);
}

static void crafted_connect(Fixture *f, uint8_t method, unsigned nchan,
                            RfConn **main, RfConn **data)
{
    crafted_connect_fds(f, method, nchan, main, data, NULL);
}

/* Puts the CRC32C of a crafted packet (len bytes of header and indexes
 * at pkt, then payload_len bytes of payload) into its header, as
 * ramflow's source does, when the last ACCEPT negotiated 'crc32c'. */
static void crafted_seal(uint8_t *pkt, size_t len, const void *payload,
                         size_t payload_len)
{
    if (!crafted_crc) {
        return;
    }
    uint32_t st = rf_wire_crc_begin(pkt);
    st = rf_wire_crc_update(st, pkt + RF_PKT_HDR_SIZE,
                            len - RF_PKT_HDR_SIZE);
    st = rf_wire_crc_update(st, payload, payload_len);
    rf_wire_packet_set_crc(pkt, rf_wire_crc_end(st));
}

static void send_packet(RfConn *data, const RfPacketHdr *h,
                        const uint32_t *idx, const void *payload,
                        size_t payload_len)
{
    uint8_t buf[RF_PKT_HDR_SIZE + 4 * 256];
    RfPacketHdr copy = *h;
    copy.round = copy.round ? copy.round : 1;
    rf_wire_packet_hdr_encode(&copy, buf);
    uint32_t n = (uint32_t)h->normal + h->zero;
    if (n > 256) {
        n = 256;
    }
    uint32_t all[256] = {0}; /* the case's first 4 indexes, then zeros */
    memcpy(all, idx, 4 * sizeof(uint32_t));
    size_t len = RF_PKT_HDR_SIZE + rf_wire_page_index_encode(
                                       all, n, buf + RF_PKT_HDR_SIZE);
    crafted_seal(buf, len, payload, payload_len);
    /* The peer may close early: ignore send errors. */
    rf_conn_send(data, buf, len, NULL);
    if (payload_len) {
        rf_conn_send(data, payload, payload_len, NULL);
    }
}

typedef struct BadCase {
    const char *name;
    RfPacketHdr hdr;
    uint32_t idx[4];
    size_t payload; /* bytes actually sent (may be short) */
    bool close_early;
    const char *expect; /* substring of the destination's error */
} BadCase;

/* A new guarded sink and a clean result for the next destination run. */
static void fresh_dest(Fixture *f)
{
    rf_ram_sink_free(f->sink);
    f->sink = guard_sink_new();
    f->listening = false;
    rf_error_free(f->derr);
    f->derr = NULL;
}

static void run_bad(Fixture *f, const BadCase *bc)
{
    fresh_dest(f);
    start_dest(f);
    RfConn *main = NULL, *data = NULL;
    crafted_connect(f, bc->hdr.method, 1, &main, &data);
    static uint8_t page[2 * RF_PAGE_SIZE];
    memset(page, 0x5a, sizeof(page));
    send_packet(data, &bc->hdr, bc->idx, page, bc->payload);
    if (bc->close_early) {
        rf_conn_close(data);
        data = NULL;
    }
    join_dest(f);
    assert_false(f->dok);
    assert_non_null(f->derr);
    const char *msg = rf_error_msg(f->derr);
    /* A receive straight into a guard page fails with EFAULT instead of
     * faulting: that too is a write outside the block. */
    if (strstr(msg, strerror(EFAULT))) {
        fail_msg("%s: the destination wrote outside the block: '%s'",
                 bc->name, msg);
    }
    if (!strstr(msg, bc->expect) || !strstr(msg, "channel")) {
        fail_msg("%s: destination said '%s', expected '%s' and the channel",
                 bc->name, msg, bc->expect);
    }
    /* The destination told the source on the main channel. */
    uint8_t hdr[RF_MSG_HDR_SIZE];
    RfMsgHdr mh;
    bool got_error = false;
    for (int i = 0; i < 3; i++) {
        if (!rf_conn_recv(main, hdr, sizeof(hdr), NULL) ||
            !rf_wire_msg_hdr_decode(hdr, &mh, NULL)) {
            break;
        }
        uint8_t body[4200];
        if (mh.length > sizeof(body) ||
            !rf_conn_recv(main, body, mh.length, NULL)) {
            break;
        }
        if (mh.type == RF_MSG_ERROR) {
            got_error = true;
            break;
        }
    }
    assert_true(got_error);
    rf_conn_close(data);
    rf_conn_close(main);
}

static void test_bad_packets(void **state)
{
    Fixture *f = *state;
    /* Every case runs against a fresh guard sink (fresh_dest): a write
     * outside the block faults on a guard page and fails the test. */
    struct sigaction old[2];
    guard_catch_begin(old);
    const uint8_t none = RF_METHOD_NONE;
    BadCase cases[] = {
        {"too many pages",
         {.version = RF_WIRE_VERSION, .method = none, .flags = RF_PKT_RAW,
          .normal = 200, .payload_size = 200 * RF_PAGE_SIZE},
         {0}, 0, false, "normal"},
        /* The page's data follows: a receiver that let the index through
         * would write it on the guard page after the block. */
        {"page outside the block",
         {.version = RF_WIRE_VERSION, .method = none, .flags = RF_PKT_RAW,
          .normal = 1, .payload_size = RF_PAGE_SIZE},
         {PAGES}, RF_PAGE_SIZE, false, "index"},
        {"zero page outside the block",
         {.version = RF_WIRE_VERSION, .method = none, .flags = RF_PKT_RAW,
          .zero = 1},
         {PAGES}, 0, false, "index"},
        {"block id out of range",
         {.version = RF_WIRE_VERSION, .method = none, .flags = RF_PKT_RAW,
          .block = 3, .normal = 1, .payload_size = RF_PAGE_SIZE},
         {0}, 0, false, "block"},
        {"wrong method byte",
         {.version = RF_WIRE_VERSION, .method = 9, .flags = RF_PKT_RAW,
          .normal = 1, .payload_size = RF_PAGE_SIZE},
         {0}, 0, false, "method"},
        {"raw payload size",
         {.version = RF_WIRE_VERSION, .method = none, .flags = RF_PKT_RAW,
          .normal = 1, .payload_size = 100},
         {0}, 0, false, "payload"},
        {"bad version",
         {.version = 77, .method = none, .flags = RF_PKT_RAW, .normal = 1,
          .payload_size = RF_PAGE_SIZE},
         {0}, 0, false, "version"},
        {"truncated payload",
         {.version = RF_WIRE_VERSION, .method = none, .flags = RF_PKT_RAW,
          .normal = 2, .payload_size = 2 * RF_PAGE_SIZE},
         {5, 6}, 100, true, "closed"},
        {"wrong sequence number",
         {.version = RF_WIRE_VERSION, .method = none, .flags = RF_PKT_RAW,
          .normal = 1, .payload_size = RF_PAGE_SIZE, .seq = 5},
         {0}, 0, false, "seq"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* The hello names method `none` even for the wrong-method case. */
        BadCase bc = cases[i];
        if (bc.hdr.method == 9) {
            fresh_dest(f);
            start_dest(f);
            RfConn *main = NULL, *data = NULL;
            crafted_connect(f, none, 1, &main, &data);
            send_packet(data, &bc.hdr, bc.idx, NULL, 0);
            join_dest(f);
            assert_false(f->dok);
            if (!strstr(rf_error_msg(f->derr), "method")) {
                fail_msg("wrong method: '%s'", rf_error_msg(f->derr));
            }
            rf_conn_close(data);
            rf_conn_close(main);
            continue;
        }
        run_bad(f, &bc);
    }
    guard_catch_end(old);
}

static void test_unknown_method_in_hello(void **state)
{
    Fixture *f = *state;
    start_dest(f);
    RfConn *main = NULL;
    crafted_connect(f, 42, 1, &main, NULL);
    join_dest(f);
    assert_false(f->dok);
    if (!strstr(rf_error_msg(f->derr), "method")) {
        fail_msg("unexpected: %s", rf_error_msg(f->derr));
    }
    rf_conn_close(main);
}

/* ---- a rejected packet leaves the pages as they were -------------------- */

/* Pages 5 and 6: consecutive, so a decoder that wrote in place (as
 * ramflow's did for contiguous pages before issue 10) would write them. */
#define KEEP_PAGE 5u

/* The bytes after a packet's header and indexes (a payload), and a byte
 * of it to flip after the CRC was taken, as a bad link would (-1: none). */
typedef struct BadPayload {
    const char *name;
    uint8_t method;
    const CraftedCaps *caps;
    uint8_t flags;          /* RF_PKT_RAW or 0 */
    uint8_t payload[2 * RF_PAGE_SIZE];
    size_t len;
    long flip;              /* offset into the payload, or -1 */
    const char *expect;     /* in the destination's message ("" = the CRC
                             * message, computed here) */
} BadPayload;

/*
 * Packet 0 (RAW, good) fills pages 5 and 6 with 0x11; packet 1 brings new
 * contents for the same pages and is rejected.  Whatever the reason, the
 * destination's block must hold exactly what packet 0 left: pages 5 and 6
 * all 0x11, everything else zero.
 */
static void run_rejected(Fixture *f, BadPayload *bp)
{
    fresh_dest(f);
    start_dest(f);
    RfConn *main = NULL, *data = NULL;
    crafted_connect_caps(f, bp->method, 1, bp->caps, &main, &data, NULL);
    static uint8_t keep[2 * RF_PAGE_SIZE];
    memset(keep, 0x11, sizeof(keep));
    const uint32_t idx[4] = {KEEP_PAGE, KEEP_PAGE + 1};
    RfPacketHdr good = {.version = RF_WIRE_VERSION, .method = bp->method,
                        .flags = RF_PKT_RAW, .normal = 2,
                        .payload_size = sizeof(keep), .round = 1, .seq = 0};
    send_packet(data, &good, idx, keep, sizeof(keep));

    RfPacketHdr bad = {.version = RF_WIRE_VERSION, .method = bp->method,
                       .flags = bp->flags, .normal = 2,
                       .payload_size = (uint32_t)bp->len, .round = 1,
                       .seq = 1};
    uint8_t head[RF_PKT_HDR_SIZE + 8];
    rf_wire_packet_hdr_encode(&bad, head);
    rf_wire_page_index_encode(idx, 2, head + RF_PKT_HDR_SIZE);
    crafted_seal(head, sizeof(head), bp->payload, bp->len);
    char want[200];
    snprintf(want, sizeof(want), "%s", bp->expect);
    if (bp->flip >= 0) {
        bp->payload[bp->flip] ^= 0x40;
        uint32_t st = rf_wire_crc_begin(head);
        st = rf_wire_crc_update(st, head + RF_PKT_HDR_SIZE, 8);
        uint32_t computed = rf_wire_crc_end(
            rf_wire_crc_update(st, bp->payload, bp->len));
        snprintf(want, sizeof(want),
                 "channel 0: packet seq 1: CRC32C mismatch (computed "
                 "0x%08x, packet says 0x%08x)", computed,
                 (uint32_t)head[32] | (uint32_t)head[33] << 8 |
                     (uint32_t)head[34] << 16 | (uint32_t)head[35] << 24);
    }
    assert_true(rf_conn_send(data, head, sizeof(head), NULL));
    rf_conn_send(data, bp->payload, bp->len, NULL);
    join_dest(f);
    assert_false(f->dok);
    if (!strstr(rf_error_msg(f->derr), want)) {
        fail_msg("%s: destination said '%s', expected '%s'", bp->name,
                 rf_error_msg(f->derr), want);
    }
    assert_int_equal(rf_error_kind(f->derr), RF_ERR_PROTOCOL);
    const uint8_t *block = guard_sink_block(f->sink);
    for (size_t i = 0; i < (size_t)PAGES * RF_PAGE_SIZE; i++) {
        size_t pg = i / RF_PAGE_SIZE;
        uint8_t expect = pg == KEEP_PAGE || pg == KEEP_PAGE + 1 ? 0x11 : 0;
        if (block[i] != expect) {
            fail_msg("%s: page %zu byte %zu is 0x%02x, expected 0x%02x: the "
                     "rejected packet wrote into guest memory", bp->name,
                     pg, i % RF_PAGE_SIZE, block[i], expect);
        }
    }
    print_message("%s: pages intact; %s\n", bp->name, rf_error_msg(f->derr));
    rf_conn_close(data);
    rf_conn_close(main);
}

#ifdef RF_HAVE_ZSTD
/* A zstd frame of `in_len` bytes of 0x5a that does not state its content
 * size (so the destination learns its real size only by decoding). */
static size_t zstd_frame_no_size(uint8_t *out, size_t cap, size_t in_len)
{
    static uint8_t in[2 * RF_PAGE_SIZE];
    memset(in, 0x5a, sizeof(in));
    in[17] = 3; /* not all one byte */
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    assert_non_null(cc);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
    size_t n = ZSTD_compress2(cc, out, cap, in, in_len);
    ZSTD_freeCCtx(cc);
    assert_false(ZSTD_isError(n));
    return n;
}
#endif

static void test_rejected_packet_leaves_pages(void **state)
{
    Fixture *f = *state;
    struct sigaction old[2];
    guard_catch_begin(old);
    static BadPayload bp;
    /* RAW pages corrupted on the way: the CRC catches it. */
    bp = (BadPayload){"RAW, a flipped byte", RF_METHOD_NONE, &ramflow_caps,
                      RF_PKT_RAW, {0}, 2 * RF_PAGE_SIZE, 5000, ""};
    memset(bp.payload, 0x5a, bp.len);
    run_rejected(f, &bp);
#ifdef RF_HAVE_ZSTD
    /* A zstd frame corrupted on the way: caught before decoding. */
    bp = (BadPayload){"zstd, a flipped byte", RF_METHOD_ZSTD, &ramflow_caps,
                      0, {0}, 0, 0, ""};
    bp.len = zstd_frame_no_size(bp.payload, sizeof(bp.payload),
                                2 * RF_PAGE_SIZE);
    bp.flip = (long)bp.len / 2;
    run_rejected(f, &bp);
    /* A good CRC over a frame that decodes to one page of the two: the
     * decoder's output is short, and nothing of it reaches the pages;
     * with and without 'crc32c'. */
    const char *short_msg = "channel 0: zstd: frame decodes to 4096 bytes, "
                            "expected 8192 (2 pages)";
    bp = (BadPayload){"zstd, short output", RF_METHOD_ZSTD, &ramflow_caps, 0,
                      {0}, 0, -1, short_msg};
    bp.len = zstd_frame_no_size(bp.payload, sizeof(bp.payload),
                                RF_PAGE_SIZE);
    run_rejected(f, &bp);
    bp.name = "zstd, short output, no crc32c";
    bp.caps = &no_crc_caps;
    run_rejected(f, &bp);
#endif
    guard_catch_end(old);
}

/* ---- the SYNC barrier, with a crafted two-channel source ---------------- */

/* One raw page packet: page `page` filled with the round's number. */
static void barrier_send_page(RfConn *c, uint64_t seq, uint32_t round,
                              uint32_t page)
{
    RfPacketHdr h = {.version = RF_WIRE_VERSION, .method = RF_METHOD_NONE,
                     .flags = RF_PKT_RAW, .normal = 1,
                     .payload_size = RF_PAGE_SIZE, .round = round,
                     .seq = seq};
    static uint8_t buf[RF_PKT_HDR_SIZE + 4 + RF_PAGE_SIZE];
    rf_wire_packet_hdr_encode(&h, buf);
    rf_wire_page_index_encode(&page, 1, buf + RF_PKT_HDR_SIZE);
    memset(buf + RF_PKT_HDR_SIZE + 4, (int)round, RF_PAGE_SIZE);
    memcpy(buf + RF_PKT_HDR_SIZE + 4, &round, sizeof(round));
    crafted_seal(buf, sizeof(buf), NULL, 0);
    assert_true(rf_conn_send(c, buf, sizeof(buf), NULL));
}

static void barrier_send_sync(RfConn *c, uint64_t seq, uint32_t round,
                              bool final)
{
    RfPacketHdr h = {.version = RF_WIRE_VERSION, .method = RF_METHOD_NONE,
                     .flags = RF_PKT_SYNC | (final ? RF_PKT_FINAL : 0),
                     .round = round, .seq = seq};
    uint8_t buf[RF_PKT_HDR_SIZE];
    rf_wire_packet_hdr_encode(&h, buf);
    crafted_seal(buf, sizeof(buf), NULL, 0);
    assert_true(rf_conn_send(c, buf, sizeof(buf), NULL));
}

/* Bytes written on Unix socket fd that the peer has not read yet: a Unix
 * socket's SIOCOUTQ counts the queued buffers, freed as they are read. */
static int unread_bytes(int fd)
{
    int n = 0;
    assert_int_equal(ioctl(fd, SIOCOUTQ, &n), 0);
    return n;
}

/* Waits until the peer has read everything written on socket fd, or `ms`
 * pass.  @return true if it did. */
static bool wait_read_by_peer(int c, unsigned ms)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (unread_bytes(c) == 0) {
            return true;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - t0.tv_sec) * 1000 +
                (now.tv_nsec - t0.tv_nsec) / 1000000 >= (long)ms) {
            return false;
        }
        struct timespec d = {0, 1000 * 1000};
        nanosleep(&d, NULL);
    }
}

/*
 * A stale copy must never land after a newer one.  Page P is sent twice:
 * round 1's copy on channel 0 (A), round 2's copy on channel 1 (B).  The
 * crafted source orders the bytes as a slow channel would:
 *
 *   B: SYNC(1), P@round 2, SYNC(2, FINAL)       sent first, in full;
 *      then A is held back until B's receiver has read all of B (or has
 *      sat for BARRIER_HOLD_MS without doing so: it waits at the barrier);
 *   A: P@round 1, SYNC(1), SYNC(2, FINAL)       sent last.
 *
 * With the barrier B's receiver stops at SYNC(1) until A's SYNC(1) has
 * arrived, after A's copy of round 1; P ends with round 2.  Without it B
 * applies round 2 at once, its bytes are all read, and A's stale round 1
 * lands on top: P ends with round 1 and the test fails (shown by taking
 * the wait out of sync_barrier() in src/channel/recv_channel.c).  The
 * hold only bounds how long a broken receiver gets to misbehave; with a
 * working barrier the result does not depend on it.
 */
#define BARRIER_PAGE 77u
#define BARRIER_HOLD_MS 1000u

static void test_sync_barrier_orders_channels(void **state)
{
    Fixture *f = *state;
    fresh_dest(f);
    start_dest(f);
    RfConn *main = NULL, *data[2] = {NULL, NULL};
    int fds[2];
    crafted_connect_fds(f, RF_METHOD_NONE, 2, &main, data, fds);
    RfConn *a = data[0], *b = data[1];

    barrier_send_sync(b, 0, 1, false);
    barrier_send_page(b, 1, 2, BARRIER_PAGE);
    barrier_send_sync(b, 2, 2, true);
    bool b_read_all = wait_read_by_peer(fds[1], BARRIER_HOLD_MS);
    print_message("channel 1 (round 2's copy) %s before channel 0 sent "
                  "round 1's copy\n",
                  b_read_all ? "was read in full" : "was held at SYNC(1)");

    barrier_send_page(a, 0, 1, BARRIER_PAGE);
    barrier_send_sync(a, 1, 1, false);
    barrier_send_sync(a, 2, 2, true);

    /* END on the main channel, then COMPLETE (after any ROUND_ACKs). */
    uint8_t hdr[RF_MSG_HDR_SIZE], body[4200];
    size_t n = rf_wire_end_encode(2, false, body, sizeof(body));
    assert_true(n > 0);
    rf_wire_msg_hdr_encode(hdr, RF_MSG_END, (uint32_t)n);
    assert_true(rf_conn_send(main, hdr, sizeof(hdr), NULL));
    assert_true(rf_conn_send(main, body, n, NULL));
    RfMsgHdr mh = {0};
    do {
        assert_true(rf_conn_recv(main, hdr, sizeof(hdr), NULL));
        assert_true(rf_wire_msg_hdr_decode(hdr, &mh, NULL));
        assert_true(mh.length <= sizeof(body));
        assert_true(rf_conn_recv(main, body, mh.length, NULL));
    } while (mh.type == RF_MSG_ROUND_ACK);
    join_dest(f);
    if (!f->dok) {
        fail_msg("destination: %s", rf_error_msg(f->derr));
    }
    assert_int_equal(mh.type, RF_MSG_COMPLETE);
    assert_int_equal(f->drep.rounds, 2);

    const uint8_t *p = guard_sink_block(f->sink) +
                       (size_t)BARRIER_PAGE * RF_PAGE_SIZE;
    uint32_t got;
    memcpy(&got, p, sizeof(got));
    if (got != 2) {
        fail_msg("page %u holds round %u's copy, expected round 2's: the "
                 "stale copy on channel 0 landed after the newer one on "
                 "channel 1", BARRIER_PAGE, got);
    }
    for (size_t i = sizeof(got); i < RF_PAGE_SIZE; i++) {
        assert_int_equal(p[i], 2);
    }
    rf_conn_close(a);
    rf_conn_close(b);
    rf_conn_close(main);
}

/* Joins the destination thread, failing the test (instead of hanging it)
 * if it has not ended within ms.  @return the milliseconds it took. */
static long join_dest_within(Fixture *f, unsigned ms)
{
    struct timespec t0, t1, deadline;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += ms / 1000;
    deadline.tv_nsec += (long)(ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    if (pthread_timedjoin_np(f->thread, NULL, &deadline) != 0) {
        fail_msg("the destination still runs after %u ms: it hangs", ms);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0.tv_sec) * 1000 +
           (t1.tv_nsec - t0.tv_nsec) / 1000000;
}

typedef struct SyncMismatch {
    uint32_t round0, round1;
    bool final0, final1;
    const char *expect; /* the destination's whole message */
} SyncMismatch;

/*
 * Channel 0 sends its SYNC first and the destination reads it (it waits at
 * that barrier); then channel 1 sends a SYNC that cannot meet it.  Before
 * the barrier was keyed by round, channel 1's SYNC counted as the second
 * arrival at whatever barrier was open (or waited for ever), and the
 * destination never ended.  Now it fails at once, well inside its 5 s
 * timeout, naming channel 1 and both rounds.
 */
static void run_sync_mismatch(Fixture *f, const SyncMismatch *m)
{
    fresh_dest(f);
    start_dest(f);
    RfConn *main = NULL, *data[2] = {NULL, NULL};
    int fds[2];
    crafted_connect_fds(f, RF_METHOD_NONE, 2, &main, data, fds);
    barrier_send_sync(data[0], 0, m->round0, m->final0);
    assert_true(wait_read_by_peer(fds[0], 2000));
    barrier_send_sync(data[1], 0, m->round1, m->final1);
    long ms = join_dest_within(f, 3000);
    assert_false(f->dok);
    assert_non_null(f->derr);
    assert_int_equal(rf_error_kind(f->derr), RF_ERR_PROTOCOL);
    if (!strstr(rf_error_msg(f->derr), m->expect)) {
        fail_msg("destination said '%s', expected '%s'",
                 rf_error_msg(f->derr), m->expect);
    }
    print_message("failed in %ld ms: %s\n", ms, rf_error_msg(f->derr));
    for (unsigned i = 0; i < 2; i++) {
        rf_conn_close(data[i]);
    }
    rf_conn_close(main);
}

static void test_sync_round_mismatch_fails(void **state)
{
    static const SyncMismatch cases[] = {
        {5, 7, false, false,
         "channel 1: SYNC for round 7 while channel 0 is at the barrier of "
         "round 5"},
        {1, 2, false, true,
         "channel 1: FINAL SYNC for round 2 while channel 0 is at the "
         "barrier of round 1"},
        {3, 3, true, false,
         "channel 1: SYNC for round 3 while channel 0 is at the FINAL "
         "barrier of round 3"},
        {4, 4, false, true,
         "channel 1: FINAL SYNC for round 4 while channel 0 is at the "
         "non-final barrier of round 4"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        run_sync_mismatch(*state, &cases[i]);
    }
}

/* ---- strays: connections that are not the source's --------------------- */

struct Strays {
    unsigned n;
    char why[8][200];
};
typedef struct Strays Strays;

static void on_rejected(const char *peer, const char *why, void *opaque)
{
    (void)peer;
    Fixture *f = opaque;
    Strays *s = f->strays;
    if (s->n < 8) {
        snprintf(s->why[s->n], sizeof(s->why[0]), "%s", why);
    }
    s->n++;
}

/* Opens a connection, sends len bytes of buf, and closes it. */
static void stray(Fixture *f, const void *buf, size_t len)
{
    RfConn *c = rf_conn_connect(f->uri, 2000, NULL);
    assert_non_null(c);
    if (len) {
        assert_true(rf_conn_send(c, buf, len, NULL));
    }
    rf_conn_close(c);
}

static void stray_chan_hello(Fixture *f, uint8_t session_byte, unsigned ch)
{
    RfChanHello h = {.version = RF_WIRE_VERSION, .channel = (uint16_t)ch};
    memset(h.session, session_byte, sizeof(h.session));
    uint8_t b[RF_CHAN_HELLO_SIZE];
    rf_wire_chan_hello_encode(&h, b);
    stray(f, b, sizeof(b));
}

/*
 * An attacker connects first (an SSH banner where the HELLO should be),
 * and strays arrive between the source's data channels: a short
 * non-hello, a hello of another session, an out-of-range and a duplicate
 * channel.  Each is dropped and reported, and the migration completes
 * (before issue 9 the first one took the migration, and any of the others
 * aborted it).  The destination handles connections in the order they
 * were accepted, so the sequence below is deterministic.
 */
static void test_strays_dropped(void **state)
{
    Fixture *f = *state;
    Strays st = {0};
    f->strays = &st;
    f->iopts.rejected = on_rejected;
    fresh_dest(f);
    start_dest(f);
    stray(f, "SSH-2.0-OpenSSH_9.2\r\n", 21);
    RfConn *main = crafted_hello(f, RF_METHOD_NONE, 2, &ramflow_caps);
    uint64_t caps;
    uint32_t kind;
    char msg[200];
    if (!crafted_answer(main, &caps, &kind, msg, sizeof(msg))) {
        fail_msg("destination refused the HELLO: %s", msg);
    }
    stray(f, "GET /", 5);
    stray_chan_hello(f, 0xcd, 0);
    stray_chan_hello(f, 0xab, 5);
    RfConn *data[2];
    for (unsigned i = 0; i < 2; i++) {
        if (i == 1) {
            stray_chan_hello(f, 0xab, 0); /* duplicate of channel 0 */
        }
        data[i] = rf_conn_connect(f->uri, 2000, NULL);
        assert_non_null(data[i]);
        RfChanHello ch = {.version = RF_WIRE_VERSION, .channel = (uint16_t)i};
        memset(ch.session, 0xab, sizeof(ch.session));
        uint8_t chb[RF_CHAN_HELLO_SIZE];
        rf_wire_chan_hello_encode(&ch, chb);
        assert_true(rf_conn_send(data[i], chb, sizeof(chb), NULL));
    }
    barrier_send_page(data[0], 0, 1, 5);
    barrier_send_sync(data[0], 1, 1, true);
    barrier_send_sync(data[1], 0, 1, true);
    uint8_t hdr[RF_MSG_HDR_SIZE], body[4200];
    size_t n = rf_wire_end_encode(1, false, body, sizeof(body));
    rf_wire_msg_hdr_encode(hdr, RF_MSG_END, (uint32_t)n);
    assert_true(rf_conn_send(main, hdr, sizeof(hdr), NULL));
    assert_true(rf_conn_send(main, body, n, NULL));
    RfMsgHdr mh = {0};
    do {
        assert_true(rf_conn_recv(main, hdr, sizeof(hdr), NULL));
        assert_true(rf_wire_msg_hdr_decode(hdr, &mh, NULL));
        assert_true(rf_conn_recv(main, body, mh.length, NULL));
    } while (mh.type == RF_MSG_ROUND_ACK);
    join_dest(f);
    if (!f->dok) {
        fail_msg("destination: %s", rf_error_msg(f->derr));
    }
    assert_int_equal(mh.type, RF_MSG_COMPLETE);
    assert_int_equal(st.n, 5);
    assert_int_equal(f->drep.rejected_connections, 5);
    assert_non_null(strstr(st.why[0], "no ramflow hello"));
    assert_non_null(strstr(st.why[1], "data channel hello"));
    assert_non_null(strstr(st.why[2], "'session' does not match"));
    assert_non_null(strstr(st.why[3], "out of range"));
    assert_non_null(strstr(st.why[4], "a duplicate"));
    assert_int_equal(guard_sink_block(f->sink)[5 * RF_PAGE_SIZE + 4], 1);
    for (unsigned i = 0; i < 2; i++) {
        rf_conn_close(data[i]);
    }
    rf_conn_close(main);
}

static void test_max_memory_refused(void **state)
{
    Fixture *f = *state;
    f->iopts.max_memory = PAGES * RF_PAGE_SIZE - 1;
    fresh_dest(f);
    start_dest(f);
    RfConn *main = crafted_hello(f, RF_METHOD_NONE, 1, &ramflow_caps);
    uint64_t caps;
    uint32_t kind;
    char msg[300];
    assert_false(crafted_answer(main, &caps, &kind, msg, sizeof(msg)));
    join_dest(f);
    assert_false(f->dok);
    assert_int_equal(kind, RF_ERR_MISMATCH);
    assert_non_null(strstr(msg, "more than max-memory"));
    assert_non_null(strstr(rf_error_msg(f->derr), "more than max-memory"));
    rf_conn_close(main);
}

static void test_expected_method_mismatch(void **state)
{
    Fixture *f = *state;
    snprintf(f->iopts.expect_method, sizeof(f->iopts.expect_method), "zstd");
    start_dest(f);
    RfParams p;
    rf_params_init(&p);
    RfError *err = NULL;
    assert_false(rf_migrate(f->uri, f->src, &p, NULL, NULL, &err));
    join_dest(f);
    assert_false(f->dok);
    assert_int_equal(rf_error_kind(err), RF_ERR_MISMATCH);
    assert_non_null(strstr(rf_error_msg(err), "expects 'zstd'"));
    assert_non_null(strstr(rf_error_msg(f->derr), "expects 'zstd'"));
    rf_error_free(err);
}

/* ---- capability negotiation ------------------------------------------- */

static bool save_state_called;

static bool save_tiny_state(void *opaque, uint8_t **buf, size_t *len,
                            RfError **errp)
{
    (void)opaque;
    (void)errp;
    save_state_called = true;
    *buf = calloc(1, 16);
    *len = 16;
    return *buf != NULL;
}

/* A source with device state against a destination without a VM: both
 * sides refuse at the handshake, naming the capability, before the
 * destination prepares any memory or the source saves any state. */
static void test_caps_required_missing(void **state)
{
    Fixture *f = *state;
    start_dest(f); /* no load_state: no 'device-state' */
    RfParams p;
    rf_params_init(&p);
    save_state_called = false;
    RfMigrateOptions o = {.save_state = save_tiny_state};
    RfError *err = NULL;
    assert_false(rf_migrate(f->uri, f->src, &p, &o, NULL, &err));
    join_dest(f);
    static const char want[] =
        "handshake: destination lacks capability 'device-state' required "
        "by the source";
    assert_false(f->dok);
    assert_int_equal(rf_error_kind(err), RF_ERR_MISMATCH);
    assert_int_equal(rf_error_kind(f->derr), RF_ERR_MISMATCH);
    if (!strstr(rf_error_msg(err), "destination reported: ") ||
        !strstr(rf_error_msg(err), want)) {
        fail_msg("source: %s", rf_error_msg(err));
    }
    if (!strstr(rf_error_msg(f->derr), want)) {
        fail_msg("destination: %s", rf_error_msg(f->derr));
    }
    assert_non_null(strstr(rf_error_msg(err), "use 'incoming --guest'"));
    assert_false(save_state_called);
    assert_int_equal(access(f->dst_path, F_OK), -1); /* never prepared */
    rf_error_free(err);
}

/* A newer source offers capabilities this build does not know, with an
 * extension record for one: the destination negotiates down to what it
 * has, and the migration completes. */
static void test_caps_unknown_optional_ignored(void **state)
{
    Fixture *f = *state;
    start_dest(f);
    static const uint8_t ext[] = {40, 2, 0, 0xAB, 0xCD};
    const CraftedCaps cc = {
        RF_CAPS_IMPLEMENTED | RF_CAP(RF_CAP_PACKET_METHOD) | RF_CAP(40) |
            RF_CAP(63),
        RF_CAPS_SOURCE_NEEDS, sizeof(ext), ext};
    RfConn *main = crafted_hello(f, RF_METHOD_NONE, 1, &cc);
    uint64_t caps = 0;
    uint32_t kind;
    char msg[200];
    if (!crafted_answer(main, &caps, &kind, msg, sizeof(msg))) {
        fail_msg("destination refused the HELLO: %s", msg);
    }
    /* Its own set minus device-state (no VM), plus packet-method (the
     * source offered it): nothing unknown. */
    assert_true(caps ==
                ((RF_CAPS_IMPLEMENTED & ~RF_CAP(RF_CAP_DEVICE_STATE)) |
                 RF_CAP(RF_CAP_PACKET_METHOD)));

    /* The shortest migration: one page, the FINAL sync, END. */
    RfError *err = NULL;
    RfConn *data = rf_conn_connect(f->uri, 2000, &err);
    assert_non_null(data);
    RfChanHello ch = {.version = RF_WIRE_VERSION, .channel = 0};
    memset(ch.session, 0xab, sizeof(ch.session));
    uint8_t chb[RF_CHAN_HELLO_SIZE];
    rf_wire_chan_hello_encode(&ch, chb);
    assert_true(rf_conn_send(data, chb, sizeof(chb), NULL));
    static uint8_t page[RF_PAGE_SIZE];
    memset(page, 0x77, sizeof(page));
    const uint32_t idx[4] = {3};
    RfPacketHdr ph = {.version = RF_WIRE_VERSION, .method = RF_METHOD_NONE,
                      .flags = RF_PKT_RAW, .normal = 1,
                      .payload_size = RF_PAGE_SIZE, .round = 1, .seq = 0};
    send_packet(data, &ph, idx, page, sizeof(page));
    RfPacketHdr sync = {.version = RF_WIRE_VERSION,
                        .method = RF_METHOD_NONE,
                        .flags = RF_PKT_SYNC | RF_PKT_FINAL, .round = 1,
                        .seq = 1};
    send_packet(data, &sync, idx, NULL, 0);
    uint8_t buf[16], hdr[RF_MSG_HDR_SIZE];
    size_t n = rf_wire_end_encode(1, false, buf, sizeof(buf));
    rf_wire_msg_hdr_encode(hdr, RF_MSG_END, (uint32_t)n);
    assert_true(rf_conn_send(main, hdr, sizeof(hdr), NULL));
    assert_true(rf_conn_send(main, buf, n, NULL));
    join_dest(f);
    if (!f->dok) {
        fail_msg("destination: %s", rf_error_msg(f->derr));
    }
    uint8_t *dst = map_file(f->dst_path, PAGES * RF_PAGE_SIZE);
    assert_memory_equal(dst + 3 * RF_PAGE_SIZE, page, RF_PAGE_SIZE);
    munmap(dst, PAGES * RF_PAGE_SIZE);
    rf_conn_close(data);
    rf_conn_close(main);
}

/* A newer source that requires a capability this build does not know is
 * refused with the bit's number. */
static void test_caps_unknown_required_refused(void **state)
{
    Fixture *f = *state;
    start_dest(f);
    const CraftedCaps cc = {RF_CAPS_IMPLEMENTED | RF_CAP(40) | RF_CAP(41),
                            RF_CAPS_SOURCE_NEEDS | RF_CAP(40), 0, NULL};
    RfConn *main = crafted_hello(f, RF_METHOD_NONE, 1, &cc);
    uint64_t caps;
    uint32_t kind = 0;
    char msg[200];
    assert_false(crafted_answer(main, &caps, &kind, msg, sizeof(msg)));
    assert_int_equal(kind, RF_ERR_MISMATCH);
    static const char want[] =
        "destination lacks unknown capability bit 40 required by the source";
    if (!strstr(msg, want)) {
        fail_msg("ERROR said: %s", msg);
    }
    join_dest(f);
    assert_false(f->dok);
    assert_non_null(strstr(rf_error_msg(f->derr), want));
    rf_conn_close(main);
}

/* A crafted destination: reads the HELLO, then sends `reply` (a frame
 * payload of type `type`). */
typedef struct CraftedDest {
    Fixture *f;
    RfListener *l;
    uint16_t type;
    uint8_t reply[64];
    size_t reply_len;
    RfHello hello;
    bool got_hello;
} CraftedDest;

static void *crafted_dest_thread(void *arg)
{
    CraftedDest *cd = arg;
    RfConn *c = rf_listener_accept(cd->l, 5000, NULL, NULL);
    if (!c) {
        return NULL;
    }
    uint8_t hdr[RF_MSG_HDR_SIZE];
    static uint8_t body[65536];
    RfMsgHdr mh;
    if (rf_conn_recv(c, hdr, sizeof(hdr), NULL) &&
        rf_wire_msg_hdr_decode(hdr, &mh, NULL) &&
        mh.length <= sizeof(body) &&
        rf_conn_recv(c, body, mh.length, NULL)) {
        cd->got_hello = rf_wire_hello_decode(body, mh.length, &cd->hello,
                                             NULL);
    }
    rf_wire_msg_hdr_encode(hdr, cd->type, (uint32_t)cd->reply_len);
    rf_conn_send(c, hdr, sizeof(hdr), NULL);
    rf_conn_send(c, cd->reply, cd->reply_len, NULL);
    /* Wait for the source to hang up. */
    while (rf_conn_recv(c, hdr, 1, NULL)) {
    }
    rf_conn_close(c);
    return NULL;
}

/* Runs rf_migrate (with opts) against a crafted destination. */
static RfError *migrate_to_crafted(Fixture *f, CraftedDest *cd,
                                   const RfMigrateOptions *o)
{
    RfError *err = NULL;
    cd->f = f;
    cd->l = rf_listen(f->uri, &err);
    assert_non_null(cd->l);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, crafted_dest_thread, cd), 0);
    RfParams p;
    rf_params_init(&p);
    RfMigrateOptions opts = *o;
    opts.timeout_ms = 5000;
    assert_false(rf_migrate(f->uri, f->src, &p, &opts, NULL, &err));
    pthread_join(t, NULL);
    rf_listener_close(cd->l);
    assert_true(cd->got_hello);
    return err;
}

/* A newer destination's error kind becomes a generic error that keeps
 * the message; the source's HELLO offered and required what it should. */
static void test_unknown_error_kind_from_peer(void **state)
{
    Fixture *f = *state;
    static CraftedDest cd;
    memset(&cd, 0, sizeof(cd));
    cd.type = RF_MSG_ERROR;
    cd.reply_len = rf_wire_error_encode(99, "a newer destination says no",
                                        cd.reply, sizeof(cd.reply));
    RfMigrateOptions o = {.verify = true};
    RfError *err = migrate_to_crafted(f, &cd, &o);
    assert_int_equal(rf_error_kind(err), RF_ERR_GENERIC);
    if (!strstr(rf_error_msg(err),
                "destination reported: a newer destination says no "
                "(error kind 99, unknown to this version)")) {
        fail_msg("source: %s", rf_error_msg(err));
    }
    rf_error_free(err);
    assert_true(cd.hello.caps_supported ==
                (RF_CAPS_IMPLEMENTED | RF_CAPS_RECONNECT));
    assert_true(cd.hello.caps_required ==
                (RF_CAPS_SOURCE_NEEDS | RF_CAP(RF_CAP_VERIFY) |
                 RF_CAP(RF_CAP_CRC32C)));
}

/* An ACCEPT that drops a capability the source requires, or names one it
 * never offered, is a protocol error at the source. */
static void test_bad_accept(void **state)
{
    Fixture *f = *state;
    static CraftedDest cd;
    memset(&cd, 0, sizeof(cd));
    cd.type = RF_MSG_ACCEPT;
    RfAccept acc = {.caps = RF_CAPS_SOURCE_NEEDS | RF_CAP(RF_CAP_CRC32C)};
    /* no verify */
    cd.reply_len = rf_wire_accept_encode(&acc, cd.reply, sizeof(cd.reply));
    RfMigrateOptions o = {.verify = true};
    RfError *err = migrate_to_crafted(f, &cd, &o);
    assert_int_equal(rf_error_kind(err), RF_ERR_PROTOCOL);
    if (!strstr(rf_error_msg(err), "lacks capability 'verify' required by "
                                   "the source")) {
        fail_msg("source: %s", rf_error_msg(err));
    }
    rf_error_free(err);

    memset(&cd, 0, sizeof(cd));
    cd.type = RF_MSG_ACCEPT;
    acc.caps = RF_CAPS_IMPLEMENTED | RF_CAP(50);
    cd.reply_len = rf_wire_accept_encode(&acc, cd.reply, sizeof(cd.reply));
    RfMigrateOptions plain = {0};
    err = migrate_to_crafted(f, &cd, &plain);
    assert_int_equal(rf_error_kind(err), RF_ERR_PROTOCOL);
    if (!strstr(rf_error_msg(err), "names unknown capability bit 50, which "
                                   "the source did not offer")) {
        fail_msg("source: %s", rf_error_msg(err));
    }
    rf_error_free(err);
}

/* Set by round_start, on the thread that called rf_migrate, which also
 * reads it. */
static atomic_int cancel_flag;

typedef struct CancelCtx {
    RfWriter *writer;
    unsigned pauses, resumes; /* hook calls */
} CancelCtx;

static void cancel_in_round(unsigned round, void *opaque)
{
    (void)opaque;
    if (round == 2) {
        cancel_flag = 1;
    }
}

static void cancel_pause(void *opaque)
{
    CancelCtx *c = opaque;
    c->pauses++;
    rf_writer_pause(c->writer);
}

static void cancel_resume(void *opaque)
{
    CancelCtx *c = opaque;
    c->resumes++;
    rf_writer_resume(c->writer);
}

/* Cancelled in round 2, long before a final round: both sides fail with
 * "cancelled", the source's memory is what it was, and the engine, which
 * never paused the writer, does not resume it either.  Nothing changes the
 * source meanwhile: the writer is paused before the reference copy is
 * taken (rf_writer_pause returns once no write is in flight), so the
 * comparison does not depend on timing. */
static void test_cancel_keeps_source(void **state)
{
    Fixture *f = *state;
    RfWriter *w = rf_writer_start(f->src, 1000, 9, NULL);
    assert_non_null(w);
    rf_writer_pause(w);
    uint64_t written = rf_writer_pages(w);
    uint8_t *copy = malloc(PAGES * RF_PAGE_SIZE);
    memcpy(copy, f->src_map, PAGES * RF_PAGE_SIZE);
    start_dest(f);
    RfParams p;
    rf_params_init(&p);
    assert_true(rf_params_set(&p, "downtime-limit", "0", NULL));
    cancel_flag = 0;
    CancelCtx cc = {.writer = w};
    RfMigrateOptions o = {.cancel = &cancel_flag,
                          .round_start = cancel_in_round,
                          .pause = cancel_pause, .resume = cancel_resume,
                          .opaque = &cc};
    RfError *err = NULL;
    /* Dirty something so round 2 exists. */
    rf_ram_source_mark_dirty(f->src, 0, 0, RF_PAGE_SIZE);
    bool ok = rf_migrate(f->uri, f->src, &p, &o, NULL, &err);
    join_dest(f);
    assert_int_equal(cc.pauses, 0);
    assert_int_equal(cc.resumes, 0);
    assert_int_equal(rf_writer_pages(w), written);
    rf_writer_stop(w);
    assert_false(ok);
    assert_int_equal(rf_error_kind(err), RF_ERR_CANCELLED);
    assert_false(f->dok);
    if (!strstr(rf_error_msg(f->derr), "cancelled")) {
        print_error("destination said: %s\n", rf_error_msg(f->derr));
    }
    assert_non_null(strstr(rf_error_msg(f->derr), "cancelled"));
    assert_memory_equal(copy, f->src_map, PAGES * RF_PAGE_SIZE);
    free(copy);
    rf_error_free(err);
}

/* A crafted source's data channel hello with 'reconnect': the 24 bytes,
 * then the generation. */
static RfConn *rejoin_hello(Fixture *f, uint8_t session_byte, unsigned ch,
                            uint32_t gen)
{
    RfConn *c = rf_conn_connect(f->uri, 2000, NULL);
    assert_non_null(c);
    RfChanHello h = {.version = RF_WIRE_VERSION, .channel = (uint16_t)ch};
    memset(h.session, session_byte, sizeof(h.session));
    uint8_t b[RF_CHAN_HELLO_SIZE + RF_CHAN_GEN_SIZE];
    rf_wire_chan_hello_encode(&h, b);
    rf_wire_chan_gen_encode(gen, b + RF_CHAN_HELLO_SIZE);
    assert_true(rf_conn_send(c, b, sizeof(b), NULL));
    return c;
}

/* Reads one main-channel message; @return its type.  A ROUND_ACK's
 * round goes to *acked. */
static uint16_t read_main(RfConn *main, uint32_t *acked)
{
    uint8_t hdr[RF_MSG_HDR_SIZE], body[4200];
    RfMsgHdr mh = {0};
    assert_true(rf_conn_recv(main, hdr, sizeof(hdr), NULL));
    assert_true(rf_wire_msg_hdr_decode(hdr, &mh, NULL));
    assert_true(mh.length <= sizeof(body));
    assert_true(rf_conn_recv(main, body, mh.length, NULL));
    if (mh.type == RF_MSG_ROUND_ACK) {
        assert_true(rf_wire_round_decode(body, mh.length, acked, NULL));
    }
    return mh.type;
}

/*
 * Capability 'reconnect' at the destination (docs/protocol.md 5.1): a
 * crafted source sends round 1 on its one channel (ROUND_ACK proves it
 * applied), drops the connection, and comes back.  A hello of generation
 * 0 (not a reconnect), one of another session and a replay of generation
 * 0 are strays; generation 1 is answered RESUME with next_seq 2 (the
 * packet after SYNC(1)), and the rest of the migration goes over it.
 */
static void test_reconnect_resume(void **state)
{
    Fixture *f = *state;
    fresh_dest(f);
    start_dest(f);
    static const CraftedCaps rec_caps = {
        RF_CAPS_IMPLEMENTED | RF_CAPS_RECONNECT, RF_CAPS_SOURCE_NEEDS, 0,
        NULL};
    RfConn *main = crafted_hello(f, RF_METHOD_NONE, 1, &rec_caps);
    uint64_t caps;
    uint32_t kind, acked = 0;
    char msg[200];
    if (!crafted_answer(main, &caps, &kind, msg, sizeof(msg))) {
        fail_msg("destination refused the HELLO: %s", msg);
    }
    assert_true(caps & RF_CAP(RF_CAP_RECONNECT));
    RfConn *data = rejoin_hello(f, 0xab, 0, 0);
    barrier_send_page(data, 0, 1, 5);
    barrier_send_sync(data, 1, 1, false);
    assert_int_equal(read_main(main, &acked), RF_MSG_ROUND_ACK);
    assert_int_equal(acked, 1);
    rf_conn_close(data);
    rf_conn_close(rejoin_hello(f, 0xab, 0, 0)); /* not a reconnect */
    rf_conn_close(rejoin_hello(f, 0xcd, 0, 1)); /* another session */
    data = rejoin_hello(f, 0xab, 0, 1);
    uint8_t resume[RF_RESUME_SIZE];
    uint64_t next = 0;
    assert_true(rf_conn_recv(data, resume, sizeof(resume), NULL));
    assert_true(rf_wire_resume_decode(resume, &next, NULL));
    assert_int_equal(next, 2);
    barrier_send_page(data, 2, 2, 6);
    barrier_send_sync(data, 3, 2, true);
    uint8_t hdr[RF_MSG_HDR_SIZE], body[64];
    size_t n = rf_wire_end_encode(2, false, body, sizeof(body));
    rf_wire_msg_hdr_encode(hdr, RF_MSG_END, (uint32_t)n);
    assert_true(rf_conn_send(main, hdr, sizeof(hdr), NULL));
    assert_true(rf_conn_send(main, body, n, NULL));
    uint16_t type;
    while ((type = read_main(main, &acked)) == RF_MSG_ROUND_ACK) {
    }
    join_dest(f);
    if (!f->dok) {
        fail_msg("destination: %s", rf_error_msg(f->derr));
    }
    assert_int_equal(type, RF_MSG_COMPLETE);
    assert_int_equal(f->drep.reconnects, 1);
    assert_int_equal(f->drep.rejected_connections, 2);
    assert_int_equal(guard_sink_block(f->sink)[5 * RF_PAGE_SIZE + 4], 1);
    assert_int_equal(guard_sink_block(f->sink)[6 * RF_PAGE_SIZE + 4], 2);
    rf_conn_close(data);
    rf_conn_close(main);
}

/* The source's resend log: page lists kept as runs, entries of confirmed
 * rounds dropped, the pool compacted as it is reused. */
static void test_resend_log(void **state)
{
    (void)state;
    RfResendLog l = {0};
    uint32_t idx[RF_PACKET_MAX_PAGES], out[RF_PACKET_MAX_PAGES];
    uint64_t seq = 0;
    for (uint32_t round = 1; round <= 40; round++) {
        for (uint32_t p = 0; p < 50; p++) {
            uint32_t n = 1 + (p * 7 + round) % RF_PACKET_MAX_PAGES;
            for (uint32_t i = 0; i < n; i++) {
                /* runs of 3 with gaps */
                idx[i] = round * 1000 + (i / 3) * 5 + i % 3;
            }
            assert_true(rf_resend_log_add(&l, seq++, round, round % 3,
                                          false, false, idx, n));
        }
        assert_true(rf_resend_log_add(&l, seq++, round, 0, true,
                                      round == 40, NULL, 0));
        if (round > 2) {
            rf_resend_log_prune(&l, round - 2);
        }
        /* Two rounds stay: 102 entries, oldest first, pages intact. */
        size_t len = rf_resend_log_len(&l);
        assert_int_equal(len, round > 2 ? 102 : 51 * round);
        const RfLogEntry *e = rf_resend_log_at(&l, len - 2);
        assert_int_equal(e->seq, seq - 2);
        assert_int_equal(e->round, round);
        assert_int_equal(e->n, 1 + (49 * 7 + round) % RF_PACKET_MAX_PAGES);
        rf_resend_log_pages(&l, e, out);
        for (uint32_t i = 0; i < e->n; i++) {
            assert_int_equal(out[i], round * 1000 + (i / 3) * 5 + i % 3);
        }
        assert_true(rf_resend_log_at(&l, len - 1)->sync);
    }
    assert_true(rf_resend_log_at(&l, rf_resend_log_len(&l) - 1)->final);
    rf_resend_log_prune(&l, 40);
    assert_int_equal(rf_resend_log_len(&l), 0);
    rf_resend_log_free(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ordering_none, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ordering_none_no_crc, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ordering_zstd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_packets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_method_in_hello, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rejected_packet_leaves_pages,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_round_mismatch_fails,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_barrier_orders_channels,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_expected_method_mismatch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_caps_required_missing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_caps_unknown_optional_ignored,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps_unknown_required_refused,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_error_kind_from_peer,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_accept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strays_dropped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_max_memory_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_resume, setup,
                                        teardown),
        cmocka_unit_test(test_resend_log),
        cmocka_unit_test_setup_teardown(test_cancel_keeps_source, setup,
                                        teardown),
    };
    /* RF_TEST_FILTER=name runs one test, e.g. in a loop to chase a race. */
    if (getenv("RF_TEST_FILTER")) {
        cmocka_set_test_filter(getenv("RF_TEST_FILTER"));
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
