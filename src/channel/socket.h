/*
 * ramflow - private glue between transport.c (URIs, dispatch, accept) and
 * socket.c (the tcp and unix transports).  Nothing outside src/channel
 * includes this file.
 */
#ifndef RF_CHANNEL_SOCKET_H
#define RF_CHANNEL_SOCKET_H

#include <stdbool.h>
#include <stddef.h>

#include "channel/transport.h"

/* The built-in transports (socket.c).  Their connect/listen receive the
 * address without the "scheme:" prefix. */
extern const RfTransportOps rf_tcp_transport;
extern const RfTransportOps rf_unix_transport;

/* Longest host part of a tcp address, brackets excluded. */
#define RF_HOST_MAX 255

/* Splits "HOST:PORT" or "[V6]:PORT" (the part after "tcp:") into host
 * (brackets removed) and port; port 0 is accepted only if allow_zero.
 * @return false with an RF_ERR_PARAM error quoting the whole URI. */
bool rf_tcp_addr_parse(const char *addr, bool allow_zero,
                       char host[RF_HOST_MAX + 1], unsigned *port,
                       RfError **errp);

/* Checks "PATH" (the part after "unix:") fits a sockaddr_un. */
bool rf_unix_addr_check(const char *addr, RfError **errp);

/* Wraps an accepted or connected socket in a connection; takes ownership
 * of fd (closed on failure).  `peer` names it in error messages. */
RfConn *rf_sock_conn_new(int fd, const char *peer, RfError **errp);

#endif /* RF_CHANNEL_SOCKET_H */
