/* ramflow - single-thread calibration of a compression method. */
#include "tools/calibrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PKT_BYTES ((size_t)RF_PACKET_MAX_PAGES * RF_PAGE_SIZE)

typedef struct Packet {
    size_t off;      /* in the input and in the output */
    size_t aoff;     /* payload in the arena */
    uint32_t npages;
    uint32_t plen;
    bool raw;
} Packet;

typedef struct Calib {
    const uint8_t *data;
    uint8_t *arena, *out;
    size_t size;
    Packet *pk;
    size_t npk;
    clockid_t clock;
} Calib;

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void page_list(const uint8_t *buf, uint32_t npages, uint8_t **pages)
{
    for (uint32_t i = 0; i < npages; i++) {
        pages[i] = (uint8_t *)buf + (size_t)i * RF_PAGE_SIZE;
    }
}

/* Compresses every packet into the arena; *secs is the time spent in
 * send_prepare. */
static bool compress_all(Calib *b, const RfMethodOps *ops, void *st,
                         double *secs, RfCalibration *out, RfError **errp)
{
    size_t aoff = 0;
    *secs = 0;
    out->payload_bytes = out->raw_packets = 0;
    for (size_t i = 0; i < b->npk; i++) {
        Packet *p = &b->pk[i];
        uint8_t *pages[RF_PACKET_MAX_PAGES];
        page_list(b->data + p->off, p->npages, pages);
        RfPageList pl = {.pages = pages, .npages = p->npages};
        RfSendPayload sp;
        double t0 = clock_s(b->clock);
        bool ok = ops->send_prepare(st, &pl, &sp, errp);
        *secs += clock_s(b->clock) - t0;
        if (!ok) {
            return false;
        }
        p->aoff = aoff;
        p->plen = sp.len;
        p->raw = sp.raw;
        for (int k = 0; k < sp.iovcnt; k++) {
            memcpy(b->arena + aoff, sp.iov[k].iov_base, sp.iov[k].iov_len);
            aoff += sp.iov[k].iov_len;
        }
        out->payload_bytes += sp.len;
        out->raw_packets += sp.raw;
    }
    return true;
}

/* Decodes every packet from the arena, as a receiving channel would (raw
 * packets are a plain copy); *secs is the time in recv or the copy. */
static bool decompress_all(Calib *b, const RfMethodOps *ops, void *st,
                           double *secs, RfError **errp)
{
    *secs = 0;
    for (size_t i = 0; i < b->npk; i++) {
        Packet *p = &b->pk[i];
        uint8_t *pages[RF_PACKET_MAX_PAGES];
        page_list(b->out + p->off, p->npages, pages);
        RfBufReader r = {.p = b->arena + p->aoff, .left = p->plen};
        RfRecvPayload rp = {.len = p->plen, .pages = pages,
                            .npages = p->npages, .read = rf_buf_read,
                            .read_ctx = &r};
        struct iovec iov = {.iov_base = b->out + p->off,
                            .iov_len = p->plen};
        double t0 = clock_s(b->clock);
        bool ok = p->raw ? rf_buf_read(&r, &iov, 1, errp)
                         : ops->recv(st, &rp, errp);
        *secs += clock_s(b->clock) - t0;
        if (!ok) {
            return false;
        }
    }
    return true;
}

static bool run(Calib *b, const RfMethodOps *ops, int level,
                unsigned repeat, RfCalibration *out, RfError **errp)
{
    void *st = NULL;
    if (!ops->send_setup(&st, level, errp)) {
        return false;
    }
    if (ops->describe) {
        snprintf(out->detail, sizeof(out->detail), "%s", ops->describe(st));
    }
    double tc = 0, td = 0, t;
    bool ok = true;
    for (unsigned r = 0; r < repeat && ok; r++) {
        ok = compress_all(b, ops, st, &t, out, errp);
        tc = r == 0 || t < tc ? t : tc;
    }
    ops->send_cleanup(st);
    st = NULL;
    if (!ok || !ops->recv_setup(&st, errp)) {
        return false;
    }
    memset(b->out, 0, b->size);
    for (unsigned r = 0; r < repeat && ok; r++) {
        ok = decompress_all(b, ops, st, &t, errp);
        td = r == 0 || t < td ? t : td;
    }
    ops->recv_cleanup(st);
    if (!ok) {
        return false;
    }
    if (memcmp(b->data, b->out, b->size) != 0) {
        rf_error_set(errp, RF_ERR_VERIFY,
                     "%s level %d: decompressed data differs", ops->name,
                     level);
        return false;
    }
    out->input_bytes = b->size;
    out->packets = b->npk;
    out->ratio = out->payload_bytes
                     ? (double)b->size / (double)out->payload_bytes : 1;
    /* A method that does no work (none) gets a huge but finite speed. */
    out->compress_mbps = (double)b->size / (tc > 1e-9 ? tc : 1e-9) / 1e6;
    out->decompress_mbps = (double)b->size / (td > 1e-9 ? td : 1e-9) / 1e6;
    return true;
}

bool rf_method_calibrate(const RfMethodOps *ops, int level,
                         const uint8_t *data, size_t size, unsigned repeat,
                         clockid_t clock, RfCalibration *out,
                         RfError **errp)
{
    memset(out, 0, sizeof(*out));
    size = size / RF_PAGE_SIZE * RF_PAGE_SIZE;
    if (!size) {
        rf_error_set(errp, RF_ERR_PARAM, "calibration needs at least one "
                     "%u-byte page", RF_PAGE_SIZE);
        return false;
    }
    Calib b = {.data = data, .size = size, .clock = clock};
    b.npk = (size + PKT_BYTES - 1) / PKT_BYTES;
    b.arena = malloc(size); /* a payload never exceeds its packet */
    b.out = aligned_alloc(RF_PAGE_SIZE, size);
    b.pk = calloc(b.npk, sizeof(*b.pk));
    bool ok = b.arena && b.out && b.pk;
    if (!ok) {
        rf_error_set(errp, RF_ERR_GENERIC, "calibration: out of memory");
    } else {
        for (size_t i = 0; i < b.npk; i++) {
            b.pk[i].off = i * PKT_BYTES;
            size_t n = size - b.pk[i].off;
            b.pk[i].npages =
                (uint32_t)((n < PKT_BYTES ? n : PKT_BYTES) / RF_PAGE_SIZE);
        }
        ok = run(&b, ops, level, repeat ? repeat : 1, out, errp);
    }
    free(b.arena);
    free(b.out);
    free(b.pk);
    return ok;
}
