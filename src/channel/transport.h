/*
 * ramflow - the transport interface every channel does its I/O through.
 *
 * A transport is a small ops table (connect, listen/accept, vectored send
 * and receive, close) so that TLS can wrap it later without touching the
 * engine.  Addresses are URIs: "tcp:HOST:PORT", "tcp:[V6]:PORT",
 * "unix:PATH".  All calls block; a receive that sees no byte for
 * `timeout_ms` fails with RF_ERR_TIMEOUT, so a stalled peer is detected.
 */
#ifndef RF_CHANNEL_TRANSPORT_H
#define RF_CHANNEL_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#include "ramflow/error.h"

typedef struct RfConn RfConn;
typedef struct RfListener RfListener;

typedef struct RfTransportOps {
    const char *scheme; /* "tcp", "unix" */
    RfConn *(*connect)(const char *addr, unsigned timeout_ms,
                       RfError **errp);
    RfListener *(*listen)(const char *addr, RfError **errp);
} RfTransportOps;

/* A connection; created by a transport, used through the calls below. */
struct RfConn {
    const struct RfConnOps *ops;
    int fd;
    unsigned timeout_ms;  /* receive/send stall limit; 0 = none */
    /* Bytes moved so far.  Written by the thread doing the I/O with
     * relaxed atomic adds, read from other threads (statistics, progress)
     * through rf_conn_bytes_in/out: never touch them with plain += or a
     * plain load while the connection is in use. */
    unsigned long long bytes_in, bytes_out;
};

typedef struct RfConnOps {
    /* Writes every byte of iov (may modify iov). */
    bool (*sendv)(RfConn *c, struct iovec *iov, int iovcnt, RfError **errp);
    /* Reads exactly the bytes of iov (may modify iov). */
    bool (*recvv)(RfConn *c, struct iovec *iov, int iovcnt, RfError **errp);
    /* Shuts both directions down so blocked peers/threads wake up. */
    void (*shutdown)(RfConn *c);
    void (*close)(RfConn *c);
} RfConnOps;

struct RfListener {
    int fd;
    char uri[300];        /* actual address, port 0 resolved */
    char unix_path[256];  /* unlinked on close */
    const struct RfConnOps *conn_ops;
};

/* Parses the URI's scheme and connects.  @return NULL with a clear error
 * ("unknown scheme", "connection refused to tcp:...") on failure. */
RfConn *rf_conn_connect(const char *uri, unsigned timeout_ms,
                        RfError **errp);
RfListener *rf_listen(const char *uri, RfError **errp);
/* Waits up to timeout_ms (0 = forever) for one connection; polls *cancel
 * if non-NULL, every 100 ms, with a relaxed atomic load: a thread setting
 * it should store it atomically too (__atomic_store_n). */
RfConn *rf_listener_accept(RfListener *l, unsigned timeout_ms,
                           volatile int *cancel, RfError **errp);
void rf_listener_close(RfListener *l);

/* Convenience wrappers over c->ops. */
bool rf_conn_sendv(RfConn *c, struct iovec *iov, int iovcnt, RfError **errp);
bool rf_conn_recvv(RfConn *c, struct iovec *iov, int iovcnt, RfError **errp);
bool rf_conn_send(RfConn *c, const void *buf, size_t len, RfError **errp);
bool rf_conn_recv(RfConn *c, void *buf, size_t len, RfError **errp);
void rf_conn_shutdown(RfConn *c);
void rf_conn_close(RfConn *c);

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

#endif /* RF_CHANNEL_TRANSPORT_H */
