/*
 * ramflow - the `qatzip` compression method (docs/qatzip.md).
 *
 * Deflate in QATzip's GZIP_EXT format, compressed on Intel QuickAssist
 * hardware when a QAT session can be set up, and by ISA-L in software
 * otherwise; the payload is the same either way (qz_format.h), so a sender
 * and a receiver need not use the same back end.
 *
 * Non-streaming, as upstream QEMU: the normal pages of a packet are copied
 * into the channel's buffer (gzip members carry a CRC-32 of their input, so
 * compressing guest memory that the guest writes meanwhile could send a
 * CRC the receiver rejects), compressed by one call into one buffer, and
 * the receiver decompresses the whole payload by one call, straight into
 * the pages when they are contiguous.  Beyond upstream, a packet that does
 * not shrink is sent raw (the gathered copy), so a compressed payload is
 * always shorter than its pages and the receive buffer is one packet.
 */
#include "compress/method.h"
#include "compress/qatzip/qatzip.h"
#include "compress/qatzip/qz_format.h"

#include <stdlib.h>

#define QATZIP_PACKET ((size_t)RF_PACKET_MAX_PAGES * RF_PAGE_SIZE)

/* One state type for both directions so describe() takes either. */
typedef struct QatzipState {
    RfQzCodec *codec;
    uint8_t *in;    /* send: gathered pages; recv: payload as read */
    uint8_t *out;   /* send: compressed payload; recv: scattered pages */
    size_t out_cap;
} QatzipState;

/* A compressed payload is always shorter than its pages, since the sender
 * goes raw otherwise; raw packets are bounded by the channel. */
static size_t qatzip_max_payload(uint32_t npages)
{
    return (size_t)npages * RF_PAGE_SIZE - 1;
}

static void qatzip_cleanup(void *state)
{
    QatzipState *s = state;
    if (!s) {
        return;
    }
    if (s->codec) {
        rf_qz_codec_free_buf(s->codec, s->in);
        rf_qz_codec_free_buf(s->codec, s->out);
        rf_qz_codec_free(s->codec);
    }
    free(s);
}

/* Creates the codec and its two buffers for one channel. */
static bool qatzip_setup(void **state, int level, RfQzDirection dir,
                         RfError **errp)
{
    *state = NULL;
    QatzipState *s = calloc(1, sizeof(*s));
    if (!s) {
        rf_error_set(errp, RF_ERR_GENERIC,
                     "qatzip: out of memory for the channel state");
        return false;
    }
    s->codec = rf_qz_codec_new(level, dir, errp);
    if (!s->codec) {
        free(s);
        return false;
    }
    /* Software stops at len - 1 bytes; hardware gets room for its worst
     * case (QATzip reports an overflow only after the work is done). */
    s->out_cap = QATZIP_PACKET;
    if (dir == RF_QZ_DIR_COMPRESS && rf_qz_codec_is_hardware(s->codec)) {
        s->out_cap = rf_qz_compress_bound(QATZIP_PACKET);
    }
    s->in = rf_qz_codec_alloc(s->codec, QATZIP_PACKET);
    s->out = rf_qz_codec_alloc(s->codec, s->out_cap);
    if (!s->in || !s->out) {
        size_t cap = s->out_cap;
        qatzip_cleanup(s);
        rf_error_set(errp, RF_ERR_GENERIC,
                     "qatzip: out of memory for two %zu-byte buffers", cap);
        return false;
    }
    *state = s;
    return true;
}

static bool qatzip_send_setup(void **state, int level, RfError **errp)
{
    return qatzip_setup(state, level, RF_QZ_DIR_COMPRESS, errp);
}

static bool qatzip_send_prepare(void *state, const RfPageList *pages,
                                RfSendPayload *out, RfError **errp)
{
    QatzipState *s = state;
    if (pages->npages == 0 || pages->npages > RF_PACKET_MAX_PAGES) {
        rf_error_set(errp, RF_ERR_GENERIC,
                     "qatzip: normal page count %u, allowed 1..%u",
                     pages->npages, RF_PACKET_MAX_PAGES);
        return false;
    }
    size_t len = (size_t)pages->npages * RF_PAGE_SIZE;
    rf_pages_gather(pages, s->in);
    size_t cap = rf_qz_codec_is_hardware(s->codec) ? s->out_cap : len - 1;
    size_t n = 0;
    RfQzStatus st = rf_qz_compress(s->codec, s->in, len, s->out, cap, &n,
                                   errp);
    if (st == RF_QZ_FAIL) {
        return false;
    }
    if (st == RF_QZ_NOSPACE || n >= len) {
        rf_payload_raw_buffer(s->in, pages->npages, out);
    } else {
        rf_payload_buffer(s->out, (uint32_t)n, out);
    }
    return true;
}

static bool qatzip_recv_setup(void **state, RfError **errp)
{
    /* The level only matters to a compressor. */
    return qatzip_setup(state, RF_QATZIP_LEVEL_DEFAULT,
                        RF_QZ_DIR_DECOMPRESS, errp);
}

/*
 * Upstream's four receiver checks, in its order: payload larger than the
 * buffer, flags that are not qatzip's (here: every member header, since the
 * channel has already matched the method byte), a decompression error, a
 * decompressed size other than npages * 4096.  The headers are walked
 * before anything is written, so a payload whose declared sizes do not add
 * up never touches the pages.
 */
static bool qatzip_recv(void *state, const RfRecvPayload *in,
                        RfError **errp)
{
    QatzipState *s = state;
    if (in->npages == 0 || in->npages > RF_PACKET_MAX_PAGES) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "qatzip: normal page count %u, allowed 1..%u",
                     in->npages, RF_PACKET_MAX_PAGES);
        return false;
    }
    size_t expect = (size_t)in->npages * RF_PAGE_SIZE;
    if (in->len > qatzip_max_payload(in->npages)) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "qatzip: payload_size %u is larger than the %zu bytes "
                     "allowed for %u normal pages", in->len,
                     qatzip_max_payload(in->npages), in->npages);
        return false;
    }
    struct iovec iov = {.iov_base = s->in, .iov_len = in->len};
    if (!in->read(in->read_ctx, &iov, 1, errp)) {
        return false;
    }
    uint64_t total = 0;
    if (!rf_qz_walk(s->in, in->len, &total, NULL, errp)) {
        return false;
    }
    if (total != expect) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "qatzip: payload's members hold %llu bytes, expected "
                     "%u pages x %u = %zu", (unsigned long long)total,
                     in->npages, RF_PAGE_SIZE, expect);
        return false;
    }
    RfPageList pl = {.pages = in->pages, .npages = in->npages};
    bool direct = rf_pages_contiguous(&pl);
    uint8_t *dst = direct ? in->pages[0] : s->out;
    if (!rf_qz_decompress(s->codec, s->in, in->len, dst, expect, errp)) {
        return false;
    }
    if (!direct) {
        rf_pages_scatter(in->pages, in->npages, s->out);
    }
    return true;
}

static const char *qatzip_describe(void *state)
{
    QatzipState *s = state;
    return s && s->codec ? rf_qz_codec_describe(s->codec) : "qatzip";
}

const RfMethodOps rf_method_qatzip = {
    .name = "qatzip",
    .id = RF_METHOD_QATZIP,
    .level_param = "multifd-qatzip-level",
    .level_min = RF_QATZIP_LEVEL_MIN,
    .level_max = RF_QATZIP_LEVEL_MAX,
    .level_default = RF_QATZIP_LEVEL_DEFAULT,
    .max_payload = qatzip_max_payload,
    .send_setup = qatzip_send_setup,
    .send_cleanup = qatzip_cleanup,
    .send_prepare = qatzip_send_prepare,
    .recv_setup = qatzip_recv_setup,
    .recv_cleanup = qatzip_cleanup,
    .recv = qatzip_recv,
    .describe = qatzip_describe,
};
