/*
 * ramflow - the tcp and unix transports and their socket connection.
 *
 * I/O design: connected sockets stay in blocking mode and the stall limit
 * is enforced by the kernel through SO_RCVTIMEO / SO_SNDTIMEO; receives use
 * MSG_WAITALL.  A 512 KiB packet then costs one sendmsg and one recvmsg
 * (measured: 1.00 of each per packet on loopback), the thread sleeps
 * inside the syscall, and poll() is never called on the hot path.  The
 * alternative, a non-blocking try then poll() on EAGAIN, measured 1.2
 * sendmsg + 1.3-2.9 recvmsg + 0.3-0.6 poll per packet, and no better
 * throughput; blocking without MSG_WAITALL took 1.1-2.5 recvmsg.
 *
 * Stall detection: a call that moved no byte before the kernel's timer
 * fired fails with EAGAIN, reported as RF_ERR_TIMEOUT.  With MSG_WAITALL
 * the timer covers the whole call, so a call that got some bytes and then
 * nothing returns them after timeout_ms and the next call waits again: a
 * silent peer is detected after between 1x and 2x timeout_ms, and a slow
 * but moving one is never reported.  The socket options are re-applied
 * only when c->timeout_ms changes.
 *
 * MSG_NOSIGNAL makes a dead peer an EPIPE error instead of a SIGPIPE.
 */
#include "channel/socket.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define RF_LISTEN_BACKLOG 512
#define RF_TIMEOUT_UNSET UINT_MAX

typedef struct SockConn {
    RfConn base;
    unsigned rcv_timeout; /* value applied with SO_RCVTIMEO */
    unsigned snd_timeout; /* value applied with SO_SNDTIMEO */
    char peer[320];       /* URI of the peer, for error messages */
} SockConn;

static const RfConnOps sock_conn_ops;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Applies c->timeout_ms as the kernel's per-call limit for `opt`, once per
 * change, so the hot path costs no extra syscall. */
static bool apply_timeout(SockConn *sc, int opt, unsigned *applied,
                          RfError **errp)
{
    unsigned ms = sc->base.timeout_ms;
    if (*applied == ms) {
        return true;
    }
    struct timeval tv = { .tv_sec = ms / 1000,
                          .tv_usec = (ms % 1000) * 1000 };
    if (setsockopt(sc->base.fd, SOL_SOCKET, opt, &tv, sizeof(tv)) < 0) {
        rf_error_set(errp, RF_ERR_IO, "%s: setting the %u ms timeout: %s",
                     sc->peer, ms, strerror(errno));
        return false;
    }
    *applied = ms;
    return true;
}

/* Drops the first n bytes from *iov / *iovcnt (n <= their total), also
 * skipping empty entries so the next call starts at real data. */
static void iov_advance(struct iovec **iov, int *iovcnt, size_t n)
{
    while (*iovcnt > 0 && n >= (*iov)->iov_len) {
        n -= (*iov)->iov_len;
        (*iov)++;
        (*iovcnt)--;
    }
    if (*iovcnt > 0) {
        (*iov)->iov_base = (char *)(*iov)->iov_base + n;
        (*iov)->iov_len -= n;
    }
}

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
    size_t t = 0;
    for (int i = 0; i < iovcnt; i++) {
        t += iov[i].iov_len;
    }
    return t;
}

static bool sock_sendv(RfConn *c, struct iovec *iov, int iovcnt,
                       RfError **errp)
{
    SockConn *sc = (SockConn *)c;
    if (!apply_timeout(sc, SO_SNDTIMEO, &sc->snd_timeout, errp)) {
        return false;
    }
    size_t total = iov_total(iov, iovcnt), done = 0;
    iov_advance(&iov, &iovcnt, 0);
    while (iovcnt > 0) {
        struct msghdr msg = {
            .msg_iov = iov,
            .msg_iovlen = (size_t)(iovcnt < IOV_MAX ? iovcnt : IOV_MAX),
        };
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                rf_error_set(errp, RF_ERR_TIMEOUT,
                             "%s: peer stalled: could not send for %u ms "
                             "(%zu of %zu bytes sent)", sc->peer,
                             c->timeout_ms, done, total);
            } else {
                rf_error_set(errp, RF_ERR_IO,
                             "%s: send failed after %zu of %zu bytes: %s",
                             sc->peer, done, total, strerror(errno));
            }
            return false;
        }
        rf_conn_count_out(c, (unsigned long long)n);
        done += (size_t)n;
        iov_advance(&iov, &iovcnt, (size_t)n);
    }
    return true;
}

static bool sock_recvv(RfConn *c, struct iovec *iov, int iovcnt,
                       RfError **errp)
{
    SockConn *sc = (SockConn *)c;
    if (!apply_timeout(sc, SO_RCVTIMEO, &sc->rcv_timeout, errp)) {
        return false;
    }
    size_t total = iov_total(iov, iovcnt), done = 0;
    iov_advance(&iov, &iovcnt, 0);
    while (iovcnt > 0) {
        struct msghdr msg = {
            .msg_iov = iov,
            .msg_iovlen = (size_t)(iovcnt < IOV_MAX ? iovcnt : IOV_MAX),
        };
        ssize_t n = recvmsg(c->fd, &msg, MSG_WAITALL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                rf_error_set(errp, RF_ERR_TIMEOUT,
                             "%s: peer stalled: no data for %u ms "
                             "(%zu of %zu bytes received)", sc->peer,
                             c->timeout_ms, done, total);
            } else {
                rf_error_set(errp, RF_ERR_IO,
                             "%s: receive failed after %zu of %zu bytes: "
                             "%s", sc->peer, done, total, strerror(errno));
            }
            return false;
        }
        if (n == 0) {
            rf_error_set(errp, RF_ERR_IO,
                         "%s: connection closed by peer after %zu of %zu "
                         "bytes", sc->peer, done, total);
            return false;
        }
        rf_conn_count_in(c, (unsigned long long)n);
        done += (size_t)n;
        iov_advance(&iov, &iovcnt, (size_t)n);
    }
    return true;
}

static void sock_shutdown(RfConn *c)
{
    shutdown(c->fd, SHUT_RDWR);
}

static void sock_close(RfConn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    free(c);
}

static const RfConnOps sock_conn_ops = {
    .sendv = sock_sendv,
    .recvv = sock_recvv,
    .shutdown = sock_shutdown,
    .close = sock_close,
};

RfConn *rf_sock_conn_new(int fd, const char *peer, RfError **errp)
{
    SockConn *sc = calloc(1, sizeof(*sc));
    if (!sc) {
        rf_error_set(errp, RF_ERR_GENERIC, "%s: out of memory", peer);
        close(fd);
        return NULL;
    }
    int domain = 0, one = 1;
    socklen_t dlen = sizeof(domain);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) == 0 &&
        domain != AF_UNIX) {
        /* Headers and small control messages must not wait for Nagle. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK)) {
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    }
    sc->base.ops = &sock_conn_ops;
    sc->base.fd = fd;
    sc->rcv_timeout = RF_TIMEOUT_UNSET;
    sc->snd_timeout = RF_TIMEOUT_UNSET;
    snprintf(sc->peer, sizeof(sc->peer), "%s", peer);
    return &sc->base;
}

/* Waits for a non-blocking connect on fd to finish by deadline (0 = no
 * limit).  @return 0 on success, else the errno (ETIMEDOUT on timeout). */
static int connect_wait(int fd, long long deadline)
{
    for (;;) {
        int wait = -1;
        if (deadline) {
            long long left = deadline - now_ms();
            if (left <= 0) {
                return ETIMEDOUT;
            }
            wait = left > INT_MAX ? INT_MAX : (int)left;
        }
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        int r = poll(&pfd, 1, wait);
        if (r < 0 && errno != EINTR) {
            return errno;
        }
        if (r > 0) {
            int err = 0;
            socklen_t len = sizeof(err);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
                return errno;
            }
            return err;
        }
    }
}

/* Sets the "cannot connect" error for uri from errno value err. */
static void connect_error(RfError **errp, const char *uri, int err,
                          unsigned timeout_ms)
{
    if (err == ETIMEDOUT) {
        rf_error_set(errp, RF_ERR_TIMEOUT, "connecting to %s: no answer "
                     "within %u ms", uri, timeout_ms);
    } else if (err == ECONNREFUSED || err == ENOENT) {
        rf_error_set(errp, RF_ERR_IO, "connection refused to %s (is the "
                     "destination listening?): %s", uri, strerror(err));
    } else {
        rf_error_set(errp, RF_ERR_IO, "cannot connect to %s: %s", uri,
                     strerror(err));
    }
}

/* Connects to the first address of host:port that answers; connect()
 * itself is non-blocking so that timeout_ms bounds it.  The connection's
 * stall limit starts as timeout_ms too. */
static RfConn *tcp_connect(const char *addr, unsigned timeout_ms,
                           RfError **errp)
{
    char host[RF_HOST_MAX + 1], uri[320], port_s[8];
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
    long long deadline = timeout_ms ? now_ms() + timeout_ms : 0;
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
            err = connect_wait(fd, deadline);
        }
        if (err) {
            close(fd);
            fd = -1;
            if (err == ETIMEDOUT) {
                break;
            }
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        connect_error(errp, uri, err, timeout_ms);
        return NULL;
    }
    RfConn *c = rf_sock_conn_new(fd, uri, errp);
    if (c) {
        c->timeout_ms = timeout_ms;
    }
    return c;
}

static bool unix_sockaddr(const char *path, struct sockaddr_un *sun,
                          RfError **errp)
{
    if (!rf_unix_addr_check(path, errp)) {
        return false;
    }
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, strlen(path) + 1);
    return true;
}

/* Unix connect never says EINPROGRESS; a full backlog gives EAGAIN on a
 * non-blocking socket, so retry that until the deadline. */
static RfConn *unix_connect(const char *addr, unsigned timeout_ms,
                            RfError **errp)
{
    struct sockaddr_un sun;
    char uri[320];
    if (!unix_sockaddr(addr, &sun, errp)) {
        return NULL;
    }
    snprintf(uri, sizeof(uri), "unix:%s", addr);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        rf_error_set(errp, RF_ERR_IO, "%s: socket: %s", uri,
                     strerror(errno));
        return NULL;
    }
    long long deadline = timeout_ms ? now_ms() + timeout_ms : 0;
    int err;
    for (;;) {
        err = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0
                  ? 0 : errno;
        if (err == EINTR) {
            continue;
        }
        if (err != EAGAIN) {
            break;
        }
        if (deadline && now_ms() >= deadline) {
            err = ETIMEDOUT;
            break;
        }
        poll(NULL, 0, 2);
    }
    if (err == EINPROGRESS) {
        err = connect_wait(fd, deadline);
    }
    if (err) {
        close(fd);
        connect_error(errp, uri, err, timeout_ms);
        return NULL;
    }
    RfConn *c = rf_sock_conn_new(fd, uri, errp);
    if (c) {
        c->timeout_ms = timeout_ms;
    }
    return c;
}

static RfListener *listener_new(int fd, RfError **errp)
{
    RfListener *l = calloc(1, sizeof(*l));
    if (!l) {
        close(fd);
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory");
        return NULL;
    }
    l->fd = fd;
    l->conn_ops = &sock_conn_ops;
    return l;
}

/* Binds the first address host:port resolves to.  With port 0 the kernel
 * picks one and l->uri carries it, so the caller can tell its peer. */
static RfListener *tcp_listen(const char *addr, RfError **errp)
{
    char host[RF_HOST_MAX + 1], port_s[8];
    unsigned port;
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
    RfListener *l = listener_new(fd, errp);
    if (!l) {
        return NULL;
    }
    unsigned actual = ntohs(ss.ss_family == AF_INET6
                            ? ((struct sockaddr_in6 *)&ss)->sin6_port
                            : ((struct sockaddr_in *)&ss)->sin_port);
    bool v6 = strchr(host, ':') != NULL;
    snprintf(l->uri, sizeof(l->uri), "tcp:%s%s%s:%u", v6 ? "[" : "", host,
             v6 ? "]" : "", actual);
    return l;
}

/* Removes a socket file left by a process that is gone, refusing to touch
 * anything that is not a socket or that still has a listener. */
static bool unix_clear_stale(const struct sockaddr_un *sun, RfError **errp)
{
    struct stat st;
    if (lstat(sun->sun_path, &st) < 0) {
        return true;
    }
    if (!S_ISSOCK(st.st_mode)) {
        rf_error_set(errp, RF_ERR_IO, "cannot listen on unix:%s: the path "
                     "exists and is not a socket", sun->sun_path);
        return false;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0) {
        int r = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
        int err = errno;
        close(fd);
        if (r == 0 || err == EAGAIN) {
            rf_error_set(errp, RF_ERR_IO, "cannot listen on unix:%s: "
                         "another process is listening there",
                         sun->sun_path);
            return false;
        }
    }
    unlink(sun->sun_path);
    return true;
}

static RfListener *unix_listen(const char *addr, RfError **errp)
{
    struct sockaddr_un sun;
    if (!unix_sockaddr(addr, &sun, errp) || !unix_clear_stale(&sun, errp)) {
        return NULL;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    bool bound = fd >= 0 &&
                 bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
    if (!bound || listen(fd, RF_LISTEN_BACKLOG) < 0) {
        rf_error_set(errp, RF_ERR_IO, "cannot listen on unix:%s: %s", addr,
                     strerror(errno));
        if (bound) {
            unlink(addr);
        }
        if (fd >= 0) {
            close(fd);
        }
        return NULL;
    }
    RfListener *l = listener_new(fd, errp);
    if (!l) {
        unlink(addr);
        return NULL;
    }
    snprintf(l->uri, sizeof(l->uri), "unix:%s", addr);
    snprintf(l->unix_path, sizeof(l->unix_path), "%s", addr);
    return l;
}

const RfTransportOps rf_tcp_transport = {
    .scheme = "tcp",
    .connect = tcp_connect,
    .listen = tcp_listen,
};

const RfTransportOps rf_unix_transport = {
    .scheme = "unix",
    .connect = unix_connect,
    .listen = unix_listen,
};
