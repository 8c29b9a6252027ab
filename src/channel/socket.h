/*
 * ramflow - the socket connection and listener (socket.c) that the tcp
 * and unix transports (tcp.c, unix.c) and adopted sockets (adopt.c) are
 * built on.  Private to src/channel: transport.c and everything outside
 * reach sockets only through the ops tables these functions install.
 */
#ifndef RF_CHANNEL_SOCKET_H
#define RF_CHANNEL_SOCKET_H

#include <stdbool.h>

#include "channel/transport.h"

/* Wraps a connected socket in a connection (made blocking, TCP_NODELAY
 * for TCP).  `peer` names it in error messages.  fd is owned by the
 * connection on success; on failure it is left open for the caller. */
RfConn *rf_sock_conn_new(int fd, const char *peer, RfError **errp);

/* Wraps a non-blocking listening socket in a listener whose uri is `uri`;
 * unix_path, if not NULL, is the socket file to remove on close.  fd is
 * owned on success; on failure it is left open for the caller. */
RfListener *rf_sock_listener_new(int fd, const char *uri,
                                 const char *unix_path, RfError **errp);

/* The socket of c and (if peer is not NULL) the name of its peer for
 * messages, for layers that run their own I/O on it (TLS, the peer
 * filter).  @return -1 if c is not a socket connection. */
int rf_sock_conn_fd(const RfConn *c, const char **peer);

/* poll() on one fd for `events` up to ms milliseconds (negative = no
 * limit), restarting with the time left after EINTR.  @return poll's. */
int rf_sock_poll(int fd, short events, int ms);

/* Monotonic clock in milliseconds, for connect and accept deadlines. */
long long rf_sock_now_ms(void);

/* Waits for a non-blocking connect on fd to finish by deadline_ms (0 = no
 * limit), giving up within RF_CONN_SLICE_MS of *cancel (if non-NULL)
 * becoming non-zero.  @return 0 on success, else the errno (ETIMEDOUT on
 * timeout, ECANCELED on cancel). */
int rf_sock_connect_wait(int fd, long long deadline_ms, atomic_int *cancel);

/* Sets the "cannot connect to uri" error for errno value err. */
void rf_sock_connect_error(RfError **errp, const char *uri, int err,
                           unsigned timeout_ms);

#endif /* RF_CHANNEL_SOCKET_H */
