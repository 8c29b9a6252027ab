/*
 * ramflow - secure channels: TLS 1.3 (GnuTLS) over any transport, and the
 * peer filter, both behind the transport ops tables (transport.h) so the
 * engine only ever sees RfConn and RfListener.
 *
 * An RfSecure holds one side's loaded credentials (x509 in QEMU's
 * tls-creds-x509 directory layout, or pre-shared keys in QEMU's
 * tls-creds-psk layout), the client identities the server accepts
 * (tls-authz) and the networks it accepts connections from (allow-peer).
 *
 * A server wraps its listener: the wrapped listener's accept returns only
 * connections that passed the peer filter and, with TLS, completed a
 * TLS 1.3 handshake with a verified, authorised peer.  Every other
 * connection (a scanner, a plaintext client, an untrusted certificate, a
 * peer that stalls in the handshake) is closed, counted and reported to
 * the `rejected` hook, and accept goes on waiting until its own deadline:
 * a stranger can never make the accept fail.
 *
 * A client connects (or wraps a connection it has) and verifies the
 * server's certificate against the CA and the expected host name.  Once
 * the server has verified and authorised the client it sends a one-byte
 * verdict (or a TLS alert), and the client's connect waits for it: a
 * client the server refuses fails in connect, with the server's alert
 * ("... the destination refused this side (alert: access denied): ...").
 *
 * Only TLS 1.3.  The session runs in user space (tls.c says why kernel
 * TLS is not used).  A TLS connection allows one thread sending while
 * another receives, like a socket one, and rf_conn_shutdown() from any
 * thread.
 *
 * Errors: verification, authz, a peer that does not speak TLS or an
 * address allow-peer refuses are RF_ERR_AUTH; a handshake that stalls
 * past handshake_timeout_ms RF_ERR_TIMEOUT; socket failures RF_ERR_IO.
 * Messages say which side and file: "TLS: the destination's certificate
 * is not trusted by tls-creds' ca-cert.pem (signer not found)", "TLS:
 * client identity 'CN=src,O=Example,C=GB' is not on the tls-authz list".
 *
 * Files: secure.c (config, connect, listener wrap, generic calls), tls.c
 * (GnuTLS session as an RfConn), tls_creds.c (loading credentials and
 * authz), peer_filter.c (allow-peer, rf_uri_is_local); tls.h declares
 * what they share.
 */
#ifndef RF_CHANNEL_SECURE_H
#define RF_CHANNEL_SECURE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "channel/transport.h"
#include "ramflow/error.h"

typedef struct RfSecureConfig {
    /* x509 credentials directory: ca-cert.pem, optional ca-crl.pem, and
     * server-cert.pem + server-key.pem (server) or client-cert.pem +
     * client-key.pem (client).  NULL or "" = no x509. */
    const char *tls_creds;
    /* PSK directory holding keys.psk ("username:hexkey" lines).  NULL or
     * "" = no PSK.  At most one of tls_creds and tls_psk. */
    const char *tls_psk;
    /* Client: the PSK identity to use (NULL or "" = "qemu"). */
    const char *psk_username;
    /* Client: the name the server certificate must carry (NULL or "" =
     * the host of the URI connected to). */
    const char *hostname;
    /* Server: accepted client identities, separated by ';': x509
     * distinguished names as gnutls_x509_crt_get_dn() writes them, or PSK
     * usernames.  NULL/"" and no authz_file = any verified peer. */
    const char *authz;
    /* Server: a file of accepted identities, one per line ('#' comments,
     * blank lines ignored); combined with authz. */
    const char *authz_file;
    /* Server: "CIDR[,CIDR...]" (IPv4 or IPv6, a bare address = /32 or
     * /128); connections from elsewhere are closed before any byte is
     * read.  Unix-socket peers always pass.  NULL/"" = any peer. */
    const char *allow_peer;
    /* Longest a TLS handshake (or, without TLS, nothing) may take on
     * accept or connect; 0 = 10000 ms. */
    unsigned handshake_timeout_ms;
    /* Server: called (on the accepting thread) for each connection a
     * wrapped listener dropped, with its peer URI (or "unknown") and the
     * reason (the message the error would have had). */
    void (*rejected)(const char *peer, const char *why, void *opaque);
    void *opaque;
} RfSecureConfig;

typedef struct RfSecure RfSecure;

/* Loads credentials for one role (server = the destination) and parses
 * the authz list and peer filter, copying every string.  Errors
 * (RF_ERR_PARAM) name the missing or bad file ("tls-creds:
 * /dir/ca-cert.pem: No such file or directory", "tls-psk:
 * /dir/keys.psk has no key for user 'qemu' ..."); tls_creds and tls_psk
 * both set, or authz without TLS, are errors too.  A client may lack
 * client-cert.pem and client-key.pem (the server will refuse it).
 * Nothing is loaded when neither tls_creds nor tls_psk is set: the result
 * then only filters peers.  Holds a gnutls_global_init() reference. */
RfSecure *rf_secure_new(const RfSecureConfig *cfg, bool server,
                        RfError **errp);
/* NULL is allowed. */
void rf_secure_free(RfSecure *s);

/* Whether TLS is configured (x509 or PSK).  NULL -> false. */
bool rf_secure_tls(const RfSecure *s);

/* Connections rejected so far by listeners wrapped with s and by
 * rf_secure_server_wrap().  NULL -> 0. */
unsigned rf_secure_rejected(const RfSecure *s);

/* Client: connects to uri within timeout_ms and, with TLS, completes the
 * handshake and verifies the server (CA, CRL, expiry, host name).
 * s NULL (or without TLS) = plain rf_conn_connect().  The connection's
 * timeout_ms starts as timeout_ms.  connect and handshake give up with
 * RF_ERR_CANCELLED soon after *cancel (if non-NULL) is set, and the
 * connection keeps cancel as its c->cancel.  Errors say what failed and
 * how to fix it (see the file comment). */
RfConn *rf_secure_connect(RfSecure *s, const char *uri, unsigned timeout_ms,
                          atomic_int *cancel, RfError **errp);

/* Client: wraps `inner` (already connected; owned from now on, closed on
 * failure) as rf_secure_connect() would.  hostname NULL = cfg->hostname;
 * if both are unset, x509 verification fails asking for tls-hostname.
 * inner's cancel flag bounds the handshake too. */
RfConn *rf_secure_client_wrap(RfSecure *s, RfConn *inner,
                              const char *hostname, RfError **errp);

/* Server: wraps `inner` (owned from now on, also on failure): accept
 * applies the peer filter and, with TLS, the handshake (bounded by
 * handshake_timeout_ms and what is left of accept's own timeout) and
 * authz; see the file comment.  Accept's timeout error counts the drops
 * and quotes the last reason.  s NULL, or neither TLS nor a filter =
 * inner itself.  s must outlive the listener. */
RfListener *rf_secure_listener_wrap(RfSecure *s, RfListener *inner,
                                    RfError **errp);

/* As rf_listener_accept(l, wait_ms, ...) on any listener, but over a
 * wrapped one a connection that arrives within wait_ms gets the whole
 * handshake time, not what is left of wait_ms: for looking at a listener
 * now and then (the destination's reconnects) with a short wait. */
RfConn *rf_secure_accept_poll(RfListener *l, unsigned wait_ms,
                              atomic_int *cancel, RfError **errp);

/* Server: wraps an accepted connection (owned from now on, closed on
 * failure) as the wrapped listener's accept would; a rejected peer is an
 * RF_ERR_AUTH error here since there is no other to wait for (a stalled
 * one RF_ERR_TIMEOUT).  Counted in rf_secure_rejected(), not reported to
 * the rejected hook (the caller has the error). */
RfConn *rf_secure_server_wrap(RfSecure *s, RfConn *inner, RfError **errp);

/* Whether uri ("tcp:HOST:PORT" or "unix:PATH") can only be reached from
 * this host: unix sockets, 127.0.0.0/8, ::1, "localhost".  An empty host
 * counts as loopback (rf_listen binds it to 127.0.0.1). */
bool rf_uri_is_local(const char *uri);

/* --- on any connection (generic calls over RfConnOps) ------------------ */

/* Fills out[outlen] with TLS keying material (RFC 5705 / RFC 8446
 * exporter) for `label` and context ctx[ctxlen]: equal on both ends of
 * one TLS session, unknowable to anyone else.  @return false with
 * RF_ERR_PARAM on a connection without TLS. */
bool rf_conn_export(RfConn *c, const char *label, const void *ctx,
                    size_t ctxlen, uint8_t *out, size_t outlen,
                    RfError **errp);

/* "TLS 1.3 x509, user-space TLS" / "TLS 1.3 PSK, kernel TLS" / NULL
 * without TLS: for reports. */
const char *rf_conn_security(const RfConn *c);

#endif /* RF_CHANNEL_SECURE_H */
