/*
 * ramflow - the `zstd` compression method (libzstd).
 *
 * Payload format: one complete zstd frame (RFC 8878) per packet, holding
 * the packet's normal pages in offset order, with Frame_Content_Size set
 * and no content checksum.  Frames are independent, so any zstd decoder
 * reads any packet on its own.  A packet that would not shrink goes raw
 * instead (see method.h), so a frame is always shorter than its pages.
 *
 * Without a checksum the frame only encodes the bytes zstd saw, so the
 * compressor may read guest memory while the guest writes it: a torn page
 * decodes to some mix of old and new bytes, harmless since the page is
 * dirty again and will be resent.  Contiguous pages are therefore
 * compressed in place; scattered ones are gathered into one buffer first.
 */
#include "compress/method.h"

#include <stdio.h>
#include <stdlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#define ZSTD_DESC_MAX 64
#define ZSTD_BUF_SIZE ((size_t)RF_PACKET_MAX_PAGES * RF_PAGE_SIZE)

/* Both states start with the description so describe() takes either. */
typedef struct ZstdSend {
    char desc[ZSTD_DESC_MAX];
    ZSTD_CCtx *cctx;
    uint8_t *copy; /* gathered pages: ZSTD_BUF_SIZE */
    uint8_t *out;  /* the frame: ZSTD_BUF_SIZE - 1 */
} ZstdSend;

typedef struct ZstdRecv {
    char desc[ZSTD_DESC_MAX];
    ZSTD_DCtx *dctx;
    uint8_t *in;  /* the payload as read: ZSTD_BUF_SIZE - 1 */
    uint8_t *out; /* decoded pages that are not contiguous: ZSTD_BUF_SIZE */
} ZstdRecv;

/* A frame is always shorter than its pages, since the sender goes raw
 * otherwise; raw packets are bounded by the channel. */
static size_t zstd_max_payload(uint32_t npages)
{
    return (size_t)npages * RF_PAGE_SIZE - 1;
}

static void zstd_send_cleanup(void *state)
{
    ZstdSend *s = state;
    if (!s) {
        return;
    }
    ZSTD_freeCCtx(s->cctx);
    free(s->copy);
    free(s->out);
    free(s);
}

static bool zstd_send_setup(void **state, int level, RfError **errp)
{
    *state = NULL;
    if (level < 0 || level > 20) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "multifd-zstd-level %d, allowed 0..20", level);
        return false;
    }
    ZstdSend *s = calloc(1, sizeof(*s));
    if (!s) {
        goto oom;
    }
    s->cctx = ZSTD_createCCtx();
    s->copy = malloc(ZSTD_BUF_SIZE);
    s->out = malloc(ZSTD_BUF_SIZE);
    if (!s->cctx || !s->copy || !s->out) {
        zstd_send_cleanup(s);
        goto oom;
    }
    /* Level 0 selects zstd's default level, as in ZSTD_compressCCtx. */
    size_t rc = ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_compressionLevel,
                                       level);
    if (!ZSTD_isError(rc)) {
        rc = ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_checksumFlag, 0);
    }
    if (!ZSTD_isError(rc)) {
        rc = ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_contentSizeFlag, 1);
    }
    if (ZSTD_isError(rc)) {
        zstd_send_cleanup(s);
        rf_error_set(errp, RF_ERR_GENERIC, "zstd: level %d refused: %s",
                     level, ZSTD_getErrorName(rc));
        return false;
    }
    snprintf(s->desc, sizeof(s->desc), "zstd %s level %d",
             ZSTD_versionString(), level);
    *state = s;
    return true;
oom:
    rf_error_set(errp, RF_ERR_GENERIC,
                 "zstd: out of memory for the compressor (level %d)", level);
    return false;
}

/*
 * Contiguous pages are compressed in place (no copy).  Scattered pages
 * are gathered into one buffer first: measured here, that runs as fast as
 * streaming them page by page (zstd then copies them into its window
 * itself), and keeps one code path.  A frame that does not fit in len - 1
 * bytes is dropped and the packet goes raw from the same bytes.
 */
static bool zstd_send_prepare(void *state, const RfPageList *pages,
                              RfSendPayload *out, RfError **errp)
{
    ZstdSend *s = state;
    if (pages->npages == 0 || pages->npages > RF_PACKET_MAX_PAGES) {
        rf_error_set(errp, RF_ERR_GENERIC,
                     "zstd: normal page count %u, allowed 1..%u",
                     pages->npages, RF_PACKET_MAX_PAGES);
        return false;
    }
    size_t len = (size_t)pages->npages * RF_PAGE_SIZE;
    bool direct = rf_pages_contiguous(pages);
    const uint8_t *src = pages->pages[0];
    if (!direct) {
        rf_pages_gather(pages, s->copy);
        src = s->copy;
    }
    size_t n = ZSTD_compress2(s->cctx, s->out, zstd_max_payload(pages->npages),
                              src, len);
    if (ZSTD_isError(n)) {
        if (ZSTD_getErrorCode(n) != ZSTD_error_dstSize_tooSmall) {
            rf_error_set(errp, RF_ERR_GENERIC,
                         "zstd: compressing %u pages failed: %s",
                         pages->npages, ZSTD_getErrorName(n));
            return false;
        }
        /* Does not shrink: send the pages as they are. */
        if (direct) {
            rf_payload_raw_pages(pages, out);
        } else {
            rf_payload_raw_buffer(s->copy, pages->npages, out);
        }
        return true;
    }
    rf_payload_buffer(s->out, (uint32_t)n, out);
    return true;
}

static void zstd_recv_cleanup(void *state)
{
    ZstdRecv *r = state;
    if (!r) {
        return;
    }
    ZSTD_freeDCtx(r->dctx);
    free(r->in);
    free(r->out);
    free(r);
}

static bool zstd_recv_setup(void **state, RfError **errp)
{
    *state = NULL;
    ZstdRecv *r = calloc(1, sizeof(*r));
    if (r) {
        r->dctx = ZSTD_createDCtx();
        r->in = malloc(zstd_max_payload(RF_PACKET_MAX_PAGES));
        r->out = malloc(ZSTD_BUF_SIZE);
    }
    if (!r || !r->dctx || !r->in || !r->out) {
        zstd_recv_cleanup(r);
        rf_error_set(errp, RF_ERR_GENERIC,
                     "zstd: out of memory for the decompressor");
        return false;
    }
    snprintf(r->desc, sizeof(r->desc), "zstd %s", ZSTD_versionString());
    *state = r;
    return true;
}

/*
 * The payload must be exactly one frame whose content size, if stated, is
 * npages pages.  It is decoded straight into the pages when they are
 * contiguous, else into a buffer that is then scattered.  zstd never
 * writes past the capacity it is given (npages pages) and reports a frame
 * that needs more as an error, so nothing outside the pages is touched.
 */
static bool zstd_recv(void *state, const RfRecvPayload *in, RfError **errp)
{
    ZstdRecv *r = state;
    if (in->npages == 0 || in->npages > RF_PACKET_MAX_PAGES) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "zstd: normal page count %u, allowed 1..%u",
                     in->npages, RF_PACKET_MAX_PAGES);
        return false;
    }
    size_t want = (size_t)in->npages * RF_PAGE_SIZE;
    if (in->len == 0 || in->len > zstd_max_payload(in->npages)) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "zstd: payload size %u, allowed 1..%zu for %u pages",
                     in->len, zstd_max_payload(in->npages), in->npages);
        return false;
    }
    struct iovec iov = {.iov_base = r->in, .iov_len = in->len};
    if (!in->read(in->read_ctx, &iov, 1, errp)) {
        return false;
    }

    size_t flen = ZSTD_findFrameCompressedSize(r->in, in->len);
    if (ZSTD_isError(flen)) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "zstd: payload of %u bytes is not a zstd frame: %s",
                     in->len, ZSTD_getErrorName(flen));
        return false;
    }
    if (flen != in->len) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "zstd: %zu bytes after the end of the frame "
                     "(payload size %u)", in->len - flen, in->len);
        return false;
    }
    unsigned long long fcs = ZSTD_getFrameContentSize(r->in, in->len);
    if (fcs == ZSTD_CONTENTSIZE_ERROR
        || (fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs != want)) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "zstd: frame content size %llu, expected %zu "
                     "(%u pages)", fcs, want, in->npages);
        return false;
    }

    RfPageList pl = {.pages = in->pages, .npages = in->npages};
    bool direct = rf_pages_contiguous(&pl);
    uint8_t *dst = direct ? in->pages[0] : r->out;
    size_t got = ZSTD_decompressDCtx(r->dctx, dst, want, r->in, in->len);
    if (ZSTD_isError(got)) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "zstd: frame does not decode into %zu bytes (%u "
                     "pages): %s", want, in->npages, ZSTD_getErrorName(got));
        return false;
    }
    if (got != want) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "zstd: frame decodes to %zu bytes, expected %zu "
                     "(%u pages)", got, want, in->npages);
        return false;
    }
    if (!direct) {
        rf_pages_scatter(in->pages, in->npages, r->out);
    }
    return true;
}

static const char *zstd_describe(void *state)
{
    /* Both state types begin with desc[]. */
    if (!state) {
        return "zstd " ZSTD_VERSION_STRING;
    }
    return (const char *)state;
}

const RfMethodOps rf_method_zstd = {
    .name = "zstd",
    .id = RF_METHOD_ZSTD,
    .level_param = "multifd-zstd-level",
    .level_min = 0,
    .level_max = 20,
    .level_default = 1,
    .max_payload = zstd_max_payload,
    .send_setup = zstd_send_setup,
    .send_cleanup = zstd_send_cleanup,
    .send_prepare = zstd_send_prepare,
    .recv_setup = zstd_recv_setup,
    .recv_cleanup = zstd_recv_cleanup,
    .recv = zstd_recv,
    .describe = zstd_describe,
};
