/*
 * ramflow - the socket connection and listener under the tcp and unix
 * transports (tcp.c, unix.c make the sockets; adopt.c takes the caller's).
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
 * Stall detection: each call has one deadline (rf_conn_call_deadline:
 * now + timeout_ms, or the frame's if earlier).  The kernel timer of a
 * syscall is the time left, capped at RF_CONN_SLICE_MS when a cancel flag
 * is watched; a syscall that ends early (partial data, EAGAIN) loops,
 * checking the deadline and the flag.  The timer value is constant
 * (timeout_ms, or the slice) except near the deadline, so the socket
 * option is re-applied only then and the hot path costs no extra
 * syscall.  A peer sending one byte a second thus fails a 2 s limit
 * after 2 s, where a per-read limit never fired.
 *
 * MSG_NOSIGNAL makes a dead peer an EPIPE error instead of a SIGPIPE.
 */
#include "channel/socket.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "channel/uri.h"

#define RF_TIMEOUT_UNSET UINT_MAX
#define RF_ACCEPT_SLICE_MS 100

typedef struct SockConn {
    RfConn base;
    int fd;
    unsigned rcv_timeout;   /* value applied with SO_RCVTIMEO */
    unsigned snd_timeout;   /* value applied with SO_SNDTIMEO */
    char peer[RF_URI_CAP];  /* URI of the peer, for error messages */
} SockConn;

typedef struct SockListener {
    RfListener base;
    int fd;
    /* The socket file listen created, removed on close; empty if none. */
    char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} SockListener;

long long rf_sock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- connection ---------------------------------------------------------- */

/* Sets the kernel's limit for one syscall (SO_RCVTIMEO / SO_SNDTIMEO,
 * 0 = none), only when it changes. */
static bool apply_timeout(SockConn *sc, int opt, unsigned *applied,
                          unsigned ms, RfError **errp)
{
    if (*applied == ms) {
        return true;
    }
    struct timeval tv = { .tv_sec = ms / 1000,
                          .tv_usec = (ms % 1000) * 1000 };
    if (setsockopt(sc->fd, SOL_SOCKET, opt, &tv, sizeof(tv)) < 0) {
        rf_error_set(errp, RF_ERR_IO, "%s: setting the %u ms timeout: %s",
                     sc->peer, ms, strerror(errno));
        return false;
    }
    *applied = ms;
    return true;
}

/* The next syscall's timer before `end` (0 = no deadline): the time left,
 * at most one slice when cancel is watched; 0 = block.  @return false if
 * the deadline has passed. */
static bool next_wait(const RfConn *c, long long end, unsigned *ms)
{
    unsigned base = c->cancel ? RF_CONN_SLICE_MS : c->timeout_ms;
    if (c->cancel && c->timeout_ms && c->timeout_ms < base) {
        base = c->timeout_ms;
    }
    if (!end) {
        *ms = base;
        return true;
    }
    long long left = end - rf_conn_now_ms();
    if (left <= 0) {
        return false;
    }
    *ms = base && left >= base ? base : (unsigned)left;
    return true;
}

/* A stall error: "no data for" when nothing came, else how much did. */
static void stall_error(SockConn *sc, bool sending, size_t done,
                        size_t total, RfError **errp)
{
    unsigned ms = sc->base.timeout_ms;
    if (done == 0) {
        rf_error_set(errp, RF_ERR_TIMEOUT, sending
                     ? "%s: peer stalled: could not send for %u ms "
                       "(0 of %zu bytes sent)"
                     : "%s: peer stalled: no data for %u ms "
                       "(0 of %zu bytes received)", sc->peer, ms, total);
    } else {
        rf_error_set(errp, RF_ERR_TIMEOUT, "%s: peer stalled: only %zu of "
                     "%zu bytes %s within %u ms (the limit covers a whole "
                     "message)", sc->peer, done, total,
                     sending ? "sent" : "received", ms);
    }
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

/* Checks cancel and the deadline before each syscall after the first,
 * and applies the syscall's timer.  @return false with the error set. */
static bool before_syscall(SockConn *sc, bool sending, long long end,
                           bool first, size_t done, size_t total,
                           RfError **errp)
{
    RfConn *c = &sc->base;
    if (!first && rf_conn_cancelled(c)) {
        rf_error_set(errp, RF_ERR_CANCELLED, "%s: cancelled while %s (%zu "
                     "of %zu bytes)", sc->peer,
                     sending ? "sending" : "receiving", done, total);
        return false;
    }
    unsigned ms;
    if (!next_wait(c, end, &ms)) {
        stall_error(sc, sending, done, total, errp);
        return false;
    }
    return sending
        ? apply_timeout(sc, SO_SNDTIMEO, &sc->snd_timeout, ms, errp)
        : apply_timeout(sc, SO_RCVTIMEO, &sc->rcv_timeout, ms, errp);
}

static bool sock_sendv(RfConn *c, struct iovec *iov, int iovcnt,
                       RfError **errp)
{
    SockConn *sc = (SockConn *)c;
    long long end = rf_conn_call_deadline(c, false);
    size_t total = iov_total(iov, iovcnt), done = 0;
    iov_advance(&iov, &iovcnt, 0);
    for (bool first = true; iovcnt > 0; first = false) {
        if (!before_syscall(sc, true, end, first, done, total, errp)) {
            return false;
        }
        struct msghdr msg = {
            .msg_iov = iov,
            .msg_iovlen = (size_t)(iovcnt < IOV_MAX ? iovcnt : IOV_MAX),
        };
        ssize_t n = sendmsg(sc->fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) {
                continue; /* the loop checks deadline and cancel */
            }
            rf_error_set(errp, RF_ERR_IO,
                         "%s: send failed after %zu of %zu bytes: %s",
                         sc->peer, done, total, strerror(errno));
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
    long long end = rf_conn_call_deadline(c, true);
    size_t total = iov_total(iov, iovcnt), done = 0;
    iov_advance(&iov, &iovcnt, 0);
    for (bool first = true; iovcnt > 0; first = false) {
        if (!before_syscall(sc, false, end, first, done, total, errp)) {
            return false;
        }
        struct msghdr msg = {
            .msg_iov = iov,
            .msg_iovlen = (size_t)(iovcnt < IOV_MAX ? iovcnt : IOV_MAX),
        };
        ssize_t n = recvmsg(sc->fd, &msg, MSG_WAITALL);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) {
                continue; /* the loop checks deadline and cancel */
            }
            rf_error_set(errp, RF_ERR_IO,
                         "%s: receive failed after %zu of %zu bytes: %s",
                         sc->peer, done, total, strerror(errno));
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

/* poll() for POLLIN also reports end of stream and errors (POLLHUP,
 * POLLERR), which is what callers want: the receive then says what
 * happened. */
static bool sock_wait_readable(RfConn *c, int ms)
{
    return rf_sock_poll(((SockConn *)c)->fd, POLLIN, ms) > 0;
}

static bool sock_peer_uri(RfConn *c, char *uri, size_t cap, RfError **errp)
{
    SockConn *sc = (SockConn *)c;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(sc->fd, (struct sockaddr *)&ss, &len) < 0) {
        rf_error_set(errp, RF_ERR_IO, "%s: cannot get the peer's address: "
                     "%s", sc->peer, strerror(errno));
        return false;
    }
    RfError *err = NULL;
    if (!rf_sockaddr_uri((struct sockaddr *)&ss, len, uri, cap, &err)) {
        rf_error_prefix(&err, "%s: naming the peer", sc->peer);
        rf_error_propagate(errp, err);
        return false;
    }
    return true;
}

static void sock_shutdown(RfConn *c)
{
    shutdown(((SockConn *)c)->fd, SHUT_RDWR);
}

static void sock_close(RfConn *c)
{
    SockConn *sc = (SockConn *)c;
    if (sc->fd >= 0) {
        close(sc->fd);
    }
    free(sc);
}

static const RfConnOps sock_conn_ops = {
    .sendv = sock_sendv,
    .recvv = sock_recvv,
    .wait_readable = sock_wait_readable,
    .peer_uri = sock_peer_uri,
    .shutdown = sock_shutdown,
    .close = sock_close,
    .export = NULL,   /* no TLS: no keying material, no description */
    .security = NULL,
    .inner = NULL,
};

int rf_sock_conn_fd(const RfConn *c, const char **peer)
{
    if (!c || c->ops != &sock_conn_ops) {
        return -1;
    }
    const SockConn *sc = (const SockConn *)c;
    if (peer) {
        *peer = sc->peer;
    }
    return sc->fd;
}

int rf_sock_poll(int fd, short events, int ms)
{
    long long deadline = ms > 0 ? rf_sock_now_ms() + ms : 0;
    for (;;) {
        struct pollfd p = { .fd = fd, .events = events };
        int r = poll(&p, 1, ms);
        if (r >= 0 || errno != EINTR) {
            return r;
        }
        if (deadline) {
            long long left = deadline - rf_sock_now_ms();
            ms = left > 0 ? (int)left : 0;
        }
    }
}

RfConn *rf_sock_conn_new(int fd, const char *peer, RfError **errp)
{
    SockConn *sc = calloc(1, sizeof(*sc));
    if (!sc) {
        rf_error_set(errp, RF_ERR_GENERIC, "%s: out of memory", peer);
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
    sc->fd = fd;
    sc->rcv_timeout = RF_TIMEOUT_UNSET;
    sc->snd_timeout = RF_TIMEOUT_UNSET;
    snprintf(sc->peer, sizeof(sc->peer), "%s", peer);
    return &sc->base;
}

int rf_sock_connect_wait(int fd, long long deadline_ms, atomic_int *cancel)
{
    for (;;) {
        int wait = -1;
        if (cancel && atomic_load(cancel)) {
            return ECANCELED;
        }
        if (deadline_ms) {
            long long left = deadline_ms - rf_sock_now_ms();
            if (left <= 0) {
                return ETIMEDOUT;
            }
            wait = left > INT_MAX ? INT_MAX : (int)left;
        }
        if (cancel && (wait < 0 || wait > RF_CONN_SLICE_MS)) {
            wait = RF_CONN_SLICE_MS;
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

void rf_sock_connect_error(RfError **errp, const char *uri, int err,
                           unsigned timeout_ms)
{
    if (err == ETIMEDOUT) {
        rf_error_set(errp, RF_ERR_TIMEOUT, "connecting to %s: no answer "
                     "within %u ms", uri, timeout_ms);
    } else if (err == ECANCELED) {
        rf_error_set(errp, RF_ERR_CANCELLED, "cancelled while connecting "
                     "to %s", uri);
    } else if (err == ECONNREFUSED || err == ENOENT) {
        rf_error_set(errp, RF_ERR_IO, "connection refused to %s (is the "
                     "destination listening?): %s", uri, strerror(err));
    } else {
        rf_error_set(errp, RF_ERR_IO, "cannot connect to %s: %s", uri,
                     strerror(err));
    }
}

/* Sets one integer socket option, naming it on failure. */
static bool set_opt(SockConn *sc, int level, int opt, const char *name,
                    int val, RfError **errp)
{
    if (setsockopt(sc->fd, level, opt, &val, sizeof(val)) < 0) {
        rf_error_set(errp, RF_ERR_IO, "%s: setting %s to %d: %s", sc->peer,
                     name, val, strerror(errno));
        return false;
    }
    return true;
}

/* The connection under any TLS layers: the socket of ours, if any. */
static RfConn *innermost(RfConn *c)
{
    while (c && c->ops->inner) {
        c = c->ops->inner(c);
    }
    return c;
}

bool rf_conn_tcp_liveness(RfConn *c, unsigned idle_s,
                          unsigned user_timeout_ms, RfError **errp)
{
    c = innermost(c);
    if (rf_sock_conn_fd(c, NULL) < 0) {
        return true; /* not a socket of ours */
    }
    SockConn *sc = (SockConn *)c;
    int domain = 0;
    socklen_t dlen = sizeof(domain);
    if (getsockopt(sc->fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) < 0 ||
        (domain != AF_INET && domain != AF_INET6)) {
        return true; /* unix sockets have no partitions */
    }
    int idle = idle_s > 32767 ? 32767 : (int)idle_s;
    int intvl = idle / 3 > 0 ? idle / 3 : 1;
    if (idle && !(set_opt(sc, SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", 1,
                          errp) &&
                  set_opt(sc, IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE",
                          idle, errp) &&
                  set_opt(sc, IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL",
                          intvl, errp) &&
                  set_opt(sc, IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT", 3,
                          errp))) {
        return false;
    }
    int ut = user_timeout_ms > INT_MAX ? INT_MAX : (int)user_timeout_ms;
    return !ut || set_opt(sc, IPPROTO_TCP, TCP_USER_TIMEOUT,
                          "TCP_USER_TIMEOUT", ut, errp);
}

long long rf_conn_unsent(RfConn *c)
{
    c = innermost(c);
    int fd = rf_sock_conn_fd(c, NULL);
    int n = 0;
    if (fd < 0 || ioctl(fd, SIOCOUTQ, &n) < 0 || n < 0) {
        return -1;
    }
    return n;
}

long long rf_conn_rwnd_limited_us(RfConn *c)
{
    c = innermost(c);
    int fd = rf_sock_conn_fd(c, NULL);
    /* glibc's struct tcp_info stops before the field; the kernel's ABI
     * (linux/tcp.h, which clashes with netinet/tcp.h) has it at byte 176
     * since Linux 4.10, a u64, and only appends after it. */
    enum { RWND_LIMITED_OFF = 176 };
    uint8_t ti[256];
    socklen_t len = sizeof(ti);
    uint64_t us;
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, ti, &len) < 0 ||
        len < RWND_LIMITED_OFF + sizeof(us)) {
        return -1;
    }
    memcpy(&us, ti + RWND_LIMITED_OFF, sizeof(us));
    return (long long)us;
}

/* --- listener ------------------------------------------------------------ */

/* Polls the listening socket in slices of 100 ms so that a cancel flag is
 * noticed quickly; the socket is non-blocking so that a client gone
 * between poll and accept costs a retry, not a hang. */
static RfConn *sock_accept(RfListener *l, unsigned timeout_ms,
                           atomic_int *cancel, RfError **errp)
{
    SockListener *sl = (SockListener *)l;
    long long deadline = timeout_ms ? rf_sock_now_ms() + timeout_ms : 0;
    for (;;) {
        if (cancel && atomic_load(cancel)) {
            rf_error_set(errp, RF_ERR_CANCELLED,
                         "cancelled while waiting for a connection on %s",
                         l->uri);
            return NULL;
        }
        int slice = RF_ACCEPT_SLICE_MS;
        if (deadline) {
            long long left = deadline - rf_sock_now_ms();
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
        struct pollfd pfd = { .fd = sl->fd, .events = POLLIN };
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
        int fd = accept4(sl->fd, (struct sockaddr *)&ss, &sslen,
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
        /* Unix clients are unnamed: the listener's URI names them. */
        char peer[RF_URI_CAP];
        if (!rf_sockaddr_uri((struct sockaddr *)&ss, sslen, peer,
                             sizeof(peer), NULL)) {
            snprintf(peer, sizeof(peer), "%s", l->uri);
        }
        RfConn *c = rf_sock_conn_new(fd, peer, errp);
        if (!c) {
            close(fd);
        }
        return c;
    }
}

static void sock_listener_close(RfListener *l)
{
    SockListener *sl = (SockListener *)l;
    if (sl->fd >= 0) {
        close(sl->fd);
    }
    if (sl->unix_path[0]) {
        unlink(sl->unix_path);
    }
    free(sl);
}

static const RfListenerOps sock_listener_ops = {
    .accept = sock_accept,
    .close = sock_listener_close,
};

RfListener *rf_sock_listener_new(int fd, const char *uri,
                                 const char *unix_path, RfError **errp)
{
    SockListener *sl = calloc(1, sizeof(*sl));
    if (!sl) {
        rf_error_set(errp, RF_ERR_GENERIC, "%s: out of memory", uri);
        return NULL;
    }
    sl->base.ops = &sock_listener_ops;
    sl->fd = fd;
    snprintf(sl->base.uri, sizeof(sl->base.uri), "%s", uri);
    if (unix_path) {
        snprintf(sl->unix_path, sizeof(sl->unix_path), "%s", unix_path);
    }
    return &sl->base;
}
