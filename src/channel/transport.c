/*
 * ramflow - transport URIs, scheme dispatch and the generic calls.
 *
 * A URI is "SCHEME:ADDRESS"; the scheme picks one RfTransportOps table,
 * which receives ADDRESS.  Accepting is the same for every socket-based
 * transport, so it lives here: poll the listening socket in slices of
 * 100 ms so that a cancel flag is noticed quickly.
 */
#include "channel/transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "channel/socket.h"

#define RF_URI_FORMS "tcp:HOST:PORT, tcp:[IPV6]:PORT or unix:PATH"
#define RF_ACCEPT_SLICE_MS 100

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

bool rf_tcp_addr_parse(const char *addr, bool allow_zero,
                       char host[RF_HOST_MAX + 1], unsigned *port,
                       RfError **errp)
{
    const char *hs, *he, *ps;
    if (addr[0] == '[') {
        hs = addr + 1;
        he = strchr(hs, ']');
        if (!he || he[1] != ':') {
            rf_error_set(errp, RF_ERR_PARAM,
                         "address 'tcp:%s': IPv6 literal needs the form "
                         "[ADDR]:PORT; expected %s", addr, RF_URI_FORMS);
            return false;
        }
        ps = he + 2;
    } else {
        hs = addr;
        he = strrchr(addr, ':');
        if (!he || memchr(hs, ':', (size_t)(he - hs))) {
            rf_error_set(errp, RF_ERR_PARAM,
                         "address 'tcp:%s': %s; expected %s", addr,
                         he ? "an IPv6 address must be in brackets"
                            : "no port", RF_URI_FORMS);
            return false;
        }
        ps = he + 1;
    }
    size_t hlen = (size_t)(he - hs);
    if (hlen == 0 || hlen > RF_HOST_MAX) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "address 'tcp:%s': host is %s (1-%u bytes allowed); "
                     "expected %s", addr, hlen ? "too long" : "empty",
                     RF_HOST_MAX, RF_URI_FORMS);
        return false;
    }
    unsigned long p = 0;
    const char *q = ps;
    while (*q >= '0' && *q <= '9' && p <= 65535) {
        p = p * 10 + (unsigned long)(*q++ - '0');
    }
    if (q == ps || *q || p > 65535 || (p == 0 && !allow_zero)) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "address 'tcp:%s': port '%s' is not a number in "
                     "%s-65535; expected %s", addr, ps,
                     allow_zero ? "0" : "1", RF_URI_FORMS);
        return false;
    }
    memcpy(host, hs, hlen);
    host[hlen] = '\0';
    *port = (unsigned)p;
    return true;
}

bool rf_unix_addr_check(const char *addr, RfError **errp)
{
    size_t len = strlen(addr);
    if (len == 0 || len >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "address 'unix:%s': socket path is %s (1-%zu bytes "
                     "allowed); expected %s", addr,
                     len ? "too long" : "empty",
                     sizeof(((struct sockaddr_un *)0)->sun_path) - 1,
                     RF_URI_FORMS);
        return false;
    }
    return true;
}

RfConn *rf_conn_connect(const char *uri, unsigned timeout_ms,
                        RfError **errp)
{
    const char *addr;
    const RfTransportOps *t = transport_find(uri, &addr, errp);
    return t ? t->connect(addr, timeout_ms, errp) : NULL;
}

RfListener *rf_listen(const char *uri, RfError **errp)
{
    const char *addr;
    const RfTransportOps *t = transport_find(uri, &addr, errp);
    return t ? t->listen(addr, errp) : NULL;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Names an accepted peer for error messages: its address for TCP, the
 * listener's URI for Unix sockets (whose clients are unnamed). */
static void peer_name(const RfListener *l, const struct sockaddr_storage *ss,
                      char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)ss;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(out, outlen, "tcp:%s:%u", ip, ntohs(in->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(out, outlen, "tcp:[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(out, outlen, "%s", l->uri);
    }
}

RfConn *rf_listener_accept(RfListener *l, unsigned timeout_ms,
                           volatile int *cancel, RfError **errp)
{
    long long deadline = timeout_ms ? now_ms() + timeout_ms : 0;
    for (;;) {
        /* Set by another thread (or a signal handler): read atomically. */
        if (cancel && __atomic_load_n(cancel, __ATOMIC_RELAXED)) {
            rf_error_set(errp, RF_ERR_CANCELLED,
                         "cancelled while waiting for a connection on %s",
                         l->uri);
            return NULL;
        }
        int slice = RF_ACCEPT_SLICE_MS;
        if (deadline) {
            long long left = deadline - now_ms();
            if (left <= 0) {
                rf_error_set(errp, RF_ERR_TIMEOUT,
                             "no connection on %s within %u ms", l->uri,
                             timeout_ms);
                return NULL;
            }
            if (left < slice) {
                slice = (int)left;
            }
        }
        struct pollfd pfd = { .fd = l->fd, .events = POLLIN };
        int r = poll(&pfd, 1, slice);
        if (r < 0 && errno != EINTR) {
            rf_error_set(errp, RF_ERR_IO, "waiting for a connection on %s: "
                         "%s", l->uri, strerror(errno));
            return NULL;
        }
        if (r <= 0) {
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sslen,
                         SOCK_CLOEXEC);
        if (fd < 0) {
            /* The client may have gone between poll and accept. */
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                errno == ECONNABORTED || errno == EPROTO) {
                continue;
            }
            rf_error_set(errp, RF_ERR_IO, "accepting a connection on %s: "
                         "%s", l->uri, strerror(errno));
            return NULL;
        }
        char peer[320];
        peer_name(l, &ss, peer, sizeof(peer));
        return rf_sock_conn_new(fd, peer, errp);
    }
}

void rf_listener_close(RfListener *l)
{
    if (!l) {
        return;
    }
    if (l->fd >= 0) {
        close(l->fd);
    }
    if (l->unix_path[0]) {
        unlink(l->unix_path);
    }
    free(l);
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
