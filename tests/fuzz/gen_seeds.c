/*
 * gen_seeds OUTDIR: writes valid seed inputs for the fuzz targets into
 * OUTDIR/<target>/, made by the library's own encoders, compressors and
 * test VM, so that they follow the current wire and state formats:
 *
 *   fuzz_handshake   whole conversations (fuzz_handshake.h's layout) that
 *                    complete: one to three channels, one or two blocks,
 *                    one or two rounds, raw, zero and compressed packets,
 *                    STATE, END with verify, and a stray connection;
 *   fuzz_state       STATE blobs saved from a running thread guest;
 *   fuzz_decompress  payloads of each method's sender (mode 0) and
 *                    page texts (mode 1);
 *   fuzz_qatzip      payloads of qatzip's sender (software path);
 *   fuzz_wire        each message and header its selector byte decodes
 *                    (fuzz_wire.c: selector % 11).
 *
 * The committed corpora (tests/fuzz/corpus/) came from here; `make
 * check-fuzz` and `make fuzz` also run it into the build directory, so the
 * seeds still fit after a format change.  The capabilities offered are
 * the six this format was written for (not RF_CAPS_IMPLEMENTED): a later
 * build that implements more (crc32c) negotiates them off, and the seeds
 * stay valid conversations.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "compress/method.h"
#include "fuzz_handshake.h"
#include "testvm/guest.h"
#include "wire/wire.h"
#ifdef RF_HAVE_QATZIP
#include "compress/qatzip/qatzip.h"
#endif

#define GEN_CAPS                                                             \
    (RF_CAP(RF_CAP_ROUND_ACK) | RF_CAP(RF_CAP_DEVICE_STATE) |                \
     RF_CAP(RF_CAP_VERIFY) | RF_CAP(RF_CAP_RAW_PACKETS) |                    \
     RF_CAP(RF_CAP_ZERO_PAGES) | RF_CAP(RF_CAP_FINAL_SYNC))
#define GEN_NEEDS                                                            \
    (RF_CAP(RF_CAP_ROUND_ACK) | RF_CAP(RF_CAP_RAW_PACKETS) |                 \
     RF_CAP(RF_CAP_ZERO_PAGES) | RF_CAP(RF_CAP_FINAL_SYNC))

static const char *outdir;

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "gen_seeds: %s%s%s\n", what, detail ? ": " : "",
            detail ? detail : "");
    exit(1);
}

/* ---- a growable byte buffer ------------------------------------------ */

typedef struct Buf {
    uint8_t *p;
    size_t len, cap;
} Buf;

static void put(Buf *b, const void *data, size_t len)
{
    if (b->cap - b->len < len) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < len) {
            cap *= 2;
        }
        b->p = realloc(b->p, cap);
        if (!b->p) {
            die("out of memory", NULL);
        }
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
}

static void write_file(const char *target, const char *name, const Buf *b)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", outdir, target);
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        die("mkdir", path);
    }
    snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->p, 1, b->len, f) != b->len || fclose(f) != 0) {
        die("cannot write", path);
    }
}

/* ---- page contents --------------------------------------------------- */

/* A page of text (compresses well), different for each seed value. */
static void text_page(uint8_t *p, unsigned seed)
{
    static const char *const words[] = {"migration ", "page ", "round ",
                                        "channel ", "ramflow ", "dirty "};
    size_t o = 0;
    unsigned k = seed;
    while (o < RF_PAGE_SIZE) {
        const char *w = words[k++ % 6];
        size_t n = strlen(w);
        if (n > RF_PAGE_SIZE - o) {
            n = RF_PAGE_SIZE - o;
        }
        memcpy(p + o, w, n);
        o += n;
    }
}

/* A page of pseudo-random bytes (a raw packet's), never all zero. */
static void noise_page(uint8_t *p, unsigned seed)
{
    uint32_t x = 2463534242u ^ seed;
    for (size_t i = 0; i < RF_PAGE_SIZE; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
    p[0] |= 1;
}

/* ---- handshake conversations ----------------------------------------- */

static const uint8_t session[16] = "fuzz-session-01";

static void msg(Buf *b, RfMsgType type, const void *payload, size_t len)
{
    uint8_t h[RF_MSG_HDR_SIZE];
    rf_wire_msg_hdr_encode(h, (uint16_t)type, (uint32_t)len);
    put(b, h, sizeof(h));
    put(b, payload, len);
}

typedef struct Block {
    const char *name;
    unsigned pages;
} Block;

static void hello(Buf *b, uint8_t method, unsigned channels,
                  const Block *blocks, unsigned nblocks, uint64_t required)
{
    static RfHello h;
    static uint8_t out[RF_MSG_MAX_PAYLOAD];
    memset(&h, 0, sizeof(h));
    h.version = RF_WIRE_VERSION;
    h.page_size = RF_PAGE_SIZE;
    h.caps_supported = GEN_CAPS | required;
    h.caps_required = GEN_NEEDS | required;
    h.method = method;
    h.level = 1;
    h.channels = (uint16_t)channels;
    h.nblocks = nblocks;
    memcpy(h.session, session, sizeof(session));
    for (unsigned i = 0; i < nblocks; i++) {
        snprintf(h.blocks[i].name, sizeof(h.blocks[i].name), "%s",
                 blocks[i].name);
        h.blocks[i].size = (uint64_t)blocks[i].pages * RF_PAGE_SIZE;
    }
    size_t n = rf_wire_hello_encode(&h, out, sizeof(out));
    if (!n) {
        die("hello does not encode", NULL);
    }
    msg(b, RF_MSG_HELLO, out, n);
}

static void round_msg(Buf *b, uint32_t round)
{
    uint8_t out[16];
    msg(b, RF_MSG_ROUND, out, rf_wire_round_encode(round, out, sizeof(out)));
}

static void end_msg(Buf *b, uint32_t round, bool verify)
{
    uint8_t out[16];
    msg(b, RF_MSG_END, out,
        rf_wire_end_encode(round, verify, out, sizeof(out)));
}

/* One data channel's stream as the source writes it. */
typedef struct Chan {
    Buf b;
    const RfMethodOps *ops;
    void *state;
    uint64_t seq;
} Chan;

static void chan_open(Chan *c, unsigned id, const RfMethodOps *ops)
{
    memset(c, 0, sizeof(*c));
    c->ops = ops;
    RfError *err = NULL;
    if (!ops->send_setup(&c->state, ops->level_default, &err)) {
        die("send_setup", rf_error_msg(err));
    }
    RfChanHello h = {.version = RF_WIRE_VERSION, .channel = (uint16_t)id};
    memcpy(h.session, session, sizeof(session));
    uint8_t out[RF_CHAN_HELLO_SIZE];
    rf_wire_chan_hello_encode(&h, out);
    put(&c->b, out, sizeof(out));
}

/* With 'reconnect' negotiated: the channel hello's generation. */
static void chan_gen(Chan *c, uint32_t gen)
{
    uint8_t out[RF_CHAN_GEN_SIZE];
    rf_wire_chan_gen_encode(gen, out);
    put(&c->b, out, sizeof(out));
}

/* A packet of block `block`: pages idx[0..nn) with contents made by
 * `fill` (seeded by index), then zero pages idx[nn..nn+nz). */
static void packet(Chan *c, uint32_t block, uint32_t round,
                   const uint32_t *idx, uint32_t nn, uint32_t nz,
                   void (*fill)(uint8_t *, unsigned))
{
    static uint8_t mem[RF_PACKET_MAX_PAGES][RF_PAGE_SIZE];
    uint8_t *pages[RF_PACKET_MAX_PAGES];
    for (uint32_t i = 0; i < nn; i++) {
        fill(mem[i], idx[i] * 7 + block);
        pages[i] = mem[i];
    }
    RfSendPayload pl = {0};
    if (nn) {
        RfPageList list = {.pages = pages, .npages = nn};
        RfError *err = NULL;
        if (!c->ops->send_prepare(c->state, &list, &pl, &err)) {
            die("send_prepare", rf_error_msg(err));
        }
    }
    RfPacketHdr h = {
        .version = RF_WIRE_VERSION,
        .method = c->ops->id,
        .flags = pl.raw ? RF_PKT_RAW : 0,
        .block = block,
        .normal = (uint16_t)nn,
        .zero = (uint16_t)nz,
        .payload_size = pl.len,
        .round = round,
        .seq = c->seq++,
    };
    uint8_t head[RF_PKT_HDR_SIZE + 4 * RF_PACKET_MAX_PAGES];
    rf_wire_packet_hdr_encode(&h, head);
    size_t n = RF_PKT_HDR_SIZE +
               rf_wire_page_index_encode(idx, nn + nz, head + RF_PKT_HDR_SIZE);
    put(&c->b, head, n);
    for (int i = 0; i < pl.iovcnt; i++) {
        put(&c->b, pl.iov[i].iov_base, pl.iov[i].iov_len);
    }
}

static void sync_pkt(Chan *c, uint32_t round, bool final)
{
    RfPacketHdr h = {
        .version = RF_WIRE_VERSION,
        .method = c->ops->id,
        .flags = RF_PKT_SYNC | (final ? RF_PKT_FINAL : 0),
        .round = round,
        .seq = c->seq++,
    };
    uint8_t head[RF_PKT_HDR_SIZE];
    rf_wire_packet_hdr_encode(&h, head);
    put(&c->b, head, sizeof(head));
}

static void chan_close(Chan *c)
{
    c->ops->send_cleanup(c->state);
    free(c->b.p);
}

/* Writes opt | main | SEP | chan 0 | SEP | ... as one seed. */
static void conversation(const char *name, uint8_t opt, Buf *main,
                         Chan *chans, unsigned n)
{
    Buf out = {0};
    put(&out, &opt, 1);
    const Buf *parts[1 + FH_MAX_DATA];
    parts[0] = main;
    for (unsigned i = 0; i < n; i++) {
        parts[1 + i] = &chans[i].b;
    }
    for (unsigned i = 0; i <= n; i++) {
        if (parts[i]->len &&
            memmem(parts[i]->p, parts[i]->len, FH_SEP, FH_SEP_LEN)) {
            die("a stream holds the separator", name);
        }
        if (i) {
            put(&out, FH_SEP, FH_SEP_LEN);
        }
        put(&out, parts[i]->p, parts[i]->len);
    }
    write_file("fuzz_handshake", name, &out);
    free(out.p);
    free(main->p);
    for (unsigned i = 0; i < n; i++) {
        chan_close(&chans[i]);
    }
}

static const Block ram = {FH_RAM_NAME, FH_RAM_PAGES};
static const Block rom = {FH_ROM_NAME, FH_ROM_PAGES};

static void gen_handshake(void)
{
    const RfMethodOps *none = rf_method_find("none");
    Buf m = {0};
    Chan c[FH_MAX_DATA];
    uint32_t idx[8];

    /* 1. none, one channel, one block: raw and zero pages, FINAL, END. */
    hello(&m, RF_METHOD_NONE, 1, &ram, 1, 0);
    end_msg(&m, 1, false);
    chan_open(&c[0], 0, none);
    idx[0] = 0, idx[1] = 5, idx[2] = 63, idx[3] = 7;
    packet(&c[0], 0, 1, idx, 3, 1, noise_page);
    sync_pkt(&c[0], 1, true);
    conversation("none-1ch", 0, &m, c, 1);

    /* 2. none, two channels, two blocks, two rounds, verify. */
    Block both[2] = {ram, rom};
    m = (Buf){0};
    hello(&m, RF_METHOD_NONE, 2, both, 2, RF_CAP(RF_CAP_VERIFY));
    round_msg(&m, 1);
    end_msg(&m, 2, true);
    chan_open(&c[0], 0, none);
    chan_open(&c[1], 1, none);
    idx[0] = 1, idx[1] = 2, idx[2] = 3, idx[3] = 4;
    packet(&c[0], 0, 1, idx, 2, 2, noise_page);
    sync_pkt(&c[0], 1, false);
    idx[0] = 2;
    packet(&c[0], 0, 2, idx, 1, 0, noise_page);
    sync_pkt(&c[0], 2, true);
    idx[0] = 0, idx[1] = 1, idx[2] = 2, idx[3] = 3;
    packet(&c[1], 1, 1, idx, 1, 3, noise_page);
    sync_pkt(&c[1], 1, false);
    sync_pkt(&c[1], 2, true);
    conversation("none-2ch-2blk-2rounds-verify", FH_OPT_EXPECT_CHANS, &m,
                 c, 2);

    /* 3. a stray connection besides the one channel. */
    m = (Buf){0};
    hello(&m, RF_METHOD_NONE, 1, &ram, 1, 0);
    end_msg(&m, 1, false);
    chan_open(&c[0], 0, none);
    idx[0] = 9;
    packet(&c[0], 0, 1, idx, 1, 0, noise_page);
    sync_pkt(&c[0], 1, true);
    chan_open(&c[1], 0, none);
    c[1].b.len = 0;
    put(&c[1].b, "SSH-2.0-OpenSSH_9.6\r\n", 21);
    conversation("none-stray", 0, &m, c, 2);

    /* 4. 'reconnect': channel 0 sends a packet and ends; a replacement
     * (generation 1) sends the rest from seq 1.  Which connection the
     * destination sees first varies: a stray, a resume, or a timeout. */
    m = (Buf){0};
    hello(&m, RF_METHOD_NONE, 1, &ram, 1, RF_CAP(RF_CAP_RECONNECT));
    end_msg(&m, 1, false);
    chan_open(&c[0], 0, none);
    chan_gen(&c[0], 0);
    idx[0] = 4, idx[1] = 11;
    packet(&c[0], 0, 1, idx, 1, 1, noise_page);
    chan_open(&c[1], 0, none);
    chan_gen(&c[1], 1);
    c[1].seq = 1;
    idx[0] = 12;
    packet(&c[1], 0, 1, idx, 1, 0, text_page);
    sync_pkt(&c[1], 1, true);
    conversation("none-reconnect", 0, &m, c, 2);

    /* 5-7. each compressing method: three channels, device state. */
    static const char *const methods[] = {"zlib", "zstd", "qatzip"};
    for (unsigned k = 0; k < 3; k++) {
        const RfMethodOps *ops = rf_method_find(methods[k]);
        if (!ops) {
            continue;
        }
        m = (Buf){0};
        hello(&m, ops->id, 3, &ram, 1, RF_CAP(RF_CAP_DEVICE_STATE));
        uint8_t state[96];
        for (unsigned i = 0; i < sizeof(state); i++) {
            state[i] = (uint8_t)(i * 3);
        }
        msg(&m, RF_MSG_STATE, state, sizeof(state));
        end_msg(&m, 1, false);
        for (unsigned ch = 0; ch < 3; ch++) {
            chan_open(&c[ch], ch, ops);
            for (unsigned i = 0; i < 4; i++) {
                idx[i] = 16 + ch * 8 + i;
            }
            packet(&c[ch], 0, 1, idx, 3, 1, text_page);
            sync_pkt(&c[ch], 1, true);
        }
        char name[64];
        snprintf(name, sizeof(name), "%s-3ch-state", ops->name);
        conversation(name, FH_OPT_LOAD_STATE, &m, c, 3);
    }
}

/* ---- STATE blobs ------------------------------------------------------ */

static void gen_state(void)
{
    static const struct {
        const char *name;
        unsigned vcpus;
        bool idle;
    } g[] = {{"thread-1vcpu", 1, false},
             {"thread-2vcpu", 2, false},
             {"thread-3vcpu-idle", 3, true}};
    for (unsigned k = 0; k < 3; k++) {
        RfGuestConfig cfg = {
            .mem_size = 1u << 20, /* fuzz_state's guest */
            .vcpus = g[k].vcpus,
            .kind = RF_GUEST_THREAD,
            .idle = g[k].idle,
            .dirty_rate = 2000,
            .seed = 1,
        };
        RfError *err = NULL;
        RfGuest *guest = rf_guest_start(&cfg, &err);
        if (!guest) {
            die("rf_guest_start", rf_error_msg(err));
        }
        nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
        uint8_t *blob;
        size_t len;
        if (!rf_guest_save_state(guest, &blob, &len, &err)) {
            die("rf_guest_save_state", rf_error_msg(err));
        }
        rf_guest_free(guest);
        /* As is, and with the fix-up option (byte 0 bit 0). */
        for (uint8_t opt = 0; opt < 2; opt++) {
            Buf b = {0};
            put(&b, &opt, 1);
            put(&b, blob, len);
            char name[64];
            snprintf(name, sizeof(name), "%s%s", g[k].name,
                     opt ? "-fixup" : "");
            write_file("fuzz_state", name, &b);
            free(b.p);
        }
        free(blob);
    }
}

/* ---- compressed payloads ---------------------------------------------- */

static const char *const all_methods[4] = {"none", "zlib", "zstd",
                                           "qatzip"};

/* fuzz_decompress's selector: the v of byte 0 that picks method index m
 * (among those built), layout and the page count nearest to n. */
static unsigned selector(unsigned nm, unsigned m, bool scattered,
                         uint32_t n)
{
    unsigned qmax = 127 / (2 * nm), best = 0;
    uint32_t best_d = UINT32_MAX;
    for (unsigned v = 0; v < 128; v++) {
        uint32_t vn = 1 + (v / (2 * nm)) * (RF_PACKET_MAX_PAGES - 1) / qmax;
        uint32_t d = vn > n ? vn - n : n - vn;
        if (v % nm == m && ((v / nm) & 1) == scattered && d < best_d) {
            best = v, best_d = d;
        }
    }
    return best;
}

static uint32_t selector_pages(unsigned nm, unsigned v)
{
    return 1 + (v / (2 * nm)) * (RF_PACKET_MAX_PAGES - 1) / (127 / (2 * nm));
}

/* The payload of n text pages by method ops; false if it went raw. */
static bool compressed(const RfMethodOps *ops, void *st, uint32_t n, Buf *b)
{
    static uint8_t mem[RF_PACKET_MAX_PAGES][RF_PAGE_SIZE];
    uint8_t *pages[RF_PACKET_MAX_PAGES];
    for (uint32_t i = 0; i < n; i++) {
        text_page(mem[i], i);
        pages[i] = mem[i];
    }
    RfPageList list = {.pages = pages, .npages = n};
    RfSendPayload pl;
    RfError *err = NULL;
    if (!ops->send_prepare(st, &list, &pl, &err)) {
        die("send_prepare", rf_error_msg(err));
    }
    if (pl.raw) {
        return false;
    }
    for (int i = 0; i < pl.iovcnt; i++) {
        put(b, pl.iov[i].iov_base, pl.iov[i].iov_len);
    }
    return true;
}

static void gen_decompress(void)
{
    const RfMethodOps *ops[4];
    unsigned nm = 0;
    for (unsigned k = 0; k < 4; k++) {
        if ((ops[nm] = rf_method_find(all_methods[k]))) {
            nm++;
        }
    }
    for (unsigned m = 0; m < nm; m++) {
        void *st;
        RfError *err = NULL;
        if (!ops[m]->send_setup(&st, ops[m]->level_default, &err)) {
            die("send_setup", rf_error_msg(err));
        }
        static const uint32_t counts[] = {1, 8, 128};
        for (unsigned k = 0; k < 3; k++) {
            uint8_t v = (uint8_t)selector(nm, m, k & 1, counts[k]);
            uint32_t n = selector_pages(nm, v);
            Buf b = {0};
            put(&b, &v, 1);
            if (compressed(ops[m], st, n, &b)) {
                char name[64];
                snprintf(name, sizeof(name), "%s-%upages%s", ops[m]->name,
                         n, (k & 1) ? "-scattered" : "");
                write_file("fuzz_decompress", name, &b);
            }
            free(b.p);
        }
        /* Mode 1: no corruption, a text to repeat. */
        uint8_t v = (uint8_t)(0x80 | selector(nm, m, false, 4));
        Buf b = {0};
        put(&b, &v, 1);
        put(&b, "\0", 1);
        put(&b, "guest page text 0123456789 ", 27);
        char name[64];
        snprintf(name, sizeof(name), "%s-roundtrip", ops[m]->name);
        write_file("fuzz_decompress", name, &b);
        free(b.p);
        ops[m]->send_cleanup(st);
    }
#ifdef RF_HAVE_QATZIP
    /* fuzz_qatzip: byte 0 = pages - 1 (mod 128), then the payload. */
    const RfMethodOps *qz = rf_method_find("qatzip");
    void *st;
    RfError *err = NULL;
    if (!qz || !qz->send_setup(&st, qz->level_default, &err)) {
        die("qatzip send_setup", err ? rf_error_msg(err) : "not built");
    }
    static const uint32_t counts[] = {1, 16, 128};
    for (unsigned k = 0; k < 3; k++) {
        uint8_t sel = (uint8_t)(counts[k] - 1);
        Buf b = {0};
        put(&b, &sel, 1);
        if (compressed(qz, st, counts[k], &b)) {
            char name[64];
            snprintf(name, sizeof(name), "qatzip-%upages", counts[k]);
            write_file("fuzz_qatzip", name, &b);
        }
        free(b.p);
    }
    qz->send_cleanup(st);
#endif
}

/* ---- wire messages ------------------------------------------------- */

/* One fuzz_wire input: selector byte, then the bytes. */
static void wire_seed(const char *name, uint8_t sel, const Buf *b)
{
    Buf out = {0};
    put(&out, &sel, 1);
    put(&out, b->p, b->len);
    write_file("fuzz_wire", name, &out);
    free(out.p);
}

static void gen_wire(void)
{
    /* A main-channel stream (selector 10), and its HELLO's payload
     * alone (selector 1). */
    Block both[2] = {{FH_RAM_NAME, FH_RAM_PAGES}, {FH_ROM_NAME, FH_ROM_PAGES}};
    Buf m = {0};
    hello(&m, RF_METHOD_ZSTD, 2, both, 2, RF_CAP(RF_CAP_VERIFY));
    Buf h = {0};
    put(&h, m.p + RF_MSG_HDR_SIZE, m.len - RF_MSG_HDR_SIZE);
    wire_seed("hello", 1, &h);
    Buf hdr = {0};
    put(&hdr, m.p, RF_MSG_HDR_SIZE);
    wire_seed("msg-hdr", 0, &hdr);
    round_msg(&m, 1);
    uint8_t state[24] = "device state bytes";
    msg(&m, RF_MSG_STATE, state, sizeof(state));
    end_msg(&m, 2, true);
    wire_seed("main-stream", 10, &m);

    Buf b = {0};
    uint8_t out[2048];
    put(&b, out, rf_wire_round_encode(3, out, sizeof(out)));
    wire_seed("round", 4, &b);
    b.len = 0;
    RfAccept acc = {.caps = GEN_CAPS};
    put(&b, out, rf_wire_accept_encode(&acc, out, sizeof(out)));
    wire_seed("accept", 8, &b);
    b.len = 0;
    static RfComplete comp;
    comp.recv_cpu_pct = 12.5;
    comp.wire_bytes = 123456;
    comp.prefault_warm = 1;
    snprintf(comp.method_detail, sizeof(comp.method_detail), "zstd 1.5");
    comp.ndigests = 2;
    memset(comp.digests, 0xab, sizeof(comp.digests[0]) * 2);
    put(&b, out, rf_wire_complete_encode(&comp, out, sizeof(out)));
    wire_seed("complete", 5, &b);
    b.len = 0;
    put(&b, out, rf_wire_error_encode(RF_ERR_PROTOCOL, "a reason", out,
                                      sizeof(out)));
    wire_seed("error", 3, &b);
    /* A channel hello (6) and a raw packet's header and indexes (7: the
     * method none, a bound on payloads; block 0 has 16 pages there). */
    Chan c;
    chan_open(&c, 1, rf_method_find("none"));
    wire_seed("chan-hello", 6, &c.b);
    c.b.len = 0;
    uint32_t idx[3] = {3, 1, 2};
    packet(&c, 0, 1, idx, 1, 2, noise_page);
    c.b.len = RF_PKT_HDR_SIZE + 3 * 4;
    wire_seed("packet", 7, &c.b);
    chan_close(&c);
    free(m.p);
    free(h.p);
    free(hdr.p);
    free(b.p);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds OUTDIR\n");
        return 2;
    }
    outdir = argv[1];
    if (mkdir(outdir, 0755) < 0 && errno != EEXIST) {
        die("mkdir", outdir);
    }
#ifdef RF_HAVE_QATZIP
    setenv(RF_QATZIP_LIB_ENV, "", 1); /* the software path */
#endif
    gen_handshake();
    gen_state();
    gen_decompress();
    gen_wire();
    return 0;
}
