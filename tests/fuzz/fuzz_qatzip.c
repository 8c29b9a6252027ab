/*
 * libFuzzer harness for the qatzip receiver (src/compress/qatzip).
 *
 * Input: byte 0 picks the normal page count (1..128), the rest is the
 * payload handed to the method's recv through a reader, exactly as a
 * channel would.  recv must either fail cleanly or produce exactly the
 * pages; it must never read or write out of bounds (ASan) nor crash.
 * Every eighth input is also compressed and decoded again, which must
 * round-trip exactly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compress/method.h"
#include "compress/qatzip/qatzip.h"

extern const RfMethodOps rf_method_qatzip;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PKT ((size_t)RF_PACKET_MAX_PAGES * RF_PAGE_SIZE)

typedef struct Reader {
    const uint8_t *p;
    size_t left;
} Reader;

static bool reader(void *ctx, const struct iovec *iov, int iovcnt,
                   RfError **errp)
{
    Reader *r = ctx;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > r->left) {
            rf_error_set(errp, RF_ERR_IO, "short");
            return false;
        }
        memcpy(iov[i].iov_base, r->p, iov[i].iov_len);
        r->p += iov[i].iov_len;
        r->left -= iov[i].iov_len;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static void *rstate, *sstate;
    static uint8_t *pages_mem, *copy;
    if (!rstate) {
        setenv(RF_QATZIP_LIB_ENV, "", 1); /* software only */
        if (!rf_method_qatzip.recv_setup(&rstate, NULL)
            || !rf_method_qatzip.send_setup(&sstate, 1, NULL)) {
            abort();
        }
        pages_mem = malloc(PKT);
        copy = malloc(PKT);
    }
    if (size < 1) {
        return 0;
    }
    uint32_t npages = (uint32_t)(data[0] % RF_PACKET_MAX_PAGES) + 1;
    uint8_t *pages[RF_PACKET_MAX_PAGES];
    for (uint32_t i = 0; i < npages; i++) {
        /* reversed, so the scattered path runs */
        pages[i] = pages_mem + (size_t)(npages - 1 - i) * RF_PAGE_SIZE;
    }
    size_t len = size - 1;
    if (len > rf_method_qatzip.max_payload(npages)) {
        len = rf_method_qatzip.max_payload(npages);
    }
    Reader r = {.p = data + 1, .left = len};
    RfRecvPayload in = {.len = (uint32_t)len, .pages = pages,
                        .npages = npages, .read = reader, .read_ctx = &r};
    RfError *err = NULL;
    if (!rf_method_qatzip.recv(rstate, &in, &err)) {
        rf_error_free(err);
        err = NULL;
    }

    if (data[0] % 8 == 0 && size > 1) {
        /* round trip: the input bytes as page contents */
        size_t n = (size - 1) < PKT ? size - 1 : PKT;
        uint32_t np = (uint32_t)((n + RF_PAGE_SIZE - 1) / RF_PAGE_SIZE);
        memset(copy, 0, (size_t)np * RF_PAGE_SIZE);
        memcpy(copy, data + 1, n);
        uint8_t *sp[RF_PACKET_MAX_PAGES];
        for (uint32_t i = 0; i < np; i++) {
            sp[i] = copy + (size_t)i * RF_PAGE_SIZE;
            pages[i] = pages_mem + (size_t)(np - 1 - i) * RF_PAGE_SIZE;
        }
        RfPageList pl = {.pages = sp, .npages = np};
        RfSendPayload out;
        if (!rf_method_qatzip.send_prepare(sstate, &pl, &out, &err)) {
            abort();
        }
        if (!out.raw) {
            Reader r2 = {.p = out.iov[0].iov_base, .left = out.len};
            RfRecvPayload in2 = {.len = out.len, .pages = pages,
                                 .npages = np, .read = reader,
                                 .read_ctx = &r2};
            if (!rf_method_qatzip.recv(rstate, &in2, &err)) {
                abort();
            }
            for (uint32_t i = 0; i < np; i++) {
                if (memcmp(pages[i], sp[i], RF_PAGE_SIZE) != 0) {
                    abort();
                }
            }
        }
    }
    return 0;
}
