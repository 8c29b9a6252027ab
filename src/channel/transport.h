/*
 * ramflow - the transport interface every channel does its I/O through.
 *
 * A transport is three ops tables: RfTransportOps (connect, listen), found
 * by the URI's scheme; RfListenerOps (accept, close) on each listener; and
 * RfConnOps (vectored send and receive, wait for input, peer address,
 * shutdown, close) on each connection.  Callers use listeners and
 * connections only through the calls below and never see a file
 * descriptor, so a TLS layer can wrap connect and accept without touching
 * the engine.  Addresses are URIs: "tcp:HOST:PORT", "tcp:[V6]:PORT",
 * "unix:PATH".  All calls block; a send or receive that is not done
 * within `timeout_ms` fails with RF_ERR_TIMEOUT, so a stalled peer is
 * detected.
 *
 * Files: transport.c finds the transport for a scheme and holds the
 * generic calls; tcp.c and unix.c are the built-in transports; socket.c is
 * the socket connection and listener they share; adopt.c wraps sockets
 * the caller made (rf_conn_from_fd, rf_listener_from_fd); uri.c parses
 * and writes addresses.
 *
 * Deadlines: every send and receive call is bounded as a whole (not per
 * read) by timeout_ms, and a caller reading a message in several calls
 * (a frame header then its payload) bounds them together with
 * rf_conn_frame_begin/end: a peer trickling one byte at a time cannot
 * keep the stall limit from firing.  A call that has to wait checks
 * c->cancel every RF_CONN_SLICE_MS, so a cancel ends it promptly.
 */
#ifndef RF_CHANNEL_TRANSPORT_H
#define RF_CHANNEL_TRANSPORT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#include "ramflow/error.h"

/* Room for any URI a transport produces, NUL included. */
#define RF_URI_CAP 320

typedef struct RfConn RfConn;
typedef struct RfListener RfListener;

/* One transport; transport.c lists them and picks one by scheme. */
typedef struct RfTransportOps {
    const char *scheme; /* "tcp", "unix" */
    /* Connects to addr (the URI after "scheme:") within timeout_ms
     * (0 = no limit), checking *cancel (if non-NULL) every
     * RF_CONN_SLICE_MS; the connection's timeout_ms starts as timeout_ms
     * and its cancel as cancel. */
    RfConn *(*connect)(const char *addr, unsigned timeout_ms,
                       atomic_int *cancel, RfError **errp);
    /* Listens on addr (the URI after "scheme:"); sets the listener's uri
     * to the actual address (port 0 resolved). */
    RfListener *(*listen)(const char *addr, RfError **errp);
} RfTransportOps;

typedef struct RfConnOps {
    /* Writes every byte of iov (may modify iov). */
    bool (*sendv)(RfConn *c, struct iovec *iov, int iovcnt, RfError **errp);
    /* Reads exactly the bytes of iov (may modify iov). */
    bool (*recvv)(RfConn *c, struct iovec *iov, int iovcnt, RfError **errp);
    /* Waits up to ms milliseconds (negative = no limit) until a receive
     * would not block: bytes arrived (including any the transport itself
     * has buffered, as TLS will), or the peer closed, or an error is
     * pending.  @return false if none happened within ms. */
    bool (*wait_readable)(RfConn *c, int ms);
    /* Writes into uri (cap bytes) the URI that reaches the peer, so more
     * connections can be opened to it.  NULL if the transport cannot
     * tell; the generic call then fails with RF_ERR_PARAM. */
    bool (*peer_uri)(RfConn *c, char *uri, size_t cap, RfError **errp);
    /* Shuts both directions down so blocked peers/threads wake up. */
    void (*shutdown)(RfConn *c);
    /* Closes the connection and frees c. */
    void (*close)(RfConn *c);
    /* Fills out[outlen] with keying material exported from the session's
     * secret (RFC 5705 / RFC 8446) for label and ctx[ctxlen].  NULL for a
     * transport without one (plain sockets); rf_conn_export() (secure.h)
     * then fails with RF_ERR_PARAM. */
    bool (*export)(RfConn *c, const char *label, const void *ctx,
                   size_t ctxlen, unsigned char *out, size_t outlen,
                   RfError **errp);
    /* A description of the connection's protection for reports ("TLS 1.3
     * x509, user-space TLS"); NULL for a plain transport. */
    const char *(*security)(const RfConn *c);
    /* The connection this one runs over (TLS's socket); NULL for a
     * socket, so socket options reach the real socket. */
    RfConn *(*inner)(RfConn *c);
} RfConnOps;

/* How often a waiting call looks at its cancel flag. */
#define RF_CONN_SLICE_MS 100

/* A connection; created by a transport, used through the calls below.
 * The transport's own state (socket, peer name) follows this header in a
 * larger struct. */
struct RfConn {
    const RfConnOps *ops;
    unsigned timeout_ms;  /* stall limit of each whole call; 0 = none */
    /* Set non-zero by another thread (or a signal handler) to make a
     * waiting call fail with RF_ERR_CANCELLED; NULL = none. */
    atomic_int *cancel;
    /* Absolute deadline (rf_conn_now_ms) of the frame being received,
     * 0 = none: set and read by the receiving thread only. */
    long long recv_deadline;
    /* Bytes moved so far.  Written by the thread doing the I/O with
     * relaxed atomic adds, read from other threads (statistics, progress)
     * through rf_conn_bytes_in/out: never touch them with plain += or a
     * plain load while the connection is in use. */
    unsigned long long bytes_in, bytes_out;
};

/* Counts n bytes sent / received on c (for transports' sendv/recvv). */
static inline void rf_conn_count_out(RfConn *c, unsigned long long n)
{
    __atomic_fetch_add(&c->bytes_out, n, __ATOMIC_RELAXED);
}

static inline void rf_conn_count_in(RfConn *c, unsigned long long n)
{
    __atomic_fetch_add(&c->bytes_in, n, __ATOMIC_RELAXED);
}

/* Bytes sent / received on c so far; safe from any thread. */
static inline unsigned long long rf_conn_bytes_out(const RfConn *c)
{
    return __atomic_load_n(&c->bytes_out, __ATOMIC_RELAXED);
}

static inline unsigned long long rf_conn_bytes_in(const RfConn *c)
{
    return __atomic_load_n(&c->bytes_in, __ATOMIC_RELAXED);
}

/* The monotonic clock in milliseconds, the base of every deadline. */
long long rf_conn_now_ms(void);

/* Bounds every receive on c until rf_conn_frame_end() by one deadline,
 * now + c->timeout_ms (none if 0): a message read in several calls must
 * be whole by then.  Receiving thread only. */
void rf_conn_frame_begin(RfConn *c);
void rf_conn_frame_end(RfConn *c);

/* For transports: the absolute deadline of a call starting now, the
 * earlier of now + timeout_ms and (receives) the frame's; 0 = none. */
long long rf_conn_call_deadline(const RfConn *c, bool receiving);

/* For transports: true once c's cancel flag is set. */
static inline bool rf_conn_cancelled(const RfConn *c)
{
    return c->cancel && atomic_load(c->cancel);
}

/* Turns on TCP keepalive (first probe after idle_s seconds of silence,
 * then every idle_s / 3, 3 probes) and TCP_USER_TIMEOUT (user_timeout_ms
 * of unacknowledged data closes the connection) on c's socket, through
 * any TLS layer, so a partition is noticed even while nothing waits on
 * the socket.  0 leaves that option alone; a non-TCP connection is left
 * as it is.  @return false with RF_ERR_IO if the kernel refuses. */
bool rf_conn_tcp_liveness(RfConn *c, unsigned idle_s,
                          unsigned user_timeout_ms, RfError **errp);

/* Bytes written to c's socket (through any TLS layer) that the peer has
 * not acknowledged yet (SIOCOUTQ): what a sender's writes ran ahead of
 * the path.  @return -1 if c is not a socket or the kernel cannot tell. */
long long rf_conn_unsent(RfConn *c);

/* Microseconds that c's TCP connection (through any TLS layer) has been
 * limited by the peer's receive window since it opened (tcp_info's
 * tcpi_rwnd_limited): time the receiving application did not read fast
 * enough, as opposed to the path.  @return -1 if c is not TCP or the
 * kernel cannot tell. */
long long rf_conn_rwnd_limited_us(RfConn *c);

typedef struct RfListenerOps {
    /* Waits up to timeout_ms (0 = no limit) for one connection and checks
     * *cancel (if non-NULL) at least every 100 ms.  @return the accepted
     * connection (timeout_ms 0), or NULL with RF_ERR_TIMEOUT,
     * RF_ERR_CANCELLED or RF_ERR_IO. */
    RfConn *(*accept)(RfListener *l, unsigned timeout_ms,
                      atomic_int *cancel, RfError **errp);
    /* Stops listening, removes what listen created (a unix socket file;
     * never one an adopted socket was bound to) and frees l. */
    void (*close)(RfListener *l);
} RfListenerOps;

/* A listener; created by a transport's listen or rf_listener_from_fd(). */
struct RfListener {
    const RfListenerOps *ops;
    char uri[RF_URI_CAP]; /* actual address, port 0 resolved */
};

/* The built-in transports (tcp.c, unix.c).  Their connect/listen receive
 * the address without the "scheme:" prefix. */
extern const RfTransportOps rf_tcp_transport;
extern const RfTransportOps rf_unix_transport;

/* --- by URI (transport.c) --------------------------------------------- */

/* Parses the URI's scheme and connects.  @return NULL with a clear error
 * ("unknown scheme", "connection refused to tcp:...") on failure. */
RfConn *rf_conn_connect(const char *uri, unsigned timeout_ms,
                        RfError **errp);
/* As rf_conn_connect(), giving up with RF_ERR_CANCELLED within
 * RF_CONN_SLICE_MS of *cancel becoming non-zero; the connection keeps
 * cancel as its c->cancel. */
RfConn *rf_conn_connect_cancel(const char *uri, unsigned timeout_ms,
                               atomic_int *cancel, RfError **errp);
RfListener *rf_listen(const char *uri, RfError **errp);

/* --- generic calls over the ops tables (transport.c) -------------------- */

/* Waits up to timeout_ms (0 = forever) for one connection; polls *cancel
 * if non-NULL. */
RfConn *rf_listener_accept(RfListener *l, unsigned timeout_ms,
                           atomic_int *cancel, RfError **errp);
/* NULL is allowed. */
void rf_listener_close(RfListener *l);

bool rf_conn_sendv(RfConn *c, struct iovec *iov, int iovcnt, RfError **errp);
bool rf_conn_recvv(RfConn *c, struct iovec *iov, int iovcnt, RfError **errp);
bool rf_conn_send(RfConn *c, const void *buf, size_t len, RfError **errp);
bool rf_conn_recv(RfConn *c, void *buf, size_t len, RfError **errp);
/* Waits up to ms (negative = no limit) until a receive would not block,
 * for a bounded look at the main channel.  @return true if bytes are
 * there or the peer closed (the receive then reports it). */
bool rf_conn_wait_readable(RfConn *c, int ms);
/* Writes the URI that reaches c's peer ("tcp:HOST:PORT", "tcp:[V6]:PORT",
 * "unix:PATH") into uri (cap bytes), so a source handed only a connected
 * main channel can open its data channels to the same destination.
 * @return false with RF_ERR_PARAM if the peer has no such name (an
 * unnamed or abstract unix socket) or it does not fit. */
bool rf_conn_peer_uri(RfConn *c, char *uri, size_t cap, RfError **errp);
/* NULL is allowed (for both). */
void rf_conn_shutdown(RfConn *c);
void rf_conn_close(RfConn *c);

/* --- adopting sockets the caller made (adopt.c) ------------------------- */

/* Wraps fd, a connected stream socket (TCP over IPv4/IPv6, or Unix), in a
 * connection with timeout_ms 0; the socket is made blocking.  Ownership
 * of fd passes to the connection on success only: on failure fd is left
 * open and unchanged.  @return NULL with RF_ERR_PARAM if fd is not such
 * a socket (a pipe, a datagram socket, a listening or unconnected one). */
RfConn *rf_conn_from_fd(int fd, RfError **errp);
/* Wraps fd, a listening stream socket (TCP or Unix), in a listener whose
 * uri is its address ("fd:N" if a unix socket has no path); the socket is
 * made non-blocking, and rf_listener_close() closes it but never removes
 * its socket file.  Ownership passes on success only, as for
 * rf_conn_from_fd().  @return NULL with RF_ERR_PARAM if fd is not a
 * listening stream socket. */
RfListener *rf_listener_from_fd(int fd, RfError **errp);

#endif /* RF_CHANNEL_TRANSPORT_H */
