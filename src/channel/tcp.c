/*
 * ramflow - the tcp transport: "tcp:HOST:PORT" and "tcp:[V6]:PORT".
 * Resolves the host, then hands the socket to socket.c's connection or
 * listener.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "channel/socket.h"
#include "channel/uri.h"

#define RF_LISTEN_BACKLOG 512

/* Connects to the first address of host:port that answers; connect()
 * itself is non-blocking so that timeout_ms bounds it.  The connection's
 * stall limit starts as timeout_ms too. */
static RfConn *tcp_connect(const char *addr, unsigned timeout_ms,
                           atomic_int *cancel, RfError **errp)
{
    char host[RF_HOST_MAX + 1], uri[RF_URI_CAP], port_s[8];
    unsigned port;
    if (!rf_tcp_addr_parse(addr, false, host, &port, errp)) {
        return NULL;
    }
    snprintf(uri, sizeof(uri), "tcp:%s", addr);
    snprintf(port_s, sizeof(port_s), "%u", port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    struct addrinfo *res;
    int gerr = getaddrinfo(host, port_s, &hints, &res);
    if (gerr) {
        rf_error_set(errp, RF_ERR_IO, "cannot resolve host '%s' of %s: %s",
                     host, uri, gai_strerror(gerr));
        return NULL;
    }
    long long deadline = timeout_ms ? rf_sock_now_ms() + timeout_ms : 0;
    int err = EHOSTUNREACH, fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family,
                    ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        err = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : errno;
        if (err == EINPROGRESS) {
            err = rf_sock_connect_wait(fd, deadline, cancel);
        }
        if (err) {
            close(fd);
            fd = -1;
            if (err == ETIMEDOUT || err == ECANCELED) {
                break;
            }
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        rf_sock_connect_error(errp, uri, err, timeout_ms);
        return NULL;
    }
    RfConn *c = rf_sock_conn_new(fd, uri, errp);
    if (!c) {
        close(fd);
        return NULL;
    }
    c->timeout_ms = timeout_ms;
    c->cancel = cancel;
    return c;
}

/* Binds the first address host:port resolves to.  With port 0 the kernel
 * picks one and the listener's uri carries it, so the caller can tell its
 * peer. */
static RfListener *tcp_listen(const char *addr, RfError **errp)
{
    char host[RF_HOST_MAX + 1], port_s[8], local[RF_URI_CAP];
    unsigned port;
    /* "tcp::PORT" (no host) listens on loopback, never on every address
     * (QEMU's meaning): reaching other hosts must be asked for by name. */
    if (addr[0] == ':' && !strchr(addr + 1, ':')) {
        snprintf(local, sizeof(local), "127.0.0.1%s", addr);
        addr = local;
    }
    if (!rf_tcp_addr_parse(addr, true, host, &port, errp)) {
        return NULL;
    }
    snprintf(port_s, sizeof(port_s), "%u", port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *res;
    int gerr = getaddrinfo(host, port_s, &hints, &res);
    if (gerr) {
        rf_error_set(errp, RF_ERR_IO, "cannot resolve host '%s' of tcp:%s: "
                     "%s", host, addr, gai_strerror(gerr));
        return NULL;
    }
    int fd = -1, err = EADDRNOTAVAIL, one = 1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family,
                    ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
            listen(fd, RF_LISTEN_BACKLOG) < 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        rf_error_set(errp, RF_ERR_IO, "cannot listen on tcp:%s: %s", addr,
                     strerror(err));
        return NULL;
    }
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) {
        rf_error_set(errp, RF_ERR_IO, "tcp:%s: getsockname: %s", addr,
                     strerror(errno));
        close(fd);
        return NULL;
    }
    /* The host as the caller wrote it (a name stays a name), with the
     * port the kernel chose. */
    unsigned actual = ntohs(ss.ss_family == AF_INET6
                            ? ((struct sockaddr_in6 *)&ss)->sin6_port
                            : ((struct sockaddr_in *)&ss)->sin_port);
    bool v6 = strchr(host, ':') != NULL;
    char uri[RF_URI_CAP];
    snprintf(uri, sizeof(uri), "tcp:%s%s%s:%u", v6 ? "[" : "", host,
             v6 ? "]" : "", actual);
    RfListener *l = rf_sock_listener_new(fd, uri, NULL, errp);
    if (!l) {
        close(fd);
    }
    return l;
}

const RfTransportOps rf_tcp_transport = {
    .scheme = "tcp",
    .connect = tcp_connect,
    .listen = tcp_listen,
};
