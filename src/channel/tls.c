/*
 * ramflow - a GnuTLS session as an RfConn, over a socket connection.
 *
 * I/O: GnuTLS reads and writes through tls_pull/tls_push below, which use
 * the inner connection's socket with MSG_DONTWAIT and poll() only when
 * the kernel has nothing to give or no room: the stall limit (the
 * connection's timeout_ms, or the handshake deadline while handshaking)
 * and a cancel flag are enforced there, and the errno they end with is
 * kept so errors say "timed out" or "connection reset" rather than
 * GnuTLS's "Error in the pull function".  GnuTLS allows one thread in
 * gnutls_record_send and another in gnutls_record_recv; shutdown is a
 * shutdown(2) of the socket, which wakes both.
 *
 * Records: sendv packs small pieces (a header, a short message) into
 * full 16 KiB records with the bytes that follow and hands large pieces
 * to GnuTLS directly, so a packet never becomes many tiny records.
 *
 * Verdict: in TLS 1.3 the client's handshake ends before the server has
 * checked the client's certificate, so the server, once it has verified
 * and authorised the client, sends one byte (RF_TLS_VERDICT_OK), or an
 * alert when it refuses it; the client waits for it before returning.
 * A refused client thus fails in connect with the server's reason, not in
 * its first receive.  The byte is not counted as payload.
 *
 * Kernel TLS: once established, a session over TCP is offered to the
 * kernel (ktls.c, TCP_ULP "tls" with the keys GnuTLS negotiated); where
 * it takes it, records are sent and received with plain send/recv on the
 * socket through the same pull/push (so the same deadlines and cancel
 * apply) and GnuTLS no longer touches records; elsewhere GnuTLS goes on
 * in user space.  The report says which.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <gnutls/socket.h>
#include <gnutls/x509.h>

#include "channel/ktls.h"
#include "channel/socket.h"
#include "channel/tls.h"

#define TLS_RECORD 16384        /* TLS's largest record payload */
#define TLS_BYE_MS 100          /* bound on close_notify at close */
#define TLS_ALERT_MS 200        /* bound on sending a refusal's alert */
#define TLS_CANCEL_SLICE_MS 100
#define RF_TLS_VERDICT_OK 0x01
#define TLS_CT_ALERT 0x15       /* record types a TLS peer starts with */
#define TLS_CT_HANDSHAKE 0x16

typedef struct TlsConn {
    RfConn base;
    RfConn *inner;
    int fd;                 /* inner's socket */
    const char *peer;       /* inner's peer name, for messages */
    gnutls_session_t sess;
    const RfTlsCreds *creds;
    bool server;
    bool established;       /* handshake and verdict done */
    bool ktls;              /* records offloaded to the kernel (ktls.c) */
    /* While handshaking (or closing): the wall-clock limit in ms on the
     * monotonic clock, else 0 and timeout_ms applies per wait. */
    long long deadline;
    /* The deadline of the record receive / send call in progress
     * (rf_conn_call_deadline), 0 = none; atomics because a push can run
     * on the receiving thread. */
    _Atomic long long rx_end, tx_end;
    unsigned handshake_ms;  /* the handshake's bound, for messages */
    atomic_int *cancel;     /* while handshaking */
    int first_in;           /* first byte received, -1 before */
    char psk_user[128];     /* server, PSK: identity the client sent */
    bool psk_known;         /* ... and whether keys.psk has it */
    /* errno with which the last pull / push failed (a push can run on
     * the receiving thread, for an alert, hence atomics). */
    atomic_int in_err, out_err;
    char security[64];
    unsigned char obuf[TLS_RECORD];  /* sendv's packing buffer */
} TlsConn;

/* --- transport functions for GnuTLS -------------------------------------- */

/* Waits until fd is ready for `events` within the current limit.
 * @return 0, or the errno to fail with (ETIMEDOUT, ECANCELED, poll's). */
static int tls_wait(TlsConn *tc, short events)
{
    /* The handshake's bound, else the whole call's (so a trickling peer
     * cannot restart the limit with each byte), else one per wait. */
    long long end = tc->deadline;
    if (!end) {
        end = atomic_load(events == POLLIN ? &tc->rx_end : &tc->tx_end);
    }
    if (!end && tc->base.timeout_ms) {
        end = rf_sock_now_ms() + tc->base.timeout_ms;
    }
    atomic_int *cancel = tc->cancel ? tc->cancel : tc->base.cancel;
    for (;;) {
        int ms = -1;
        if (end) {
            long long left = end - rf_sock_now_ms();
            if (left <= 0) {
                return ETIMEDOUT;
            }
            ms = left > INT_MAX ? INT_MAX : (int)left;
        }
        if (cancel) {
            if (atomic_load(cancel)) {
                return ECANCELED;
            }
            if (ms < 0 || ms > TLS_CANCEL_SLICE_MS) {
                ms = TLS_CANCEL_SLICE_MS;
            }
        }
        int r = rf_sock_poll(tc->fd, events, ms);
        if (r > 0) {
            return 0;  /* also POLLHUP/POLLERR: the I/O call says which */
        }
        if (r < 0) {
            return errno;
        }
    }
}

/* After a recv/send that failed with errno: 0 to try again (EINTR, or
 * the socket became ready within the limit), else -1 with errno and
 * *why set to the reason.  A receive that outlasted timeout_ms (not
 * while handshaking) fails with EAGAIN: GnuTLS then keeps the session,
 * and any partial record, so that, as on a plain socket, the next
 * receive can go on where this one stopped. */
static int io_retry(TlsConn *tc, short events, atomic_int *why)
{
    int e = errno;
    if (e == EINTR) {
        return 0;
    }
    if (e == EAGAIN || e == EWOULDBLOCK) {
        e = tls_wait(tc, events);
        if (!e) {
            return 0;
        }
    }
    atomic_store(why, e);
    errno = (e == ETIMEDOUT || e == ECANCELED) && events == POLLIN &&
            !tc->deadline ? EAGAIN : e;
    return -1;
}

static ssize_t tls_pull(gnutls_transport_ptr_t ptr, void *buf, size_t n)
{
    TlsConn *tc = ptr;
    for (;;) {
        ssize_t r = recv(tc->fd, buf, n, MSG_DONTWAIT);
        if (r > 0 && tc->first_in < 0) {
            tc->first_in = *(unsigned char *)buf;
        }
        if (r >= 0) {
            return r;
        }
        if (io_retry(tc, POLLIN, &tc->in_err) < 0) {
            return -1;
        }
    }
}

/* Writes all n bytes (GnuTLS would treat a short write as "try again"). */
static ssize_t tls_push(gnutls_transport_ptr_t ptr, const void *buf, size_t n)
{
    TlsConn *tc = ptr;
    size_t done = 0;
    while (done < n) {
        ssize_t r = send(tc->fd, (const char *)buf + done, n - done,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r >= 0) {
            done += (size_t)r;
        } else if (io_retry(tc, POLLOUT, &tc->out_err) < 0) {
            return -1;
        }
    }
    return (ssize_t)n;
}

/* Only called if GnuTLS's own timeouts are on (they are off: the limits
 * are tls_wait's), but GnuTLS would otherwise poll the pointer as an fd. */
static int tls_pull_timeout(gnutls_transport_ptr_t ptr, unsigned ms)
{
    TlsConn *tc = ptr;
    return rf_sock_poll(tc->fd, POLLIN,
                        ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int)ms);
}

int rf_tls_psk_server_cb(gnutls_session_t sess, const gnutls_datum_t *user,
                         gnutls_datum_t *key)
{
    TlsConn *tc = gnutls_session_get_ptr(sess);
    snprintf(tc->psk_user, sizeof(tc->psk_user), "%.*s", (int)user->size,
             (const char *)user->data);
    tc->psk_known = rf_tls_creds_psk_key(tc->creds, tc->psk_user, key);
    return tc->psk_known ? 0 : -1;
}

/* --- messages ------------------------------------------------------------ */

/* The side at the other end, as the operator knows it. */
static const char *other_side(const TlsConn *tc)
{
    return tc->server ? "source" : "destination";
}

/* Describes certificate verification status bits: "has expired and does
 * not match host name 'x'". */
static void status_text(unsigned st, const char *host, char *out,
                        size_t cap)
{
    static const struct {
        unsigned bit;
        const char *text;
    } t[] = {
        { GNUTLS_CERT_SIGNER_NOT_FOUND,
          "is not trusted by tls-creds' ca-cert.pem (signer not found)" },
        { GNUTLS_CERT_SIGNER_NOT_CA,
          "is signed by a certificate that is not a CA" },
        { GNUTLS_CERT_REVOKED, "has been revoked (tls-creds' ca-crl.pem)" },
        { GNUTLS_CERT_EXPIRED, "has expired" },
        { GNUTLS_CERT_NOT_ACTIVATED, "is not valid yet (check the clocks)" },
        { GNUTLS_CERT_SIGNATURE_FAILURE, "has a bad signature" },
        { GNUTLS_CERT_INSECURE_ALGORITHM,
          "is signed with an insecure algorithm" },
        { GNUTLS_CERT_UNEXPECTED_OWNER, "does not match host name" },
    };
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]) && len < cap; i++) {
        if (!(st & t[i].bit)) {
            continue;
        }
        len += (size_t)snprintf(out + len, cap - len, "%s%s",
                                len ? " and " : "", t[i].text);
        if (t[i].bit == GNUTLS_CERT_UNEXPECTED_OWNER && len < cap) {
            len += (size_t)snprintf(out + len, cap - len, " '%s'",
                                    host ? host : "");
        }
    }
    if (!out[0]) {
        gnutls_datum_t d;
        if (gnutls_certificate_verification_status_print(
                st, GNUTLS_CRT_X509, &d, 0) >= 0) {
            snprintf(out, cap, "is not valid: %s", d.data);
            gnutls_free(d.data);
        } else {
            snprintf(out, cap, "is not valid (status 0x%x)", st);
        }
    }
}

/* The alert that tells the peer why its certificate was refused. */
static gnutls_alert_description_t status_alert(unsigned st)
{
    if (st & GNUTLS_CERT_SIGNER_NOT_FOUND) {
        return GNUTLS_A_UNKNOWN_CA;
    }
    if (st & GNUTLS_CERT_EXPIRED) {
        return GNUTLS_A_CERTIFICATE_EXPIRED;
    }
    if (st & GNUTLS_CERT_REVOKED) {
        return GNUTLS_A_CERTIFICATE_REVOKED;
    }
    return GNUTLS_A_BAD_CERTIFICATE;
}

/* Names a received alert and what it most likely means for this side. */
static void alert_text(const TlsConn *tc, char *out, size_t cap)
{
    static const struct {
        gnutls_alert_description_t a;
        const char *name, *hint;
    } t[] = {
        { GNUTLS_A_BAD_CERTIFICATE, "bad certificate",
          "it refused this side's certificate" },
        { GNUTLS_A_UNKNOWN_CA, "unknown CA",
          "this side's certificate is not signed by its tls-creds CA" },
        { GNUTLS_A_CERTIFICATE_EXPIRED, "certificate expired",
          "this side's certificate has expired" },
        { GNUTLS_A_CERTIFICATE_REVOKED, "certificate revoked",
          "this side's certificate is on its CRL" },
        { GNUTLS_A_ACCESS_DENIED, "access denied",
          "this side's identity is not on its tls-authz list" },
        { GNUTLS_A_CERTIFICATE_REQUIRED, "certificate required",
          "it requires a client certificate: put client-cert.pem and "
          "client-key.pem in tls-creds" },
        { GNUTLS_A_UNKNOWN_PSK_IDENTITY, "unknown PSK identity",
          "its keys.psk has no key for this PSK username" },
        { GNUTLS_A_DECRYPT_ERROR, "decrypt error",
          "the pre-shared keys differ, or the handshake was tampered with" },
        { GNUTLS_A_ILLEGAL_PARAMETER, "illegal parameter",
          "with PSK: the pre-shared keys differ" },
        { GNUTLS_A_HANDSHAKE_FAILURE, "handshake failure",
          "no common credentials: is one side x509 and the other PSK?" },
        { GNUTLS_A_PROTOCOL_VERSION, "protocol version",
          "it does not speak TLS 1.3" },
    };
    gnutls_alert_description_t a = gnutls_alert_get(tc->sess);
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (t[i].a == a) {
            snprintf(out, cap, "(alert: %s): %s", t[i].name, t[i].hint);
            return;
        }
    }
    const char *name = gnutls_alert_get_name(a);
    snprintf(out, cap, "(alert: %s)", name ? name : "unknown");
}

/* Sends a fatal alert within a short bound (the handshake failed; only
 * the peer's message is at stake). */
static void alert_send(TlsConn *tc, gnutls_alert_description_t a)
{
    tc->deadline = rf_sock_now_ms() + TLS_ALERT_MS;
    gnutls_alert_send(tc->sess, GNUTLS_AL_FATAL, a);
}

/* Server, PSK: says what was wrong with the client's identity or key
 * (handshake error r), if that is what failed. */
static bool psk_error(TlsConn *tc, int r, RfError **errp)
{
    if (!tc->server || !rf_tls_creds_is_psk(tc->creds) || !tc->psk_user[0]) {
        return false;
    }
    const char *file = rf_tls_creds_psk_file(tc->creds);
    if (!tc->psk_known) {
        rf_error_set(errp, RF_ERR_AUTH, "TLS: PSK username '%s' of the "
                     "source at %s is not in %s", tc->psk_user, tc->peer,
                     file);
        alert_send(tc, GNUTLS_A_UNKNOWN_PSK_IDENTITY);
    } else if (r == GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER ||
               r == GNUTLS_E_DECRYPTION_FAILED) {
        /* The binder, made with the client's key, did not verify. */
        rf_error_set(errp, RF_ERR_AUTH, "TLS: the source's pre-shared key "
                     "for '%s' differs from the one in %s", tc->psk_user,
                     file);
        alert_send(tc, GNUTLS_A_DECRYPT_ERROR);
    } else {
        return false;
    }
    return true;
}

/* Turns a failed handshake (or verdict) into the error that says what
 * went wrong, and tells the peer with an alert where one applies. */
static void handshake_error(TlsConn *tc, int r, const char *host,
                            RfError **errp)
{
    int sys = atomic_exchange(&tc->in_err, 0);
    int sys_out = atomic_exchange(&tc->out_err, 0);
    if (!sys) {
        sys = sys_out;
    }
    char why[512];
    if (sys == ETIMEDOUT || r == GNUTLS_E_TIMEDOUT) {
        rf_error_set(errp, RF_ERR_TIMEOUT, "TLS handshake with %s: no "
                     "answer within %u ms (is the %s configured for TLS?)",
                     tc->peer, tc->handshake_ms, other_side(tc));
    } else if (sys == ECANCELED) {
        rf_error_set(errp, RF_ERR_CANCELLED, "cancelled during the TLS "
                     "handshake with %s", tc->peer);
    } else if (tc->first_in >= 0 && tc->first_in != TLS_CT_HANDSHAKE &&
               tc->first_in != TLS_CT_ALERT) {
        rf_error_set(errp, RF_ERR_AUTH, "TLS handshake with %s failed: the "
                     "%s does not speak TLS (its first byte is 0x%02x): "
                     "configure TLS on both sides", tc->peer,
                     other_side(tc), tc->first_in);
    } else if (r == GNUTLS_E_FATAL_ALERT_RECEIVED) {
        alert_text(tc, why, sizeof(why));
        rf_error_set(errp, RF_ERR_AUTH, "TLS handshake with %s failed: the "
                     "%s refused this side %s", tc->peer, other_side(tc),
                     why);
    } else if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
        status_text(gnutls_session_get_verify_cert_status(tc->sess), host,
                    why, sizeof(why));
        rf_error_set(errp, RF_ERR_AUTH, "TLS: the %s's certificate %s",
                     other_side(tc), why);
        alert_send(tc, status_alert(
                           gnutls_session_get_verify_cert_status(tc->sess)));
    } else if (tc->server && (r == GNUTLS_E_NO_CERTIFICATE_FOUND ||
                              r == GNUTLS_E_CERTIFICATE_REQUIRED)) {
        rf_error_set(errp, RF_ERR_AUTH, "TLS: client certificate missing: "
                     "the source at %s sent none (its tls-creds directory "
                     "needs client-cert.pem and client-key.pem)", tc->peer);
        alert_send(tc, GNUTLS_A_CERTIFICATE_REQUIRED);
    } else if (psk_error(tc, r, errp)) {
        /* set */
    } else if (sys == ECONNRESET || sys == EPIPE) {
        rf_error_set(errp, RF_ERR_IO, "TLS handshake with %s failed: %s "
                     "(does the %s expect TLS, and accept this side?)",
                     tc->peer, strerror(sys), other_side(tc));
    } else if (sys) {
        rf_error_set(errp, RF_ERR_IO, "TLS handshake with %s failed: %s",
                     tc->peer, strerror(sys));
    } else if (r == GNUTLS_E_PREMATURE_TERMINATION || r == 0) {
        rf_error_set(errp, RF_ERR_IO, "TLS handshake with %s failed: "
                     "connection closed by the %s (does it expect TLS, "
                     "and accept this side?)", tc->peer, other_side(tc));
    } else {
        rf_error_set(errp, RF_ERR_AUTH, "TLS handshake with %s failed: %s",
                     tc->peer, gnutls_strerror(r));
        tc->deadline = rf_sock_now_ms() + TLS_ALERT_MS;
        gnutls_alert_send_appropriate(tc->sess, r);
    }
}

/* --- verification and verdict -------------------------------------------- */

/* Server, x509: verifies the client's certificate and writes its DN into
 * id.  @return false with the error set and the alert sent. */
static bool server_verify_x509(TlsConn *tc, char *id, char *id_compat,
                               size_t cap, RfError **errp)
{
    unsigned st = 0;
    int r = gnutls_certificate_verify_peers3(tc->sess, NULL, &st);
    if (r < 0 || st) {
        char why[512];
        status_text(st, NULL, why, sizeof(why));
        if (r < 0) {
            snprintf(why, sizeof(why), "could not be verified: %s",
                     gnutls_strerror(r));
        }
        rf_error_set(errp, RF_ERR_AUTH, "TLS: the source's certificate %s",
                     why);
        alert_send(tc, status_alert(st));
        return false;
    }
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(tc->sess, &n);
    gnutls_x509_crt_t crt = NULL;
    size_t len = cap;
    gnutls_datum_t dn = {NULL, 0};
    /* The DN as RFC 4514 writes it (what `certtool -i` prints), and as
     * gnutls_x509_crt_get_dn() writes it (what QEMU's tls-authz
     * compares): tls-authz may list either. */
    bool ok = certs && n > 0 && gnutls_x509_crt_init(&crt) >= 0 &&
              gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) >=
                  0 &&
              gnutls_x509_crt_get_dn(crt, id_compat, &len) >= 0 &&
              gnutls_x509_crt_get_dn3(crt, &dn, 0) >= 0 && dn.size < cap;
    if (ok) {
        memcpy(id, dn.data, dn.size);
        id[dn.size] = '\0';
    }
    gnutls_free(dn.data);
    if (!ok) {
        rf_error_set(errp, RF_ERR_AUTH, "TLS: cannot read the "
                     "distinguished name of the source's certificate");
        alert_send(tc, GNUTLS_A_BAD_CERTIFICATE);
        if (crt) {
            gnutls_x509_crt_deinit(crt);
        }
        return false;
    }
    gnutls_x509_crt_deinit(crt);
    return true;
}

/* Server: verifies and authorises the client, then sends the verdict. */
static bool server_verdict(TlsConn *tc, const RfTlsParams *p,
                           RfError **errp)
{
    char id[1024], id_compat[1024] = "";
    if (rf_tls_creds_is_psk(tc->creds)) {
        snprintf(id, sizeof(id), "%s", tc->psk_user);
    } else if (!server_verify_x509(tc, id, id_compat, sizeof(id), errp)) {
        return false;
    }
    if (!rf_authz_allows(p->authz, id) &&
        !(id_compat[0] && rf_authz_allows(p->authz, id_compat))) {
        rf_error_set(errp, RF_ERR_AUTH, "TLS: client identity '%s' is not "
                     "on the tls-authz list", id);
        alert_send(tc, GNUTLS_A_ACCESS_DENIED);
        return false;
    }
    const unsigned char ok = RF_TLS_VERDICT_OK;
    ssize_t r = gnutls_record_send(tc->sess, &ok, 1);
    if (r != 1) {
        handshake_error(tc, (int)r, NULL, errp);
        return false;
    }
    return true;
}

/* Client: waits for the server's verdict (see the file comment). */
static bool client_verdict(TlsConn *tc, RfError **errp)
{
    unsigned char v = 0;
    ssize_t r;
    do {
        r = gnutls_record_recv(tc->sess, &v, 1);
    } while (r < 0 && !gnutls_error_is_fatal((int)r));
    if (r != 1 || v != RF_TLS_VERDICT_OK) {
        if (r == 1) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "TLS with %s: unexpected "
                         "byte 0x%02x instead of the destination's verdict",
                         tc->peer, v);
        } else {
            handshake_error(tc, (int)r, NULL, errp);
        }
        return false;
    }
    return true;
}

/* --- the connection ops -------------------------------------------------- */

/* Maps a failed record send/receive to RF_ERR_TIMEOUT / RF_ERR_IO. */
static void io_error(TlsConn *tc, ssize_t r, bool sending, size_t done,
                     size_t total, RfError **errp)
{
    int sys = atomic_exchange(sending ? &tc->out_err : &tc->in_err, 0);
    const char *op = sending ? "send" : "receive";
    if (sys == ECANCELED) {
        rf_error_set(errp, RF_ERR_CANCELLED, "%s: cancelled while %s (%zu "
                     "of %zu bytes)", tc->peer,
                     sending ? "sending" : "receiving", done, total);
    } else if (sys == ETIMEDOUT && done) {
        rf_error_set(errp, RF_ERR_TIMEOUT, "%s: peer stalled: only %zu of "
                     "%zu bytes %s within %u ms (the limit covers a whole "
                     "message)", tc->peer, done, total,
                     sending ? "sent" : "received", tc->base.timeout_ms);
    } else if (sys == ETIMEDOUT && sending) {
        rf_error_set(errp, RF_ERR_TIMEOUT, "%s: peer stalled: could not "
                     "send for %u ms (%zu of %zu bytes sent)", tc->peer,
                     tc->base.timeout_ms, done, total);
    } else if (sys == ETIMEDOUT) {
        rf_error_set(errp, RF_ERR_TIMEOUT, "%s: peer stalled: no data for "
                     "%u ms (%zu of %zu bytes received)", tc->peer,
                     tc->base.timeout_ms, done, total);
    } else if (sys == EBADMSG && tc->ktls) {
        /* The kernel's word for a record that failed authentication: bad
         * input, as GNUTLS_E_DECRYPTION_FAILED below. */
        rf_error_set(errp, RF_ERR_PROTOCOL, "%s: TLS %s failed after %zu of "
                     "%zu bytes: a record failed authentication (kernel "
                     "TLS)", tc->peer, op, done, total);
    } else if (sys) {
        rf_error_set(errp, RF_ERR_IO, "%s: TLS %s failed after %zu of %zu "
                     "bytes: %s", tc->peer, op, done, total, strerror(sys));
    } else if (r == 0 || r == GNUTLS_E_PREMATURE_TERMINATION) {
        rf_error_set(errp, RF_ERR_IO, "%s: connection closed by peer after "
                     "%zu of %zu bytes", tc->peer, done, total);
    } else if (r == GNUTLS_E_DECRYPTION_FAILED) {
        /* Bytes changed on the way: bad input, not a broken connection
         * (a data channel with 'reconnect' fails rather than waits). */
        rf_error_set(errp, RF_ERR_PROTOCOL, "%s: TLS %s failed after %zu of "
                     "%zu bytes: %s", tc->peer, op, done, total,
                     gnutls_strerror((int)r));
    } else {
        rf_error_set(errp, RF_ERR_IO, "%s: TLS %s failed after %zu of %zu "
                     "bytes: %s", tc->peer, op, done, total,
                     gnutls_strerror((int)r));
    }
}

/* Sends buf[0..n) as records of up to 16 KiB (the kernel's with kernel
 * TLS: plain sends, the kernel cuts the records). */
static bool send_records(TlsConn *tc, const unsigned char *buf, size_t n,
                         size_t *done, size_t total, RfError **errp)
{
    while (n > 0) {
        ssize_t r = tc->ktls ? tls_push(tc, buf, n)
                             : gnutls_record_send(tc->sess, buf, n);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
            continue;
        }
        if (r <= 0) {
            io_error(tc, r, true, *done, total, errp);
            return false;
        }
        buf += r;
        n -= (size_t)r;
        *done += (size_t)r;
        rf_conn_count_out(&tc->base, (unsigned long long)r);
    }
    return true;
}

static bool tls_sendv(RfConn *c, struct iovec *iov, int iovcnt,
                      RfError **errp)
{
    TlsConn *tc = (TlsConn *)c;
    size_t total = 0, done = 0, fill = 0;
    for (int i = 0; i < iovcnt; i++) {
        total += iov[i].iov_len;
    }
    atomic_store(&tc->tx_end, rf_conn_call_deadline(c, false));
    for (int i = 0; i < iovcnt; i++) {
        const unsigned char *p = iov[i].iov_base;
        size_t len = iov[i].iov_len;
        while (len > 0) {
            if (fill == 0 && len >= TLS_RECORD) {
                size_t whole = len - len % TLS_RECORD;
                if (!send_records(tc, p, whole, &done, total, errp)) {
                    return false;
                }
                p += whole;
                len -= whole;
                continue;
            }
            size_t k = TLS_RECORD - fill < len ? TLS_RECORD - fill : len;
            memcpy(tc->obuf + fill, p, k);
            fill += k;
            p += k;
            len -= k;
            if (fill == TLS_RECORD) {
                if (!send_records(tc, tc->obuf, fill, &done, total, errp)) {
                    return false;
                }
                fill = 0;
            }
        }
    }
    return send_records(tc, tc->obuf, fill, &done, total, errp);
}

static bool tls_recvv(RfConn *c, struct iovec *iov, int iovcnt,
                      RfError **errp)
{
    TlsConn *tc = (TlsConn *)c;
    size_t total = 0, done = 0;
    for (int i = 0; i < iovcnt; i++) {
        total += iov[i].iov_len;
    }
    atomic_store(&tc->rx_end, rf_conn_call_deadline(c, true));
    for (int i = 0; i < iovcnt; i++) {
        unsigned char *p = iov[i].iov_base;
        size_t len = iov[i].iov_len;
        while (len > 0) {
            ssize_t r = tc->ktls ? tls_pull(tc, p, len)
                                 : gnutls_record_recv(tc->sess, p, len);
            int why = atomic_load(&tc->in_err);
            bool stalled = r == GNUTLS_E_AGAIN &&
                           (why == ETIMEDOUT || why == ECANCELED);
            if (r < 0 && !tc->ktls && !stalled &&
                !gnutls_error_is_fatal((int)r)) {
                continue;  /* EINTR, a warning alert */
            }
            if (r <= 0) {
                io_error(tc, r, false, done, total, errp);
                return false;
            }
            p += r;
            len -= (size_t)r;
            done += (size_t)r;
            rf_conn_count_in(c, (unsigned long long)r);
        }
    }
    return true;
}

/* Bytes GnuTLS already decrypted count as readable: poll would not see
 * them. */
static bool tls_wait_readable(RfConn *c, int ms)
{
    TlsConn *tc = (TlsConn *)c;
    if (gnutls_record_check_pending(tc->sess) > 0) {
        return true;
    }
    return rf_sock_poll(tc->fd, POLLIN, ms) > 0;
}

static bool tls_peer_uri(RfConn *c, char *uri, size_t cap, RfError **errp)
{
    return rf_conn_peer_uri(((TlsConn *)c)->inner, uri, cap, errp);
}

/* shutdown(2) only: safe while other threads are inside GnuTLS. */
static void tls_shutdown(RfConn *c)
{
    rf_conn_shutdown(((TlsConn *)c)->inner);
}

static RfConn *tls_inner(RfConn *c)
{
    return ((TlsConn *)c)->inner;
}

static void tls_free(TlsConn *tc)
{
    if (tc->sess) {
        gnutls_deinit(tc->sess);
    }
    rf_conn_close(tc->inner);
    free(tc);
}

/* A bounded close_notify, so the peer sees an orderly end (not with
 * kernel TLS: GnuTLS's record state is stale then, and the protocol's
 * own messages already say where a migration ends). */
static void tls_close(RfConn *c)
{
    TlsConn *tc = (TlsConn *)c;
    if (tc->established && !tc->ktls) {
        tc->deadline = rf_sock_now_ms() + TLS_BYE_MS;
        gnutls_bye(tc->sess, GNUTLS_SHUT_WR);
    }
    tls_free(tc);
}

static bool tls_export(RfConn *c, const char *label, const void *ctx,
                       size_t ctxlen, unsigned char *out, size_t outlen,
                       RfError **errp)
{
    TlsConn *tc = (TlsConn *)c;
    int r = gnutls_prf_rfc5705(tc->sess, strlen(label), label, ctxlen,
                               ctx, outlen, (char *)out);
    if (r < 0) {
        rf_error_set(errp, RF_ERR_GENERIC, "%s: exporting TLS keying "
                     "material: %s", tc->peer, gnutls_strerror(r));
        return false;
    }
    return true;
}

static const char *tls_security(const RfConn *c)
{
    return ((const TlsConn *)c)->security;
}

static const RfConnOps tls_conn_ops = {
    .sendv = tls_sendv,
    .recvv = tls_recvv,
    .inner = tls_inner,
    .wait_readable = tls_wait_readable,
    .peer_uri = tls_peer_uri,
    .shutdown = tls_shutdown,
    .close = tls_close,
    .export = tls_export,
    .security = tls_security,
};

/* --- set-up -------------------------------------------------------------- */

static bool session_new(TlsConn *tc, const RfTlsParams *p, RfError **errp)
{
    unsigned flags = (p->server ? GNUTLS_SERVER : GNUTLS_CLIENT) |
                     GNUTLS_NO_TICKETS;
    int r = gnutls_init(&tc->sess, flags);
    if (r >= 0) {
        r = rf_tls_creds_apply(p->creds, tc->sess);
    }
    if (r < 0) {
        rf_error_set(errp, RF_ERR_GENERIC, "TLS session with %s: %s",
                     tc->peer, gnutls_strerror(r));
        return false;
    }
    if (!p->server && !rf_tls_creds_is_psk(p->creds)) {
        gnutls_session_set_verify_cert(tc->sess, p->hostname, 0);
    }
    if (p->server && !rf_tls_creds_is_psk(p->creds)) {
        /* Without the CA names, a client whose certificate another CA
         * signed still sends it, and hears why it is refused rather than
         * "certificate required". */
        gnutls_certificate_send_x509_rdn_sequence(tc->sess, 1);
    }
    gnutls_session_set_ptr(tc->sess, tc);
    gnutls_transport_set_ptr(tc->sess, tc);
    gnutls_transport_set_pull_function(tc->sess, tls_pull);
    gnutls_transport_set_push_function(tc->sess, tls_push);
    gnutls_transport_set_pull_timeout_function(tc->sess, tls_pull_timeout);
    gnutls_handshake_set_timeout(tc->sess, 0);
    return true;
}

/* "TLS 1.3 x509, user-space TLS": what protects the connection. */
static void describe(TlsConn *tc)
{
    const char *ver = gnutls_protocol_get_name(
        gnutls_protocol_get_version(tc->sess));
    int ktls = tc->ktls || gnutls_transport_is_ktls_enabled(tc->sess);
    snprintf(tc->security, sizeof(tc->security), "%s %s, %s",
             ver && strcmp(ver, "TLS1.3") == 0 ? "TLS 1.3" : ver ? ver : "TLS",
             rf_tls_creds_is_psk(tc->creds) ? "PSK" : "x509",
             ktls > 0 ? "kernel TLS" : "user-space TLS");
}

RfConn *rf_tls_conn_new(RfConn *inner, const RfTlsParams *p,
                        RfError **errp)
{
    const char *peer = NULL;
    int fd = rf_sock_conn_fd(inner, &peer);
    if (fd < 0) {
        rf_error_set(errp, RF_ERR_PARAM, "TLS runs over tcp and unix "
                     "socket connections only");
        rf_conn_close(inner);
        return NULL;
    }
    if (!p->server && !rf_tls_creds_is_psk(p->creds) &&
        !(p->hostname && *p->hostname)) {
        rf_error_set(errp, RF_ERR_PARAM, "TLS with %s: no host name to "
                     "check the destination's certificate against: set "
                     "tls-hostname", peer);
        rf_conn_close(inner);
        return NULL;
    }
    TlsConn *tc = calloc(1, sizeof(*tc));
    if (!tc) {
        rf_error_set(errp, RF_ERR_GENERIC, "%s: out of memory", peer);
        rf_conn_close(inner);
        return NULL;
    }
    tc->base.ops = &tls_conn_ops;
    tc->base.timeout_ms = inner->timeout_ms;
    tc->base.cancel = inner->cancel;
    tc->inner = inner;
    tc->fd = fd;
    tc->peer = peer;
    tc->creds = p->creds;
    tc->server = p->server;
    tc->first_in = -1;
    tc->deadline = rf_sock_now_ms() + p->handshake_ms;
    tc->handshake_ms = p->handshake_ms;
    tc->cancel = p->cancel;
    if (!session_new(tc, p, errp)) {
        tls_free(tc);
        return NULL;
    }
    int r;
    do {
        r = gnutls_handshake(tc->sess);
    } while (r < 0 && !gnutls_error_is_fatal(r));
    bool ok;
    if (r < 0) {
        handshake_error(tc, r, p->hostname, errp);
        ok = false;
    } else {
        ok = p->server ? server_verdict(tc, p, errp)
                       : client_verdict(tc, errp);
    }
    if (!ok) {
        tls_free(tc);
        return NULL;
    }
    char why[160];
    int k = rf_ktls_offload(tc->fd, tc->sess, why, sizeof(why));
    if (k < 0) {
        rf_error_set(errp, RF_ERR_IO, "%s: kernel TLS: %s", peer, why);
        tls_free(tc);
        return NULL;
    }
    tc->ktls = k > 0;
    tc->deadline = 0;
    tc->cancel = NULL;
    tc->established = true;
    describe(tc);
    return &tc->base;
}
