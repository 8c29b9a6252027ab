/*
 * ramflow - main-channel frames (header, HELLO, ACCEPT, ERROR, ROUND, END,
 * COMPLETE) and the 24-byte data-channel hello (docs/protocol.md).
 *
 * Encoders serialise exactly what they are given (tests rely on that to
 * craft bad frames); the only exception is free text (ERROR messages and
 * method details), which is cleaned so that it always passes the peer's
 * text check.  Decoders trust nothing: every length is checked before the
 * bytes are read and every field before it is returned.
 */
#include "wire/wire.h"

#include <string.h>

#include "ramflow/error.h"
#include "wire/bytes.h"

/* Sizes from docs/protocol.md. */
#define HELLO_FIXED 48u          /* bytes before the first block */
#define EXT_LEN_SIZE 2u          /* u16 ext_len before the records */
#define EXT_REC_HDR 3u           /* u8 bit, u16 length */
#define ACCEPT_FIXED (8u + EXT_LEN_SIZE) /* caps, ext_len */
#define ERROR_FIXED 6u           /* kind + msg_len */
#define ERROR_MSG_MAX 4000u
#define ROUND_SIZE 4u
#define END_SIZE 5u
#define COMPLETE_FIXED 22u /* cpu, wire_bytes, warm, detail_len, n, us */
#define COMPLETE_DETAIL_MAX 127u /* fits RfComplete.method_detail + NUL */
#define COMPLETE_MAX \
    (COMPLETE_FIXED + COMPLETE_DETAIL_MAX + 16u * RF_MAX_BLOCKS)
#define BLOCK_SIZE_LIMIT (1ull << 44) /* page indexes are u32 */

static const char *const msg_names[] = {
    [RF_MSG_INVALID] = "INVALID", [RF_MSG_HELLO] = "HELLO",
    [RF_MSG_ACCEPT] = "ACCEPT",   [RF_MSG_ERROR] = "ERROR",
    [RF_MSG_ROUND] = "ROUND",     [RF_MSG_END] = "END",
    [RF_MSG_COMPLETE] = "COMPLETE", [RF_MSG_STATE] = "STATE",
    [RF_MSG_ROUND_ACK] = "ROUND_ACK", [RF_MSG_STATS] = "STATS",
};

/* ---- text ------------------------------------------------------------ */

/*
 * Length of the character at p if it is well-formed UTF-8 (RFC 3629: no
 * overlong forms, no surrogates, at most U+10FFFF) and not a control
 * character (C0, DEL, C1).  @return 1..4, or 0 for a bad or truncated
 * sequence.  Names and messages end up on terminals and in JSON, so
 * neither control characters nor invalid UTF-8 may pass.
 */
static size_t text_char_len(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    if (c < 0x80) {
        return (c >= 0x20 && c != 0x7f) ? 1 : 0;
    }
    size_t len;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
        (cp >= 0x80 && cp <= 0x9f)) {
        return 0;
    }
    return len;
}

/* @return the offset of the first byte that breaks the text rule, or n. */
static size_t text_check(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t l = text_char_len(p + i, n - i);
        if (l == 0) {
            return i;
        }
        i += l;
    }
    return n;
}

/*
 * Copies at most max bytes of the NUL-terminated s into dst (if not NULL),
 * replacing each byte that breaks the text rule by '?' and never cutting a
 * character in two.  @return the bytes written (or that would be).  Local
 * error messages may hold file names in any encoding; the peer must still
 * be able to read them.
 */
static size_t text_clean(const char *s, size_t max, uint8_t *dst)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t n = strlen(s), in = 0, out = 0;
    while (in < n) {
        size_t l = text_char_len(p + in, n - in);
        size_t w = l ? l : 1;
        if (out + w > max) {
            break;
        }
        if (dst) {
            if (l) {
                memcpy(dst + out, p + in, l);
            } else {
                dst[out] = '?';
            }
        }
        out += w;
        in += l ? l : 1;
    }
    return out;
}

/* Copies n checked text bytes into a cap-byte buffer, NUL-terminated,
 * cut back to a character boundary if it does not fit. */
static void text_copy_out(const uint8_t *p, size_t n, char *dst, size_t cap)
{
    if (cap == 0) {
        return;
    }
    if (n > cap - 1) {
        n = cap - 1;
        while (n > 0 && (p[n] & 0xc0) == 0x80) {
            n--; /* p[n] continues a character: cut before it starts */
        }
    }
    memcpy(dst, p, n);
    dst[n] = '\0';
}

/* ---- a bounds-checked reader ------------------------------------------ */

typedef struct Cursor {
    const uint8_t *p;
    size_t len, off;
    const char *msg; /* "HELLO", ... for messages */
} Cursor;

/* Takes n bytes for `field`, failing with a message naming it when the
 * payload ends first. */
static const uint8_t *take(Cursor *c, size_t n, const char *field,
                           RfError **errp)
{
    if (c->len - c->off < n) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "%s truncated at field '%s': needs %zu bytes at offset "
                     "%zu, the payload has %zu", c->msg, field, n, c->off,
                     c->len);
        return NULL;
    }
    const uint8_t *p = c->p + c->off;
    c->off += n;
    return p;
}

static bool expect_end(const Cursor *c, RfError **errp)
{
    if (c->off != c->len) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "%s payload: %zu trailing bytes after the last field "
                     "(length %zu, fields end at %zu)", c->msg,
                     c->len - c->off, c->len, c->off);
        return false;
    }
    return true;
}

/* ---- frame header ----------------------------------------------------- */

void rf_wire_msg_hdr_encode(uint8_t out[RF_MSG_HDR_SIZE], uint16_t type,
                            uint32_t length)
{
    put_u32(out, RF_MSG_MAGIC);
    put_u16(out + 4, type);
    put_u16(out + 6, 0);
    put_u32(out + 8, length);
}

bool rf_wire_msg_hdr_decode(const uint8_t in[RF_MSG_HDR_SIZE],
                            RfMsgHdr *out, RfError **errp)
{
    uint32_t magic = get_u32(in);
    uint16_t type = get_u16(in + 4);
    uint16_t reserved = get_u16(in + 6);
    uint32_t length = get_u32(in + 8);

    if (magic != RF_MSG_MAGIC) {
        const char *hint = magic == RF_CHAN_MAGIC
                               ? " (a data-channel hello on the main channel)"
                           : magic == RF_PKT_MAGIC
                               ? " (a data packet on the main channel)"
                               : "";
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "frame field 'magic': 0x%08x, expected 0x%08x "
                     "(\"RFCM\")%s", magic, RF_MSG_MAGIC, hint);
        return false;
    }
    if (type == RF_MSG_INVALID || type > RF_MSG_MAX) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "frame field 'type': %u, allowed 1..%u", type,
                     RF_MSG_MAX);
        return false;
    }
    if (reserved != 0) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "frame field 'reserved': 0x%04x, must be 0", reserved);
        return false;
    }
    /* HELLO is bounded only by the general limit, so that a peer of
     * another version gets "version mismatch", not a length error. */
    uint32_t min = 0, max = RF_MSG_MAX_PAYLOAD;
    switch ((RfMsgType)type) {
    case RF_MSG_HELLO:
        min = 2;
        break;
    case RF_MSG_ACCEPT:
        min = ACCEPT_FIXED, max = ACCEPT_FIXED + RF_WIRE_EXT_MAX;
        break;
    case RF_MSG_ERROR:
        min = ERROR_FIXED, max = ERROR_FIXED + ERROR_MSG_MAX;
        break;
    case RF_MSG_ROUND:
    case RF_MSG_ROUND_ACK:
        min = max = ROUND_SIZE;
        break;
    case RF_MSG_END:
        min = max = END_SIZE;
        break;
    case RF_MSG_COMPLETE:
        min = COMPLETE_FIXED, max = COMPLETE_MAX;
        break;
    case RF_MSG_STATS:
        min = 69, max = 69 + 17 * RF_STATS_MAX_METHODS;
        break;
    case RF_MSG_STATE:
        break; /* opaque to the protocol, up to RF_MSG_MAX_PAYLOAD */
    case RF_MSG_INVALID:
        break;
    }
    if (length < min || length > max) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "frame field 'length': %u bytes for type %s, "
                     "allowed %u..%u", length, msg_names[type], min, max);
        return false;
    }
    out->type = type;
    out->length = length;
    return true;
}

/* ---- HELLO ------------------------------------------------------------ */

/* ---- extension records ------------------------------------------------ */

/* Encodes ext_len and the records as they are.  @return bytes written, or
 * 0 when they do not fit. */
static size_t ext_encode(const RfWireExt *e, uint8_t *out, size_t cap)
{
    if (e->len > RF_WIRE_EXT_MAX || EXT_LEN_SIZE + (size_t)e->len > cap) {
        return 0;
    }
    put_u16(out, e->len);
    memcpy(out + EXT_LEN_SIZE, e->bytes, e->len);
    return EXT_LEN_SIZE + e->len;
}

/*
 * Reads ext_len and the records that follow into e, checking each record:
 * complete, bit <= 63 and above the previous record's, offered in
 * `offered` (the message's caps field named `caps_field`), and a bit this
 * build does not know: no capability it implements carries data, so a
 * record for one of them breaks that capability's specification.
 */
static bool ext_decode(Cursor *c, uint64_t offered, const char *caps_field,
                       RfWireExt *e, RfError **errp)
{
    const uint8_t *p = take(c, EXT_LEN_SIZE, "ext_len", errp);
    if (!p) {
        return false;
    }
    uint16_t len = get_u16(p);
    if (len > RF_WIRE_EXT_MAX) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "%s field 'ext_len': %u bytes, at most %u allowed",
                     c->msg, len, RF_WIRE_EXT_MAX);
        return false;
    }
    const uint8_t *rec = take(c, len, "extensions", errp);
    if (!rec) {
        return false;
    }
    int prev = -1;
    for (size_t off = 0; off < len;) {
        if (len - off < EXT_REC_HDR) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "%s extension at offset %zu: %zu bytes left, a "
                         "record header needs %u", c->msg, off, len - off,
                         EXT_REC_HDR);
            return false;
        }
        unsigned bit = rec[off];
        size_t rlen = get_u16(rec + off + 1);
        const char *name = rf_wire_cap_name(bit);
        if (bit > 63 || (int)bit <= prev) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "%s extension field 'bit': %u, allowed %d..63 "
                         "(records in ascending bit order)", c->msg, bit,
                         prev + 1);
            return false;
        }
        if (!(offered & RF_CAP(bit))) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "%s extension for capability bit %u%s%s%s, which "
                         "'%s' does not offer", c->msg, bit,
                         name ? " ('" : "", name ? name : "",
                         name ? "')" : "", caps_field);
            return false;
        }
        /* Only ACCEPT's 'packet-method' record carries data. */
        bool with_data = bit == RF_CAP_PACKET_METHOD &&
                         strcmp(c->msg, "ACCEPT") == 0;
        if (!with_data && ((RF_CAPS_IMPLEMENTED | RF_CAPS_TLS |
                            RF_CAPS_RECONNECT | RF_CAPS_PACKET_METHOD) &
                           RF_CAP(bit))) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "%s extension for capability '%s' (bit %u): this "
                         "capability carries no extension data in a %s",
                         c->msg, name, bit, c->msg);
            return false;
        }
        if (len - off - EXT_REC_HDR < rlen) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "%s extension for capability bit %u: field "
                         "'length' %zu bytes, only %zu left", c->msg, bit,
                         rlen, len - off - EXT_REC_HDR);
            return false;
        }
        if (with_data && rlen != RF_EXT_METHODS_SIZE) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "%s extension for capability 'packet-method': "
                         "field 'length' %zu bytes, must be %u", c->msg,
                         rlen, RF_EXT_METHODS_SIZE);
            return false;
        }
        prev = (int)bit;
        off += EXT_REC_HDR + rlen;
    }
    e->len = len;
    memcpy(e->bytes, rec, len);
    return true;
}

/* ---- HELLO ------------------------------------------------------------ */

size_t rf_wire_hello_encode(const RfHello *h, uint8_t *out, size_t cap)
{
    if (h->nblocks > RF_MAX_BLOCKS || h->ext.len > RF_WIRE_EXT_MAX) {
        return 0;
    }
    size_t need = HELLO_FIXED + EXT_LEN_SIZE + h->ext.len;
    for (uint32_t i = 0; i < h->nblocks; i++) {
        size_t nl = strnlen(h->blocks[i].name, RF_BLOCK_NAME_MAX + 1);
        if (nl == 0 || nl > RF_BLOCK_NAME_MAX) {
            return 0; /* not representable */
        }
        need += 1 + nl + 8;
    }
    if (need > cap) {
        return 0;
    }
    put_u16(out, h->version);
    put_u16(out + 2, 0);
    put_u32(out + 4, h->page_size);
    put_u64(out + 8, h->caps_supported);
    put_u64(out + 16, h->caps_required);
    out[24] = h->method;
    out[25] = h->level;
    put_u16(out + 26, h->channels);
    put_u32(out + 28, h->nblocks);
    memcpy(out + 32, h->session, 16);
    size_t off = HELLO_FIXED;
    for (uint32_t i = 0; i < h->nblocks; i++) {
        size_t nl = strlen(h->blocks[i].name);
        out[off] = (uint8_t)nl;
        memcpy(out + off + 1, h->blocks[i].name, nl);
        put_u64(out + off + 1 + nl, h->blocks[i].size);
        off += 1 + nl + 8;
    }
    return off + ext_encode(&h->ext, out + off, cap - off);
}

/* Decodes block i of a HELLO into b, checking name and size, and that the
 * name differs from the blocks before it. */
static bool hello_block_decode(Cursor *c, uint32_t i, const RfHello *h,
                               RfBlockDesc *b, RfError **errp)
{
    const uint8_t *p = take(c, 1, "name_len", errp);
    if (!p) {
        return false;
    }
    uint8_t nl = p[0];
    if (nl == 0) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "HELLO field 'name_len' of block %u: 0, allowed "
                     "1..%u", i, RF_BLOCK_NAME_MAX);
        return false;
    }
    const uint8_t *name = take(c, nl, "name", errp);
    if (!name) {
        return false;
    }
    size_t bad = text_check(name, nl);
    if (bad != nl) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "HELLO field 'name' of block %u: byte 0x%02x at "
                     "position %zu, allowed UTF-8 without control "
                     "characters or NUL", i, name[bad], bad);
        return false;
    }
    memcpy(b->name, name, nl);
    b->name[nl] = '\0';
    for (uint32_t j = 0; j < i; j++) {
        if (strcmp(h->blocks[j].name, b->name) == 0) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "HELLO field 'name' of block %u: \"%s\" is also "
                         "block %u's name, names must be unique", i,
                         b->name, j);
            return false;
        }
    }
    p = take(c, 8, "size", errp);
    if (!p) {
        return false;
    }
    b->size = get_u64(p);
    if (b->size == 0 || b->size % RF_PAGE_SIZE != 0 ||
        b->size >= BLOCK_SIZE_LIMIT) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "HELLO field 'size' of block %u (\"%s\"): %llu bytes, "
                     "must be a non-zero multiple of %u below 2^44", i,
                     b->name, (unsigned long long)b->size, RF_PAGE_SIZE);
        return false;
    }
    return true;
}

bool rf_wire_hello_decode(const uint8_t *in, size_t len, RfHello *out,
                          RfError **errp)
{
    Cursor c = {.p = in, .len = len, .msg = "HELLO"};
    const uint8_t *p;

    memset(out, 0, sizeof(*out));
    /* The version comes first and is checked first: a peer of another
     * version may lay out the rest differently. */
    if (!(p = take(&c, 2, "version", errp))) {
        return false;
    }
    out->version = get_u16(p);
    if (out->version != RF_WIRE_VERSION) {
        rf_error_set(errp, RF_ERR_MISMATCH,
                     "HELLO field 'version': peer speaks wire version %u, "
                     "this build speaks version %u", out->version,
                     RF_WIRE_VERSION);
        return false;
    }
    if (!(p = take(&c, HELLO_FIXED - 2, "fixed fields", errp))) {
        return false;
    }
    uint16_t reserved = get_u16(p);
    out->page_size = get_u32(p + 2);
    out->caps_supported = get_u64(p + 6);
    out->caps_required = get_u64(p + 14);
    out->method = p[22];
    out->level = p[23];
    out->channels = get_u16(p + 24);
    out->nblocks = get_u32(p + 26);
    memcpy(out->session, p + 30, 16);

    if (reserved != 0) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "HELLO field 'reserved': 0x%04x, must be 0", reserved);
        return false;
    }
    if (out->page_size != RF_PAGE_SIZE) {
        rf_error_set(errp, RF_ERR_MISMATCH,
                     "HELLO field 'page_size': %u bytes, only %u is "
                     "supported", out->page_size, RF_PAGE_SIZE);
        return false;
    }
    if (out->caps_required & ~out->caps_supported) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "HELLO field 'caps_required': 0x%016llx has bits "
                     "0x%016llx that 'caps_supported' 0x%016llx lacks",
                     (unsigned long long)out->caps_required,
                     (unsigned long long)(out->caps_required &
                                          ~out->caps_supported),
                     (unsigned long long)out->caps_supported);
        return false;
    }
    if (out->channels < 1 || out->channels > 255) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "HELLO field 'channels': %u, allowed 1..255",
                     out->channels);
        return false;
    }
    if (out->nblocks < 1 || out->nblocks > RF_MAX_BLOCKS) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "HELLO field 'nblocks': %u, allowed 1..%u",
                     out->nblocks, RF_MAX_BLOCKS);
        return false;
    }
    for (uint32_t i = 0; i < out->nblocks; i++) {
        if (!hello_block_decode(&c, i, out, &out->blocks[i], errp)) {
            return false;
        }
    }
    return ext_decode(&c, out->caps_supported, "caps_supported", &out->ext,
                      errp) &&
           expect_end(&c, errp);
}

bool rf_wire_ext_add(RfWireExt *e, unsigned bit, const void *data,
                     uint16_t len)
{
    if (bit > 63 || (size_t)e->len + EXT_REC_HDR + len > RF_WIRE_EXT_MAX) {
        return false;
    }
    uint8_t *p = e->bytes + e->len;
    p[0] = (uint8_t)bit;
    put_u16(p + 1, len);
    memcpy(p + EXT_REC_HDR, data, len);
    e->len = (uint16_t)(e->len + EXT_REC_HDR + len);
    return true;
}

const uint8_t *rf_wire_ext_find(const RfWireExt *e, unsigned bit,
                                uint16_t *len)
{
    for (size_t off = 0; off + EXT_REC_HDR <= e->len;) {
        uint16_t rlen = get_u16(e->bytes + off + 1);
        if (e->bytes[off] == bit) {
            *len = rlen;
            return e->bytes + off + EXT_REC_HDR;
        }
        off += EXT_REC_HDR + rlen;
    }
    return NULL;
}

/* ---- ACCEPT ----------------------------------------------------------- */

size_t rf_wire_accept_encode(const RfAccept *a, uint8_t *out, size_t cap)
{
    if (cap < 8) {
        return 0;
    }
    put_u64(out, a->caps);
    size_t n = ext_encode(&a->ext, out + 8, cap - 8);
    return n ? 8 + n : 0;
}

bool rf_wire_accept_decode(const uint8_t *in, size_t len, RfAccept *out,
                           RfError **errp)
{
    Cursor c = {.p = in, .len = len, .msg = "ACCEPT"};
    const uint8_t *p = take(&c, 8, "caps", errp);
    memset(out, 0, sizeof(*out));
    if (!p) {
        return false;
    }
    out->caps = get_u64(p);
    return ext_decode(&c, out->caps, "caps", &out->ext, errp) &&
           expect_end(&c, errp);
}

/* ---- ERROR ------------------------------------------------------------ */

size_t rf_wire_error_encode(uint32_t kind, const char *msg, uint8_t *out,
                            size_t cap)
{
    if (!msg) {
        msg = "";
    }
    size_t n = text_clean(msg, ERROR_MSG_MAX, NULL);
    if (ERROR_FIXED + n > cap) {
        return 0;
    }
    put_u32(out, kind);
    put_u16(out + 4, (uint16_t)n);
    text_clean(msg, ERROR_MSG_MAX, out + ERROR_FIXED);
    return ERROR_FIXED + n;
}

bool rf_wire_error_decode(const uint8_t *in, size_t len, uint32_t *kind,
                          char *msg, size_t cap, RfError **errp)
{
    Cursor c = {.p = in, .len = len, .msg = "ERROR"};
    const uint8_t *p;

    if (!(p = take(&c, ERROR_FIXED, "kind, msg_len", errp))) {
        return false;
    }
    uint32_t k = get_u32(p);
    uint16_t n = get_u16(p + 4);
    if (k == 0) {
        /* Kinds above RF_WIRE_ERR_KIND_MAX are a newer peer's: accepted,
         * and reported as generic errors (rf_wire_error_kind). */
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "ERROR field 'kind': 0, allowed 1 and above");
        return false;
    }
    if (n > ERROR_MSG_MAX) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "ERROR field 'msg_len': %u bytes, at most %u allowed",
                     n, ERROR_MSG_MAX);
        return false;
    }
    const uint8_t *text = take(&c, n, "msg", errp);
    if (!text || !expect_end(&c, errp)) {
        return false;
    }
    size_t bad = text_check(text, n);
    if (bad != n) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "ERROR field 'msg': byte 0x%02x at position %zu, "
                     "allowed UTF-8 without control characters or NUL",
                     text[bad], bad);
        return false;
    }
    *kind = k;
    text_copy_out(text, n, msg, cap);
    return true;
}

RfErrorKind rf_wire_error_kind(uint32_t wire_kind)
{
    if (wire_kind < RF_ERR_GENERIC || wire_kind > RF_WIRE_ERR_KIND_MAX) {
        return RF_ERR_GENERIC;
    }
    return (RfErrorKind)wire_kind;
}

/* ---- ROUND, END ------------------------------------------------------- */

size_t rf_wire_round_encode(uint32_t round, uint8_t *out, size_t cap)
{
    if (cap < ROUND_SIZE) {
        return 0;
    }
    put_u32(out, round);
    return ROUND_SIZE;
}

bool rf_wire_round_decode(const uint8_t *in, size_t len, uint32_t *round,
                          RfError **errp)
{
    Cursor c = {.p = in, .len = len, .msg = "ROUND"};
    const uint8_t *p = take(&c, ROUND_SIZE, "round", errp);
    if (!p || !expect_end(&c, errp)) {
        return false;
    }
    *round = get_u32(p);
    return true;
}

size_t rf_wire_end_encode(uint32_t final_round, bool verify, uint8_t *out,
                          size_t cap)
{
    if (cap < END_SIZE) {
        return 0;
    }
    put_u32(out, final_round);
    out[4] = verify ? 1 : 0;
    return END_SIZE;
}

bool rf_wire_end_decode(const uint8_t *in, size_t len,
                        uint32_t *final_round, bool *verify, RfError **errp)
{
    Cursor c = {.p = in, .len = len, .msg = "END"};
    const uint8_t *p = take(&c, END_SIZE, "final_round, verify", errp);
    if (!p || !expect_end(&c, errp)) {
        return false;
    }
    if (p[4] > 1) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "END field 'verify': %u, allowed 0 or 1", p[4]);
        return false;
    }
    *final_round = get_u32(p);
    *verify = p[4] == 1;
    return true;
}

/* ---- COMPLETE --------------------------------------------------------- */

/* CPU percentage to the wire's centi-percent, rounded and clamped (NaN
 * and negatives give 0). */
static uint32_t cpu_to_wire(double pct)
{
    double x = pct * 100.0;
    if (!(x > 0.0)) {
        return 0;
    }
    if (x >= 4294967295.0) {
        return UINT32_MAX;
    }
    return (uint32_t)(x + 0.5);
}

size_t rf_wire_complete_encode(const RfComplete *c, uint8_t *out,
                               size_t cap)
{
    if (c->ndigests > RF_MAX_BLOCKS) {
        return 0;
    }
    char detail[sizeof(c->method_detail)];
    memcpy(detail, c->method_detail, sizeof(detail));
    detail[sizeof(detail) - 1] = '\0';
    size_t dl = text_clean(detail, COMPLETE_DETAIL_MAX, NULL);
    size_t need = COMPLETE_FIXED + dl + 16 * (size_t)c->ndigests;
    if (need > cap) {
        return 0;
    }
    put_u32(out, cpu_to_wire(c->recv_cpu_pct));
    put_u64(out + 4, c->wire_bytes);
    out[12] = c->prefault_warm ? 1 : 0;
    out[13] = (uint8_t)dl;
    text_clean(detail, COMPLETE_DETAIL_MAX, out + 14);
    size_t off = 14 + dl;
    put_u32(out + off, c->ndigests);
    put_u32(out + off + 4, c->digest_us);
    off += 8;
    memcpy(out + off, c->digests, 16 * (size_t)c->ndigests);
    return off + 16 * (size_t)c->ndigests;
}

bool rf_wire_complete_decode(const uint8_t *in, size_t len, RfComplete *out,
                             RfError **errp)
{
    Cursor c = {.p = in, .len = len, .msg = "COMPLETE"};
    const uint8_t *p;

    memset(out, 0, sizeof(*out));
    if (!(p = take(&c, 14, "cpu, wire_bytes, warm, detail_len", errp))) {
        return false;
    }
    out->recv_cpu_pct = get_u32(p) / 100.0;
    out->wire_bytes = get_u64(p + 4);
    if (p[12] > 1) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "COMPLETE field 'prefault_warm': %u, allowed 0 or 1",
                     p[12]);
        return false;
    }
    out->prefault_warm = p[12];
    uint8_t dl = p[13];
    if (dl > COMPLETE_DETAIL_MAX) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "COMPLETE field 'detail_len': %u bytes, at most %u "
                     "allowed", dl, COMPLETE_DETAIL_MAX);
        return false;
    }
    const uint8_t *detail = take(&c, dl, "detail", errp);
    if (!detail) {
        return false;
    }
    size_t bad = text_check(detail, dl);
    if (bad != dl) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "COMPLETE field 'detail': byte 0x%02x at position %zu, "
                     "allowed UTF-8 without control characters or NUL",
                     detail[bad], bad);
        return false;
    }
    memcpy(out->method_detail, detail, dl);
    out->method_detail[dl] = '\0';
    if (!(p = take(&c, 8, "ndigests, digest_us", errp))) {
        return false;
    }
    out->ndigests = get_u32(p);
    out->digest_us = get_u32(p + 4);
    if (out->ndigests > RF_MAX_BLOCKS) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "COMPLETE field 'ndigests': %u, at most %u allowed",
                     out->ndigests, RF_MAX_BLOCKS);
        return false;
    }
    if (!(p = take(&c, 16 * (size_t)out->ndigests, "digests", errp))) {
        return false;
    }
    memcpy(out->digests, p, 16 * (size_t)out->ndigests);
    return expect_end(&c, errp);
}

/* ---- data-channel hello ----------------------------------------------- */

void rf_wire_chan_hello_encode(const RfChanHello *h,
                               uint8_t out[RF_CHAN_HELLO_SIZE])
{
    put_u32(out, RF_CHAN_MAGIC);
    put_u16(out + 4, h->version);
    put_u16(out + 6, h->channel);
    memcpy(out + 8, h->session, 16);
}

bool rf_wire_chan_hello_decode(const uint8_t in[RF_CHAN_HELLO_SIZE],
                               RfChanHello *out, RfError **errp)
{
    uint32_t magic = get_u32(in);
    if (magic != RF_CHAN_MAGIC) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "channel hello field 'magic': 0x%08x, expected 0x%08x "
                     "(\"RFCH\")", magic, RF_CHAN_MAGIC);
        return false;
    }
    uint16_t version = get_u16(in + 4);
    if (version != RF_WIRE_VERSION) {
        rf_error_set(errp, RF_ERR_MISMATCH,
                     "channel hello field 'version': peer speaks wire "
                     "version %u, this build speaks version %u", version,
                     RF_WIRE_VERSION);
        return false;
    }
    uint16_t channel = get_u16(in + 6);
    if (channel > 254) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "channel hello field 'channel': %u, allowed 0..254 "
                     "(at most 255 channels)", channel);
        return false;
    }
    out->version = version;
    out->channel = channel;
    memcpy(out->session, in + 8, 16);
    return true;
}

void rf_wire_chan_gen_encode(uint32_t gen, uint8_t out[RF_CHAN_GEN_SIZE])
{
    put_u32(out, gen);
}

uint32_t rf_wire_chan_gen_decode(const uint8_t in[RF_CHAN_GEN_SIZE])
{
    return get_u32(in);
}

void rf_wire_resume_encode(uint64_t next_seq, uint8_t out[RF_RESUME_SIZE])
{
    put_u32(out, RF_RESUME_MAGIC);
    put_u32(out + 4, 0);
    put_u64(out + 8, next_seq);
}

bool rf_wire_resume_decode(const uint8_t in[RF_RESUME_SIZE],
                           uint64_t *next_seq, RfError **errp)
{
    uint32_t magic = get_u32(in);
    if (magic != RF_RESUME_MAGIC) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "resume field 'magic': 0x%08x, expected 0x%08x "
                     "(\"RFRS\")", magic, RF_RESUME_MAGIC);
        return false;
    }
    uint32_t reserved = get_u32(in + 4);
    if (reserved != 0) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "resume field 'reserved': 0x%08x, must be 0", reserved);
        return false;
    }
    *next_seq = get_u64(in + 8);
    return true;
}
