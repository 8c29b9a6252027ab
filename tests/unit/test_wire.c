/*
 * Unit tests for the wire protocol (src/wire): byte layouts, round trips,
 * one rejected case per decode check (with the field named in the
 * message), truncated inputs, and a mutation loop that must never crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "compress/method.h"
#include "ramflow/error.h"
#include "wire/wire.h"

/* ---- helpers ---------------------------------------------------------- */

/* Asserts that a decode failed with an error of `kind` whose message
 * contains every one of the NULL-terminated substrings; frees the error. */
static void check_fail_v(bool ok, RfError **errp, RfErrorKind kind, ...)
{
    assert_false(ok);
    assert_non_null(*errp);
    const char *msg = rf_error_msg(*errp);
    va_list ap;
    va_start(ap, kind);
    const char *sub;
    while ((sub = va_arg(ap, const char *)) != NULL) {
        if (!strstr(msg, sub)) {
            fail_msg("error \"%s\" lacks \"%s\"", msg, sub);
        }
    }
    va_end(ap);
    assert_int_equal(rf_error_kind(*errp), kind);
    rf_error_free(*errp);
    *errp = NULL;
}
#define check_fail(ok, errp, kind, ...) \
    check_fail_v((ok), (errp), (kind), __VA_ARGS__, (const char *)NULL)

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* One extension record for capability bit 40, unknown to this build:
 * bit 40, length 3, "abc". */
static const uint8_t sample_ext[] = {40, 3, 0, 'a', 'b', 'c'};
#define SAMPLE_SUPPORTED (RF_CAPS_IMPLEMENTED | RF_CAP(40))
#define SAMPLE_REQUIRED (RF_CAPS_SOURCE_NEEDS | RF_CAP(RF_CAP_VERIFY))

static void sample_hello(RfHello *h)
{
    memset(h, 0, sizeof(*h));
    h->version = RF_WIRE_VERSION;
    h->page_size = RF_PAGE_SIZE;
    h->caps_supported = SAMPLE_SUPPORTED;
    h->caps_required = SAMPLE_REQUIRED;
    h->method = RF_METHOD_ZSTD;
    h->level = 3;
    h->channels = 8;
    h->ext.len = sizeof(sample_ext);
    memcpy(h->ext.bytes, sample_ext, sizeof(sample_ext));
    for (int i = 0; i < 16; i++) {
        h->session[i] = (uint8_t)(0xA0 + i);
    }
    h->nblocks = 3;
    strcpy(h->blocks[0].name, "pc.ram");
    h->blocks[0].size = 1ull << 30;
    strcpy(h->blocks[1].name, "m\xc3\xa9moire \xe2\x82\xac"); /* é, € */
    h->blocks[1].size = RF_PAGE_SIZE;
    memset(h->blocks[2].name, 'x', RF_BLOCK_NAME_MAX);
    h->blocks[2].size = (1ull << 44) - RF_PAGE_SIZE;
}

/* Offset of block i's name_len byte in sample_hello()'s encoding. */
static size_t hello_block_off(const RfHello *h, uint32_t i)
{
    size_t off = 48;
    for (uint32_t j = 0; j < i; j++) {
        off += 1 + strlen(h->blocks[j].name) + 8;
    }
    return off;
}

static size_t max_payload_test(uint32_t npages)
{
    return (size_t)npages * RF_PAGE_SIZE + 64;
}

static const uint64_t test_block_pages[3] = {16, 1024, 4};
static const RfPacketLimits test_lim = {
    .method = RF_METHOD_ZSTD,
    .nblocks = 3,
    .block_pages = test_block_pages,
    .max_payload = max_payload_test,
};

static RfPacketHdr sample_pkt(void)
{
    RfPacketHdr h = {
        .version = RF_WIRE_VERSION, .method = RF_METHOD_ZSTD, .flags = 0,
        .block = 1, .normal = 2, .zero = 1, .payload_size = 31,
        .round = 3, .seq = 7,
    };
    return h;
}

static bool pkt_equal(const RfPacketHdr *a, const RfPacketHdr *b)
{
    return a->version == b->version && a->method == b->method &&
           a->flags == b->flags && a->block == b->block &&
           a->normal == b->normal && a->zero == b->zero &&
           a->payload_size == b->payload_size && a->round == b->round &&
           a->seq == b->seq;
}

/* ---- frame header ----------------------------------------------------- */

static void test_msg_hdr_layout_roundtrip(void **state)
{
    (void)state;
    uint8_t b[RF_MSG_HDR_SIZE];
    rf_wire_msg_hdr_encode(b, RF_MSG_ROUND, 4);
    const uint8_t want[] = {0x52, 0x46, 0x43, 0x4D, 0x04, 0x00,
                            0x00, 0x00, 0x04, 0x00, 0x00, 0x00};
    assert_memory_equal(b, want, sizeof(want));

    static const struct { uint16_t type; uint32_t len; } ok[] = {
        {RF_MSG_HELLO, 2},       {RF_MSG_HELLO, RF_MSG_MAX_PAYLOAD},
        {RF_MSG_ACCEPT, 10},     {RF_MSG_ACCEPT, 10 + RF_WIRE_EXT_MAX},
        {RF_MSG_ERROR, 6},
        {RF_MSG_ERROR, 4006},    {RF_MSG_ROUND, 4},
        {RF_MSG_END, 5},         {RF_MSG_COMPLETE, 22},
        {RF_MSG_COMPLETE, 22 + 127 + 16 * RF_MAX_BLOCKS},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        RfMsgHdr h = {0};
        RfError *err = NULL;
        rf_wire_msg_hdr_encode(b, ok[i].type, ok[i].len);
        assert_true(rf_wire_msg_hdr_decode(b, &h, &err));
        assert_null(err);
        assert_int_equal(h.type, ok[i].type);
        assert_int_equal(h.length, ok[i].len);
    }
}

static void test_msg_hdr_bad(void **state)
{
    (void)state;
    uint8_t b[RF_MSG_HDR_SIZE];
    RfMsgHdr h;
    RfError *err = NULL;

    rf_wire_msg_hdr_encode(b, RF_MSG_HELLO, 100);
    b[0] ^= 1;
    check_fail(rf_wire_msg_hdr_decode(b, &h, &err), &err, RF_ERR_PROTOCOL,
               "frame field 'magic'", "0x4d434653");
    put32(b, RF_CHAN_MAGIC);
    check_fail(rf_wire_msg_hdr_decode(b, &h, &err), &err, RF_ERR_PROTOCOL,
               "'magic'", "data-channel hello");
    put32(b, RF_PKT_MAGIC);
    check_fail(rf_wire_msg_hdr_decode(b, &h, &err), &err, RF_ERR_PROTOCOL,
               "'magic'", "data packet");

    rf_wire_msg_hdr_encode(b, RF_MSG_INVALID, 0);
    check_fail(rf_wire_msg_hdr_decode(b, &h, &err), &err, RF_ERR_PROTOCOL,
               "frame field 'type': 0", "1..9");
    rf_wire_msg_hdr_encode(b, RF_MSG_MAX + 1, 0);
    check_fail(rf_wire_msg_hdr_decode(b, &h, &err), &err, RF_ERR_PROTOCOL,
               "frame field 'type': 10");

    rf_wire_msg_hdr_encode(b, RF_MSG_ACCEPT, 0);
    b[6] = 1;
    check_fail(rf_wire_msg_hdr_decode(b, &h, &err), &err, RF_ERR_PROTOCOL,
               "frame field 'reserved'");

    static const struct { uint16_t type; uint32_t len; const char *s; }
    bad[] = {
        {RF_MSG_ACCEPT, 0, "0 bytes for type ACCEPT"},
        {RF_MSG_ACCEPT, 9, "9 bytes for type ACCEPT"},
        {RF_MSG_ACCEPT, 10 + RF_WIRE_EXT_MAX + 1, "allowed 10..4106"},
        {RF_MSG_ROUND, 3, "for type ROUND"},
        {RF_MSG_ROUND, 5, "for type ROUND"},
        {RF_MSG_END, 4, "for type END"},
        {RF_MSG_END, 6, "for type END"},
        {RF_MSG_ERROR, 5, "for type ERROR"},
        {RF_MSG_ERROR, 4007, "4007 bytes for type ERROR"},
        {RF_MSG_COMPLETE, 21, "for type COMPLETE"},
        {RF_MSG_COMPLETE, 22 + 127 + 16 * RF_MAX_BLOCKS + 1, "COMPLETE"},
        {RF_MSG_HELLO, 1, "for type HELLO"},
        {RF_MSG_HELLO, RF_MSG_MAX_PAYLOAD + 1, "for type HELLO"},
        {RF_MSG_HELLO, UINT32_MAX, "4294967295 bytes"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rf_wire_msg_hdr_encode(b, bad[i].type, bad[i].len);
        check_fail(rf_wire_msg_hdr_decode(b, &h, &err), &err,
                   RF_ERR_PROTOCOL, "frame field 'length'", bad[i].s);
    }
}

/* ---- HELLO ------------------------------------------------------------ */

static void test_hello_roundtrip(void **state)
{
    (void)state;
    static RfHello h, d;
    static uint8_t buf[20000];
    RfError *err = NULL;
    sample_hello(&h);
    size_t n = rf_wire_hello_encode(&h, buf, sizeof(buf));
    size_t want = 48 + (1 + 6 + 8) + (1 + strlen(h.blocks[1].name) + 8) +
                  (1 + 255 + 8) + 2 + sizeof(sample_ext);
    assert_int_equal(n, want);

    /* Fixed part, byte by byte: supported = bits 0..6 and 40, required =
     * bits 0 (round-ack), 2 (verify), 3, 4, 5. */
    const uint8_t fixed[32] = {
        0x02, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00,     /* ver, page */
        0x7F, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,     /* supported */
        0x3D, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,     /* required */
        RF_METHOD_ZSTD, 3, 8, 0, 3, 0, 0, 0,  /* method level chan nblk */
    };
    assert_memory_equal(buf, fixed, sizeof(fixed));
    assert_memory_equal(buf + 32, h.session, 16);
    assert_int_equal(buf[48], 6);
    assert_memory_equal(buf + 49, "pc.ram", 6);
    const uint8_t size1g[8] = {0, 0, 0, 0x40, 0, 0, 0, 0};
    assert_memory_equal(buf + 55, size1g, 8);
    /* The extension area ends the payload. */
    const uint8_t ext_len[2] = {sizeof(sample_ext), 0};
    assert_memory_equal(buf + n - 2 - sizeof(sample_ext), ext_len, 2);
    assert_memory_equal(buf + n - sizeof(sample_ext), sample_ext,
                        sizeof(sample_ext));

    assert_true(rf_wire_hello_decode(buf, n, &d, &err));
    assert_null(err);
    assert_int_equal(d.version, RF_WIRE_VERSION);
    assert_int_equal(d.page_size, RF_PAGE_SIZE);
    assert_int_equal(d.method, RF_METHOD_ZSTD);
    assert_int_equal(d.level, 3);
    assert_int_equal(d.channels, 8);
    assert_true(d.caps_supported == SAMPLE_SUPPORTED);
    assert_true(d.caps_required == SAMPLE_REQUIRED);
    assert_memory_equal(d.session, h.session, 16);
    assert_int_equal(d.ext.len, sizeof(sample_ext));
    assert_memory_equal(d.ext.bytes, sample_ext, sizeof(sample_ext));
    assert_int_equal(d.nblocks, 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(d.blocks[i].name, h.blocks[i].name);
        assert_true(d.blocks[i].size == h.blocks[i].size);
    }

    /* A method byte the registry does not know passes here. */
    h.method = 200;
    h.nblocks = RF_MAX_BLOCKS;
    h.channels = 255;
    h.caps_supported = h.caps_required = 0;
    h.ext.len = 0;
    for (uint32_t i = 0; i < RF_MAX_BLOCKS; i++) {
        snprintf(h.blocks[i].name, sizeof(h.blocks[i].name), "b%u", i);
        h.blocks[i].size = RF_PAGE_SIZE * (i + 1);
    }
    n = rf_wire_hello_encode(&h, buf, sizeof(buf));
    assert_true(n > 0);
    assert_true(rf_wire_hello_decode(buf, n, &d, &err));
    assert_int_equal(d.method, 200);
    assert_int_equal(d.nblocks, RF_MAX_BLOCKS);
    assert_string_equal(d.blocks[63].name, "b63");
    assert_true(d.blocks[63].size == 64ull * RF_PAGE_SIZE);
}

static void test_hello_encode_limits(void **state)
{
    (void)state;
    static RfHello h;
    static uint8_t buf[20000];
    sample_hello(&h);
    size_t n = rf_wire_hello_encode(&h, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(rf_wire_hello_encode(&h, buf, n - 1), 0);
    assert_int_equal(rf_wire_hello_encode(&h, buf, n), n);
    h.blocks[0].name[0] = '\0';
    assert_int_equal(rf_wire_hello_encode(&h, buf, sizeof(buf)), 0);
    sample_hello(&h);
    h.nblocks = RF_MAX_BLOCKS + 1;
    assert_int_equal(rf_wire_hello_encode(&h, buf, sizeof(buf)), 0);
    sample_hello(&h);
    h.ext.len = RF_WIRE_EXT_MAX + 1;
    assert_int_equal(rf_wire_hello_encode(&h, buf, sizeof(buf)), 0);
}

/* One bad HELLO: sample_hello() with one field changed. */
typedef enum {
    HM_NONE, HM_VERSION, HM_PAGE, HM_CHANNELS, HM_REQUIRED, HM_NBLOCKS,
    HM_NAME0, HM_NAME2, HM_SIZE1, HM_SIZE2,
} HelloField;

typedef struct HelloCase {
    HelloField field;
    uint64_t val;     /* the new value, or */
    const char *name; /* the new name */
    RfErrorKind kind;
    const char *a, *b;
} HelloCase;

static size_t encode_modified(RfHello *h, const HelloCase *hc, uint8_t *buf,
                              size_t cap)
{
    sample_hello(h);
    switch (hc ? hc->field : HM_NONE) {
    case HM_NONE:
        break;
    case HM_VERSION:
        h->version = (uint16_t)hc->val;
        break;
    case HM_PAGE:
        h->page_size = (uint32_t)hc->val;
        break;
    case HM_CHANNELS:
        h->channels = (uint16_t)hc->val;
        break;
    case HM_REQUIRED:
        h->caps_required = hc->val;
        break;
    case HM_NBLOCKS:
        h->nblocks = (uint32_t)hc->val;
        break;
    case HM_NAME0:
        strcpy(h->blocks[0].name, hc->name);
        break;
    case HM_NAME2:
        strcpy(h->blocks[2].name, hc->name);
        break;
    case HM_SIZE1:
        h->blocks[1].size = hc->val;
        break;
    case HM_SIZE2:
        h->blocks[2].size = hc->val;
        break;
    }
    size_t n = rf_wire_hello_encode(h, buf, cap);
    assert_true(n > 0);
    return n;
}

static void test_hello_bad(void **state)
{
    (void)state;
    static RfHello h, d;
    static uint8_t buf[20000];
    RfError *err = NULL;
    size_t n;

    static const HelloCase version3 = {HM_VERSION, 3, NULL, 0, 0, 0};
    n = encode_modified(&h, &version3, buf, sizeof(buf));
    check_fail(rf_wire_hello_decode(buf, n, &d, &err), &err, RF_ERR_MISMATCH,
               "HELLO field 'version'", "version 3", "version 2");
    /* A different version is named even when the rest is garbage. */
    check_fail(rf_wire_hello_decode(buf, 2, &d, &err), &err, RF_ERR_MISMATCH,
               "'version'", "version 3");

    n = encode_modified(&h, NULL, buf, sizeof(buf));
    buf[2] = 1;
    check_fail(rf_wire_hello_decode(buf, n, &d, &err), &err, RF_ERR_PROTOCOL,
               "HELLO field 'reserved'");

    const RfErrorKind P = RF_ERR_PROTOCOL;
    static const char name_field[] = "field 'name' of block 0";
    const HelloCase cases[] = {
        {HM_PAGE, 8192, NULL, RF_ERR_MISMATCH, "field 'page_size': 8192",
         "4096"},
        {HM_CHANNELS, 0, NULL, P, "field 'channels': 0", "1..255"},
        {HM_CHANNELS, 256, NULL, P, "field 'channels': 256", "1..255"},
        {HM_REQUIRED, RF_CAP(41), NULL, P,
         "field 'caps_required': 0x0000020000000000",
         "bits 0x0000020000000000 that 'caps_supported'"},
        {HM_REQUIRED, SAMPLE_SUPPORTED | RF_CAP(63), NULL, P,
         "field 'caps_required'", "bits 0x8000000000000000"},
        {HM_NBLOCKS, 0, NULL, P, "field 'nblocks': 0", "1..64"},
        {HM_NAME0, 0, "pc\nram", P, name_field, "0x0a at position 2"},
        {HM_NAME0, 0, "pc\x7f", P, name_field, "0x7f"},
        {HM_NAME0, 0, "a\xc2\x85", P, name_field, "position 1"}, /* C1 */
        {HM_NAME0, 0, "\xc0\xaf", P, name_field, "0xc0"}, /* overlong */
        {HM_NAME0, 0, "\xe0\x80\xaf", P, name_field, "0xe0"},
        {HM_NAME0, 0, "\xed\xa0\x80", P, name_field, "0xed"}, /* U+D800 */
        {HM_NAME0, 0, "ab\x80", P, name_field, "0x80 at position 2"},
        {HM_NAME0, 0, "\xf4\x90\x80\x80", P, name_field, "0xf4"},
        {HM_NAME0, 0, "\xf8\x88\x80\x80\x80", P, name_field, "0xf8"},
        {HM_NAME0, 0, "ab\xe2\x82", P, name_field, "position 2"},
        {HM_NAME2, 0, "pc.ram", P, "field 'name' of block 2",
         "block 0's name"},
        {HM_SIZE1, 0, NULL, P, "field 'size' of block 1", ": 0 bytes"},
        {HM_SIZE1, 4097, NULL, P, "field 'size' of block 1", "4097"},
        {HM_SIZE2, 1ull << 44, NULL, P, "field 'size' of block 2",
         "below 2^44"},
        {HM_SIZE2, UINT64_MAX - 4095, NULL, P, "field 'size' of block 2",
         "18446744073709547520"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        n = encode_modified(&h, &cases[i], buf, sizeof(buf));
        check_fail(rf_wire_hello_decode(buf, n, &d, &err), &err,
                   cases[i].kind, cases[i].a, cases[i].b);
    }

    /* Fields the encoder cannot produce: patch the bytes. */
    n = encode_modified(&h, NULL, buf, sizeof(buf));
    put32(buf + 28, RF_MAX_BLOCKS + 1);
    check_fail(rf_wire_hello_decode(buf, n, &d, &err), &err, RF_ERR_PROTOCOL,
               "HELLO field 'nblocks': 65", "1..64");
    n = encode_modified(&h, NULL, buf, sizeof(buf));
    buf[hello_block_off(&h, 1)] = 0;
    check_fail(rf_wire_hello_decode(buf, n, &d, &err), &err, RF_ERR_PROTOCOL,
               "HELLO field 'name_len' of block 1: 0");
    n = encode_modified(&h, NULL, buf, sizeof(buf));
    buf[hello_block_off(&h, 0) + 3] = '\0'; /* "pc.\0am" */
    check_fail(rf_wire_hello_decode(buf, n, &d, &err), &err, RF_ERR_PROTOCOL,
               "field 'name' of block 0", "0x00 at position 2");

    /* Trailing bytes. */
    n = encode_modified(&h, NULL, buf, sizeof(buf));
    buf[n] = 0;
    check_fail(rf_wire_hello_decode(buf, n + 1, &d, &err), &err,
               RF_ERR_PROTOCOL, "HELLO payload: 1 trailing bytes");

    /* A version 1 HELLO (this layout before capabilities) is refused by
     * its version alone, naming both. */
    static const uint8_t v1[] = {0x01, 0x00, 0x00, 0x00, 0x00, 0x10};
    check_fail(rf_wire_hello_decode(v1, sizeof(v1), &d, &err), &err,
               RF_ERR_MISMATCH, "peer speaks wire version 1",
               "this build speaks version 2");
}

/* Extension records: what a newer peer may add, and what must be
 * refused. */
static void test_hello_ext(void **state)
{
    (void)state;
    static RfHello h, d;
    static uint8_t buf[20000];
    RfError *err = NULL;

    /* Records of several unknown bits, one empty, are skipped and kept. */
    sample_hello(&h);
    h.caps_supported |= RF_CAP(11) | RF_CAP(40) | RF_CAP(63);
    const uint8_t recs[] = {11, 0, 0, 40, 1, 0, 'x', 63, 2, 0, 0xff, 0x00};
    h.ext.len = sizeof(recs);
    memcpy(h.ext.bytes, recs, sizeof(recs));
    size_t n = rf_wire_hello_encode(&h, buf, sizeof(buf));
    assert_true(rf_wire_hello_decode(buf, n, &d, &err));
    assert_int_equal(d.ext.len, sizeof(recs));
    assert_memory_equal(d.ext.bytes, recs, sizeof(recs));

    /* The largest area. */
    h.ext.len = RF_WIRE_EXT_MAX;
    memset(h.ext.bytes, 0, sizeof(h.ext.bytes));
    h.ext.bytes[0] = 40;
    put16(h.ext.bytes + 1, RF_WIRE_EXT_MAX - 3);
    n = rf_wire_hello_encode(&h, buf, sizeof(buf));
    assert_true(rf_wire_hello_decode(buf, n, &d, &err));
    assert_int_equal(d.ext.len, RF_WIRE_EXT_MAX);

    static const struct {
        uint8_t rec[8];
        size_t len;
        const char *a, *b;
    } bad[] = {
        {{40, 3, 0, 'a', 'b'}, 5, "extension for capability bit 40",
         "'length' 3 bytes, only 2 left"},
        {{40, 0}, 2, "extension at offset 0", "2 bytes left"},
        {{40, 0, 0, 41}, 4, "extension at offset 3", "1 bytes left"},
        {{64, 0, 0}, 3, "extension field 'bit': 64", "0..63"},
        {{40, 0, 0, 40, 0, 0}, 6, "field 'bit': 40", "allowed 41..63"},
        {{40, 0, 0, 7, 0, 0}, 6, "field 'bit': 7", "ascending"},
        {{41, 0, 0}, 3, "capability bit 41",
         "which 'caps_supported' does not offer"},
        {{7, 0, 0}, 3, "capability bit 7 ('packet-method')",
         "does not offer"},
        {{6, 0, 0}, 3, "capability 'crc32c' (bit 6)",
         "carries no extension data"},
        {{2, 1, 0, 1}, 4, "capability 'verify' (bit 2)",
         "carries no extension data"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sample_hello(&h);
        h.ext.len = (uint16_t)bad[i].len;
        memcpy(h.ext.bytes, bad[i].rec, bad[i].len);
        n = rf_wire_hello_encode(&h, buf, sizeof(buf));
        check_fail(rf_wire_hello_decode(buf, n, &d, &err), &err,
                   RF_ERR_PROTOCOL, bad[i].a, bad[i].b);
    }

    /* ext_len above the limit, or beyond the payload. */
    sample_hello(&h);
    h.ext.len = 0;
    n = rf_wire_hello_encode(&h, buf, sizeof(buf));
    put16(buf + n - 2, RF_WIRE_EXT_MAX + 1);
    check_fail(rf_wire_hello_decode(buf, n, &d, &err), &err,
               RF_ERR_PROTOCOL, "HELLO field 'ext_len': 4097",
               "at most 4096");
    put16(buf + n - 2, 5);
    check_fail(rf_wire_hello_decode(buf, n, &d, &err), &err,
               RF_ERR_PROTOCOL, "HELLO truncated at field 'extensions'");
}

static void test_hello_truncated(void **state)
{
    (void)state;
    static RfHello h, d;
    static uint8_t buf[20000];
    RfError *err = NULL;
    size_t n = encode_modified(&h, NULL, buf, sizeof(buf));
    for (size_t len = 0; len < n; len++) {
        /* A fresh heap copy of exactly len bytes, so ASan sees any read
         * past the end. */
        uint8_t *cut = malloc(len ? len : 1);
        memcpy(cut, buf, len);
        bool ok = rf_wire_hello_decode(cut, len, &d, &err);
        free(cut);
        check_fail(ok, &err, RF_ERR_PROTOCOL, "HELLO truncated at field '");
    }
    n = encode_modified(&h, NULL, buf, sizeof(buf));
    check_fail(rf_wire_hello_decode(buf, 49, &d, &err), &err,
               RF_ERR_PROTOCOL, "truncated at field 'name'");
    check_fail(rf_wire_hello_decode(buf, 56, &d, &err), &err,
               RF_ERR_PROTOCOL, "truncated at field 'size'",
               "needs 8 bytes at offset 55");
    size_t ext_at = n - 2 - sizeof(sample_ext);
    check_fail(rf_wire_hello_decode(buf, ext_at + 1, &d, &err), &err,
               RF_ERR_PROTOCOL, "truncated at field 'ext_len'");
    check_fail(rf_wire_hello_decode(buf, n - 1, &d, &err), &err,
               RF_ERR_PROTOCOL, "truncated at field 'extensions'");
}

/* ---- ERROR ------------------------------------------------------------ */

static void test_error_roundtrip(void **state)
{
    (void)state;
    uint8_t buf[5000];
    char msg[4100];
    uint32_t kind = 0;
    RfError *err = NULL;

    static const char bad_de[] = "channel 3: b\xc3\xa4" "d"; /* "bäd" */
    size_t n = rf_wire_error_encode(RF_ERR_MISMATCH, bad_de, buf,
                                    sizeof(buf));
    assert_int_equal(n, 6 + 15);
    const uint8_t head[6] = {5, 0, 0, 0, 15, 0};
    assert_memory_equal(buf, head, 6);
    assert_true(rf_wire_error_decode(buf, n, &kind, msg, sizeof(msg), &err));
    assert_int_equal(kind, RF_ERR_MISMATCH);
    assert_string_equal(msg, bad_de);

    /* Empty and NULL messages. */
    n = rf_wire_error_encode(RF_ERR_IO, NULL, buf, sizeof(buf));
    assert_int_equal(n, 6);
    assert_true(rf_wire_error_decode(buf, n, &kind, msg, sizeof(msg), &err));
    assert_string_equal(msg, "");

    /* Control characters and broken UTF-8 are replaced, so the peer's
     * text check always passes. */
    n = rf_wire_error_encode(RF_ERR_IO, "a\nb\x1b[2J\xff\xc3", buf,
                             sizeof(buf));
    assert_true(rf_wire_error_decode(buf, n, &kind, msg, sizeof(msg), &err));
    assert_string_equal(msg, "a?b?[2J??");

    /* Long messages stop at 4000 bytes, never inside a character. */
    static char longmsg[5000];
    memset(longmsg, 'a', 3999);
    strcpy(longmsg + 3999, "\xe2\x82\xac tail");
    n = rf_wire_error_encode(RF_ERR_GENERIC, longmsg, buf, sizeof(buf));
    assert_int_equal(n, 6 + 3999);
    memset(longmsg, 'b', 4999);
    longmsg[4999] = '\0';
    n = rf_wire_error_encode(RF_ERR_GENERIC, longmsg, buf, sizeof(buf));
    assert_int_equal(n, 6 + 4000);
    assert_int_equal(rf_wire_error_encode(RF_ERR_GENERIC, longmsg, buf,
                                          4005), 0);

    /* Decoding into a small buffer truncates at a character boundary. */
    n = rf_wire_error_encode(RF_ERR_IO, "ab\xe2\x82\xac", buf, sizeof(buf));
    char small[4];
    assert_true(rf_wire_error_decode(buf, n, &kind, small, sizeof(small),
                                     &err));
    assert_string_equal(small, "ab");
    char one[1] = {'x'};
    assert_true(rf_wire_error_decode(buf, n, &kind, one, 1, &err));
    assert_int_equal(one[0], '\0');
    assert_true(rf_wire_error_decode(buf, n, &kind, NULL, 0, &err));
    assert_null(err);
}

static void test_error_bad(void **state)
{
    (void)state;
    uint8_t buf[5000];
    char msg[100];
    uint32_t kind;
    RfError *err = NULL;

    size_t n = rf_wire_error_encode(0, "x", buf, sizeof(buf));
    check_fail(rf_wire_error_decode(buf, n, &kind, msg, sizeof(msg), &err),
               &err, RF_ERR_PROTOCOL, "ERROR field 'kind': 0",
               "1 and above");

    n = rf_wire_error_encode(RF_ERR_IO, "hello", buf, sizeof(buf));
    put16(buf + 4, 4001);
    check_fail(rf_wire_error_decode(buf, n, &kind, msg, sizeof(msg), &err),
               &err, RF_ERR_PROTOCOL, "ERROR field 'msg_len': 4001");
    put16(buf + 4, 6);
    check_fail(rf_wire_error_decode(buf, n, &kind, msg, sizeof(msg), &err),
               &err, RF_ERR_PROTOCOL, "ERROR truncated at field 'msg'");
    put16(buf + 4, 4);
    check_fail(rf_wire_error_decode(buf, n, &kind, msg, sizeof(msg), &err),
               &err, RF_ERR_PROTOCOL, "ERROR payload: 1 trailing bytes");
    put16(buf + 4, 5);
    buf[8] = '\t';
    check_fail(rf_wire_error_decode(buf, n, &kind, msg, sizeof(msg), &err),
               &err, RF_ERR_PROTOCOL, "ERROR field 'msg'",
               "0x09 at position 2");
    buf[8] = '\0';
    check_fail(rf_wire_error_decode(buf, n, &kind, msg, sizeof(msg), &err),
               &err, RF_ERR_PROTOCOL, "ERROR field 'msg'", "0x00");

    for (size_t len = 0; len < 6; len++) {
        check_fail(rf_wire_error_decode(buf, len, &kind, msg, sizeof(msg),
                                        &err),
                   &err, RF_ERR_PROTOCOL, "ERROR truncated");
    }
}

/* The kinds are wire values: their numbers never change. */
static void test_error_kind_numbers(void **state)
{
    (void)state;
    assert_int_equal(RF_ERR_GENERIC, 1);
    assert_int_equal(RF_ERR_PARAM, 2);
    assert_int_equal(RF_ERR_IO, 3);
    assert_int_equal(RF_ERR_PROTOCOL, 4);
    assert_int_equal(RF_ERR_MISMATCH, 5);
    assert_int_equal(RF_ERR_VERIFY, 6);
    assert_int_equal(RF_ERR_CANCELLED, 7);
    assert_int_equal(RF_ERR_TIMEOUT, 8);
    assert_int_equal(RF_ERR_AUTH, 9);
    assert_int_equal(RF_WIRE_ERR_KIND_MAX, 9);
}

/* A newer peer's error kind travels with its message and is reported as
 * a generic error; known kinds keep their kind. */
static void test_error_unknown_kind(void **state)
{
    (void)state;
    uint8_t buf[100];
    char msg[100];
    uint32_t kind = 0;
    RfError *err = NULL;
    static const uint32_t newer[] = {RF_WIRE_ERR_KIND_MAX + 1, 1000,
                                     UINT32_MAX};
    for (size_t i = 0; i < sizeof(newer) / sizeof(newer[0]); i++) {
        size_t n = rf_wire_error_encode(newer[i], "from the future", buf,
                                        sizeof(buf));
        assert_true(rf_wire_error_decode(buf, n, &kind, msg, sizeof(msg),
                                         &err));
        assert_null(err);
        assert_true(kind == newer[i]); /* as sent: re-encodes the same */
        assert_string_equal(msg, "from the future");
        assert_int_equal(rf_wire_error_kind(kind), RF_ERR_GENERIC);
    }
    for (uint32_t k = RF_ERR_GENERIC; k <= RF_WIRE_ERR_KIND_MAX; k++) {
        assert_int_equal(rf_wire_error_kind(k), k);
    }
    assert_int_equal(rf_wire_error_kind(0), RF_ERR_GENERIC);
}

/* ---- ACCEPT ----------------------------------------------------------- */

static void test_accept(void **state)
{
    (void)state;
    static RfAccept a, d;
    uint8_t buf[RF_WIRE_EXT_MAX + 20];
    RfError *err = NULL;

    a.caps = RF_CAP(RF_CAP_ROUND_ACK) | RF_CAP(RF_CAP_VERIFY) | RF_CAP(40);
    size_t n = rf_wire_accept_encode(&a, buf, sizeof(buf));
    assert_int_equal(n, 10);
    const uint8_t want[10] = {0x05, 0, 0, 0, 0, 0x01, 0, 0, 0, 0};
    assert_memory_equal(buf, want, sizeof(want));
    assert_true(rf_wire_accept_decode(buf, n, &d, &err));
    assert_null(err);
    assert_true(d.caps == a.caps);
    assert_int_equal(d.ext.len, 0);
    assert_int_equal(rf_wire_accept_encode(&a, buf, 9), 0);
    assert_int_equal(rf_wire_accept_encode(&a, buf, 7), 0);

    /* A record for a negotiated bit this build does not know. */
    memcpy(a.ext.bytes, sample_ext, sizeof(sample_ext));
    a.ext.len = sizeof(sample_ext);
    n = rf_wire_accept_encode(&a, buf, sizeof(buf));
    assert_int_equal(n, 10 + sizeof(sample_ext));
    assert_true(rf_wire_accept_decode(buf, n, &d, &err));
    assert_int_equal(d.ext.len, sizeof(sample_ext));
    assert_memory_equal(d.ext.bytes, sample_ext, sizeof(sample_ext));
    a.ext.len = RF_WIRE_EXT_MAX + 1;
    assert_int_equal(rf_wire_accept_encode(&a, buf, sizeof(buf)), 0);

    /* ... but not for a bit that was not negotiated. */
    a.caps &= ~RF_CAP(40);
    a.ext.len = sizeof(sample_ext);
    n = rf_wire_accept_encode(&a, buf, sizeof(buf));
    check_fail(rf_wire_accept_decode(buf, n, &d, &err), &err,
               RF_ERR_PROTOCOL, "ACCEPT extension for capability bit 40",
               "which 'caps' does not offer");

    a.ext.len = 0;
    n = rf_wire_accept_encode(&a, buf, sizeof(buf));
    buf[n] = 0;
    check_fail(rf_wire_accept_decode(buf, n + 1, &d, &err), &err,
               RF_ERR_PROTOCOL, "ACCEPT payload: 1 trailing bytes");
    for (size_t len = 0; len < n; len++) {
        uint8_t *cut = malloc(len ? len : 1);
        memcpy(cut, buf, len);
        bool ok = rf_wire_accept_decode(cut, len, &d, &err);
        free(cut);
        check_fail(ok, &err, RF_ERR_PROTOCOL, "ACCEPT truncated at field",
                   len < 8 ? "'caps'" : "'ext_len'");
    }
}

/* ---- capabilities ----------------------------------------------------- */

static void test_cap_names(void **state)
{
    (void)state;
    static const char *const want[] = {
        "round-ack", "device-state", "verify", "raw-packets", "zero-pages",
        "final-sync", "crc32c", "packet-method", "tls-binding", "reconnect",
    };
    for (unsigned b = 0; b < 10; b++) {
        assert_non_null(rf_wire_cap_name(b));
        assert_string_equal(rf_wire_cap_name(b), want[b]);
    }
    for (unsigned b = 10; b < 70; b++) {
        assert_null(rf_wire_cap_name(b));
    }
    assert_null(rf_wire_cap_name(UINT32_MAX));
    /* Every implemented bit has a name; the allocated-only ones are not
     * implemented. */
    for (unsigned b = 0; b < 64; b++) {
        if (RF_CAPS_IMPLEMENTED & RF_CAP(b)) {
            assert_non_null(rf_wire_cap_name(b));
        }
    }
    assert_true(RF_CAPS_IMPLEMENTED == 0x7F);
    assert_true((RF_CAPS_SOURCE_NEEDS & ~RF_CAPS_IMPLEMENTED) == 0);
    assert_true((RF_CAPS_DEST_NEEDS & ~RF_CAPS_IMPLEMENTED) == 0);
}

static void test_caps_format(void **state)
{
    (void)state;
    char buf[256];
    assert_int_equal(rf_wire_caps_format(0, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
    static const char two[] =
        "capability 'device-state', unknown capability bit 40";
    size_t n = rf_wire_caps_format(RF_CAP(40) | RF_CAP(RF_CAP_DEVICE_STATE),
                                   buf, sizeof(buf));
    assert_string_equal(buf, two);
    assert_int_equal(n, strlen(two));
    /* Cut short, always terminated, and the needed length returned. */
    char small[12];
    memset(small, 'x', sizeof(small));
    n = rf_wire_caps_format(RF_CAP(40) | RF_CAP(RF_CAP_DEVICE_STATE), small,
                            sizeof(small));
    assert_int_equal(n, strlen(two));
    assert_string_equal(small, "capability ");
    assert_int_equal(rf_wire_caps_format(RF_CAP(0), NULL, 0),
                     strlen("capability 'round-ack'"));
    n = rf_wire_caps_format(UINT64_MAX, buf, sizeof(buf));
    assert_true(n > sizeof(buf));
    assert_int_equal(strlen(buf), sizeof(buf) - 1);
    static char all[4096];
    rf_wire_caps_format(UINT64_MAX, all, sizeof(all));
    assert_non_null(strstr(all, "capability 'reconnect', unknown capability "
                                "bit 10, unknown capability bit 11"));
    assert_non_null(strstr(all, ", unknown capability bit 63"));
}

static void test_caps_negotiate(void **state)
{
    (void)state;
    RfError *err = NULL;
    uint64_t got = 0;
    const uint64_t ALL = RF_CAPS_IMPLEMENTED;
    const uint64_t DS = RF_CAP(RF_CAP_DEVICE_STATE);
    const uint64_t VER = RF_CAP(RF_CAP_VERIFY);

    /* Down to the common set. */
    assert_true(rf_wire_caps_negotiate(ALL, RF_CAPS_SOURCE_NEEDS, ALL & ~DS,
                                       RF_CAPS_DEST_NEEDS, &got, &err));
    assert_null(err);
    assert_true(got == (ALL & ~DS));
    assert_true(rf_wire_caps_negotiate(RF_CAP(0) | RF_CAP(3), 0,
                                       RF_CAP(3) | RF_CAP(5), 0, &got,
                                       &err));
    assert_true(got == RF_CAP(3));
    assert_true(rf_wire_caps_negotiate(0, 0, ALL, 0, &got, &err));
    assert_true(got == 0);

    /* A newer source's unknown bits, offered but not required, are not
     * negotiated and do not stop anything. */
    const uint64_t future =
        RF_CAP(RF_CAP_PACKET_METHOD) | RF_CAP(40) | RF_CAP(63);
    assert_true(rf_wire_caps_negotiate(ALL | future, RF_CAPS_SOURCE_NEEDS,
                                       ALL, RF_CAPS_DEST_NEEDS, &got, &err));
    assert_true(got == ALL);

    /* Required by the source, missing at the destination: named. */
    got = 12345;
    check_fail(rf_wire_caps_negotiate(ALL, DS, ALL & ~DS, 0, &got, &err),
               &err, RF_ERR_MISMATCH,
               "destination lacks capability 'device-state' required by "
               "the source");
    assert_true(got == 12345); /* untouched on failure */
    check_fail(rf_wire_caps_negotiate(ALL, DS | VER, ALL & ~(DS | VER), 0,
                                      &got, &err),
               &err, RF_ERR_MISMATCH,
               "destination lacks capability 'device-state', capability "
               "'verify' required by the source");

    /* Required unknown bits: by number; allocated ones by name. */
    check_fail(rf_wire_caps_negotiate(ALL | RF_CAP(40), RF_CAP(40), ALL, 0,
                                      &got, &err),
               &err, RF_ERR_MISMATCH,
               "destination lacks unknown capability bit 40 required by the "
               "source");
    check_fail(rf_wire_caps_negotiate(ALL | future, future | VER, ALL, 0,
                                      &got, &err),
               &err, RF_ERR_MISMATCH,
               "destination lacks capability 'packet-method', unknown "
               "capability bit 40, unknown capability bit 63 required by the "
               "source");

    /* Required by the destination, missing at the source. */
    check_fail(rf_wire_caps_negotiate(ALL & ~RF_CAP(RF_CAP_FINAL_SYNC), 0,
                                      ALL, RF_CAPS_DEST_NEEDS, &got, &err),
               &err, RF_ERR_MISMATCH,
               "source lacks capability 'final-sync' required by the "
               "destination");

    /* Both at once: both named. */
    check_fail(rf_wire_caps_negotiate(VER, VER, RF_CAP(5), RF_CAP(5), &got,
                                      &err),
               &err, RF_ERR_MISMATCH,
               "destination lacks capability 'verify' required by the "
               "source; source lacks capability 'final-sync' required by "
               "the destination");

    /* Inconsistent sets. */
    check_fail(rf_wire_caps_negotiate(ALL, 0, VER, DS, &got, &err), &err,
               RF_ERR_PARAM, "destination requires capability "
               "'device-state' but does not support it");
    check_fail(rf_wire_caps_negotiate(VER, DS, ALL, 0, &got, &err), &err,
               RF_ERR_PROTOCOL, "'caps_required'");
}

static void test_caps_check_accept(void **state)
{
    (void)state;
    RfError *err = NULL;
    const uint64_t ALL = RF_CAPS_IMPLEMENTED;
    assert_true(rf_wire_caps_check_accept(ALL, RF_CAPS_SOURCE_NEEDS,
                                          RF_CAPS_SOURCE_NEEDS, &err));
    assert_true(rf_wire_caps_check_accept(ALL, 0, 0, &err));
    assert_null(err);
    check_fail(rf_wire_caps_check_accept(ALL, 0, ALL | RF_CAP(40), &err),
               &err, RF_ERR_PROTOCOL, "ACCEPT field 'caps'",
               "names unknown capability bit 40, which the source did not "
               "offer");
    check_fail(rf_wire_caps_check_accept(ALL, RF_CAP(RF_CAP_VERIFY),
                                         ALL & ~RF_CAP(RF_CAP_VERIFY), &err),
               &err, RF_ERR_PROTOCOL,
               "lacks capability 'verify' required by the source");
}

/* ---- ROUND, END ------------------------------------------------------- */

static void test_round_end(void **state)
{
    (void)state;
    uint8_t buf[8];
    uint32_t r = 0;
    bool v = false;
    RfError *err = NULL;

    assert_int_equal(rf_wire_round_encode(0x01020304, buf, 3), 0);
    assert_int_equal(rf_wire_round_encode(0x01020304, buf, sizeof(buf)), 4);
    const uint8_t rb[4] = {4, 3, 2, 1};
    assert_memory_equal(buf, rb, 4);
    assert_true(rf_wire_round_decode(buf, 4, &r, &err));
    assert_int_equal(r, 0x01020304);
    check_fail(rf_wire_round_decode(buf, 3, &r, &err), &err,
               RF_ERR_PROTOCOL, "ROUND truncated at field 'round'");
    check_fail(rf_wire_round_decode(buf, 5, &r, &err), &err,
               RF_ERR_PROTOCOL, "ROUND payload: 1 trailing");

    assert_int_equal(rf_wire_end_encode(9, true, buf, 4), 0);
    assert_int_equal(rf_wire_end_encode(9, true, buf, sizeof(buf)), 5);
    const uint8_t eb[5] = {9, 0, 0, 0, 1};
    assert_memory_equal(buf, eb, 5);
    assert_true(rf_wire_end_decode(buf, 5, &r, &v, &err));
    assert_int_equal(r, 9);
    assert_true(v);
    rf_wire_end_encode(12, false, buf, sizeof(buf));
    assert_true(rf_wire_end_decode(buf, 5, &r, &v, &err));
    assert_int_equal(r, 12);
    assert_false(v);
    buf[4] = 2;
    check_fail(rf_wire_end_decode(buf, 5, &r, &v, &err), &err,
               RF_ERR_PROTOCOL, "END field 'verify': 2", "0 or 1");
    check_fail(rf_wire_end_decode(buf, 4, &r, &v, &err), &err,
               RF_ERR_PROTOCOL, "END truncated");
    check_fail(rf_wire_end_decode(buf, 6, &r, &v, &err), &err,
               RF_ERR_PROTOCOL, "END payload: 1 trailing");
}

/* ---- COMPLETE --------------------------------------------------------- */

static void sample_complete(RfComplete *c)
{
    memset(c, 0, sizeof(*c));
    c->recv_cpu_pct = 123.45;
    c->wire_bytes = 0x0102030405060708ull;
    c->prefault_warm = 1;
    strcpy(c->method_detail, "software (ISA-L)");
    c->ndigests = 2;
    for (int i = 0; i < 32; i++) {
        c->digests[i / 16][i % 16] = (uint8_t)i;
    }
}

static void test_complete_roundtrip(void **state)
{
    (void)state;
    static RfComplete c, d;
    uint8_t buf[2000];
    RfError *err = NULL;

    sample_complete(&c);
    size_t n = rf_wire_complete_encode(&c, buf, sizeof(buf));
    assert_int_equal(n, 22 + 16 + 32);
    const uint8_t head[14] = {0x39, 0x30, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1, 1, 16};
    assert_memory_equal(buf, head, sizeof(head));
    assert_memory_equal(buf + 14, "software (ISA-L)", 16);
    const uint8_t nd[4] = {2, 0, 0, 0};
    assert_memory_equal(buf + 30, nd, 4);

    assert_true(rf_wire_complete_decode(buf, n, &d, &err));
    assert_null(err);
    assert_true(d.recv_cpu_pct > 123.449 && d.recv_cpu_pct < 123.451);
    assert_true(d.wire_bytes == c.wire_bytes);
    assert_int_equal(d.prefault_warm, 1);
    assert_string_equal(d.method_detail, c.method_detail);
    assert_int_equal(d.ndigests, 2);
    assert_memory_equal(d.digests, c.digests, 32);
    assert_int_equal(rf_wire_complete_encode(&c, buf, n - 1), 0);

    /* CPU percentages outside the wire range are clamped. */
    c.recv_cpu_pct = -5;
    c.ndigests = 0;
    c.method_detail[0] = '\0';
    n = rf_wire_complete_encode(&c, buf, sizeof(buf));
    assert_int_equal(n, 22);
    assert_true(rf_wire_complete_decode(buf, n, &d, &err));
    assert_true(d.recv_cpu_pct == 0.0);
    c.recv_cpu_pct = 1e12;
    n = rf_wire_complete_encode(&c, buf, sizeof(buf));
    assert_true(rf_wire_complete_decode(buf, n, &d, &err));
    assert_true(d.recv_cpu_pct == UINT32_MAX / 100.0);

    /* A full detail is cut to 127 bytes; all digests fit. */
    memset(c.method_detail, 'd', sizeof(c.method_detail));
    c.ndigests = RF_MAX_BLOCKS;
    n = rf_wire_complete_encode(&c, buf, sizeof(buf));
    assert_int_equal(n, 22 + 127 + 16 * RF_MAX_BLOCKS);
    assert_true(rf_wire_complete_decode(buf, n, &d, &err));
    assert_int_equal(strlen(d.method_detail), 127);
    c.ndigests = RF_MAX_BLOCKS + 1;
    assert_int_equal(rf_wire_complete_encode(&c, buf, sizeof(buf)), 0);
}

static void test_complete_bad(void **state)
{
    (void)state;
    static RfComplete c, d;
    uint8_t buf[2000];
    RfError *err = NULL;

    sample_complete(&c);
    size_t n = rf_wire_complete_encode(&c, buf, sizeof(buf));
    buf[12] = 2;
    check_fail(rf_wire_complete_decode(buf, n, &d, &err), &err,
               RF_ERR_PROTOCOL, "COMPLETE field 'prefault_warm': 2");
    buf[12] = 1;
    buf[13] = 128;
    check_fail(rf_wire_complete_decode(buf, n, &d, &err), &err,
               RF_ERR_PROTOCOL, "COMPLETE field 'detail_len': 128",
               "at most 127");
    buf[13] = 16;
    buf[14] = 0x1b;
    check_fail(rf_wire_complete_decode(buf, n, &d, &err), &err,
               RF_ERR_PROTOCOL, "COMPLETE field 'detail'", "0x1b");
    buf[14] = 's';
    put32(buf + 30, RF_MAX_BLOCKS + 1);
    check_fail(rf_wire_complete_decode(buf, n, &d, &err), &err,
               RF_ERR_PROTOCOL, "COMPLETE field 'ndigests': 65");
    put32(buf + 30, 3);
    check_fail(rf_wire_complete_decode(buf, n, &d, &err), &err,
               RF_ERR_PROTOCOL, "COMPLETE truncated at field 'digests'");
    put32(buf + 30, 1);
    check_fail(rf_wire_complete_decode(buf, n, &d, &err), &err,
               RF_ERR_PROTOCOL, "COMPLETE payload: 16 trailing bytes");
    put32(buf + 30, 2);
    assert_true(rf_wire_complete_decode(buf, n, &d, &err));
    for (size_t len = 0; len < n; len++) {
        uint8_t *cut = malloc(len ? len : 1);
        memcpy(cut, buf, len);
        bool ok = rf_wire_complete_decode(cut, len, &d, &err);
        free(cut);
        check_fail(ok, &err, RF_ERR_PROTOCOL, "COMPLETE truncated");
    }
}

/* ---- channel hello ---------------------------------------------------- */

static void test_chan_hello(void **state)
{
    (void)state;
    uint8_t b[RF_CHAN_HELLO_SIZE];
    RfChanHello h = {.version = RF_WIRE_VERSION, .channel = 254}, d;
    RfError *err = NULL;
    for (int i = 0; i < 16; i++) {
        h.session[i] = (uint8_t)(i * 17);
    }
    rf_wire_chan_hello_encode(&h, b);
    const uint8_t head[8] = {0x52, 0x46, 0x43, 0x48, 2, 0, 254, 0};
    assert_memory_equal(b, head, 8);
    assert_memory_equal(b + 8, h.session, 16);
    assert_true(rf_wire_chan_hello_decode(b, &d, &err));
    assert_int_equal(d.version, RF_WIRE_VERSION);
    assert_int_equal(d.channel, 254);
    assert_memory_equal(d.session, h.session, 16);

    b[3] = 0x4D; /* "RFCM": a main-channel frame */
    check_fail(rf_wire_chan_hello_decode(b, &d, &err), &err, RF_ERR_PROTOCOL,
               "channel hello field 'magic': 0x4d434652");
    h.version = 7;
    rf_wire_chan_hello_encode(&h, b);
    check_fail(rf_wire_chan_hello_decode(b, &d, &err), &err, RF_ERR_MISMATCH,
               "channel hello field 'version'", "version 7", "version 2");
    h.version = RF_WIRE_VERSION;
    h.channel = 255;
    rf_wire_chan_hello_encode(&h, b);
    check_fail(rf_wire_chan_hello_decode(b, &d, &err), &err, RF_ERR_PROTOCOL,
               "channel hello field 'channel': 255", "0..254");
}

/* ---- packets ---------------------------------------------------------- */

/* The worked example of docs/protocol.md, byte for byte. */
static void test_packet_worked_example(void **state)
{
    (void)state;
    static const uint8_t want[] = {
        0x52, 0x46, 0x50, 0x4B, 0x02, 0x00, 0x02, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00,
        0x1F, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00,
        0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x05, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00,
        0x09, 0x00, 0x00, 0x00,
    };
    uint8_t b[RF_PKT_HDR_SIZE + 12];
    RfPacketHdr h = sample_pkt(), d;
    RfError *err = NULL;
    rf_wire_packet_hdr_encode(&h, b);
    const uint32_t idx[3] = {5, 6, 9};
    assert_int_equal(rf_wire_page_index_encode(idx, 3, b + RF_PKT_HDR_SIZE),
                     12);
    assert_memory_equal(b, want, sizeof(want));

    assert_true(rf_wire_packet_hdr_decode(b, &test_lim, &d, &err));
    assert_null(err);
    assert_int_equal(d.version, RF_WIRE_VERSION);
    assert_int_equal(d.method, RF_METHOD_ZSTD);
    assert_int_equal(d.flags, 0);
    assert_int_equal(d.block, 1);
    assert_int_equal(d.normal, 2);
    assert_int_equal(d.zero, 1);
    assert_int_equal(d.payload_size, 31);
    assert_int_equal(d.round, 3);
    assert_true(d.seq == 7);

    uint32_t got[3];
    memcpy(got, b + RF_PKT_HDR_SIZE, sizeof(got));
    assert_true(rf_wire_page_index_decode(got, 3, test_block_pages[1], &err));
    assert_memory_equal(got, idx, sizeof(idx));
}

/* CRC32C: the standard check value, chaining, the header's crc field
 * read as 0, and the CRCs docs/protocol.md gives for its worked page
 * packet (12.2) and last SYNC (12.3). */
static void test_crc32c(void **state)
{
    (void)state;
    assert_true(rf_wire_crc32c("123456789", 9) == 0xE3069283u);
    assert_true(rf_wire_crc32c("", 0) == 0);
    uint32_t st = rf_wire_crc_update(0xFFFFFFFFu, "1234", 4);
    st = rf_wire_crc_update(st, "56789", 5);
    assert_true(rf_wire_crc_end(st) == 0xE3069283u);

    static const uint8_t frame[31] = {
        0x28, 0xB5, 0x2F, 0xFD, 0x60, 0x00, 0x1F, 0xAD, 0x00, 0x00, 0x50,
        0x41, 0x41, 0x72, 0x61, 0x6D, 0x66, 0x6C, 0x6F, 0x77, 0x20, 0x02,
        0x00, 0xF5, 0x5F, 0xF1, 0xF9, 0xFE, 0x7D, 0x80, 0x05,
    };
    uint8_t b[RF_PKT_HDR_SIZE + 12];
    RfPacketHdr h = sample_pkt();
    rf_wire_packet_hdr_encode(&h, b);
    const uint32_t idx[3] = {5, 6, 9};
    rf_wire_page_index_encode(idx, 3, b + RF_PKT_HDR_SIZE);
    st = rf_wire_crc_begin(b);
    st = rf_wire_crc_update(st, b + RF_PKT_HDR_SIZE, 12);
    uint32_t crc = rf_wire_crc_end(rf_wire_crc_update(st, frame, 31));
    assert_true(crc == 0x04A6400Eu);
    /* The header's crc field does not count: the same with it filled. */
    rf_wire_packet_set_crc(b, crc);
    static const uint8_t field[4] = {0x0E, 0x40, 0xA6, 0x04};
    assert_memory_equal(b + 32, field, 4);
    uint8_t zeroed[RF_PKT_HDR_SIZE];
    memcpy(zeroed, b, sizeof(zeroed));
    memset(zeroed + 32, 0, 4);
    assert_true(rf_wire_crc_begin(b) == rf_wire_crc_begin(zeroed));
    RfPacketLimits crc_lim = test_lim;
    crc_lim.crc = true;
    RfPacketHdr d;
    RfError *err = NULL;
    assert_true(rf_wire_packet_hdr_decode(b, &crc_lim, &d, &err));
    assert_true(d.crc == 0x04A6400Eu);

    RfPacketHdr sync = {.version = 2, .method = RF_METHOD_ZSTD,
                        .flags = RF_PKT_SYNC | RF_PKT_FINAL, .round = 4,
                        .seq = 12};
    rf_wire_packet_hdr_encode(&sync, b);
    assert_true(rf_wire_crc_end(rf_wire_crc_begin(b)) == 0x19F78237u);
}

/* The other worked examples of docs/protocol.md section 12. */
static void test_doc_examples(void **state)
{
    (void)state;
    static RfHello h, d;
    uint8_t b[256], hdr[RF_MSG_HDR_SIZE];
    RfError *err = NULL;

    static const uint8_t hello_hdr[] = {0x52, 0x46, 0x43, 0x4D, 0x01, 0x00,
                                        0x00, 0x00, 0x41, 0x00, 0x00, 0x00};
    static const uint8_t hello[] = {
        0x02, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00,
        0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x7D, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x02, 0x01, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
        0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,
        0x06, 0x70, 0x63, 0x2E, 0x72, 0x61, 0x6D,
        0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00,
    };
    memset(&h, 0, sizeof(h));
    h.version = 2;
    h.page_size = 4096;
    /* What ramflow's source sends with --verify and no device state. */
    h.caps_supported = RF_CAPS_IMPLEMENTED;
    h.caps_required = RF_CAPS_SOURCE_NEEDS | RF_CAP(RF_CAP_VERIFY) |
                      RF_CAP(RF_CAP_CRC32C);
    h.method = RF_METHOD_ZSTD;
    h.level = 1;
    h.channels = 2;
    for (int i = 0; i < 16; i++) {
        h.session[i] = (uint8_t)(0x11 * i);
    }
    h.nblocks = 1;
    strcpy(h.blocks[0].name, "pc.ram");
    h.blocks[0].size = 1ull << 30;
    size_t n = rf_wire_hello_encode(&h, b, sizeof(b));
    assert_int_equal(n, sizeof(hello));
    assert_memory_equal(b, hello, sizeof(hello));
    rf_wire_msg_hdr_encode(hdr, RF_MSG_HELLO, (uint32_t)n);
    assert_memory_equal(hdr, hello_hdr, sizeof(hdr));
    assert_true(rf_wire_hello_decode(hello, sizeof(hello), &d, &err));

    /* ACCEPT from a destination without a VM (no device-state). */
    static const uint8_t accept[] = {
        0x52, 0x46, 0x43, 0x4D, 0x02, 0x00, 0x00, 0x00, 0x0A, 0x00, 0x00,
        0x00, 0x7D, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };
    uint64_t caps = 0;
    assert_true(rf_wire_caps_negotiate(
        d.caps_supported, d.caps_required,
        RF_CAPS_IMPLEMENTED & ~RF_CAP(RF_CAP_DEVICE_STATE),
        RF_CAPS_DEST_NEEDS, &caps, &err));
    RfAccept acc = {.caps = caps};
    n = rf_wire_accept_encode(&acc, b + RF_MSG_HDR_SIZE, sizeof(b) - 12);
    rf_wire_msg_hdr_encode(b, RF_MSG_ACCEPT, (uint32_t)n);
    assert_int_equal(RF_MSG_HDR_SIZE + n, sizeof(accept));
    assert_memory_equal(b, accept, sizeof(accept));

    static const uint8_t chan[] = {
        0x52, 0x46, 0x43, 0x48, 0x02, 0x00, 0x01, 0x00, 0x00, 0x11, 0x22,
        0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD,
        0xEE, 0xFF,
    };
    RfChanHello ch = {.version = 2, .channel = 1};
    memcpy(ch.session, h.session, 16);
    rf_wire_chan_hello_encode(&ch, b);
    assert_memory_equal(b, chan, sizeof(chan));

    static const uint8_t error[] = {
        0x52, 0x46, 0x43, 0x4D, 0x03, 0x00, 0x00, 0x00, 0x22, 0x00, 0x00,
        0x00, 0x05, 0x00, 0x00, 0x00, 0x1C, 0x00, 'm', 'u', 'l', 't', 'i',
        'f', 'd', '-', 'c', 'o', 'm', 'p', 'r', 'e', 's', 's', 'i', 'o',
        'n', ' ', 'm', 'i', 's', 'm', 'a', 't', 'c', 'h',
    };
    n = rf_wire_error_encode(RF_ERR_MISMATCH, "multifd-compression mismatch",
                             b + RF_MSG_HDR_SIZE, sizeof(b) - 12);
    rf_wire_msg_hdr_encode(b, RF_MSG_ERROR, (uint32_t)n);
    assert_int_equal(RF_MSG_HDR_SIZE + n, sizeof(error));
    assert_memory_equal(b, error, sizeof(error));

    static const uint8_t sync[] = {
        0x52, 0x46, 0x50, 0x4B, 0x02, 0x00, 0x02, 0x05, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x04, 0x00, 0x00, 0x00, 0x0C, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };
    RfPacketHdr s = {.version = 2, .method = RF_METHOD_ZSTD,
                     .flags = RF_PKT_SYNC | RF_PKT_FINAL, .round = 4,
                     .seq = 12};
    rf_wire_packet_hdr_encode(&s, b);
    assert_memory_equal(b, sync, sizeof(sync));
    RfPacketHdr sd;
    assert_true(rf_wire_packet_hdr_decode(sync, &test_lim, &sd, &err));
    assert_true(pkt_equal(&sd, &s));

    static const uint8_t end_hdr[] = {0x52, 0x46, 0x43, 0x4D, 0x05, 0x00,
                                      0x00, 0x00, 0x05, 0x00, 0x00, 0x00};
    static const uint8_t end[] = {0x04, 0x00, 0x00, 0x00, 0x01};
    rf_wire_msg_hdr_encode(hdr, RF_MSG_END, 5);
    assert_memory_equal(hdr, end_hdr, sizeof(hdr));
    assert_int_equal(rf_wire_end_encode(4, true, b, sizeof(b)), 5);
    assert_memory_equal(b, end, sizeof(end));
}

static void test_packet_good_variants(void **state)
{
    (void)state;
    uint8_t b[RF_PKT_HDR_SIZE];
    RfPacketHdr d;
    RfError *err = NULL;
    RfPacketHdr ok[] = {
        /* SYNC and SYNC|FINAL. */
        {RF_WIRE_VERSION, RF_METHOD_ZSTD, RF_PKT_SYNC, 0, 0, 0, 0, 5, 99},
        {RF_WIRE_VERSION, RF_METHOD_ZSTD, RF_PKT_SYNC | RF_PKT_FINAL, 0, 0,
         0, 0, 6, UINT64_MAX},
        /* Zero pages only, with and without RAW. */
        {RF_WIRE_VERSION, RF_METHOD_ZSTD, 0, 0, 0, 16, 0, 1, 0},
        {RF_WIRE_VERSION, RF_METHOD_ZSTD, RF_PKT_RAW, 2, 0, 4, 0, 1, 0},
        /* RAW, 128 pages, the whole budget. */
        {RF_WIRE_VERSION, RF_METHOD_ZSTD, RF_PKT_RAW, 1, 100, 28,
         100 * RF_PAGE_SIZE, 1, 1},
        /* Compressed at exactly the method's bound. */
        {RF_WIRE_VERSION, RF_METHOD_ZSTD, 0, 1, 128, 0,
         128 * RF_PAGE_SIZE + 64, UINT32_MAX, 2},
        /* A packet as large as its block. */
        {RF_WIRE_VERSION, RF_METHOD_ZSTD, 0, 2, 1, 3, 1, 1, 3},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        rf_wire_packet_hdr_encode(&ok[i], b);
        if (!rf_wire_packet_hdr_decode(b, &test_lim, &d, &err)) {
            fail_msg("case %zu: %s", i, rf_error_msg(err));
        }
        assert_true(pkt_equal(&d, &ok[i]));
    }
    /* Without a method bound a compressed payload may not exceed the raw
     * size. */
    RfPacketLimits lim = test_lim;
    lim.max_payload = NULL;
    RfPacketHdr h = sample_pkt();
    h.payload_size = 2 * RF_PAGE_SIZE;
    rf_wire_packet_hdr_encode(&h, b);
    assert_true(rf_wire_packet_hdr_decode(b, &lim, &d, &err));
    h.payload_size++;
    rf_wire_packet_hdr_encode(&h, b);
    check_fail(rf_wire_packet_hdr_decode(b, &lim, &d, &err), &err,
               RF_ERR_PROTOCOL, "'payload_size': 8193", "at most 8192");
}

typedef struct PktCase {
    RfPacketHdr h;
    RfErrorKind kind;
    const char *a, *b;
} PktCase;

static void test_packet_bad(void **state)
{
    (void)state;
    uint8_t b[RF_PKT_HDR_SIZE];
    RfPacketHdr d;
    RfError *err = NULL;
    const uint8_t V = RF_WIRE_VERSION, M = RF_METHOD_ZSTD;
    const uint8_t S = RF_PKT_SYNC, R = RF_PKT_RAW, F = RF_PKT_FINAL;

    PktCase cases[] = {
        {{3, M, 0, 1, 2, 1, 499, 3, 7}, RF_ERR_MISMATCH,
         "packet field 'version'", "version 3"},
        {{1, M, 0, 1, 2, 1, 499, 3, 7}, RF_ERR_MISMATCH,
         "packet field 'version'", "peer speaks wire version 1"},
        {{V, RF_METHOD_ZLIB, 0, 1, 2, 1, 499, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'method': 1", "negotiated method 2"},
        {{V, M, 0x08, 1, 2, 1, 499, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'flags': 0x08", "unknown bits 0x08"},
        {{V, M, 0x80 | S, 0, 0, 0, 0, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'flags': 0x81", "unknown bits 0x80"},
        {{V, M, F, 1, 2, 1, 499, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'flags': 0x04", "FINAL without SYNC"},
        {{V, M, R | F, 1, 2, 0, 8192, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'flags'", "FINAL without SYNC"},
        {{V, M, S | R, 0, 0, 0, 0, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'flags': 0x03", "RAW with SYNC"},
        {{V, M, S, 1, 0, 0, 0, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'block': 1 in a SYNC", "must be 0"},
        {{V, M, S, 0, 1, 0, 0, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'normal': 1 in a SYNC"},
        {{V, M, S | F, 0, 0, 2, 0, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'zero': 2 in a SYNC"},
        {{V, M, S, 0, 0, 0, 10, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'payload_size': 10 in a SYNC"},
        {{V, M, 0, 3, 2, 1, 499, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'block': 3", "0..2 allowed"},
        {{V, M, 0, UINT32_MAX, 2, 1, 499, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'block': 4294967295"},
        {{V, M, 0, 1, 200, 0, 499, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'normal': 200 pages, at most 128 allowed"},
        {{V, M, 0, 1, 0, 129, 0, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'zero': 129 pages, at most 128 allowed"},
        {{V, M, 0, 1, 0, 0, 0, 3, 7}, RF_ERR_PROTOCOL,
         "'normal' + 'zero': 0 + 0 = 0 pages", "1..128"},
        {{V, M, 0, 1, 100, 29, 499, 3, 7}, RF_ERR_PROTOCOL,
         "'normal' + 'zero': 100 + 29 = 129 pages"},
        {{V, M, 0, 2, 3, 2, 499, 3, 7}, RF_ERR_PROTOCOL,
         "'normal' + 'zero': 5 pages", "block 2 has only 4 pages"},
        {{V, M, R, 1, 2, 0, 8191, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'payload_size': 8191 bytes in a RAW",
         "exactly 8192"},
        {{V, M, R, 1, 0, 3, 1, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'payload_size': 1 bytes in a RAW", "exactly 0"},
        {{V, M, 0, 1, 0, 3, 12, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'payload_size': 12 bytes with no normal pages"},
        {{V, M, 0, 1, 2, 0, 0, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'payload_size': 0 bytes for 2 normal pages"},
        {{V, M, 0, 1, 2, 0, 2 * 4096 + 65, 3, 7}, RF_ERR_PROTOCOL,
         "packet field 'payload_size': 8257 bytes for 2 normal pages",
         "at most 8256"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rf_wire_packet_hdr_encode(&cases[i].h, b);
        bool ok = rf_wire_packet_hdr_decode(b, &test_lim, &d, &err);
        if (ok) {
            fail_msg("case %zu accepted", i);
        }
        check_fail(ok, &err, cases[i].kind, cases[i].a,
                   cases[i].b ? cases[i].b : "packet");
    }

    RfPacketHdr h = sample_pkt();
    rf_wire_packet_hdr_encode(&h, b);
    b[2] = 'X';
    check_fail(rf_wire_packet_hdr_decode(b, &test_lim, &d, &err), &err,
               RF_ERR_PROTOCOL, "packet field 'magic': 0x4b584652",
               "0x4b504652");
    rf_wire_packet_hdr_encode(&h, b);
    b[39] = 0x80;
    check_fail(rf_wire_packet_hdr_decode(b, &test_lim, &d, &err), &err,
               RF_ERR_PROTOCOL, "packet field 'reserved': 0x80000000",
               "must be 0");
    /* With crc32c negotiated the reserved half is still checked. */
    RfPacketLimits crc_lim = test_lim;
    crc_lim.crc = true;
    check_fail(rf_wire_packet_hdr_decode(b, &crc_lim, &d, &err), &err,
               RF_ERR_PROTOCOL, "packet field 'reserved': 0x80000000");
    rf_wire_packet_hdr_encode(&h, b);
    b[32] = 1;
    check_fail(rf_wire_packet_hdr_decode(b, &test_lim, &d, &err), &err,
               RF_ERR_PROTOCOL, "packet field 'crc': 0x00000001",
               "must be 0 without capability 'crc32c' negotiated");
    /* Negotiated: any crc passes the header decoder (the channel checks
     * it against the packet) and comes back as it was. */
    assert_true(rf_wire_packet_hdr_decode(b, &crc_lim, &d, &err));
    assert_int_equal(d.crc, 1);
}

static void test_page_index(void **state)
{
    (void)state;
    uint32_t idx[RF_PACKET_MAX_PAGES], raw[RF_PACKET_MAX_PAGES];
    uint8_t wire[4 * RF_PACKET_MAX_PAGES];
    RfError *err = NULL;

    /* 128 distinct pages in a shuffled order (the slow path). */
    for (uint32_t i = 0; i < 128; i++) {
        idx[i] = 1000000 + i * 3;
    }
    for (uint32_t i = 127; i > 0; i--) {
        uint32_t j = (uint32_t)(rng() % (i + 1)), t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    assert_int_equal(rf_wire_page_index_encode(idx, 128, wire), 512);
    assert_int_equal(wire[0], (uint8_t)idx[0]);
    assert_int_equal(wire[3], (uint8_t)(idx[0] >> 24));
    memcpy(raw, wire, sizeof(raw));
    assert_true(rf_wire_page_index_decode(raw, 128, 2000000, &err));
    assert_null(err);
    assert_memory_equal(raw, idx, sizeof(raw));
    assert_true(rf_wire_page_index_decode(raw, 0, 1, &err));

    struct {
        uint32_t n;
        uint32_t v[8];
        uint64_t pages;
        const char *a, *b;
    } cases[] = {
        /* range: the last allowed page is pages - 1 */
        {3, {0, 9, 10}, 10, "'page index' #2: page 10", "0..9 allowed"},
        {1, {UINT32_MAX}, UINT32_MAX, "#0: page 4294967295", NULL},
        {1, {0}, 0, "#0: page 0", "has 0 pages"},
        /* duplicates: adjacent, across the normal/zero runs, unsorted */
        {4, {1, 2, 2, 3}, 10, "page 2 listed twice", NULL},
        {5, {1, 4, 7, 2, 4}, 10, "page 4 listed twice", NULL},
        {5, {1, 4, 7, 0, 1}, 10, "page 1 listed twice", NULL},
        {6, {5, 1, 8, 3, 0, 8}, 10, "page 8 listed twice", NULL},
        {2, {6, 6}, 10, "page 6 listed twice", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rf_wire_page_index_encode(cases[i].v, cases[i].n, wire);
        memcpy(raw, wire, 4 * cases[i].n);
        check_fail(rf_wire_page_index_decode(raw, cases[i].n, cases[i].pages,
                                             &err),
                   &err, RF_ERR_PROTOCOL, cases[i].a,
                   cases[i].b ? cases[i].b : "packet");
    }
    /* Distinct pages in two runs and in many runs pass. */
    const uint32_t two[6] = {2, 5, 9, 0, 3, 4};
    const uint32_t many[6] = {9, 2, 8, 1, 7, 0};
    rf_wire_page_index_encode(two, 6, wire);
    memcpy(raw, wire, sizeof(two));
    assert_true(rf_wire_page_index_decode(raw, 6, 10, &err));
    assert_memory_equal(raw, two, sizeof(two));
    rf_wire_page_index_encode(many, 6, wire);
    memcpy(raw, wire, sizeof(many));
    assert_true(rf_wire_page_index_decode(raw, 6, 10, &err));
    assert_memory_equal(raw, many, sizeof(many));

    check_fail(rf_wire_page_index_decode(raw, 129, 1000, &err), &err,
               RF_ERR_PROTOCOL, "129 of them", "at most 128");
}

/* Every duplicate is found, whatever the order (checked against a
 * brute-force answer). */
static void test_page_index_random(void **state)
{
    (void)state;
    uint32_t v[RF_PACKET_MAX_PAGES], raw[RF_PACKET_MAX_PAGES];
    RfError *err = NULL;
    for (int iter = 0; iter < 20000; iter++) {
        uint32_t n = 1 + (uint32_t)(rng() % RF_PACKET_MAX_PAGES);
        uint32_t range = 1 + (uint32_t)(rng() % 400);
        bool two_runs = rng() & 1;
        for (uint32_t i = 0; i < n; i++) {
            v[i] = (uint32_t)(rng() % range);
        }
        if (two_runs) {
            /* Sort each half, as a sender would. */
            uint32_t h = n / 2;
            for (uint32_t i = 1; i < n; i++) {
                for (uint32_t j = i; j > (i < h ? 0 : h) &&
                                     v[j - 1] > v[j]; j--) {
                    uint32_t t = v[j];
                    v[j] = v[j - 1];
                    v[j - 1] = t;
                }
            }
        }
        bool dup = false;
        for (uint32_t i = 0; i < n && !dup; i++) {
            for (uint32_t j = i + 1; j < n; j++) {
                if (v[i] == v[j]) {
                    dup = true;
                    break;
                }
            }
        }
        rf_wire_page_index_encode(v, n, (uint8_t *)raw);
        bool ok = rf_wire_page_index_decode(raw, n, range, &err);
        assert_int_equal(ok, !dup);
        if (!ok) {
            assert_non_null(strstr(rf_error_msg(err), "listed twice"));
            rf_error_free(err);
            err = NULL;
        }
    }
}

/* ---- mutation loop ---------------------------------------------------- */

/* Flips, overwrites, inserts or cuts a few bytes of buf (len bytes, cap
 * room).  @return the new length. */
static size_t mutate(uint8_t *buf, size_t len, size_t cap)
{
    int steps = 1 + (int)(rng() % 4);
    for (int s = 0; s < steps; s++) {
        size_t pos = len ? (size_t)(rng() % len) : 0;
        switch (rng() % 6) {
        case 0:
            if (len) {
                buf[pos] ^= (uint8_t)(1u << (rng() % 8));
            }
            break;
        case 1:
            if (len) {
                buf[pos] = (uint8_t)rng();
            }
            break;
        case 2: {
            static const uint8_t special[] = {0, 1, 0x7f, 0x80, 0xff, 0x40};
            if (len) {
                buf[pos] = special[rng() % sizeof(special)];
            }
            break;
        }
        case 3:
            len = len ? (size_t)(rng() % len) : 0;
            break;
        case 4:
            if (len < cap) {
                memmove(buf + pos + 1, buf + pos, len - pos);
                buf[pos] = (uint8_t)rng();
                len++;
            }
            break;
        default:
            if (len) {
                memmove(buf + pos, buf + pos + 1, len - pos - 1);
                len--;
            }
            break;
        }
    }
    return len;
}

/* Mutated valid frames never crash a decoder, and whatever a decoder
 * accepts encodes back to exactly the same bytes (one encoding per
 * value, so nothing is silently ignored). */
static void test_mutation_loop(void **state)
{
    (void)state;
    static RfHello hello, hd;
    static RfComplete comp, cd;
    static RfAccept acc, ad;
    static uint8_t seeds[7][20000], buf[20100], re[20100];
    size_t seed_len[7];
    RfError *err = NULL;

    sample_hello(&hello);
    seed_len[0] = rf_wire_hello_encode(&hello, seeds[0], sizeof(seeds[0]));
    seed_len[1] = rf_wire_error_encode(RF_ERR_IO, "peer \xc3\xa9 gone",
                                       seeds[1], sizeof(seeds[1]));
    seed_len[2] = rf_wire_end_encode(5, true, seeds[2], sizeof(seeds[2]));
    sample_complete(&comp);
    seed_len[3] = rf_wire_complete_encode(&comp, seeds[3], sizeof(seeds[3]));
    RfChanHello ch = {.version = RF_WIRE_VERSION, .channel = 3};
    rf_wire_chan_hello_encode(&ch, seeds[4]);
    seed_len[4] = RF_CHAN_HELLO_SIZE;
    RfPacketHdr ph = sample_pkt();
    rf_wire_packet_hdr_encode(&ph, seeds[5]);
    const uint32_t pidx[3] = {5, 6, 9};
    seed_len[5] = RF_PKT_HDR_SIZE +
                  rf_wire_page_index_encode(pidx, 3, seeds[5] + 40);
    acc.caps = RF_CAPS_IMPLEMENTED | RF_CAP(40);
    acc.ext.len = sizeof(sample_ext);
    memcpy(acc.ext.bytes, sample_ext, sizeof(sample_ext));
    seed_len[6] = rf_wire_accept_encode(&acc, seeds[6], sizeof(seeds[6]));

    unsigned accepted = 0;
    for (int iter = 0; iter < 70000; iter++) {
        int kind = iter % 7;
        memcpy(buf, seeds[kind], seed_len[kind]);
        size_t len = mutate(buf, seed_len[kind], sizeof(buf));
        /* Exact-size heap copy: ASan catches any over-read. */
        uint8_t *in = malloc(len ? len : 1);
        memcpy(in, buf, len);
        bool ok = false;
        size_t rn = 0;
        switch (kind) {
        case 0:
            ok = rf_wire_hello_decode(in, len, &hd, &err);
            if (ok) {
                rn = rf_wire_hello_encode(&hd, re, sizeof(re));
            }
            break;
        case 1: {
            uint32_t k;
            char msg[4001];
            ok = rf_wire_error_decode(in, len, &k, msg, sizeof(msg), &err);
            if (ok) {
                rn = rf_wire_error_encode(k, msg, re, sizeof(re));
            }
            break;
        }
        case 2: {
            uint32_t r;
            bool v;
            ok = rf_wire_end_decode(in, len, &r, &v, &err);
            if (ok) {
                rn = rf_wire_end_encode(r, v, re, sizeof(re));
            }
            RfMsgHdr mh;
            if (len >= RF_MSG_HDR_SIZE) {
                rf_error_free(err);
                err = NULL;
                (void)rf_wire_msg_hdr_decode(in, &mh, &err);
            }
            break;
        }
        case 3:
            ok = rf_wire_complete_decode(in, len, &cd, &err);
            if (ok) {
                rn = rf_wire_complete_encode(&cd, re, sizeof(re));
            }
            break;
        case 6:
            ok = rf_wire_accept_decode(in, len, &ad, &err);
            if (ok) {
                rn = rf_wire_accept_encode(&ad, re, sizeof(re));
            }
            break;
        case 4: {
            RfChanHello cdh;
            if (len >= RF_CHAN_HELLO_SIZE) {
                ok = rf_wire_chan_hello_decode(in, &cdh, &err);
                if (ok) {
                    rf_wire_chan_hello_encode(&cdh, re);
                    rn = RF_CHAN_HELLO_SIZE;
                    len = RF_CHAN_HELLO_SIZE;
                }
            }
            break;
        }
        default: {
            RfPacketHdr pd;
            if (len >= RF_PKT_HDR_SIZE) {
                ok = rf_wire_packet_hdr_decode(in, &test_lim, &pd, &err);
                uint32_t n = ok ? (uint32_t)pd.normal + pd.zero : 0;
                if (ok && len >= RF_PKT_HDR_SIZE + 4 * (size_t)n) {
                    uint32_t idx[RF_PACKET_MAX_PAGES];
                    memcpy(idx, in + RF_PKT_HDR_SIZE, 4 * (size_t)n);
                    (void)rf_wire_page_index_decode(
                        idx, n, pd.flags & RF_PKT_SYNC
                                    ? 0 : test_block_pages[pd.block],
                        NULL);
                }
                if (ok) {
                    rf_wire_packet_hdr_encode(&pd, re);
                    rn = RF_PKT_HDR_SIZE;
                    len = RF_PKT_HDR_SIZE;
                }
            }
            break;
        }
        }
        if (ok) {
            accepted++;
            assert_null(err);
            assert_int_equal(rn, len);
            assert_memory_equal(re, in, len);
        } else {
            /* A rejected frame always says why. */
            if (err) {
                assert_non_null(rf_error_msg(err));
                assert_true(strlen(rf_error_msg(err)) > 10);
            }
        }
        rf_error_free(err);
        err = NULL;
        free(in);
    }
    /* The loop must have exercised both paths. */
    assert_true(accepted > 1000);
    assert_true(accepted < 69000);
}

/* RESUME and the channel hello's generation (docs/protocol.md 5.1):
 * the bytes of the spec, and a bad magic or reserved field refused. */
static void test_resume(void **state)
{
    (void)state;
    uint8_t b[RF_RESUME_SIZE];
    rf_wire_resume_encode(0x0102030405060708ull, b);
    static const uint8_t want[RF_RESUME_SIZE] = {
        0x52, 0x46, 0x52, 0x53, 0, 0, 0, 0,
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01};
    assert_memory_equal(b, want, sizeof(want));
    uint64_t next = 0;
    assert_true(rf_wire_resume_decode(b, &next, NULL));
    assert_true(next == 0x0102030405060708ull);
    RfError *err = NULL;
    b[0] ^= 1;
    assert_false(rf_wire_resume_decode(b, &next, &err));
    assert_non_null(strstr(rf_error_msg(err), "'magic'"));
    rf_error_free(err);
    err = NULL;
    b[0] ^= 1;
    b[5] = 1;
    assert_false(rf_wire_resume_decode(b, &next, &err));
    assert_non_null(strstr(rf_error_msg(err), "'reserved'"));
    rf_error_free(err);
    uint8_t g[RF_CHAN_GEN_SIZE];
    rf_wire_chan_gen_encode(0x01020304u, g);
    assert_int_equal(g[0], 0x04);
    assert_int_equal(g[3], 0x01);
    assert_int_equal(rf_wire_chan_gen_decode(g), 0x01020304u);
    assert_string_equal(rf_wire_cap_name(RF_CAP_RECONNECT), "reconnect");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_hdr_layout_roundtrip),
        cmocka_unit_test(test_msg_hdr_bad),
        cmocka_unit_test(test_hello_roundtrip),
        cmocka_unit_test(test_hello_encode_limits),
        cmocka_unit_test(test_hello_bad),
        cmocka_unit_test(test_hello_ext),
        cmocka_unit_test(test_hello_truncated),
        cmocka_unit_test(test_accept),
        cmocka_unit_test(test_cap_names),
        cmocka_unit_test(test_caps_format),
        cmocka_unit_test(test_caps_negotiate),
        cmocka_unit_test(test_caps_check_accept),
        cmocka_unit_test(test_error_roundtrip),
        cmocka_unit_test(test_error_bad),
        cmocka_unit_test(test_error_kind_numbers),
        cmocka_unit_test(test_error_unknown_kind),
        cmocka_unit_test(test_round_end),
        cmocka_unit_test(test_complete_roundtrip),
        cmocka_unit_test(test_complete_bad),
        cmocka_unit_test(test_chan_hello),
        cmocka_unit_test(test_packet_worked_example),
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_doc_examples),
        cmocka_unit_test(test_packet_good_variants),
        cmocka_unit_test(test_packet_bad),
        cmocka_unit_test(test_page_index),
        cmocka_unit_test(test_page_index_random),
        cmocka_unit_test(test_mutation_loop),
        cmocka_unit_test(test_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
