/*
 * ramflow - the `zlib` compression method (zlib format, libdeflate).
 *
 * Payload format: one complete zlib stream (RFC 1950: header, DEFLATE
 * data, Adler-32 of the uncompressed bytes) per packet, holding the
 * packet's normal pages in offset order.  Streams are independent, so any
 * zlib decoder reads any packet on its own.  A packet that would not
 * shrink goes raw instead (see method.h), so a compressed payload is
 * always shorter than its pages.
 *
 * The format names the data, not the library: libdeflate writes and reads
 * it about twice as fast as zlib (docs/methods.md has the figures), and
 * its one-shot buffer API fits a 512 KiB packet exactly.  The Adler-32
 * covers the input, so the sender copies the pages first: compressing
 * guest memory in place could checksum bytes other than those encoded.
 */
#include "compress/method.h"

#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>

#define ZLIB_DESC_MAX 64
#define ZLIB_BUF_SIZE ((size_t)RF_PACKET_MAX_PAGES * RF_PAGE_SIZE)

/* Both states start with the description so describe() takes either. */
typedef struct ZlibSend {
    char desc[ZLIB_DESC_MAX];
    struct libdeflate_compressor *comp;
    int level;
    uint8_t *copy; /* the gathered pages: ZLIB_BUF_SIZE */
    uint8_t *out;  /* the compressed payload: ZLIB_BUF_SIZE - 1 */
} ZlibSend;

typedef struct ZlibRecv {
    char desc[ZLIB_DESC_MAX];
    struct libdeflate_decompressor *dec;
    uint8_t *in;  /* the payload as read: ZLIB_BUF_SIZE - 1 */
    uint8_t *out; /* decoded pages that are not contiguous: ZLIB_BUF_SIZE */
} ZlibRecv;

/* A compressed payload is always shorter than its pages, since the sender
 * goes raw otherwise; raw packets are bounded by the channel. */
static size_t zlib_max_payload(uint32_t npages)
{
    return (size_t)npages * RF_PAGE_SIZE - 1;
}

static void zlib_send_cleanup(void *state)
{
    ZlibSend *s = state;
    if (!s) {
        return;
    }
    libdeflate_free_compressor(s->comp);
    free(s->copy);
    free(s->out);
    free(s);
}

static bool zlib_send_setup(void **state, int level, RfError **errp)
{
    *state = NULL;
    if (level < 0 || level > 9) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "multifd-zlib-level %d, allowed 0..9", level);
        return false;
    }
    ZlibSend *s = calloc(1, sizeof(*s));
    if (!s) {
        goto oom;
    }
    s->level = level;
    s->comp = libdeflate_alloc_compressor(level);
    s->copy = malloc(ZLIB_BUF_SIZE);
    s->out = malloc(ZLIB_BUF_SIZE);
    if (!s->comp || !s->copy || !s->out) {
        zlib_send_cleanup(s);
        goto oom;
    }
    snprintf(s->desc, sizeof(s->desc), "libdeflate %s level %d",
             LIBDEFLATE_VERSION_STRING, level);
    *state = s;
    return true;
oom:
    rf_error_set(errp, RF_ERR_GENERIC,
                 "zlib: out of memory for the compressor (level %d)", level);
    return false;
}

/*
 * Level 0 means stored blocks, which are always larger than the pages, so
 * it sends raw straight from guest memory without the pointless pass.
 * Otherwise: copy, compress the copy into at most len - 1 bytes, and fall
 * back to the copy (not the guest pages, which may have changed) when the
 * stream does not fit.
 */
static bool zlib_send_prepare(void *state, const RfPageList *pages,
                              RfSendPayload *out, RfError **errp)
{
    ZlibSend *s = state;
    if (pages->npages == 0 || pages->npages > RF_PACKET_MAX_PAGES) {
        rf_error_set(errp, RF_ERR_GENERIC,
                     "zlib: normal page count %u, allowed 1..%u",
                     pages->npages, RF_PACKET_MAX_PAGES);
        return false;
    }
    if (s->level == 0) {
        rf_payload_raw_pages(pages, out);
        return true;
    }
    size_t len = (size_t)pages->npages * RF_PAGE_SIZE;
    rf_pages_gather(pages, s->copy);
    size_t n = libdeflate_zlib_compress(s->comp, s->copy, len, s->out,
                                        zlib_max_payload(pages->npages));
    if (n == 0) {
        rf_payload_raw_buffer(s->copy, pages->npages, out);
    } else {
        rf_payload_buffer(s->out, (uint32_t)n, out);
    }
    return true;
}

static void zlib_recv_cleanup(void *state)
{
    ZlibRecv *r = state;
    if (!r) {
        return;
    }
    libdeflate_free_decompressor(r->dec);
    free(r->in);
    free(r->out);
    free(r);
}

static bool zlib_recv_setup(void **state, RfError **errp)
{
    *state = NULL;
    ZlibRecv *r = calloc(1, sizeof(*r));
    if (r) {
        r->dec = libdeflate_alloc_decompressor();
        r->in = malloc(zlib_max_payload(RF_PACKET_MAX_PAGES));
        r->out = malloc(ZLIB_BUF_SIZE);
    }
    if (!r || !r->dec || !r->in || !r->out) {
        zlib_recv_cleanup(r);
        rf_error_set(errp, RF_ERR_GENERIC,
                     "zlib: out of memory for the decompressor");
        return false;
    }
    snprintf(r->desc, sizeof(r->desc), "libdeflate %s",
             LIBDEFLATE_VERSION_STRING);
    *state = r;
    return true;
}

/*
 * Decodes straight into the pages when they are contiguous, else into a
 * buffer that is then scattered.  libdeflate never writes past the space
 * it is given (npages pages), verifies the Adler-32, and reports how much
 * input it used, so trailing bytes after the stream are refused too.
 */
static bool zlib_recv(void *state, const RfRecvPayload *in, RfError **errp)
{
    ZlibRecv *r = state;
    if (in->npages == 0 || in->npages > RF_PACKET_MAX_PAGES) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "zlib: normal page count %u, allowed 1..%u",
                     in->npages, RF_PACKET_MAX_PAGES);
        return false;
    }
    size_t want = (size_t)in->npages * RF_PAGE_SIZE;
    if (in->len == 0 || in->len > zlib_max_payload(in->npages)) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "zlib: payload size %u, allowed 1..%zu for %u pages",
                     in->len, zlib_max_payload(in->npages), in->npages);
        return false;
    }
    struct iovec iov = {.iov_base = r->in, .iov_len = in->len};
    if (!in->read(in->read_ctx, &iov, 1, errp)) {
        return false;
    }

    RfPageList pl = {.pages = in->pages, .npages = in->npages};
    bool direct = rf_pages_contiguous(&pl);
    uint8_t *dst = direct ? in->pages[0] : r->out;
    size_t used_in = 0, got = 0;
    enum libdeflate_result res = libdeflate_zlib_decompress_ex(
        r->dec, r->in, in->len, dst, want, &used_in, &got);
    switch (res) {
    case LIBDEFLATE_SUCCESS:
        break;
    case LIBDEFLATE_INSUFFICIENT_SPACE:
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "zlib: payload decodes to more than %zu bytes "
                     "(%u pages)", want, in->npages);
        return false;
    default:
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "zlib: payload of %u bytes is not a valid zlib stream "
                     "(corrupt data or Adler-32 mismatch)", in->len);
        return false;
    }
    if (got != want) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "zlib: payload decodes to %zu bytes, expected %zu "
                     "(%u pages)", got, want, in->npages);
        return false;
    }
    if (used_in != in->len) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "zlib: %zu bytes after the end of the zlib stream "
                     "(payload size %u)", in->len - used_in, in->len);
        return false;
    }
    if (!direct) {
        rf_pages_scatter(in->pages, in->npages, r->out);
    }
    return true;
}

static const char *zlib_describe(void *state)
{
    /* Both state types begin with desc[]. */
    if (!state) {
        return "libdeflate " LIBDEFLATE_VERSION_STRING;
    }
    return (const char *)state;
}

const RfMethodOps rf_method_zlib = {
    .name = "zlib",
    .id = RF_METHOD_ZLIB,
    .level_param = "multifd-zlib-level",
    .level_min = 0,
    .level_max = 9,
    .level_default = 1,
    .max_payload = zlib_max_payload,
    .send_setup = zlib_send_setup,
    .send_cleanup = zlib_send_cleanup,
    .send_prepare = zlib_send_prepare,
    .recv_setup = zlib_recv_setup,
    .recv_cleanup = zlib_recv_cleanup,
    .recv = zlib_recv,
    .describe = zlib_describe,
};
