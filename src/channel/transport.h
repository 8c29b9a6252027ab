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
 * if non-NULL. */
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

#endif /* RF_CHANNEL_TRANSPORT_H */
