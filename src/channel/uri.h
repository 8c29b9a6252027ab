/*
 * ramflow - transport addresses: parsing the part of a URI after
 * "scheme:", and writing a socket address back as a URI.  Pure functions:
 * no socket is opened here.  Private to src/channel.
 */
#ifndef RF_CHANNEL_URI_H
#define RF_CHANNEL_URI_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "ramflow/error.h"

/* Quoted by every "bad address" message. */
#define RF_URI_FORMS "tcp:HOST:PORT, tcp:[IPV6]:PORT or unix:PATH"

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

/* Writes the URI that reaches socket address sa (len bytes, as
 * getsockname/getpeername return it) into out: "tcp:A.B.C.D:PORT",
 * "tcp:[V6]:PORT" (an IPv4-mapped IPv6 address is written as IPv4, a
 * link-local one keeps its "%IFACE" scope) or "unix:PATH".
 * @return false with an RF_ERR_PARAM error if the address has no URI form
 * (an unnamed or abstract Unix socket, another family) or out, of cap
 * bytes, cannot hold it. */
bool rf_sockaddr_uri(const struct sockaddr *sa, socklen_t len, char *out,
                     size_t cap, RfError **errp);

#endif /* RF_CHANNEL_URI_H */
