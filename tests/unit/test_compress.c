/*
 * Unit tests: the none, zlib and zstd methods (src/compress/) and the
 * synthetic image generator (src/tools/imagegen.c) that feeds them.
 *
 * Destination pages live in an "arena": guard pages (PROT_NONE) at both
 * ends and canary pages around and between the destination pages, checked
 * after every recv, so a decoder that writes one byte outside its pages
 * either crashes or fails the test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <libdeflate.h>
#include <zlib.h>
#include <zstd.h>

#include "compress/method.h"
#include "tools/imagegen.h"
#include "util/guest_writes.h"

#define PG RF_PAGE_SIZE
#define MAXP RF_PACKET_MAX_PAGES

static const char *const method_names[] = {"none", "zlib", "zstd"};

/* ---- helpers --------------------------------------------------------- */

static uint64_t split(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

enum { C_ZERO, C_RANDOM, C_TEXT, C_MIXED, C_COUNT };
static const char *const content_names[] = {"zero", "random", "text",
                                            "mixed"};

static void fill_random(uint8_t *p, size_t len, uint64_t seed)
{
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = split(&seed);
        memcpy(p + i, &v, 8);
    }
}

static void fill_text(uint8_t *p, size_t len, uint64_t seed)
{
    static const char *const w[] = {
        "the ", "memory ", "page ", "of ", "migration ", "channel ",
        "and ", "a ", "packet ", "is ", "sent ", "to ", "destination ",
        "zstd ", "compressed ", "with ", "level ", "one.\n", "kernel: ",
        "error ", "42 ", "device ", "ready\n", "buffer "};
    size_t i = 0;
    while (i < len) {
        const char *s = w[split(&seed) % (sizeof(w) / sizeof(w[0]))];
        size_t n = strlen(s);
        if (n > len - i) {
            n = len - i;
        }
        memcpy(p + i, s, n);
        i += n;
    }
}

/* Fills n pages (each at pages[i]) with the given kind of content. */
static void fill_pages(uint8_t *const *pages, uint32_t n, int content,
                       uint64_t seed)
{
    uint8_t *tmp = NULL;
    if (content == C_MIXED) {
        tmp = malloc((size_t)n * PG);
        assert_non_null(tmp);
        assert_true(rf_image_generate(tmp, (uint64_t)n * PG, seed, 1, NULL));
    }
    for (uint32_t i = 0; i < n; i++) {
        switch (content) {
        case C_ZERO:
            memset(pages[i], 0, PG);
            break;
        case C_RANDOM:
            fill_random(pages[i], PG, seed + i);
            break;
        case C_TEXT:
            fill_text(pages[i], PG, seed + i);
            break;
        default:
            /* Generated pages, with every third page random or text so
             * a packet of any size mixes kinds. */
            memcpy(pages[i], tmp + (size_t)i * PG, PG);
            if (i % 3 == 1) {
                fill_random(pages[i], PG / 2, seed ^ i);
            } else if (i % 3 == 2) {
                fill_text(pages[i], PG, seed ^ i);
            }
            break;
        }
    }
    free(tmp);
}

/* Pages with guard pages at both ends and canary pages in between. */
typedef struct Arena {
    uint8_t *base;
    size_t total; /* pages mapped, guards included */
    uint8_t *pages[MAXP];
    uint32_t npages;
    bool scattered;
} Arena;

static uint8_t canary_byte(size_t slot, size_t off)
{
    return (uint8_t)(0xa5 ^ slot ^ (off * 7));
}

/* Contiguous: G C P..P C G.  Scattered: G C P C P C ... C G with the
 * pages in reverse address order, so no two are adjacent. */
static void arena_init(Arena *a, uint32_t npages, bool scattered)
{
    memset(a, 0, sizeof(*a));
    a->npages = npages;
    a->scattered = scattered;
    size_t inner = scattered ? 2 * (size_t)npages + 1 : npages + 2;
    a->total = inner + 2;
    a->base = mmap(NULL, a->total * PG, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(a->base != MAP_FAILED);
    assert_int_equal(mprotect(a->base, PG, PROT_NONE), 0);
    assert_int_equal(mprotect(a->base + (a->total - 1) * PG, PG, PROT_NONE),
                     0);
    for (size_t s = 1; s + 1 < a->total; s++) {
        for (size_t o = 0; o < PG; o++) {
            a->base[s * PG + o] = canary_byte(s, o);
        }
    }
    for (uint32_t i = 0; i < npages; i++) {
        size_t slot = scattered ? 2 + 2 * (size_t)(npages - 1 - i) : 2 + i;
        a->pages[i] = a->base + slot * PG;
        memset(a->pages[i], 0x5a, PG);
    }
}

static bool arena_is_page(const Arena *a, size_t slot)
{
    for (uint32_t i = 0; i < a->npages; i++) {
        if (a->base + slot * PG == a->pages[i]) {
            return true;
        }
    }
    return false;
}

/* Fails the test if any byte outside the destination pages changed. */
static void arena_check(const Arena *a)
{
    for (size_t s = 1; s + 1 < a->total; s++) {
        if (arena_is_page(a, s)) {
            continue;
        }
        for (size_t o = 0; o < PG; o++) {
            if (a->base[s * PG + o] != canary_byte(s, o)) {
                fail_msg("canary page %zu byte %zu was overwritten", s, o);
            }
        }
    }
}

static void arena_free(Arena *a)
{
    munmap(a->base, a->total * PG);
}

/* Reads from a memory buffer, as a channel reads from its socket. */
typedef struct MemReader {
    const uint8_t *buf;
    size_t len, pos;
    int calls;
} MemReader;

static bool mem_read(void *ctx, const struct iovec *iov, int iovcnt,
                     RfError **errp)
{
    MemReader *m = ctx;
    m->calls++;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > m->len - m->pos) {
            rf_error_set(errp, RF_ERR_IO, "test reader: stream ends after "
                         "%zu bytes", m->len);
            return false;
        }
        memcpy(iov[i].iov_base, m->buf + m->pos, iov[i].iov_len);
        m->pos += iov[i].iov_len;
    }
    return true;
}

/* Runs ops->recv on `len` bytes of buf into the arena's pages.
 * @return recv's result; *msg gets a copy of the error message. */
static bool do_recv(const RfMethodOps *ops, void *rs, const uint8_t *buf,
                    size_t avail, uint32_t len, Arena *a, char *msg,
                    size_t msglen)
{
    MemReader m = {.buf = buf, .len = avail};
    RfRecvPayload in = {.len = len, .pages = a->pages, .npages = a->npages,
                        .read = mem_read, .read_ctx = &m};
    RfError *err = NULL;
    bool ok = ops->recv(rs, &in, &err);
    if (ok) {
        assert_null(err);
        assert_int_equal(m.pos, len); /* read exactly the payload */
    } else {
        assert_non_null(err);
        assert_true(strlen(rf_error_msg(err)) > 0);
        if (msg) {
            snprintf(msg, msglen, "%s", rf_error_msg(err));
        }
    }
    rf_error_free(err);
    arena_check(a);
    return ok;
}

/* Concatenates the payload's iovecs into wire (npages * PG bytes). */
static void flatten(const RfSendPayload *out, uint8_t *wire)
{
    size_t o = 0;
    assert_true(out->iovcnt >= 1 && out->iovcnt <= (int)MAXP);
    for (int i = 0; i < out->iovcnt; i++) {
        memcpy(wire + o, out->iov[i].iov_base, out->iov[i].iov_len);
        o += out->iov[i].iov_len;
    }
    assert_int_equal(o, out->len);
}

/* Source pages: contiguous in one buffer, or every other page of it in
 * reverse order. */
typedef struct Source {
    uint8_t *buf;
    uint8_t *pages[MAXP];
    uint32_t npages;
} Source;

static void source_init(Source *s, uint32_t npages, bool scattered)
{
    s->npages = npages;
    s->buf = malloc((size_t)npages * 2 * PG);
    assert_non_null(s->buf);
    for (uint32_t i = 0; i < npages; i++) {
        s->pages[i] = s->buf + (scattered ? 2 * (size_t)(npages - 1 - i)
                                          : i) * PG;
    }
}

static const RfMethodOps *method(const char *name)
{
    const RfMethodOps *ops = rf_method_find(name);
    if (!ops) {
        fail_msg("method %s is not registered", name);
    }
    return ops;
}

static void *send_state(const RfMethodOps *ops, int level)
{
    void *ss = NULL;
    RfError *err = NULL;
    if (!ops->send_setup(&ss, level, &err)) {
        fail_msg("%s send_setup(level %d): %s", ops->name, level,
                 rf_error_msg(err));
    }
    return ss;
}

static void *recv_state(const RfMethodOps *ops)
{
    void *rs = NULL;
    RfError *err = NULL;
    if (!ops->recv_setup(&rs, &err)) {
        fail_msg("%s recv_setup: %s", ops->name, rf_error_msg(err));
    }
    return rs;
}

/* Compresses src with ss; returns the wire bytes in wire (npages * PG). */
static RfSendPayload prepare(const RfMethodOps *ops, void *ss,
                             const Source *src, uint8_t *wire)
{
    RfPageList pl = {.pages = src->pages, .npages = src->npages};
    RfSendPayload out;
    memset(&out, 0, sizeof(out));
    RfError *err = NULL;
    if (!ops->send_prepare(ss, &pl, &out, &err)) {
        fail_msg("%s send_prepare: %s", ops->name, rf_error_msg(err));
    }
    flatten(&out, wire);
    if (out.raw) {
        assert_int_equal(out.len, src->npages * PG);
    } else {
        assert_true(out.len >= 1);
        assert_true(out.len <= ops->max_payload(src->npages));
        assert_true(out.len < src->npages * PG);
    }
    return out;
}

/* ---- registry ---------------------------------------------------------- */

static void test_registry(void **st)
{
    (void)st;
    static const struct {
        const char *name;
        uint8_t id;
        const char *param;
        int min, max, def;
    } want[] = {
        {"none", RF_METHOD_NONE, NULL, 0, 0, 0},
        {"zlib", RF_METHOD_ZLIB, "multifd-zlib-level", 0, 9, 1},
        {"zstd", RF_METHOD_ZSTD, "multifd-zstd-level", 0, 20, 1},
    };
    for (size_t i = 0; i < 3; i++) {
        const RfMethodOps *ops = method(want[i].name);
        assert_string_equal(ops->name, want[i].name);
        assert_int_equal(ops->id, want[i].id);
        assert_ptr_equal(rf_method_by_id(want[i].id), ops);
        if (want[i].param) {
            assert_string_equal(ops->level_param, want[i].param);
        } else {
            assert_null(ops->level_param);
        }
        assert_int_equal(ops->level_min, want[i].min);
        assert_int_equal(ops->level_max, want[i].max);
        assert_int_equal(ops->level_default, want[i].def);
        assert_non_null(ops->describe);
        size_t extra = strcmp(want[i].name, "none") == 0 ? 0 : 1;
        assert_int_equal(ops->max_payload(1), PG - extra);
        assert_int_equal(ops->max_payload(MAXP), MAXP * PG - extra);
    }
}

static void test_bad_level(void **st)
{
    (void)st;
    static const struct {
        const char *name;
        int level;
    } bad[] = {{"zlib", -1}, {"zlib", 10}, {"zstd", -1}, {"zstd", 21}};
    for (size_t i = 0; i < 4; i++) {
        const RfMethodOps *ops = method(bad[i].name);
        void *ss = (void *)&ss;
        RfError *err = NULL;
        assert_false(ops->send_setup(&ss, bad[i].level, &err));
        assert_null(ss);
        assert_non_null(err);
        assert_int_equal(rf_error_kind(err), RF_ERR_PARAM);
        assert_non_null(strstr(rf_error_msg(err), ops->level_param));
        char lv[16];
        snprintf(lv, sizeof(lv), "%d", bad[i].level);
        assert_non_null(strstr(rf_error_msg(err), lv));
        rf_error_free(err);
    }
}

static void test_describe(void **st)
{
    (void)st;
    const RfMethodOps *z = method("zlib"), *s = method("zstd");
    void *zs = send_state(z, 3), *ss = send_state(s, 7);
    void *zr = recv_state(z), *sr = recv_state(s);
    assert_string_equal(z->describe(zs),
                        "libdeflate " LIBDEFLATE_VERSION_STRING " level 3");
    char want[64];
    snprintf(want, sizeof(want), "zstd %s level 7", ZSTD_versionString());
    assert_string_equal(s->describe(ss), want);
    assert_string_equal(z->describe(zr),
                        "libdeflate " LIBDEFLATE_VERSION_STRING);
    assert_non_null(strstr(s->describe(sr), "zstd 1."));
    assert_non_null(strstr(z->describe(NULL), "libdeflate"));
    assert_non_null(strstr(s->describe(NULL), "zstd"));
    z->send_cleanup(zs);
    s->send_cleanup(ss);
    z->recv_cleanup(zr);
    s->recv_cleanup(sr);
    method("none")->send_cleanup(NULL);
    z->send_cleanup(NULL);
    s->recv_cleanup(NULL);
}

/* ---- round trips ------------------------------------------------------- */

/* One packet: prepare, then deliver as the channel would (raw packets are
 * read straight into the pages, others through recv), then compare. */
static void round_trip(const RfMethodOps *ops, void *ss, void *rs,
                       uint32_t n, int content, bool src_sc, bool dst_sc,
                       uint64_t seed)
{
    Source src;
    source_init(&src, n, src_sc);
    fill_pages(src.pages, n, content, seed);
    uint8_t *wire = malloc((size_t)n * PG);
    assert_non_null(wire);
    RfSendPayload out = prepare(ops, ss, &src, wire);

    Arena a;
    arena_init(&a, n, dst_sc);
    if (out.raw) {
        for (uint32_t i = 0; i < n; i++) {
            memcpy(a.pages[i], wire + (size_t)i * PG, PG);
        }
    } else {
        char msg[256];
        if (!do_recv(ops, rs, wire, out.len, out.len, &a, msg,
                     sizeof(msg))) {
            fail_msg("%s: recv of %u %s pages failed: %s", ops->name, n,
                     content_names[content], msg);
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        if (memcmp(a.pages[i], src.pages[i], PG) != 0) {
            fail_msg("%s: %s page %u of %u differs after the round trip "
                     "(raw %d, src %s, dst %s)", ops->name,
                     content_names[content], i, n, out.raw,
                     src_sc ? "scattered" : "contiguous",
                     dst_sc ? "scattered" : "contiguous");
        }
    }
    /* What must shrink does, what cannot goes raw. */
    if (strcmp(ops->name, "none") == 0) {
        assert_true(out.raw);
    } else if (content == C_ZERO || content == C_TEXT) {
        assert_false(out.raw);
        assert_true(out.len < n * PG / 2);
    } else if (content == C_RANDOM) {
        assert_true(out.raw);
    }
    arena_free(&a);
    free(wire);
    free(src.buf);
}

static void test_round_trip(void **st)
{
    const RfMethodOps *ops = method(*st);
    int levels[3] = {ops->level_min, ops->level_default, ops->level_max};
    static const uint32_t counts[] = {1, 37, MAXP};
    void *rs = recv_state(ops);
    for (int li = 0; li < 3; li++) {
        if (li > 0 && levels[li] == levels[li - 1]) {
            continue;
        }
        void *ss = send_state(ops, levels[li]);
        for (size_t ci = 0; ci < 3; ci++) {
            for (int c = 0; c < C_COUNT; c++) {
                for (int lay = 0; lay < 4; lay++) {
                    uint32_t n = counts[ci];
                    /* The slowest level runs the biggest packets only in
                     * two layouts to keep the test fast. */
                    if (li == 2 && n == MAXP && (lay == 1 || lay == 2)) {
                        continue;
                    }
                    if (ops->id == RF_METHOD_ZLIB && levels[li] == 0) {
                        /* zlib level 0 = stored blocks: always raw. */
                        Source src;
                        source_init(&src, n, lay & 1);
                        fill_pages(src.pages, n, c, 9);
                        uint8_t *wire = malloc((size_t)n * PG);
                        RfSendPayload out = prepare(ops, ss, &src, wire);
                        assert_true(out.raw);
                        free(wire);
                        free(src.buf);
                        continue;
                    }
                    round_trip(ops, ss, rs, n, c, lay & 1, lay & 2,
                               1000 * li + 10 * c + lay);
                }
            }
        }
        ops->send_cleanup(ss);
    }
    ops->recv_cleanup(rs);
}

/* A packet that does not shrink goes raw with exactly its pages' bytes;
 * `none` sends straight from the guest pages, one iovec per run. */
static void test_raw(void **st)
{
    (void)st;
    for (size_t m = 0; m < 3; m++) {
        const RfMethodOps *ops = method(method_names[m]);
        void *ss = send_state(ops, ops->level_default);
        for (int sc = 0; sc < 2; sc++) {
            Source src;
            source_init(&src, MAXP, sc);
            fill_pages(src.pages, MAXP, C_RANDOM, 77);
            uint8_t *wire = malloc((size_t)MAXP * PG);
            RfSendPayload out = prepare(ops, ss, &src, wire);
            assert_true(out.raw);
            assert_int_equal(out.len, MAXP * PG);
            for (uint32_t i = 0; i < MAXP; i++) {
                assert_memory_equal(wire + (size_t)i * PG, src.pages[i], PG);
            }
            if (m == 0) {
                assert_int_equal(out.iovcnt, sc ? (int)MAXP : 1);
                assert_ptr_equal(out.iov[0].iov_base, src.pages[0]);
                if (sc) {
                    assert_ptr_equal(out.iov[MAXP - 1].iov_base,
                                     src.pages[MAXP - 1]);
                }
            }
            free(wire);
            free(src.buf);
        }
        ops->send_cleanup(ss);
    }
}

/* `none` recv reads straight into scattered pages and wants exact size. */
static void test_none_recv(void **st)
{
    (void)st;
    const RfMethodOps *ops = method("none");
    void *rs = recv_state(ops);
    uint8_t *buf = malloc(5 * PG);
    fill_random(buf, 5 * PG, 5);
    Arena a;
    arena_init(&a, 5, true);
    assert_true(do_recv(ops, rs, buf, 5 * PG, 5 * PG, &a, NULL, 0));
    for (uint32_t i = 0; i < 5; i++) {
        assert_memory_equal(a.pages[i], buf + (size_t)i * PG, PG);
    }
    char msg[256];
    assert_false(do_recv(ops, rs, buf, 5 * PG, 5 * PG - 1, &a, msg,
                         sizeof(msg)));
    assert_non_null(strstr(msg, "payload size"));
    arena_free(&a);
    free(buf);
    ops->recv_cleanup(rs);
}

/* ---- interoperability: the formats, not the libraries --------------- */

static void test_zlib_reference(void **st)
{
    (void)st;
    const RfMethodOps *ops = method("zlib");
    void *rs = recv_state(ops);
    static const int levels[] = {1, 6, 9};
    for (size_t li = 0; li < 3; li++) {
        void *ss = send_state(ops, levels[li]);
        Source src;
        source_init(&src, 64, true);
        fill_pages(src.pages, 64, C_MIXED, 31 + li);
        uint8_t *wire = malloc(64 * PG), *plain = malloc(64 * PG);
        RfSendPayload out = prepare(ops, ss, &src, wire);
        assert_false(out.raw);
        /* RFC 1950 header: deflate, 32 KiB window, check bits. */
        assert_int_equal(wire[0], 0x78);
        assert_int_equal((wire[0] * 256 + wire[1]) % 31, 0);
        uLongf plen = 64 * PG;
        assert_int_equal(uncompress(plain, &plen, wire, out.len), Z_OK);
        assert_int_equal(plen, 64 * PG);
        for (uint32_t i = 0; i < 64; i++) {
            assert_memory_equal(plain + (size_t)i * PG, src.pages[i], PG);
        }
        /* And real zlib's own output decodes through recv. */
        uLongf clen = 64 * PG;
        assert_int_equal(compress2(wire, &clen, plain, 64 * PG,
                                   levels[li]), Z_OK);
        Arena a;
        arena_init(&a, 64, false);
        assert_true(do_recv(ops, rs, wire, clen, (uint32_t)clen, &a, NULL,
                            0));
        assert_memory_equal(a.pages[0], plain, 64 * PG);
        arena_free(&a);
        free(wire);
        free(plain);
        free(src.buf);
        ops->send_cleanup(ss);
    }
    ops->recv_cleanup(rs);
}

static void test_zstd_reference(void **st)
{
    (void)st;
    const RfMethodOps *ops = method("zstd");
    void *ss = send_state(ops, 3), *rs = recv_state(ops);
    Source src;
    source_init(&src, 64, true);
    fill_pages(src.pages, 64, C_MIXED, 41);
    uint8_t *wire = malloc(64 * PG), *plain = malloc(64 * PG);
    RfSendPayload out = prepare(ops, ss, &src, wire);
    assert_false(out.raw);
    /* One frame (RFC 8878 magic), content size stated, and bit 2 of the
     * frame header descriptor, Content_Checksum_flag, clear. */
    static const uint8_t magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
    assert_memory_equal(wire, magic, 4);
    assert_int_equal(wire[4] & 0x04, 0);
    assert_int_equal(ZSTD_getFrameContentSize(wire, out.len), 64 * PG);
    assert_int_equal(ZSTD_findFrameCompressedSize(wire, out.len), out.len);
    assert_int_equal(ZSTD_decompress(plain, 64 * PG, wire, out.len),
                     64 * PG);
    for (uint32_t i = 0; i < 64; i++) {
        assert_memory_equal(plain + (size_t)i * PG, src.pages[i], PG);
    }
    /* A frame from plain ZSTD_compress (checksum on) decodes too. */
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    size_t clen = ZSTD_compress2(c, wire, 64 * PG, plain, 64 * PG);
    assert_false(ZSTD_isError(clen));
    Arena a;
    arena_init(&a, 64, true);
    assert_true(do_recv(ops, rs, wire, clen, (uint32_t)clen, &a, NULL, 0));
    for (uint32_t i = 0; i < 64; i++) {
        assert_memory_equal(a.pages[i], plain + (size_t)i * PG, PG);
    }
    arena_free(&a);
    ZSTD_freeCCtx(c);
    free(wire);
    free(plain);
    free(src.buf);
    ops->send_cleanup(ss);
    ops->recv_cleanup(rs);
}

/* ---- bad payloads ------------------------------------------------------ */

/* Expects recv to fail on buf[0..len) for npages pages, contiguous and
 * scattered, without touching anything outside the pages.  `want`, if not
 * NULL, must appear in the message. */
static void expect_fail(const RfMethodOps *ops, void *rs, const uint8_t *buf,
                        size_t avail, uint32_t len, uint32_t npages,
                        const char *want)
{
    for (int sc = 0; sc < 2; sc++) {
        Arena a;
        arena_init(&a, npages, sc);
        char msg[256] = "";
        if (do_recv(ops, rs, buf, avail, len, &a, msg, sizeof(msg))) {
            fail_msg("%s: recv accepted a bad payload (%u bytes, %u pages)",
                     ops->name, len, npages);
        }
        if (want && !strstr(msg, want)) {
            fail_msg("%s: error \"%s\" does not mention \"%s\"", ops->name,
                     msg, want);
        }
        arena_free(&a);
    }
}

/* Compresses n text pages; @return the payload length in wire. */
static uint32_t make_payload(const RfMethodOps *ops, uint32_t n,
                             uint8_t *wire, int content)
{
    void *ss = send_state(ops, ops->level_default);
    Source src;
    source_init(&src, n, false);
    fill_pages(src.pages, n, content, 99);
    RfSendPayload out = prepare(ops, ss, &src, wire);
    assert_false(out.raw);
    free(src.buf);
    ops->send_cleanup(ss);
    return out.len;
}

static void test_bad_payloads(void **st)
{
    const RfMethodOps *ops = method(*st);
    void *rs = recv_state(ops);
    uint8_t *wire = malloc((size_t)(MAXP + 1) * PG);
    uint8_t *bad = malloc((size_t)(MAXP + 1) * PG);
    assert_non_null(wire);
    assert_non_null(bad);
    static const uint32_t counts[] = {1, 8, MAXP};
    for (size_t ci = 0; ci < 3; ci++) {
        uint32_t n = counts[ci];
        uint32_t len = make_payload(ops, n, wire, n < 3 ? C_TEXT : C_MIXED);

        /* Truncated: the decoder sees a stream that stops early. */
        static const uint32_t cut[] = {1, 2, 7};
        for (size_t k = 0; k < 3; k++) {
            if (len > cut[k]) {
                expect_fail(ops, rs, wire, len, len - cut[k], n, NULL);
            }
        }
        expect_fail(ops, rs, wire, len, len / 2, n, NULL);
        expect_fail(ops, rs, wire, len, 1, n, NULL);
        /* The channel runs dry before the payload is complete. */
        expect_fail(ops, rs, wire, len - 1, len, n, "test reader");
        /* Trailing bytes after the stream. */
        memcpy(bad, wire, len);
        bad[len] = 0;
        bad[len + 1] = 0x55;
        expect_fail(ops, rs, bad, len + 2, len + 2, n, "after the end");
        /* Decodes to a different size: one page more or one page less. */
        if (n > 1) {
            expect_fail(ops, rs, wire, len, len, n - 1, NULL);
        }
        if (n < MAXP) {
            expect_fail(ops, rs, wire, len, len, n + 1, NULL);
        }
        /* Sizes the method must refuse before reading. */
        expect_fail(ops, rs, wire, len, 0, n, "payload size");
        expect_fail(ops, rs, bad, (size_t)(MAXP + 1) * PG,
                    (uint32_t)ops->max_payload(n) + 1, n, "payload size");
        /* Garbage. */
        fill_random(bad, len, n);
        expect_fail(ops, rs, bad, len, len, n, NULL);

        /* Bit flips, in a text payload (no stored blocks, whose padding
         * bits a decoder ignores): zlib's Adler-32 catches every one of
         * these; zstd frames carry no checksum, so a flip inside literals
         * may decode to other bytes of the right size, but never to
         * anything outside the pages. */
        len = make_payload(ops, n, wire, C_TEXT);
        for (uint32_t k = 0; k < 48; k++) {
            memcpy(bad, wire, len);
            uint32_t pos = (uint32_t)(((uint64_t)k * len) / 48);
            bad[pos] ^= (uint8_t)(1u << (k % 8));
            if (ops->id == RF_METHOD_ZLIB) {
                expect_fail(ops, rs, bad, len, len, n, NULL);
            } else {
                Arena a;
                arena_init(&a, n, k & 1);
                do_recv(ops, rs, bad, len, len, &a, NULL, 0);
                arena_free(&a);
            }
        }
    }
    /* Page counts outside 1..128. */
    uint32_t len = make_payload(ops, 2, wire, C_TEXT);
    MemReader m = {.buf = wire, .len = len};
    uint8_t *pages[MAXP + 1] = {NULL};
    RfRecvPayload in = {.len = len, .pages = pages, .npages = 0,
                        .read = mem_read, .read_ctx = &m};
    RfError *err = NULL;
    assert_false(ops->recv(rs, &in, &err));
    assert_non_null(strstr(rf_error_msg(err), "page count"));
    rf_error_free(err);
    err = NULL;
    in.npages = MAXP + 1;
    assert_false(ops->recv(rs, &in, &err));
    assert_non_null(err);
    rf_error_free(err);
    assert_int_equal(m.calls, 0);

    free(wire);
    free(bad);
    ops->recv_cleanup(rs);
}

/* zstd-specific frames: more output than claimed, unknown size, two
 * frames, a skippable frame. */
static void test_zstd_frames(void **st)
{
    (void)st;
    const RfMethodOps *ops = method("zstd");
    void *rs = recv_state(ops);
    size_t cap = ZSTD_compressBound(8 * PG);
    uint8_t *plain = malloc(8 * PG), *frame = malloc(2 * cap + 64);
    fill_text(plain, 8 * PG, 3);

    /* A frame of 8 pages offered as 4: refused from its header. */
    size_t flen = ZSTD_compress(frame, cap, plain, 8 * PG, 1);
    assert_false(ZSTD_isError(flen));
    expect_fail(ops, rs, frame, flen, (uint32_t)flen, 4, "content size");

    /* Same without a content size: must stop at 4 pages and fail. */
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
    ZSTD_outBuffer ob = {frame, cap, 0};
    ZSTD_inBuffer ib = {plain, 8 * PG, 0};
    assert_int_equal(ZSTD_compressStream2(c, &ob, &ib, ZSTD_e_end), 0);
    assert_int_equal(ZSTD_getFrameContentSize(frame, ob.pos),
                     ZSTD_CONTENTSIZE_UNKNOWN);
    expect_fail(ops, rs, frame, ob.pos, (uint32_t)ob.pos, 4, NULL);
    expect_fail(ops, rs, frame, ob.pos, (uint32_t)ob.pos, 9, "decodes to");
    /* ...and is accepted at its real size. */
    Arena a;
    arena_init(&a, 8, false);
    assert_true(do_recv(ops, rs, frame, ob.pos, (uint32_t)ob.pos, &a, NULL,
                        0));
    assert_memory_equal(a.pages[0], plain, 8 * PG);
    arena_free(&a);

    /* Two frames of 4 pages each are not one packet of 8. */
    size_t f1 = ZSTD_compress(frame, cap, plain, 4 * PG, 1);
    size_t f2 = ZSTD_compress(frame + f1, cap, plain + 4 * PG, 4 * PG, 1);
    expect_fail(ops, rs, frame, f1 + f2, (uint32_t)(f1 + f2), 8,
                "after the end");

    /* A skippable frame decodes to nothing. */
    static const uint8_t skip[12] = {0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0,
                                     1, 2, 3, 4};
    expect_fail(ops, rs, skip, sizeof(skip), sizeof(skip), 1, NULL);

    ZSTD_freeCCtx(c);
    free(plain);
    free(frame);
    ops->recv_cleanup(rs);
}

/* ---- the guest writes while the sender compresses --------------------- */

typedef struct Writer {
    uint8_t *mem;
    size_t len;
    atomic_bool stop;
} Writer;

/* Runs of varied bytes, as a guest filling buffers (the guest's stores,
 * uninstrumented: see util/guest_writes.h). */
static RF_GUEST_WRITES void guest_fill(uint8_t *mem, size_t len, size_t off,
                                       uint64_t v)
{
    for (size_t k = 0; k < 64 && off + 8 * k + 8 <= len; k++) {
        uint64_t x = v + k;
        memcpy(mem + off + 8 * k, &x, sizeof(x));
    }
}

static void *writer_thread(void *arg)
{
    Writer *w = arg;
    uint64_t s = 1;
    while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
        uint64_t v = split(&s);
        size_t off = (size_t)(v % (w->len / 8)) * 8;
        guest_fill(w->mem, w->len, off, v);
    }
    return NULL;
}

/* Every packet compressed from pages that change meanwhile must still
 * decode (zlib copies before checksumming; zstd has no checksum). */
static void test_concurrent_writes(void **st)
{
    (void)st;
    const uint32_t n = 32;
    for (size_t m = 1; m < 3; m++) {
        const RfMethodOps *ops = method(method_names[m]);
        void *ss = send_state(ops, 1), *rs = recv_state(ops);
        for (int sc = 0; sc < 2; sc++) {
            Source src;
            source_init(&src, n, sc);
            fill_pages(src.pages, n, C_TEXT, 5);
            Writer w = {.mem = src.buf, .len = (size_t)n * 2 * PG};
            atomic_init(&w.stop, false);
            pthread_t t;
            assert_int_equal(pthread_create(&t, NULL, writer_thread, &w), 0);
            uint8_t *wire = malloc((size_t)n * PG);
            Arena a;
            arena_init(&a, n, !sc);
            for (int it = 0; it < 60; it++) {
                RfPageList pl = {.pages = src.pages, .npages = n};
                RfSendPayload out;
                assert_true(ops->send_prepare(ss, &pl, &out, NULL));
                flatten(&out, wire);
                if (!out.raw) {
                    char msg[256];
                    if (!do_recv(ops, rs, wire, out.len, out.len, &a, msg,
                                 sizeof(msg))) {
                        fail_msg("%s: packet %d compressed during writes "
                                 "does not decode: %s", ops->name, it, msg);
                    }
                }
            }
            atomic_store(&w.stop, true);
            pthread_join(t, NULL);
            arena_free(&a);
            free(wire);
            free(src.buf);
        }
        ops->send_cleanup(ss);
        ops->recv_cleanup(rs);
    }
}

/* ---- the image generator ----------------------------------------------- */

static bool page_zero(const uint8_t *p)
{
    for (size_t i = 0; i < PG; i++) {
        if (p[i]) {
            return false;
        }
    }
    return true;
}

static void test_imagegen(void **st)
{
    (void)st;
    const size_t size = 32u << 20;
    uint8_t *a = malloc(size), *b = malloc(size);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(rf_image_generate(a, size, 1234, 1, NULL));
    assert_true(rf_image_generate(b, size, 1234, 3, NULL));
    assert_memory_equal(a, b, size); /* threads do not matter */
    assert_true(rf_image_generate(b, size, 1235, 2, NULL));
    assert_memory_not_equal(a, b, PG * 64);

    /* The mix: ~20% zero pages, ~10% random, the rest compressible. */
    size_t zero = 0, incompressible = 0, n = size / PG;
    size_t cap = ZSTD_compressBound(PG);
    uint8_t *tmp = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = a + i * PG;
        if (page_zero(p)) {
            zero++;
        } else if (ZSTD_compress(tmp, cap, p, PG, 1) >= PG) {
            incompressible++;
        }
    }
    assert_in_range(zero * 100 / n, 15, 25);
    assert_in_range(incompressible * 100 / n, 6, 14);
    /* Whole image through zstd-1 in 512 KiB packets: 2.5x..4x. */
    size_t pcap = ZSTD_compressBound(MAXP * PG), total = 0;
    uint8_t *out = malloc(pcap);
    for (size_t off = 0; off < size; off += MAXP * PG) {
        total += ZSTD_compress(out, pcap, a + off, MAXP * PG, 1);
    }
    double ratio = (double)size / (double)total;
    if (ratio < 2.5 || ratio > 4.0) {
        fail_msg("zstd-1 ratio of the image %.2f, expected 2.5..4", ratio);
    }

    RfError *err = NULL;
    assert_false(rf_image_generate(a, PG + 1, 1, 1, &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_PARAM);
    assert_non_null(strstr(rf_error_msg(err), "4097"));
    rf_error_free(err);
    free(out);
    free(tmp);
    free(a);
    free(b);
}

static void test_image_from_files(void **st)
{
    (void)st;
    char p1[] = "/tmp/rf_test_imgXXXXXX", p2[] = "/tmp/rf_test_imgXXXXXX";
    char pe[] = "/tmp/rf_test_imgXXXXXX";
    int f1 = mkstemp(p1), f2 = mkstemp(p2), fe = mkstemp(pe);
    assert_true(f1 >= 0 && f2 >= 0 && fe >= 0);
    assert_int_equal(write(f1, "hello ", 6), 6);
    assert_int_equal(write(f2, "world\n", 6), 6);
    close(f1);
    close(f2);
    close(fe);
    uint8_t *img = malloc(3 * PG);
    const char *const paths[] = {p1, pe, p2};
    assert_true(rf_image_fill_from_files(img, 3 * PG, paths, 3, NULL));
    for (size_t i = 0; i < 3 * PG; i++) {
        if (img[i] != (uint8_t)"hello world\n"[i % 12]) {
            fail_msg("byte %zu is %#x, expected the files repeated", i,
                     img[i]);
        }
    }
    RfError *err = NULL;
    const char *const empty[] = {pe};
    assert_false(rf_image_fill_from_files(img, PG, empty, 1, &err));
    assert_non_null(strstr(rf_error_msg(err), "empty"));
    rf_error_free(err);
    err = NULL;
    const char *const missing[] = {p1, "/nonexistent/rf-image"};
    assert_false(rf_image_fill_from_files(img, 3 * PG, missing, 2, &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_IO);
    assert_non_null(strstr(rf_error_msg(err), "/nonexistent/rf-image"));
    rf_error_free(err);
    unlink(p1);
    unlink(p2);
    unlink(pe);
    free(img);
}

/* A test run once per method, named after it. */
#define PER_METHOD(fn, m) {#fn "(" m ")", fn, NULL, NULL, (void *)m}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_bad_level),
        cmocka_unit_test(test_describe),
        PER_METHOD(test_round_trip, "none"),
        PER_METHOD(test_round_trip, "zlib"),
        PER_METHOD(test_round_trip, "zstd"),
        cmocka_unit_test(test_raw),
        cmocka_unit_test(test_none_recv),
        cmocka_unit_test(test_zlib_reference),
        cmocka_unit_test(test_zstd_reference),
        PER_METHOD(test_bad_payloads, "zlib"),
        PER_METHOD(test_bad_payloads, "zstd"),
        cmocka_unit_test(test_zstd_frames),
        cmocka_unit_test(test_concurrent_writes),
        cmocka_unit_test(test_imagegen),
        cmocka_unit_test(test_image_from_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
