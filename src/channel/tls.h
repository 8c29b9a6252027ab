/*
 * ramflow - the pieces behind secure.h, private to src/channel:
 * credentials and authz lists (tls_creds.c), the GnuTLS session as an
 * RfConn (tls.c) and the peer filter (peer_filter.c).
 */
#ifndef RF_CHANNEL_TLS_H
#define RF_CHANNEL_TLS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <gnutls/gnutls.h>

#include "channel/transport.h"
#include "ramflow/error.h"

/* --- credentials (tls_creds.c) ------------------------------------------ */

/* One side's loaded credentials: x509 or PSK, with the TLS 1.3 priority
 * cache to go with them.  Read-only once loaded, so shared by every
 * session of an RfSecure, on any thread. */
typedef struct RfTlsCreds RfTlsCreds;

/* Loads x509_dir's files (QEMU's tls-creds-x509 layout) or psk_dir's
 * keys.psk (QEMU's tls-creds-psk layout) for the server or the client
 * role; exactly one of the directories is set.  psk_user is the client's
 * PSK identity.  Errors name the file. */
RfTlsCreds *rf_tls_creds_load(const char *x509_dir, const char *psk_dir,
                              const char *psk_user, bool server,
                              RfError **errp);
void rf_tls_creds_free(RfTlsCreds *cr);
bool rf_tls_creds_is_psk(const RfTlsCreds *cr);
/* The keys.psk path, for messages ("" for x509). */
const char *rf_tls_creds_psk_file(const RfTlsCreds *cr);
/* Puts the priorities and credentials on a new session (and, for a
 * server, requires a client certificate). */
int rf_tls_creds_apply(const RfTlsCreds *cr, gnutls_session_t sess);
/* Server, PSK: the key of `user` (gnutls_malloc'ed into key).  @return
 * false if keys.psk has no such user. */
bool rf_tls_creds_psk_key(const RfTlsCreds *cr, const char *user,
                          gnutls_datum_t *key);

/* Server, PSK: GnuTLS's key lookup (tls.c), installed on the server's
 * credentials; finds the session's creds through its ptr. */
int rf_tls_psk_server_cb(gnutls_session_t sess, const gnutls_datum_t *user,
                         gnutls_datum_t *key);

/* The accepted client identities (tls-authz). */
typedef struct RfAuthz {
    char **ids;
    size_t n;
    bool any;  /* no list was given: any verified identity */
} RfAuthz;

/* Fills a from list ("id;id") and the lines of file (either may be NULL
 * or ""). */
bool rf_authz_load(RfAuthz *a, const char *list, const char *file,
                   RfError **errp);
/* With neither a list nor a file, any (verified) identity passes; a
 * file without entries lets none pass. */
bool rf_authz_allows(const RfAuthz *a, const char *id);
void rf_authz_free(RfAuthz *a);

/* --- the TLS connection (tls.c) ----------------------------------------- */

typedef struct RfTlsParams {
    const RfTlsCreds *creds;
    bool server;
    const char *hostname;     /* client, x509: name the server must carry */
    const RfAuthz *authz;     /* server: accepted identities */
    unsigned handshake_ms;    /* bound on the whole handshake */
    atomic_int *cancel;       /* checked every 100 ms; may be NULL */
} RfTlsParams;

/* Runs the TLS handshake over inner (a socket connection; owned from now
 * on, closed on failure), verifies the peer and, on a server, checks
 * authz.  The client then waits for the server's verdict, so a rejected
 * client fails here too, with the server's alert, instead of in its first
 * receive.  @return the TLS connection, or NULL with RF_ERR_AUTH
 * (verification, authz, a peer that does not speak TLS),
 * RF_ERR_TIMEOUT, RF_ERR_CANCELLED or RF_ERR_IO. */
RfConn *rf_tls_conn_new(RfConn *inner, const RfTlsParams *p,
                        RfError **errp);

/* --- the peer filter (peer_filter.c) ------------------------------------ */

typedef struct RfPeerFilter RfPeerFilter;

/* Parses "CIDR[,CIDR...]".  @return NULL with RF_ERR_PARAM naming the bad
 * entry. */
RfPeerFilter *rf_peer_filter_new(const char *spec, RfError **errp);
void rf_peer_filter_free(RfPeerFilter *f);
/* Whether a peer at sa may connect: a unix socket always may, an IPv4
 * address (also IPv4-mapped IPv6) if an IPv4 network holds it, an IPv6
 * address if an IPv6 network does. */
bool rf_peer_filter_allows(const RfPeerFilter *f, const struct sockaddr *sa);

#endif /* RF_CHANNEL_TLS_H */
