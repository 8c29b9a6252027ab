/*
 * libFuzzer target for the wire protocol decoders (src/wire): everything a
 * destination parses from the network before it trusts it.
 *
 * Input: byte 0 picks the decoder, the rest is what the peer sent (or, for
 * the capability negotiation, four 64-bit sets).  Besides
 * "never crashes, never reads out of bounds", each accepted input must
 * satisfy the decoder's promises (counts in range, names terminated and
 * unique, page indexes in range and distinct) and encode back to exactly
 * the same bytes: the encoding is canonical, so nothing is silently
 * ignored.  Each rejection must carry a message.  Packet inputs also
 * exercise the CRC32C: negotiated or not, the crc field of a decoded
 * header; for any bytes, a sealed packet verifies, its crc field is not
 * covered, and one flipped bit anywhere else is detected.
 *
 *   CC=clang meson setup build-fuzz -Dfuzzing=true -Dtests=false \
 *       -Db_sanitize=address,undefined
 *   ninja -C build-fuzz tests/fuzz/fuzz_wire
 *   build-fuzz/tests/fuzz/fuzz_wire -max_total_time=60
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ramflow/error.h"
#include "wire/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            __builtin_trap();                                               \
        }                                                                   \
    } while (0)

static const uint64_t block_pages[4] = {16, 1024, 4, UINT32_MAX};

static size_t max_payload(uint32_t npages)
{
    return (size_t)npages * RF_PAGE_SIZE + 64;
}

/* A rejection must say something; frees the error. */
static void check_rejected(RfError **err)
{
    CHECK(*err != NULL);
    CHECK(strlen(rf_error_msg(*err)) > 10);
    rf_error_free(*err);
    *err = NULL;
}

static void check_same(const uint8_t *a, size_t alen, const uint8_t *b,
                       size_t blen)
{
    CHECK(alen == blen);
    CHECK(memcmp(a, b, alen) == 0);
}

static void fuzz_msg_hdr(const uint8_t *d, size_t n)
{
    RfMsgHdr h;
    RfError *err = NULL;
    uint8_t re[RF_MSG_HDR_SIZE];
    if (n < RF_MSG_HDR_SIZE) {
        return;
    }
    if (rf_wire_msg_hdr_decode(d, &h, &err)) {
        CHECK(h.type >= RF_MSG_HELLO && h.type <= RF_MSG_MAX);
        CHECK(h.length <= RF_MSG_MAX_PAYLOAD);
        rf_wire_msg_hdr_encode(re, h.type, h.length);
        check_same(re, sizeof(re), d, RF_MSG_HDR_SIZE);
    } else {
        check_rejected(&err);
    }
}

static void fuzz_hello(const uint8_t *d, size_t n)
{
    static RfHello h;
    static uint8_t re[32768];
    RfError *err = NULL;
    if (!rf_wire_hello_decode(d, n, &h, &err)) {
        check_rejected(&err);
        return;
    }
    CHECK(h.version == RF_WIRE_VERSION && h.page_size == RF_PAGE_SIZE);
    CHECK((h.caps_required & ~h.caps_supported) == 0);
    CHECK(h.ext.len <= RF_WIRE_EXT_MAX);
    CHECK(h.channels >= 1 && h.channels <= 255);
    CHECK(h.nblocks >= 1 && h.nblocks <= RF_MAX_BLOCKS);
    for (uint32_t i = 0; i < h.nblocks; i++) {
        size_t nl = strnlen(h.blocks[i].name, sizeof(h.blocks[i].name));
        CHECK(nl >= 1 && nl <= RF_BLOCK_NAME_MAX);
        CHECK(h.blocks[i].size && h.blocks[i].size % RF_PAGE_SIZE == 0);
        CHECK(h.blocks[i].size / RF_PAGE_SIZE <= UINT32_MAX);
        for (uint32_t j = 0; j < i; j++) {
            CHECK(strcmp(h.blocks[i].name, h.blocks[j].name) != 0);
        }
    }
    size_t rn = rf_wire_hello_encode(&h, re, sizeof(re));
    check_same(re, rn, d, n);
}

/* Walks accepted extension records: ascending bits, each offered and
 * unknown to this build, lengths adding up exactly. */
static void check_ext(const RfWireExt *e, uint64_t offered)
{
    int prev = -1;
    size_t off = 0;
    while (off < e->len) {
        CHECK(e->len - off >= 3);
        unsigned bit = e->bytes[off];
        size_t rlen = (size_t)e->bytes[off + 1] | (size_t)e->bytes[off + 2]
                                                      << 8;
        CHECK(bit <= 63 && (int)bit > prev);
        CHECK(offered & RF_CAP(bit));
        CHECK(!(RF_CAPS_IMPLEMENTED & RF_CAP(bit)));
        prev = (int)bit;
        off += 3 + rlen;
    }
    CHECK(off == e->len);
}

static void fuzz_accept(const uint8_t *d, size_t n)
{
    static RfAccept a;
    static uint8_t re[RF_WIRE_EXT_MAX + 16];
    RfError *err = NULL;
    if (!rf_wire_accept_decode(d, n, &a, &err)) {
        check_rejected(&err);
        return;
    }
    check_ext(&a.ext, a.caps);
    size_t rn = rf_wire_accept_encode(&a, re, sizeof(re));
    check_same(re, rn, d, n);
}

/* Checks that msg names every capability of `missing` as
 * rf_wire_caps_format() does. */
static void check_names_all(const char *msg, uint64_t missing)
{
    for (unsigned bit = 0; bit < 64; bit++) {
        if (!(missing & RF_CAP(bit))) {
            continue;
        }
        char item[64];
        const char *name = rf_wire_cap_name(bit);
        if (name) {
            snprintf(item, sizeof(item), "capability '%s'", name);
        } else {
            snprintf(item, sizeof(item), "unknown capability bit %u", bit);
        }
        CHECK(strstr(msg, item) != NULL);
    }
}

/* Negotiation of four arbitrary sets, and formatting into a buffer of
 * arbitrary size. */
static void fuzz_caps(const uint8_t *d, size_t n, size_t cap)
{
    uint64_t v[4] = {0};
    memcpy(v, d, n < sizeof(v) ? n : sizeof(v));
    uint64_t ss = v[0], sr = v[1], ds = v[2], dr = v[3];
    if (n >= 33 && (d[32] & 1)) {
        sr &= ss; /* as the HELLO decoder guarantees */
        dr &= ds;
    }
    uint64_t got = 0;
    RfError *err = NULL;
    if (rf_wire_caps_negotiate(ss, sr, ds, dr, &got, &err)) {
        CHECK(got == (ss & ds));
        CHECK((sr & ~ds) == 0 && (dr & ~ss) == 0);
        CHECK((sr & ~got) == 0 && (dr & ~got) == 0);
        CHECK(rf_wire_caps_check_accept(ss, sr, got, NULL));
    } else {
        CHECK(err != NULL);
        const char *msg = rf_error_msg(err);
        CHECK(strlen(msg) > 10);
        if (rf_error_kind(err) == RF_ERR_MISMATCH) {
            CHECK((sr & ~ds) || (dr & ~ss));
            check_names_all(msg, sr & ~ds);
            check_names_all(msg, dr & ~ss);
        } else {
            CHECK((dr & ~ds) || (sr & ~ss));
        }
        rf_error_free(err);
    }
    /* A heap buffer of exactly cap bytes: ASan sees any overflow. */
    char *out = malloc(cap ? cap : 1);
    static char full[4096];
    size_t need = rf_wire_caps_format(ss, out, cap);
    CHECK(rf_wire_caps_format(ss, full, sizeof(full)) == need);
    CHECK(strlen(full) == need);
    if (cap) {
        CHECK(strlen(out) < cap && strncmp(out, full, strlen(out)) == 0);
        CHECK(strlen(out) == (need < cap ? need : cap - 1));
    }
    free(out);
}

static void fuzz_error(const uint8_t *d, size_t n, size_t cap)
{
    static char msg[4001];
    static uint8_t re[4100];
    uint32_t kind;
    RfError *err = NULL;
    if (cap > sizeof(msg)) {
        cap = sizeof(msg);
    }
    /* A heap buffer of exactly cap bytes: ASan sees any overflow. */
    char *out = malloc(cap ? cap : 1);
    if (!rf_wire_error_decode(d, n, &kind, out, cap, &err)) {
        check_rejected(&err);
        free(out);
        return;
    }
    if (cap) {
        CHECK(strlen(out) < cap);
    }
    free(out);
    /* Any kind but 0 passes; those this build does not know are
     * generic. */
    CHECK(kind != 0);
    RfErrorKind k = rf_wire_error_kind(kind);
    CHECK(k >= RF_ERR_GENERIC && k <= RF_WIRE_ERR_KIND_MAX);
    CHECK((uint32_t)k == kind || k == RF_ERR_GENERIC);
    CHECK(rf_wire_error_decode(d, n, &kind, msg, sizeof(msg), NULL));
    size_t rn = rf_wire_error_encode(kind, msg, re, sizeof(re));
    check_same(re, rn, d, n);
}

static void fuzz_small(const uint8_t *d, size_t n)
{
    uint8_t re[8];
    uint32_t r;
    bool v;
    RfError *err = NULL;
    if (rf_wire_round_decode(d, n, &r, &err)) {
        check_same(re, rf_wire_round_encode(r, re, sizeof(re)), d, n);
    } else {
        check_rejected(&err);
    }
    if (rf_wire_end_decode(d, n, &r, &v, &err)) {
        check_same(re, rf_wire_end_encode(r, v, re, sizeof(re)), d, n);
    } else {
        check_rejected(&err);
    }
}

static void fuzz_complete(const uint8_t *d, size_t n)
{
    static RfComplete c;
    static uint8_t re[2048];
    RfError *err = NULL;
    if (!rf_wire_complete_decode(d, n, &c, &err)) {
        check_rejected(&err);
        return;
    }
    CHECK(c.ndigests <= RF_MAX_BLOCKS && c.prefault_warm <= 1);
    CHECK(strlen(c.method_detail) < sizeof(c.method_detail));
    size_t rn = rf_wire_complete_encode(&c, re, sizeof(re));
    check_same(re, rn, d, n);
}

static void fuzz_chan_hello(const uint8_t *d, size_t n)
{
    RfChanHello h;
    RfError *err = NULL;
    uint8_t re[RF_CHAN_HELLO_SIZE];
    if (n < RF_CHAN_HELLO_SIZE) {
        return;
    }
    if (rf_wire_chan_hello_decode(d, &h, &err)) {
        CHECK(h.version == RF_WIRE_VERSION && h.channel <= 254);
        rf_wire_chan_hello_encode(&h, re);
        check_same(re, sizeof(re), d, RF_CHAN_HELLO_SIZE);
    } else {
        check_rejected(&err);
    }
}

/* The CRC32C of a packet, header (crc field as 0) then the rest. */
static uint32_t packet_crc(const uint8_t *hdr, const uint8_t *rest,
                           size_t rest_len)
{
    return rf_wire_crc_end(
        rf_wire_crc_update(rf_wire_crc_begin(hdr), rest, rest_len));
}

/* The crc field: ignored by the CRC itself, and a sealed packet that
 * then loses or gains one bit anywhere (header, indexes, payload) no
 * longer matches: CRC-32C detects every single-bit error. */
static void fuzz_packet_crc(const uint8_t *d, size_t n, uint32_t flip)
{
    static uint8_t copy[RF_PKT_HDR_SIZE + 4096];
    size_t len = n < sizeof(copy) ? n : sizeof(copy);
    memcpy(copy, d, len);
    const uint8_t *rest = copy + RF_PKT_HDR_SIZE;
    size_t rest_len = len - RF_PKT_HDR_SIZE;
    uint32_t crc = packet_crc(copy, rest, rest_len);
    rf_wire_packet_set_crc(copy, crc);
    CHECK(packet_crc(copy, rest, rest_len) == crc);
    size_t bit = flip % (8 * len);
    if (bit / 8 >= RF_PKT_CRC_OFFSET && bit / 8 < RF_PKT_CRC_OFFSET + 4) {
        return; /* the field itself: not covered */
    }
    copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    CHECK(packet_crc(copy, rest, rest_len) != crc);
}

/* A packet header and its page indexes, as a receiving channel reads
 * them.  sel chooses the negotiated method, whether it has a bound and
 * whether 'crc32c' is negotiated. */
static void fuzz_packet(const uint8_t *d, size_t n, uint8_t sel)
{
    RfPacketLimits lim = {
        .method = sel & 3,
        .nblocks = 4,
        .block_pages = block_pages,
        .max_payload = (sel & 4) ? NULL : max_payload,
        .crc = (sel & 8) != 0,
    };
    RfPacketHdr h;
    RfError *err = NULL;
    uint8_t re[RF_PKT_HDR_SIZE];
    if (n < RF_PKT_HDR_SIZE) {
        return;
    }
    /* Any bytes: the CRC's properties do not depend on a valid header. */
    fuzz_packet_crc(d, n, (uint32_t)n * 2654435761u ^ d[n - 1]);
    if (!rf_wire_packet_hdr_decode(d, &lim, &h, &err)) {
        check_rejected(&err);
        return;
    }
    rf_wire_packet_hdr_encode(&h, re);
    check_same(re, sizeof(re), d, RF_PKT_HDR_SIZE);
    /* Without the capability the field is 0; with it, any value passes
     * the decoder (the channel compares it with the packet). */
    CHECK(lim.crc || h.crc == 0);
    uint32_t pages = (uint32_t)h.normal + h.zero;
    CHECK(h.method == lim.method && !(h.flags & ~RF_PKT_FLAGS_ALL));
    if (h.flags & RF_PKT_SYNC) {
        CHECK(pages == 0 && h.payload_size == 0 && h.block == 0);
        return;
    }
    CHECK(h.block < lim.nblocks);
    CHECK(pages >= 1 && pages <= RF_PACKET_MAX_PAGES);
    CHECK(pages <= block_pages[h.block]);
    if (h.flags & RF_PKT_RAW) {
        CHECK(h.payload_size == (uint32_t)h.normal * RF_PAGE_SIZE);
    } else {
        CHECK((h.normal > 0) == (h.payload_size > 0));
        CHECK(h.payload_size <= max_payload(h.normal));
    }
    if (n < RF_PKT_HDR_SIZE + 4 * (size_t)pages) {
        return;
    }
    uint32_t idx[RF_PACKET_MAX_PAGES];
    memcpy(idx, d + RF_PKT_HDR_SIZE, 4 * (size_t)pages);
    if (!rf_wire_page_index_decode(idx, pages, block_pages[h.block],
                                   &err)) {
        check_rejected(&err);
        return;
    }
    uint8_t back[4 * RF_PACKET_MAX_PAGES];
    CHECK(rf_wire_page_index_encode(idx, pages, back) == 4 * pages);
    check_same(back, 4 * pages, d + RF_PKT_HDR_SIZE, 4 * pages);
    for (uint32_t i = 0; i < pages; i++) {
        CHECK(idx[i] < block_pages[h.block]);
        for (uint32_t j = 0; j < i; j++) {
            CHECK(idx[i] != idx[j]);
        }
    }
}

/* A main-channel byte stream: frames one after another, each payload
 * handed to its decoder, as the engine reads them. */
static void fuzz_stream(const uint8_t *d, size_t n)
{
    static RfHello hello;
    static RfAccept acc;
    static RfComplete comp;
    while (n >= RF_MSG_HDR_SIZE) {
        RfMsgHdr h;
        if (!rf_wire_msg_hdr_decode(d, &h, NULL)) {
            return;
        }
        d += RF_MSG_HDR_SIZE, n -= RF_MSG_HDR_SIZE;
        if (h.length > n) {
            return; /* truncated: the engine would time out / fail */
        }
        uint32_t r, kind;
        bool v;
        char msg[64];
        bool ok = true;
        switch (h.type) {
        case RF_MSG_HELLO:
            ok = rf_wire_hello_decode(d, h.length, &hello, NULL);
            break;
        case RF_MSG_ERROR:
            ok = rf_wire_error_decode(d, h.length, &kind, msg, sizeof(msg),
                                      NULL);
            break;
        case RF_MSG_ACCEPT:
            ok = rf_wire_accept_decode(d, h.length, &acc, NULL);
            break;
        case RF_MSG_ROUND:
        case RF_MSG_ROUND_ACK: /* same layout as ROUND */
            ok = rf_wire_round_decode(d, h.length, &r, NULL);
            break;
        case RF_MSG_STATE:
            /* Opaque device state, handed to the caller's load_state:
             * any length the header accepted. */
            break;
        case RF_MSG_END:
            ok = rf_wire_end_decode(d, h.length, &r, &v, NULL);
            break;
        case RF_MSG_COMPLETE:
            ok = rf_wire_complete_decode(d, h.length, &comp, NULL);
            break;
        case RF_MSG_STATS: {
            RfStats st;
            ok = rf_wire_stats_decode(d, h.length, &st, NULL);
            CHECK(!ok || st.nmethods <= RF_STATS_MAX_METHODS);
            break;
        }
        default:
            CHECK(h.type == RF_MSG_STATE); /* opaque bytes */
            break;
        }
        if (!ok) {
            return;
        }
        d += h.length, n -= h.length;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint8_t sel = data[0];
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    switch (sel % 11) {
    case 0:
        fuzz_msg_hdr(d, n);
        break;
    case 1:
        fuzz_hello(d, n);
        break;
    case 2:
        fuzz_error(d, n, sel / 11 * 16 + 1);
        break;
    case 3:
        fuzz_error(d, n, 4001);
        break;
    case 4:
        fuzz_small(d, n);
        break;
    case 5:
        fuzz_complete(d, n);
        break;
    case 6:
        fuzz_chan_hello(d, n);
        break;
    case 7:
        fuzz_packet(d, n, (uint8_t)(sel / 11));
        break;
    case 8:
        fuzz_accept(d, n);
        break;
    case 9:
        fuzz_caps(d, n, sel / 11 * 24);
        break;
    default:
        fuzz_stream(d, n);
        break;
    }
    return 0;
}
