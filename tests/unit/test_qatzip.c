/*
 * Unit tests for the qatzip method (src/compress/qatzip): round trips at
 * levels 1, 5 and 9 on zero, random, text and mixed pages; every payload
 * decoded by zlib (gzip wrapper, reset at each member) and by `gzip -dc`;
 * the QZ extra field checked byte by byte against the spec; raw fallback;
 * one crafted bad payload per receiver check; a guest thread writing the
 * pages while they are compressed; and the hardware back end's loading and
 * decision logic against the fake libqatzip.so.3 variants built in
 * tests/fakeqat (no QAT device exists here).
 */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "compress/method.h"
#include "compress/qatzip/qatzip.h"
#include "compress/qatzip/qz_format.h"
#include "ramflow/error.h"
#include "../fakeqat/fakeqat.h"

extern const RfMethodOps rf_method_qatzip;
static const RfMethodOps *const M = &rf_method_qatzip;

#define PAGE RF_PAGE_SIZE
#define PKT_PAGES RF_PACKET_MAX_PAGES
#define PKT_BYTES ((size_t)PKT_PAGES * PAGE)

/* ---- helpers ---------------------------------------------------------- */

/* Asserts a failure whose message contains every NULL-terminated
 * substring; frees the error. */
static void check_fail_v(bool ok, RfError **errp, ...)
{
    assert_false(ok);
    assert_non_null(*errp);
    const char *msg = rf_error_msg(*errp);
    va_list ap;
    va_start(ap, errp);
    const char *sub;
    while ((sub = va_arg(ap, const char *)) != NULL) {
        if (!strstr(msg, sub)) {
            fail_msg("error \"%s\" lacks \"%s\"", msg, sub);
        }
    }
    va_end(ap);
    rf_error_free(*errp);
    *errp = NULL;
}
#define check_fail(ok, errp, ...) \
    check_fail_v((ok), (errp), __VA_ARGS__, (const char *)NULL)

static void check_ok(bool ok, RfError **errp)
{
    if (!ok) {
        fail_msg("unexpected error: %s", rf_error_msg(*errp));
    }
    assert_null(*errp);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16
           | (uint32_t)p[3] << 24;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

typedef enum { DATA_ZERO, DATA_RANDOM, DATA_TEXT, DATA_MIXED } DataKind;
static const char *const kind_names[] = {"zero", "random", "text", "mixed"};

static void fill_random(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)(rng() >> 56);
    }
}

/* English-like words: compresses about 2.5:1 with deflate. */
static void fill_text(uint8_t *p, size_t n)
{
    static const char *const words[] = {
        "the ", "quick ", "brown ", "fox ", "jumps ", "over ", "lazy ",
        "dog ", "migration ", "memory ", "page ", "channel ", "packet ",
        "compress ", "QuickAssist ", "deflate ", "and ", "of ", "a ",
        "to ", "in ", "is ", "that ", "it ", "with ", "as ", "for ",
        "was ", "on ", "are ", ".\n", ", "};
    size_t i = 0;
    while (i < n) {
        const char *w = words[rng() % (sizeof(words) / sizeof(words[0]))];
        for (; *w && i < n; w++) {
            p[i++] = (uint8_t)*w;
        }
        if (rng() % 17 == 0 && i < n) {
            p[i++] = (uint8_t)('0' + rng() % 10);
        }
    }
}

/* Pages in turn: text, zero, random, text with a counter. */
static void fill(uint8_t *p, size_t n, DataKind kind)
{
    switch (kind) {
    case DATA_ZERO:
        memset(p, 0, n);
        break;
    case DATA_RANDOM:
        fill_random(p, n);
        break;
    case DATA_TEXT:
        fill_text(p, n);
        break;
    case DATA_MIXED:
        for (size_t off = 0; off < n; off += PAGE) {
            size_t len = n - off < PAGE ? n - off : PAGE;
            switch ((off / PAGE) % 4) {
            case 0:
                fill_text(p + off, len);
                break;
            case 1:
                memset(p + off, 0, len);
                break;
            case 2:
                fill_random(p + off, len);
                break;
            default:
                for (size_t i = 0; i < len; i++) {
                    p[off + i] = (uint8_t)(i / 64 + off / PAGE);
                }
            }
        }
        break;
    }
}

/*
 * Decodes a payload of concatenated gzip members with zlib (windowBits 31,
 * so zlib checks each header, CRC-32 and ISIZE), resetting at each member
 * boundary.  @return the bytes produced, or -1 on any error.
 */
static long zlib_decode(const uint8_t *in, size_t len, uint8_t *out,
                        size_t cap, unsigned *members)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 31) != Z_OK) {
        return -1;
    }
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    unsigned n = 0;
    long rc = 0;
    while (z.avail_in > 0) {
        int zr = inflate(&z, Z_FINISH);
        if (zr != Z_STREAM_END) {
            rc = -1;
            break;
        }
        n++;
        inflateReset(&z);
    }
    if (rc == 0) {
        rc = (long)(cap - z.avail_out);
    }
    inflateEnd(&z);
    if (members) {
        *members = n;
    }
    return rc;
}

/* Runs `gzip -dc` on the payload.  @return the decoded bytes (malloc'd,
 * *out_len set) or NULL if gzip failed. */
static uint8_t *gzip_decode(const uint8_t *in, size_t len, size_t *out_len)
{
    char path[] = "/tmp/test_qatzip_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, in, len), (ssize_t)len);
    close(fd);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "gzip -dc < %s 2>/dev/null", path);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t cap = 1 << 20, n = 0;
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    int status = pclose(f);
    unlink(path);
    if (status != 0) {
        free(buf);
        return NULL;
    }
    *out_len = n;
    return buf;
}

/*
 * Checks every member against qatzip-format.md section 1, independently of
 * src/compress/qatzip/qz_format.c: the exact 24 header bytes, one member
 * per 64 KiB of input (the last one shorter), the QZ sizes, the trailer's
 * ISIZE.  @return the number of members.
 */
static unsigned check_format(const uint8_t *p, size_t len, size_t input)
{
    static const uint8_t fixed[16] = {0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0,
                                      0x00, 0xff, 12, 0, 'Q', 'Z', 8, 0};
    size_t off = 0, done = 0;
    unsigned n = 0;
    while (off < len) {
        assert_true(len - off >= 34);
        assert_memory_equal(p + off, fixed, sizeof(fixed));
        uint32_t isize = get32(p + off + 16), csize = get32(p + off + 20);
        size_t want = input - done < 65536 ? input - done : 65536;
        assert_int_equal(isize, want);
        assert_true(off + 24 + (size_t)csize + 8 <= len);
        assert_int_equal(get32(p + off + 24 + csize + 4), isize);
        off += 24 + (size_t)csize + 8;
        done += isize;
        n++;
        if (done == input) {
            break;
        }
    }
    assert_int_equal(off, len);
    assert_int_equal(done, input);
    size_t expect_members = input == 0 ? 1 : (input + 65535) / 65536;
    assert_int_equal(n, expect_members);
    return n;
}

/* A reader over a byte buffer, standing in for the channel. */
typedef struct BufReader {
    const uint8_t *data;
    size_t len, pos;
    int calls;
} BufReader;

static bool buf_read(void *ctx, const struct iovec *iov, int iovcnt,
                     RfError **errp)
{
    BufReader *r = ctx;
    r->calls++;
    for (int i = 0; i < iovcnt; i++) {
        if (r->len - r->pos < iov[i].iov_len) {
            rf_error_set(errp, RF_ERR_IO, "short read");
            return false;
        }
        memcpy(iov[i].iov_base, r->data + r->pos, iov[i].iov_len);
        r->pos += iov[i].iov_len;
    }
    return true;
}

/* Flattens a send payload's iov into dst.  @return its length. */
static size_t flatten(const RfSendPayload *out, uint8_t *dst)
{
    size_t n = 0;
    for (int i = 0; i < out->iovcnt; i++) {
        memcpy(dst + n, out->iov[i].iov_base, out->iov[i].iov_len);
        n += out->iov[i].iov_len;
    }
    assert_int_equal(n, out->len);
    return n;
}

/* Runs recv on a payload into the given pages. */
static bool do_recv(void *rstate, const uint8_t *payload, uint32_t len,
                    uint8_t *const *pages, uint32_t npages, RfError **errp,
                    int *read_calls)
{
    BufReader r = {.data = payload, .len = len};
    RfRecvPayload in = {.len = len, .pages = pages, .npages = npages,
                        .read = buf_read, .read_ctx = &r};
    bool ok = M->recv(rstate, &in, errp);
    if (read_calls) {
        *read_calls = r.calls;
    }
    return ok;
}

static void use_software(void)
{
    setenv(RF_QATZIP_LIB_ENV, "/nonexistent/libqatzip.so.3", 1);
}

/* Path of a fake library variant next to this test binary. */
static const char *fake_path(const char *variant)
{
    static char path[PATH_MAX + 64];
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    assert_non_null(slash);
    *slash = '\0';
    snprintf(path, sizeof(path), "%s/fakeqat/libfakeqat_%s.so", exe,
             variant);
    if (access(path, R_OK) != 0) {
        fail_msg("%s missing: build the tests/fakeqat targets", path);
    }
    return path;
}

/* The fake's own entry points, looked up in the very instance ramflow
 * loads (same path, so dlopen returns the same handle). */
typedef struct Fake {
    void *handle;
    void (*stats)(FakeQatStats *);
    void (*control)(int, int);
    void (*reset)(void);
    int (*init)(QzSession_T *, unsigned char);
} Fake;

static Fake fake_open(const char *variant)
{
    const char *path = fake_path(variant);
    Fake f;
    f.handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!f.handle) {
        fail_msg("dlopen %s: %s", path, dlerror());
    }
    void *s = dlsym(f.handle, "fakeqat_stats");
    void *c = dlsym(f.handle, "fakeqat_control");
    void *r = dlsym(f.handle, "fakeqat_reset");
    void *i = dlsym(f.handle, "qzInit");
    assert_non_null(s);
    assert_non_null(c);
    assert_non_null(r);
    assert_non_null(i);
    memcpy(&f.stats, &s, sizeof(s));
    memcpy(&f.control, &c, sizeof(c));
    memcpy(&f.reset, &r, sizeof(r));
    memcpy(&f.init, &i, sizeof(i));
    f.reset();
    setenv(RF_QATZIP_LIB_ENV, path, 1);
    return f;
}

static void fake_close(Fake *f)
{
    f->reset();
    dlclose(f->handle);
    use_software();
}

/* ---- the method table ------------------------------------------------- */

static void test_ops_table(void **st)
{
    (void)st;
    assert_string_equal(M->name, "qatzip");
    assert_int_equal(M->id, RF_METHOD_QATZIP);
    assert_string_equal(M->level_param, "multifd-qatzip-level");
    assert_int_equal(M->level_min, 1);
    assert_int_equal(M->level_max, 9);
    assert_int_equal(M->level_default, 1);
    assert_int_equal(M->max_payload(1), PAGE - 1);
    assert_int_equal(M->max_payload(PKT_PAGES), PKT_BYTES - 1);
    assert_ptr_equal(rf_method_find("qatzip"), M);
    assert_ptr_equal(rf_method_by_id(RF_METHOD_QATZIP), M);
    int prev = 0;
    for (int l = 1; l <= 9; l++) {
        int il = rf_qz_isal_level(l);
        assert_true(il >= 0 && il <= 3);
        assert_true(il >= prev);
        prev = il;
    }
    assert_int_equal(rf_qz_isal_level(1), 1);
    assert_int_equal(rf_qz_isal_level(9), 3);
}

static void test_level_range(void **st)
{
    (void)st;
    use_software();
    RfError *err = NULL;
    void *s = NULL;
    check_fail(M->send_setup(&s, 0, &err), &err,
               "multifd-qatzip-level 0", "1..9");
    assert_null(s);
    check_fail(M->send_setup(&s, 10, &err), &err,
               "multifd-qatzip-level 10", "1..9");
    assert_null(rf_qz_codec_new(-1, RF_QZ_DIR_BOTH, &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_PARAM);
    rf_error_free(err);
    err = NULL;
    for (int l = 1; l <= 9; l++) {
        check_ok(M->send_setup(&s, l, &err), &err);
        M->send_cleanup(s);
    }
}

/* ---- round trips ------------------------------------------------------ */

/* One packet of npages of `kind` through send_prepare and recv (into
 * scattered and into contiguous pages), checking the payload with zlib,
 * gzip -dc (when `with_gzip`) and the format checker. */
static void roundtrip(void *sstate, void *rstate, DataKind kind,
                      uint32_t npages, bool with_gzip)
{
    size_t len = (size_t)npages * PAGE;
    /* Source pages scattered in reverse order across a larger area. */
    uint8_t *area = malloc(2 * len);
    uint8_t *orig = malloc(len);
    uint8_t *payload = malloc(len);
    uint8_t *dec = malloc(len + 1);
    uint8_t *dst = malloc(2 * len + PAGE);
    assert_true(area && orig && payload && dec && dst);
    fill(orig, len, kind);
    uint8_t *spages[PKT_PAGES], *dpages[PKT_PAGES];
    for (uint32_t i = 0; i < npages; i++) {
        spages[i] = area + (size_t)(npages - 1 - i) * 2 * PAGE;
        memcpy(spages[i], orig + (size_t)i * PAGE, PAGE);
        dpages[i] = dst + (size_t)i * 2 * PAGE + PAGE;
    }
    RfPageList pl = {.pages = spages, .npages = npages};
    RfSendPayload out;
    RfError *err = NULL;
    check_ok(M->send_prepare(sstate, &pl, &out, &err), &err);
    size_t plen = flatten(&out, payload);

    if (kind == DATA_RANDOM) {
        assert_true(out.raw);
        assert_int_equal(plen, len);
        assert_memory_equal(payload, orig, len);
    } else {
        assert_false(out.raw);
        assert_true(plen < len);
        assert_true(plen <= M->max_payload(npages));
        check_format(payload, plen, len);
        unsigned members = 0;
        assert_int_equal(zlib_decode(payload, plen, dec, len + 1, &members),
                         (long)len);
        assert_int_equal(members, (len + 65535) / 65536);
        assert_memory_equal(dec, orig, len);
        if (with_gzip) {
            size_t glen = 0;
            uint8_t *g = gzip_decode(payload, plen, &glen);
            assert_non_null(g);
            assert_int_equal(glen, len);
            assert_memory_equal(g, orig, len);
            free(g);
        }
        /* Receiver, scattered destination. */
        memset(dst, 0xAA, 2 * len + PAGE);
        check_ok(do_recv(rstate, payload, (uint32_t)plen, dpages, npages,
                         &err, NULL), &err);
        for (uint32_t i = 0; i < npages; i++) {
            assert_memory_equal(dpages[i], orig + (size_t)i * PAGE, PAGE);
            /* the gaps between pages are untouched */
            uint8_t *gap = dst + (size_t)i * 2 * PAGE;
            for (size_t j = 0; j < PAGE; j += 511) {
                assert_int_equal(gap[j], 0xAA);
            }
        }
        /* Receiver, contiguous destination (decoded in place). */
        uint8_t *cpages[PKT_PAGES];
        memset(dst, 0x55, 2 * len + PAGE);
        for (uint32_t i = 0; i < npages; i++) {
            cpages[i] = dst + PAGE + (size_t)i * PAGE;
        }
        check_ok(do_recv(rstate, payload, (uint32_t)plen, cpages, npages,
                         &err, NULL), &err);
        assert_memory_equal(dst + PAGE, orig, len);
        assert_int_equal(dst[PAGE - 1], 0x55);
        assert_int_equal(dst[PAGE + len], 0x55);
    }
    free(area);
    free(orig);
    free(payload);
    free(dec);
    free(dst);
}

static void test_roundtrip_levels(void **st)
{
    (void)st;
    use_software();
    static const int levels[] = {1, 5, 9};
    static const uint32_t sizes[] = {1, 3, 17, PKT_PAGES};
    RfError *err = NULL;
    void *r = NULL;
    check_ok(M->recv_setup(&r, &err), &err);
    for (size_t li = 0; li < 3; li++) {
        void *s = NULL;
        check_ok(M->send_setup(&s, levels[li], &err), &err);
        const char *d = M->describe(s);
        char want[64];
        snprintf(want, sizeof(want), "software (ISA-L level %d): ",
                 rf_qz_isal_level(levels[li]));
        assert_true(strncmp(d, want, strlen(want)) == 0);
        for (int k = DATA_ZERO; k <= DATA_MIXED; k++) {
            for (size_t si = 0; si < 4; si++) {
                print_message("level %d %s %u pages\n", levels[li],
                              kind_names[k], sizes[si]);
                /* gzip -dc on full packets only, to keep the test fast */
                roundtrip(s, r, (DataKind)k, sizes[si],
                          sizes[si] == PKT_PAGES || sizes[si] == 3);
            }
        }
        M->send_cleanup(s);
    }
    M->recv_cleanup(r);
}

/* Higher levels must not compress worse on text (checks the mapping does
 * something). */
static void test_levels_differ(void **st)
{
    (void)st;
    use_software();
    uint8_t *in = malloc(PKT_BYTES);
    uint8_t *out = malloc(PKT_BYTES);
    assert_true(in && out);
    fill(in, PKT_BYTES, DATA_TEXT);
    size_t sz[10] = {0};
    RfError *err = NULL;
    for (int l = 1; l <= 9; l += 4) {
        RfQzCodec *c = rf_qz_codec_new(l, RF_QZ_DIR_COMPRESS, &err);
        assert_non_null(c);
        assert_int_equal(rf_qz_compress(c, in, PKT_BYTES, out, PKT_BYTES,
                                        &sz[l], &err), RF_QZ_OK);
        rf_qz_codec_free(c);
    }
    print_message("text 512 KiB: level 1 %zu, 5 %zu, 9 %zu bytes\n", sz[1],
                  sz[5], sz[9]);
    assert_true(sz[9] < sz[1]);
    assert_true(sz[5] <= sz[1]);
    free(in);
    free(out);
}

/* ---- format ----------------------------------------------------------- */

static void test_format_split(void **st)
{
    (void)st;
    use_software();
    RfError *err = NULL;
    RfQzCodec *c = rf_qz_codec_new(1, RF_QZ_DIR_BOTH, &err);
    assert_non_null(c);
    static const size_t lens[] = {0, 1, 1000, 65535, 65536, 65537, 200000,
                                  PKT_BYTES};
    size_t cap = rf_qz_compress_bound(PKT_BYTES);
    uint8_t *in = malloc(PKT_BYTES), *out = malloc(cap);
    uint8_t *dec = malloc(PKT_BYTES + 1);
    assert_true(in && out && dec);
    fill(in, PKT_BYTES, DATA_MIXED);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t n = 0;
        assert_int_equal(rf_qz_compress(c, in, lens[i], out, cap, &n, &err),
                         RF_QZ_OK);
        unsigned members = check_format(out, n, lens[i]);
        if (lens[i] == 0) {
            /* the empty member: header, 03 00, zero CRC and ISIZE */
            static const uint8_t tail[10] = {3, 0, 0, 0, 0, 0, 0, 0, 0, 0};
            assert_int_equal(n, RF_QZ_EMPTY_MEMBER);
            assert_int_equal(get32(out + 20), 2);
            assert_memory_equal(out + 24, tail, sizeof(tail));
        }
        assert_int_equal(zlib_decode(out, n, dec, PKT_BYTES + 1, NULL),
                         (long)lens[i]);
        assert_memory_equal(dec, in, lens[i]);
        size_t glen = 99;
        uint8_t *g = gzip_decode(out, n, &glen);
        assert_non_null(g);
        assert_int_equal(glen, lens[i]);
        assert_memory_equal(g, in, lens[i]);
        free(g);
        check_ok(rf_qz_decompress(c, out, n, dec, lens[i], &err), &err);
        assert_memory_equal(dec, in, lens[i]);
        uint64_t total = 0;
        unsigned walked = 0;
        check_ok(rf_qz_walk(out, n, &total, &walked, &err), &err);
        assert_int_equal(total, lens[i]);
        assert_int_equal(walked, members);
        /* too small a buffer says so instead of failing */
        if (n > 40) {
            size_t m = 0;
            assert_int_equal(rf_qz_compress(c, in, lens[i], out, n - 1, &m,
                                            &err), RF_QZ_NOSPACE);
            assert_null(err);
        }
    }
    rf_qz_codec_free(c);
    free(in);
    free(out);
    free(dec);
}

/* ---- raw fallback ----------------------------------------------------- */

static void test_raw_fallback(void **st)
{
    (void)st;
    use_software();
    RfError *err = NULL;
    void *s = NULL;
    check_ok(M->send_setup(&s, 1, &err), &err);
    uint8_t *pages = malloc(PKT_BYTES);
    assert_non_null(pages);
    fill(pages, PKT_BYTES, DATA_RANDOM);
    uint8_t *pp[PKT_PAGES];
    for (uint32_t i = 0; i < PKT_PAGES; i++) {
        pp[i] = pages + (size_t)i * PAGE;
    }
    RfPageList pl = {.pages = pp, .npages = PKT_PAGES};
    RfSendPayload out;
    check_ok(M->send_prepare(s, &pl, &out, &err), &err);
    assert_true(out.raw);
    assert_int_equal(out.len, PKT_BYTES);
    assert_int_equal(out.iovcnt, 1);
    /* the gathered copy, not the guest pages */
    assert_ptr_not_equal(out.iov[0].iov_base, pages);
    assert_memory_equal(out.iov[0].iov_base, pages, PKT_BYTES);
    /* one compressible page among random ones makes it compress */
    fill(pages, PKT_BYTES, DATA_RANDOM);
    memset(pages + 5 * PAGE, 0, 8 * PAGE);
    check_ok(M->send_prepare(s, &pl, &out, &err), &err);
    assert_false(out.raw);
    assert_true(out.len < PKT_BYTES);
    M->send_cleanup(s);
    free(pages);
}

/* ---- receiver checks -------------------------------------------------- */

/* Compresses npages of text with rf_qz_compress into buf. */
static size_t make_payload(uint8_t *buf, size_t cap, uint8_t *orig,
                           uint32_t npages)
{
    RfError *err = NULL;
    RfQzCodec *c = rf_qz_codec_new(1, RF_QZ_DIR_COMPRESS, &err);
    assert_non_null(c);
    fill(orig, (size_t)npages * PAGE, DATA_TEXT);
    size_t n = 0;
    assert_int_equal(rf_qz_compress(c, orig, (size_t)npages * PAGE, buf,
                                    cap, &n, &err), RF_QZ_OK);
    rf_qz_codec_free(c);
    return n;
}

static void test_bad_payloads(void **st)
{
    (void)st;
    use_software();
    RfError *err = NULL;
    void *r = NULL;
    check_ok(M->recv_setup(&r, &err), &err);
    const uint32_t np = 20; /* 80 KiB: two members */
    size_t cap = rf_qz_compress_bound(np * PAGE);
    uint8_t *good = malloc(cap), *bad = malloc(cap);
    uint8_t *orig = malloc(np * PAGE), *dst = malloc(np * PAGE);
    assert_true(good && bad && orig && dst);
    size_t n = make_payload(good, cap, orig, np);
    uint8_t *pages[PKT_PAGES];
    for (uint32_t i = 0; i < np; i++) {
        pages[i] = dst + (size_t)i * PAGE;
    }
    int calls = -1;
    check_ok(do_recv(r, good, (uint32_t)n, pages, np, &err, &calls), &err);
    assert_memory_equal(dst, orig, np * PAGE);
    assert_int_equal(calls, 1);

    /* 1. payload larger than the receive buffer: refused before reading */
    check_fail(do_recv(r, good, np * PAGE, pages, np, &err, &calls), &err,
               "payload_size 81920", "larger than", "81919");
    assert_int_equal(calls, 0);

    /* 2. flags that are not qatzip's: plain gzip FLG, bad magic, no QZ */
    memcpy(bad, good, n);
    bad[3] = 0;
    check_fail(do_recv(r, bad, (uint32_t)n, pages, np, &err, NULL), &err,
               "offset 0", "FLG is 0x00", "expected 0x04");
    memcpy(bad, good, n);
    bad[0] = 0x78;
    check_fail(do_recv(r, bad, (uint32_t)n, pages, np, &err, NULL), &err,
               "magic is 78 8b");
    memcpy(bad, good, n);
    size_t second = 24 + get32(good + 20) + 8;
    bad[second + 13] = 'X';
    char off_msg[64];
    snprintf(off_msg, sizeof(off_msg), "offset %zu", second);
    check_fail(do_recv(r, bad, (uint32_t)n, pages, np, &err, NULL), &err,
               off_msg, "subfield", "'QZ'");
    memcpy(bad, good, n);
    bad[2] = 7;
    check_fail(do_recv(r, bad, (uint32_t)n, pages, np, &err, NULL), &err,
               "CM is 7");

    /* 3. decompression errors: invalid block type, bad CRC, csize lies */
    memcpy(bad, good, n);
    bad[24] = 0x07; /* BFINAL 1, BTYPE 11 (reserved) */
    memset(dst, 0, np * PAGE);
    check_fail(do_recv(r, bad, (uint32_t)n, pages, np, &err, NULL), &err,
               "member 0", "decompression failed", "invalid deflate block");
    memcpy(bad, good, n);
    bad[second - 8] ^= 1; /* first member's CRC */
    check_fail(do_recv(r, bad, (uint32_t)n, pages, np, &err, NULL), &err,
               "member 0", "CRC-32");
    memcpy(bad, good, n);
    bad[second - 1] ^= 1; /* first member's ISIZE */
    check_fail(do_recv(r, bad, (uint32_t)n, pages, np, &err, NULL), &err,
               "member 0", "ISIZE");
    memcpy(bad, good, n);
    bad[20] = (uint8_t)(bad[20] - 1); /* csize one short: walk fails later */
    check_fail(do_recv(r, bad, (uint32_t)n, pages, np, &err, NULL), &err,
               "qatzip");
    memcpy(bad, good, n);
    bad[24 + get32(good + 20) / 2] ^= 0x5a; /* corrupt the middle */
    check_fail(do_recv(r, bad, (uint32_t)n, pages, np, &err, NULL), &err,
               "member 0");
    /* truncated payload: sizes in the header run past the end */
    check_fail(do_recv(r, good, (uint32_t)n - 4, pages, np, &err, NULL),
               &err, "exceeds");

    /* 4. decompressed size differs from npages * 4096 */
    check_fail(do_recv(r, good, (uint32_t)n, pages, np + 1, &err, NULL),
               &err, "81920", "expected 21 pages x 4096 = 86016");
    check_fail(do_recv(r, good, (uint32_t)n, pages, np - 1, &err, NULL),
               &err, "expected 19 pages x 4096 = 77824");
    /* a member whose header and data both say less than the trailer */
    memcpy(bad, good, n);
    bad[16] = (uint8_t)(bad[16] - 1); /* first isize 65535 */
    check_fail(do_recv(r, bad, (uint32_t)n, pages, np, &err, NULL), &err,
               "expected 20 pages");
    M->recv_cleanup(r);
    free(good);
    free(bad);
    free(orig);
    free(dst);
}

/* The codec's own checks: a member that declares fewer bytes than its
 * data holds, and an empty payload. */
static void test_decoder_checks(void **st)
{
    (void)st;
    use_software();
    RfError *err = NULL;
    RfQzCodec *c = rf_qz_codec_new(1, RF_QZ_DIR_DECOMPRESS, &err);
    assert_non_null(c);
    uint32_t np = 2;
    size_t cap = rf_qz_compress_bound(np * PAGE);
    uint8_t *p = malloc(cap), *orig = malloc(np * PAGE);
    uint8_t *dst = malloc(np * PAGE + 16);
    size_t n = make_payload(p, cap, orig, np);
    check_ok(rf_qz_decompress(c, p, n, dst, np * PAGE, &err), &err);
    assert_memory_equal(dst, orig, np * PAGE);
    /* isize in header 8191: data overflows the member's output */
    p[16] = 0xff;
    p[17] = 0x1f;
    memset(dst + np * PAGE - 1, 0xEE, 17);
    check_fail(rf_qz_decompress(c, p, n, dst, np * PAGE - 1, &err), &err,
               "member 0", "decompression failed");
    for (int i = 0; i < 17; i++) {
        assert_int_equal(dst[np * PAGE - 1 + i], 0xEE); /* never past */
    }
    check_fail(rf_qz_decompress(c, p, 0, dst, 0, &err), &err, "empty");
    /* a codec for decompression cannot compress */
    size_t m;
    assert_int_equal(rf_qz_compress(c, orig, PAGE, p, cap, &m, &err),
                     RF_QZ_FAIL);
    rf_error_free(err);
    rf_qz_codec_free(c);
    free(p);
    free(orig);
    free(dst);
}

/* ---- the guest writes while we compress ------------------------------- */

typedef struct Writer {
    uint8_t *mem;
    size_t len;
    atomic_int stop;
    atomic_ulong writes;
} Writer;

static void *writer_thread(void *arg)
{
    Writer *w = arg;
    uint64_t x = 1;
    while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        size_t at = (size_t)(x >> 20) % w->len;
        /* relaxed atomic stores: racing with the sender's reads is the
         * point, without undefined behaviour in the test itself; letters
         * from a 4-letter set keep the pages compressible */
        atomic_store_explicit((_Atomic uint8_t *)&w->mem[at],
                              (uint8_t)('a' + (x >> 62)),
                              memory_order_relaxed);
        atomic_fetch_add_explicit(&w->writes, 1, memory_order_relaxed);
    }
    return NULL;
}

static void test_guest_writes_during_send(void **st)
{
    (void)st;
    use_software();
    uint8_t *mem = malloc(PKT_BYTES);
    uint8_t *payload = malloc(PKT_BYTES), *dec = malloc(PKT_BYTES + 1);
    assert_true(mem && payload && dec);
    fill(mem, PKT_BYTES, DATA_TEXT);
    uint8_t *pp[PKT_PAGES];
    for (uint32_t i = 0; i < PKT_PAGES; i++) {
        pp[i] = mem + (size_t)i * PAGE;
    }
    Writer w = {.mem = mem, .len = PKT_BYTES};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, writer_thread, &w), 0);
    RfError *err = NULL;
    void *s = NULL, *r = NULL;
    check_ok(M->send_setup(&s, 1, &err), &err);
    check_ok(M->recv_setup(&r, &err), &err);
    RfPageList pl = {.pages = pp, .npages = PKT_PAGES};
    uint8_t *dpages[PKT_PAGES];
    uint8_t *dst = malloc(PKT_BYTES);
    assert_non_null(dst);
    for (uint32_t i = 0; i < PKT_PAGES; i++) {
        dpages[i] = dst + (size_t)(PKT_PAGES - 1 - i) * PAGE;
    }
    for (int it = 0; it < 40; it++) {
        RfSendPayload out;
        check_ok(M->send_prepare(s, &pl, &out, &err), &err);
        assert_false(out.raw);
        size_t n = flatten(&out, payload);
        /* zlib checks each member's CRC-32 against the encoded bytes */
        assert_int_equal(zlib_decode(payload, n, dec, PKT_BYTES + 1, NULL),
                         (long)PKT_BYTES);
        check_ok(do_recv(r, payload, (uint32_t)n, dpages, PKT_PAGES, &err,
                         NULL), &err);
    }
    atomic_store(&w.stop, 1);
    pthread_join(t, NULL);
    print_message("writer made %lu writes during the sends\n",
                  atomic_load(&w.writes));
    assert_true(atomic_load(&w.writes) > 1000);
    M->send_cleanup(s);
    M->recv_cleanup(r);
    free(mem);
    free(payload);
    free(dec);
    free(dst);
}

/* ---- back-end selection: library missing, disabled, fakes ------------- */

static void test_lib_not_found(void **st)
{
    (void)st;
    RfError *err = NULL;
    void *s = NULL;
    use_software();
    check_ok(M->send_setup(&s, 1, &err), &err);
    assert_string_equal(M->describe(s), "software (ISA-L level 1): "
                                        "/nonexistent/libqatzip.so.3 not "
                                        "found");
    M->send_cleanup(s);

    /* the default name, on a machine without QATzip */
    unsetenv(RF_QATZIP_LIB_ENV);
    char buf[256];
    bool hw = rf_qatzip_probe(5, buf, sizeof(buf));
    if (hw) {
        print_message("real QATzip hardware here: %s\n", buf);
    } else if (strstr(buf, "not loadable")) {
        print_message("QATzip installed without a device: %s\n", buf);
    } else {
        assert_string_equal(buf, "software (ISA-L level 2): "
                                 "libqatzip.so.3 not found");
    }

    setenv(RF_QATZIP_LIB_ENV, "", 1);
    check_ok(M->recv_setup(&s, &err), &err);
    assert_string_equal(M->describe(s), "software (ISA-L level 1): "
                                        "hardware disabled "
                                        "(RAMFLOW_QATZIP_LIB is empty)");
    M->recv_cleanup(s);

    /* a file that is not a shared object */
    char path[] = "/tmp/test_qatzip_notso_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "junk", 4), 4);
    close(fd);
    setenv(RF_QATZIP_LIB_ENV, path, 1);
    assert_false(rf_qatzip_probe(1, buf, sizeof(buf)));
    assert_non_null(strstr(buf, "not loadable"));
    unlink(path);
    use_software();
}

static void test_fake_no_device(void **st)
{
    (void)st;
    Fake f = fake_open("nohw");
    RfError *err = NULL;
    void *s = NULL, *r = NULL;
    check_ok(M->send_setup(&s, 7, &err), &err);
    assert_string_equal(M->describe(s), "software (ISA-L level 3): no QAT "
                                        "device (hw_session_stat 11, "
                                        "QZ_NO_HW)");
    FakeQatStats fs;
    f.stats(&fs);
    assert_int_equal(fs.init_calls, 1);
    assert_int_equal(fs.setup_calls, 1);
    assert_int_equal(fs.direction, 0);
    assert_int_equal(fs.comp_lvl, 7);
    assert_int_equal(fs.comp_algorithm, 8);
    assert_int_equal(fs.sw_backup, 1);
    assert_int_equal(fs.hw_buff_sz, 65536);
    assert_int_equal(fs.data_fmt, 2);
    /* the software session was torn down; no QATzip memory was used */
    assert_int_equal(fs.teardown_calls, 1);
    assert_int_equal(fs.close_calls, 1);
    assert_int_equal(fs.live_sessions, 0);
    assert_int_equal(fs.malloc_pinned + fs.malloc_common + fs.malloc_denied,
                     0);

    /* a second session: qzInit now answers 1 (QZ_DUPLICATE), still no
     * device, still software */
    check_ok(M->recv_setup(&r, &err), &err);
    assert_non_null(strstr(M->describe(r), "QZ_NO_HW"));
    f.stats(&fs);
    assert_int_equal(fs.init_calls, 2);
    assert_int_equal(fs.direction, 1);

    /* ... and the packets go through ISA-L, never the fake */
    roundtrip(s, r, DATA_MIXED, PKT_PAGES, false);
    f.stats(&fs);
    assert_int_equal(fs.compress_calls, 0);
    assert_int_equal(fs.decompress_calls, 0);
    M->send_cleanup(s);
    M->recv_cleanup(r);

    /* the fake itself behaves as the spec says for a machine without a
     * device: init without software backup fails, later inits give 1 */
    QzSession_T sess;
    memset(&sess, 0, sizeof(sess));
    assert_int_equal(f.init(&sess, 0), -101);
    assert_int_equal(f.init(&sess, 1), 1);
    fake_close(&f);
}

static void test_fake_missing_symbol(void **st)
{
    (void)st;
    Fake f = fake_open("nosym");
    char buf[512];
    assert_false(rf_qatzip_probe(1, buf, sizeof(buf)));
    assert_non_null(strstr(buf, "software (ISA-L level 1): "));
    assert_non_null(strstr(buf, "libfakeqat_nosym.so has no "
                                "qzSetupSessionDeflate (QATzip >= 1.1.2 "
                                "needed)"));
    FakeQatStats fs;
    f.stats(&fs);
    assert_int_equal(fs.init_calls, 0); /* nothing called before lookup */
    fake_close(&f);
}

static void test_fake_hardware(void **st)
{
    (void)st;
    Fake f = fake_open("hw");
    RfError *err = NULL;
    void *s = NULL, *r = NULL;
    check_ok(M->send_setup(&s, 2, &err), &err);
    const char *d = M->describe(s);
    assert_non_null(strstr(d, "hardware (QAT via "));
    assert_non_null(strstr(d, "libfakeqat_hw.so, level 2, pinned buffers)"));
    check_ok(M->recv_setup(&r, &err), &err);
    assert_non_null(strstr(M->describe(r), "pinned buffers"));
    FakeQatStats fs;
    f.stats(&fs);
    assert_int_equal(fs.live_sessions, 2);
    assert_int_equal(fs.malloc_pinned, 4);
    assert_int_equal(fs.malloc_common, 0);

    /* hardware sender -> hardware receiver; the payload (written by the
     * fake's zlib encoder) passes the same format and gzip checks */
    for (int k = DATA_ZERO; k <= DATA_MIXED; k++) {
        roundtrip(s, r, (DataKind)k, PKT_PAGES, k == DATA_MIXED);
        roundtrip(s, r, (DataKind)k, 5, false);
    }
    f.stats(&fs);
    assert_int_equal(fs.compress_calls, 8);
    /* random went raw; the others were received twice each */
    assert_int_equal(fs.decompress_calls, 12);

    /* cross back ends: software receiver reads the hardware sender's
     * payload, hardware receiver reads a software sender's */
    use_software();
    void *rsw = NULL, *ssw = NULL;
    check_ok(M->recv_setup(&rsw, &err), &err);
    check_ok(M->send_setup(&ssw, 2, &err), &err);
    assert_non_null(strstr(M->describe(rsw), "software"));
    roundtrip(s, rsw, DATA_TEXT, PKT_PAGES, false);
    roundtrip(ssw, r, DATA_TEXT, PKT_PAGES, false);
    M->recv_cleanup(rsw);
    M->send_cleanup(ssw);
    setenv(RF_QATZIP_LIB_ENV, fake_path("hw"), 1);

    /* a bad payload through the hardware decoder */
    uint8_t *orig = malloc(4 * PAGE), *p = malloc(8 * PAGE);
    uint8_t *dst = malloc(4 * PAGE);
    size_t n = make_payload(p, 8 * PAGE, orig, 4);
    uint8_t *pages[4];
    for (int i = 0; i < 4; i++) {
        pages[i] = dst + (size_t)i * PAGE;
    }
    check_ok(do_recv(r, p, (uint32_t)n, pages, 4, &err, NULL), &err);
    assert_memory_equal(dst, orig, 4 * PAGE);
    p[n - 6] ^= 0xff; /* CRC */
    check_fail(do_recv(r, p, (uint32_t)n, pages, 4, &err, NULL), &err,
               "decompression failed", "qzDecompress returned -4");

    /* the empty input: the same fixed member from both back ends */
    RfQzCodec *hc = rf_qz_codec_new(1, RF_QZ_DIR_BOTH, &err);
    assert_non_null(hc);
    assert_true(rf_qz_codec_is_hardware(hc));
    uint8_t e1[64], e2[64];
    size_t n1 = 0, n2 = 0;
    assert_int_equal(rf_qz_compress(hc, e1, 0, e1, sizeof(e1), &n1, &err),
                     RF_QZ_OK);
    rf_qz_codec_free(hc);
    use_software();
    hc = rf_qz_codec_new(1, RF_QZ_DIR_BOTH, &err);
    assert_false(rf_qz_codec_is_hardware(hc));
    assert_int_equal(rf_qz_compress(hc, e2, 0, e2, sizeof(e2), &n2, &err),
                     RF_QZ_OK);
    rf_qz_codec_free(hc);
    setenv(RF_QATZIP_LIB_ENV, fake_path("hw"), 1);
    assert_int_equal(n1, RF_QZ_EMPTY_MEMBER);
    assert_int_equal(n2, RF_QZ_EMPTY_MEMBER);
    assert_memory_equal(e1, e2, RF_QZ_EMPTY_MEMBER);

    /* a device failure surfaces as an error of send_prepare */
    f.control(0, 1);
    RfPageList pl = {.pages = pages, .npages = 4};
    RfSendPayload out;
    check_fail(M->send_prepare(s, &pl, &out, &err), &err,
               "qzCompress of 16384 bytes failed with -2 (QZ_FAIL)");
    f.control(0, 0);
    free(orig);
    free(p);
    free(dst);

    M->send_cleanup(s);
    M->recv_cleanup(r);
    f.stats(&fs);
    assert_int_equal(fs.live_sessions, 0);
    assert_int_equal(fs.frees, fs.malloc_pinned + fs.malloc_common);

    /* pinned memory refused: falls back to common memory and says so */
    f.control(1, 0);
    check_ok(M->send_setup(&s, 1, &err), &err);
    assert_non_null(strstr(M->describe(s), "common (unpinned) buffers"));
    f.stats(&fs);
    assert_int_equal(fs.malloc_denied, 2);
    assert_int_equal(fs.malloc_common, 2);
    M->send_cleanup(s);
    fake_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_table),
        cmocka_unit_test(test_level_range),
        cmocka_unit_test(test_roundtrip_levels),
        cmocka_unit_test(test_levels_differ),
        cmocka_unit_test(test_format_split),
        cmocka_unit_test(test_raw_fallback),
        cmocka_unit_test(test_bad_payloads),
        cmocka_unit_test(test_decoder_checks),
        cmocka_unit_test(test_guest_writes_during_send),
        cmocka_unit_test(test_lib_not_found),
        cmocka_unit_test(test_fake_no_device),
        cmocka_unit_test(test_fake_missing_symbol),
        cmocka_unit_test(test_fake_hardware),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
