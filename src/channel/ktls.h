/*
 * ramflow - kernel TLS offload of an established GnuTLS session.
 */
#ifndef RAMFLOW_CHANNEL_KTLS_H
#define RAMFLOW_CHANNEL_KTLS_H

#include <stddef.h>

#include <gnutls/gnutls.h>

/* Hands the record layer of `sess` (handshake finished, nothing buffered)
 * to the kernel on socket fd, both directions.
 * @return 1 offloaded: from now on plain send/recv on fd carry TLS
 *           records, and GnuTLS must no longer send or receive records;
 *         0 not offloaded (no "tls" ULP, a cipher the kernel does not
 *           take, a non-TCP socket...): nothing changed, GnuTLS goes on;
 *        -1 the kernel took the send keys but refused the receive keys:
 *           the connection can no longer be used.
 *         `why` (cap bytes) says why for 0 and -1. */
int rf_ktls_offload(int fd, gnutls_session_t sess, char *why, size_t cap);

#endif
