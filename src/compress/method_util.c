/* ramflow - helpers shared by the compression methods. */
#include "compress/method.h"

#include <string.h>

#include "ramflow/error.h"

bool rf_pages_contiguous(const RfPageList *pl)
{
    for (uint32_t i = 1; i < pl->npages; i++) {
        if (pl->pages[i] != pl->pages[i - 1] + RF_PAGE_SIZE) {
            return false;
        }
    }
    return true;
}

void rf_pages_gather(const RfPageList *pl, uint8_t *dst)
{
    for (uint32_t i = 0; i < pl->npages; i++) {
        memcpy(dst + (size_t)i * RF_PAGE_SIZE, pl->pages[i], RF_PAGE_SIZE);
    }
}

void rf_pages_scatter(uint8_t *const *pages, uint32_t npages,
                      const uint8_t *src)
{
    for (uint32_t i = 0; i < npages; i++) {
        memcpy(pages[i], src + (size_t)i * RF_PAGE_SIZE, RF_PAGE_SIZE);
    }
}

void rf_payload_raw_pages(const RfPageList *pl, RfSendPayload *out)
{
    /* Consecutive pages collapse into one iovec: fewer segments for
     * writev, same bytes. */
    int n = -1;
    for (uint32_t i = 0; i < pl->npages; i++) {
        if (n >= 0 && (uint8_t *)out->iov[n].iov_base + out->iov[n].iov_len
                          == pl->pages[i]) {
            out->iov[n].iov_len += RF_PAGE_SIZE;
        } else {
            n++;
            out->iov[n].iov_base = pl->pages[i];
            out->iov[n].iov_len = RF_PAGE_SIZE;
        }
    }
    out->iovcnt = n + 1;
    out->len = pl->npages * RF_PAGE_SIZE;
    out->raw = true;
    out->borrowed = true;
}

void rf_payload_raw_buffer(const uint8_t *buf, uint32_t npages,
                           RfSendPayload *out)
{
    rf_payload_buffer(buf, npages * RF_PAGE_SIZE, out);
    out->raw = true;
}

void rf_payload_buffer(const uint8_t *buf, uint32_t len, RfSendPayload *out)
{
    out->iov[0].iov_base = (void *)buf;
    out->iov[0].iov_len = len;
    out->iovcnt = 1;
    out->len = len;
    out->raw = false;
    out->borrowed = false;
}

bool rf_buf_read(void *reader, const struct iovec *iov, int iovcnt,
                 RfError **errp)
{
    RfBufReader *r = reader;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > r->left) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "payload overrun");
            return false;
        }
        memcpy(iov[i].iov_base, r->p, iov[i].iov_len);
        r->p += iov[i].iov_len;
        r->left -= iov[i].iov_len;
    }
    return true;
}
