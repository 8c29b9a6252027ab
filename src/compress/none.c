/*
 * ramflow - the `none` compression method.
 *
 * Payload format: the packet's normal pages, uncompressed, in the order of
 * their offsets (npages * RF_PAGE_SIZE bytes).  Every packet is raw: the
 * sender hands the channel an iovec straight over guest memory, so the
 * pages go from guest memory to the socket with one vectored write and no
 * copy.  The receiving channel reads raw packets into the pages itself;
 * recv below does the same for a caller that passes one anyway.
 */
#include "compress/method.h"

/* Raw pages are exactly their size; nothing may be smaller or larger. */
static size_t none_max_payload(uint32_t npages)
{
    return (size_t)npages * RF_PAGE_SIZE;
}

/* No state: the method keeps nothing between packets. */
static bool none_send_setup(void **state, int level, RfError **errp)
{
    (void)level;
    (void)errp;
    *state = NULL;
    return true;
}

static void none_cleanup(void *state)
{
    (void)state;
}

static bool none_send_prepare(void *state, const RfPageList *pages,
                              RfSendPayload *out, RfError **errp)
{
    (void)state;
    (void)errp;
    rf_payload_raw_pages(pages, out);
    return true;
}

static bool none_recv_setup(void **state, RfError **errp)
{
    (void)errp;
    *state = NULL;
    return true;
}

/* Reads the payload straight into the pages, one iovec per run of
 * consecutive pages (so a contiguous packet is one read). */
static bool none_recv(void *state, const RfRecvPayload *in, RfError **errp)
{
    (void)state;
    size_t want = (size_t)in->npages * RF_PAGE_SIZE;
    if (in->npages == 0 || in->npages > RF_PACKET_MAX_PAGES) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "none: normal page count %u, allowed 1..%u",
                     in->npages, RF_PACKET_MAX_PAGES);
        return false;
    }
    if (in->len != want) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "none: payload size %u, expected %zu (%u pages)",
                     in->len, want, in->npages);
        return false;
    }
    struct iovec iov[RF_PACKET_MAX_PAGES];
    int n = -1;
    for (uint32_t i = 0; i < in->npages; i++) {
        if (n >= 0 && (uint8_t *)iov[n].iov_base + iov[n].iov_len
                          == in->pages[i]) {
            iov[n].iov_len += RF_PAGE_SIZE;
        } else {
            n++;
            iov[n].iov_base = in->pages[i];
            iov[n].iov_len = RF_PAGE_SIZE;
        }
    }
    return in->read(in->read_ctx, iov, n + 1, errp);
}

static const char *none_describe(void *state)
{
    (void)state;
    return "uncompressed pages";
}

const RfMethodOps rf_method_none = {
    .name = "none",
    .id = RF_METHOD_NONE,
    .level_param = NULL,
    .level_min = 0,
    .level_max = 0,
    .level_default = 0,
    .max_payload = none_max_payload,
    .send_setup = none_send_setup,
    .send_cleanup = none_cleanup,
    .send_prepare = none_send_prepare,
    .recv_setup = none_recv_setup,
    .recv_cleanup = none_cleanup,
    .recv = none_recv,
    .describe = none_describe,
};
