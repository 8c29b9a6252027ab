/*
 * ramflow - transport dispatch and the generic calls.
 *
 * A URI is "SCHEME:ADDRESS"; the scheme picks one RfTransportOps table,
 * which receives ADDRESS.  Every other call goes through the ops table of
 * the listener or connection it is given, so this file knows no socket:
 * a new transport (TLS) is one more table in `transports` below.
 */
#include "channel/transport.h"

#include <string.h>
#include <time.h>

#include "channel/uri.h"

static const RfTransportOps *const transports[] = {
    &rf_tcp_transport,
    &rf_unix_transport,
};

/* Finds the transport for uri's scheme and points *addr past "scheme:". */
static const RfTransportOps *transport_find(const char *uri,
                                            const char **addr,
                                            RfError **errp)
{
    const char *colon = uri ? strchr(uri, ':') : NULL;
    if (!colon) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "address '%s' has no scheme: expected %s",
                     uri ? uri : "(null)", RF_URI_FORMS);
        return NULL;
    }
    size_t len = (size_t)(colon - uri);
    for (size_t i = 0; i < sizeof(transports) / sizeof(transports[0]); i++) {
        if (strlen(transports[i]->scheme) == len &&
            memcmp(transports[i]->scheme, uri, len) == 0) {
            *addr = colon + 1;
            return transports[i];
        }
    }
    rf_error_set(errp, RF_ERR_PARAM,
                 "address '%s' has unknown scheme '%.*s': expected %s",
                 uri, (int)len, uri, RF_URI_FORMS);
    return NULL;
}

RfConn *rf_conn_connect(const char *uri, unsigned timeout_ms,
                        RfError **errp)
{
    return rf_conn_connect_cancel(uri, timeout_ms, NULL, errp);
}

RfConn *rf_conn_connect_cancel(const char *uri, unsigned timeout_ms,
                               atomic_int *cancel, RfError **errp)
{
    const char *addr;
    const RfTransportOps *t = transport_find(uri, &addr, errp);
    return t ? t->connect(addr, timeout_ms, cancel, errp) : NULL;
}

long long rf_conn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void rf_conn_frame_begin(RfConn *c)
{
    c->recv_deadline = c->timeout_ms ? rf_conn_now_ms() + c->timeout_ms
                                     : 0;
}

void rf_conn_frame_end(RfConn *c)
{
    c->recv_deadline = 0;
}

long long rf_conn_call_deadline(const RfConn *c, bool receiving)
{
    long long end = c->timeout_ms ? rf_conn_now_ms() + c->timeout_ms : 0;
    long long frame = receiving ? c->recv_deadline : 0;
    if (frame && (!end || frame < end)) {
        end = frame;
    }
    return end;
}

RfListener *rf_listen(const char *uri, RfError **errp)
{
    const char *addr;
    const RfTransportOps *t = transport_find(uri, &addr, errp);
    return t ? t->listen(addr, errp) : NULL;
}

RfConn *rf_listener_accept(RfListener *l, unsigned timeout_ms,
                           atomic_int *cancel, RfError **errp)
{
    return l->ops->accept(l, timeout_ms, cancel, errp);
}

void rf_listener_close(RfListener *l)
{
    if (l) {
        l->ops->close(l);
    }
}

bool rf_conn_sendv(RfConn *c, struct iovec *iov, int iovcnt, RfError **errp)
{
    return c->ops->sendv(c, iov, iovcnt, errp);
}

bool rf_conn_recvv(RfConn *c, struct iovec *iov, int iovcnt, RfError **errp)
{
    return c->ops->recvv(c, iov, iovcnt, errp);
}

bool rf_conn_send(RfConn *c, const void *buf, size_t len, RfError **errp)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    return c->ops->sendv(c, &iov, 1, errp);
}

bool rf_conn_recv(RfConn *c, void *buf, size_t len, RfError **errp)
{
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    return c->ops->recvv(c, &iov, 1, errp);
}

bool rf_conn_wait_readable(RfConn *c, int ms)
{
    return c->ops->wait_readable(c, ms);
}

bool rf_conn_peer_uri(RfConn *c, char *uri, size_t cap, RfError **errp)
{
    if (!c->ops->peer_uri) {
        rf_error_set(errp, RF_ERR_PARAM, "this connection's transport "
                     "cannot name its peer");
        return false;
    }
    return c->ops->peer_uri(c, uri, cap, errp);
}

void rf_conn_shutdown(RfConn *c)
{
    if (c) {
        c->ops->shutdown(c);
    }
}

void rf_conn_close(RfConn *c)
{
    if (c) {
        c->ops->close(c);
    }
}
