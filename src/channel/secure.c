/*
 * ramflow - RfSecure: one side's TLS and peer-filter configuration, the
 * client's connect/wrap, the server's wrapped listener, and the generic
 * calls rf_conn_export()/rf_conn_security().  The TLS session itself is
 * tls.c's, the credentials tls_creds.c's, the filter peer_filter.c's.
 */
#include "channel/secure.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "channel/socket.h"
#include "channel/tls.h"
#include "channel/uri.h"

#define HANDSHAKE_DEFAULT_MS 10000

struct RfSecure {
    bool server;
    bool gnutls_inited;     /* holds one gnutls_global_init reference */
    RfTlsCreds *creds;      /* NULL: no TLS */
    RfAuthz authz;
    RfPeerFilter *filter;   /* NULL: any peer */
    char *allow_peer;       /* the filter as written, for messages */
    char *hostname;         /* NULL: the host of the URI */
    unsigned handshake_ms;
    void (*rejected)(const char *peer, const char *why, void *opaque);
    void *opaque;
    atomic_uint nrejected;
};

/* A server-side listener that returns only accepted connections. */
typedef struct SecureListener {
    RfListener base;
    RfListener *inner;
    RfSecure *s;
} SecureListener;

static bool is_set(const char *s)
{
    return s && *s;
}

static bool secure_init(RfSecure *s, const RfSecureConfig *cfg,
                        RfError **errp)
{
    bool tls = is_set(cfg->tls_creds) || is_set(cfg->tls_psk);
    if (tls) {
        int r = gnutls_global_init();
        if (r < 0) {
            rf_error_set(errp, RF_ERR_GENERIC, "TLS: initialising GnuTLS: "
                         "%s", gnutls_strerror(r));
            return false;
        }
        s->gnutls_inited = true;
        s->creds = rf_tls_creds_load(
            is_set(cfg->tls_creds) ? cfg->tls_creds : NULL, cfg->tls_psk,
            is_set(cfg->psk_username) ? cfg->psk_username : "qemu",
            s->server, errp);
        if (!s->creds) {
            return false;
        }
    }
    if (s->server && (is_set(cfg->authz) || is_set(cfg->authz_file))) {
        if (!tls) {
            rf_error_set(errp, RF_ERR_PARAM, "tls-authz needs TLS: set "
                         "tls-creds or tls-psk too");
            return false;
        }
        if (!rf_authz_load(&s->authz, cfg->authz, cfg->authz_file, errp)) {
            return false;
        }
    } else {
        s->authz.any = true;
    }
    if (is_set(cfg->allow_peer)) {
        s->filter = rf_peer_filter_new(cfg->allow_peer, errp);
        s->allow_peer = strdup(cfg->allow_peer);
        if (!s->filter || !s->allow_peer) {
            rf_error_set(errp, RF_ERR_GENERIC, "allow-peer: out of memory");
            return false;
        }
    }
    if (is_set(cfg->hostname) && !(s->hostname = strdup(cfg->hostname))) {
        rf_error_set(errp, RF_ERR_GENERIC, "tls-hostname: out of memory");
        return false;
    }
    return true;
}

RfSecure *rf_secure_new(const RfSecureConfig *cfg, bool server,
                        RfError **errp)
{
    if (is_set(cfg->tls_creds) && is_set(cfg->tls_psk)) {
        rf_error_set(errp, RF_ERR_PARAM, "tls-creds and tls-psk are both "
                     "set: use x509 certificates or pre-shared keys, not "
                     "both");
        return NULL;
    }
    RfSecure *s = calloc(1, sizeof(*s));
    if (!s) {
        rf_error_set(errp, RF_ERR_GENERIC, "TLS: out of memory");
        return NULL;
    }
    s->server = server;
    s->handshake_ms = cfg->handshake_timeout_ms ? cfg->handshake_timeout_ms
                                                : HANDSHAKE_DEFAULT_MS;
    s->rejected = cfg->rejected;
    s->opaque = cfg->opaque;
    if (!secure_init(s, cfg, errp)) {
        rf_secure_free(s);
        return NULL;
    }
    return s;
}

void rf_secure_free(RfSecure *s)
{
    if (!s) {
        return;
    }
    rf_tls_creds_free(s->creds);
    rf_authz_free(&s->authz);
    rf_peer_filter_free(s->filter);
    free(s->allow_peer);
    free(s->hostname);
    if (s->gnutls_inited) {
        gnutls_global_deinit();
    }
    free(s);
}

bool rf_secure_tls(const RfSecure *s)
{
    return s && s->creds;
}

unsigned rf_secure_rejected(const RfSecure *s)
{
    return s ? atomic_load(&s->nrejected) : 0;
}

/* --- client -------------------------------------------------------------- */

RfConn *rf_secure_client_wrap(RfSecure *s, RfConn *inner,
                              const char *hostname, RfError **errp)
{
    if (!rf_secure_tls(s)) {
        return inner;
    }
    RfTlsParams p = {
        .creds = s->creds,
        .server = false,
        .hostname = is_set(hostname) ? hostname : s->hostname,
        .handshake_ms = s->handshake_ms,
    };
    return rf_tls_conn_new(inner, &p, errp);
}

RfConn *rf_secure_connect(RfSecure *s, const char *uri, unsigned timeout_ms,
                          atomic_int *cancel, RfError **errp)
{
    RfConn *c = rf_conn_connect_cancel(uri, timeout_ms, cancel, errp);
    if (!c || !rf_secure_tls(s)) {
        return c;
    }
    /* The certificate must carry the name the user connected to. */
    char host[RF_HOST_MAX + 1] = "";
    unsigned port;
    if (!s->hostname && strncmp(uri, "tcp:", 4) == 0) {
        rf_tcp_addr_parse(uri + 4, false, host, &port, NULL);
    }
    return rf_secure_client_wrap(s, c, host, errp);
}

/* --- server -------------------------------------------------------------- */

/* The peer filter: closes c and fails with RF_ERR_AUTH unless its peer's
 * address may connect. */
static bool peer_check(RfSecure *s, RfConn *c, RfError **errp)
{
    const char *peer = "unknown";
    int fd = rf_sock_conn_fd(c, &peer);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &len) < 0) {
        rf_error_set(errp, RF_ERR_AUTH, "connection from %s refused: its "
                     "address is unknown, so allow-peer cannot pass it",
                     peer);
    } else if (!rf_peer_filter_allows(s->filter, (struct sockaddr *)&ss)) {
        rf_error_set(errp, RF_ERR_AUTH, "connection from %s refused: not in "
                     "allow-peer '%s'", peer, s->allow_peer);
    } else {
        return true;
    }
    rf_conn_close(c);
    return false;
}

/* Filter, handshake, verification, authz on an accepted connection, the
 * handshake bounded by the accept deadline too (0 = none). */
static RfConn *server_conn(RfSecure *s, RfConn *c, long long deadline,
                           atomic_int *cancel, RfError **errp)
{
    if (s->filter && !peer_check(s, c, errp)) {
        return NULL;
    }
    if (!s->creds) {
        return c;
    }
    unsigned hs = s->handshake_ms;
    if (deadline) {
        long long left = deadline - rf_sock_now_ms();
        if (left < (long long)hs) {
            hs = left > 0 ? (unsigned)left : 1;
        }
    }
    RfTlsParams p = {
        .creds = s->creds,
        .server = true,
        .authz = &s->authz,
        .handshake_ms = hs,
        .cancel = cancel,
    };
    return rf_tls_conn_new(c, &p, errp);
}

RfConn *rf_secure_server_wrap(RfSecure *s, RfConn *inner, RfError **errp)
{
    if (!s) {
        return inner;
    }
    RfConn *c = server_conn(s, inner, 0, NULL, errp);
    if (!c) {
        atomic_fetch_add(&s->nrejected, 1);
    }
    return c;
}

/* Loops until a connection passes (see the file comment of secure.h);
 * each one dropped is counted and reported, and the timeout error says
 * how many were and why the last one was. */
/* Accepts within timeout_ms; the handshake of a connection gets what is
 * left of it, or with `poll` the whole handshake time. */
static RfConn *accept_within(RfListener *l, unsigned timeout_ms, bool poll,
                             atomic_int *cancel, RfError **errp)
{
    SecureListener *sl = (SecureListener *)l;
    RfSecure *s = sl->s;
    long long deadline = timeout_ms ? rf_sock_now_ms() + timeout_ms : 0;
    unsigned dropped = 0;
    char last[512] = "";
    for (;;) {
        long long left = deadline ? deadline - rf_sock_now_ms() : 0;
        RfError *err = NULL;
        RfConn *c = NULL;
        if (!deadline || left > 0) {
            c = rf_listener_accept(sl->inner, (unsigned)left, cancel, &err);
        } else {
            rf_error_set(&err, RF_ERR_TIMEOUT, "timed out");
        }
        if (!c && rf_error_kind(err) == RF_ERR_TIMEOUT) {
            rf_error_free(err);
            char note[600] = "";
            if (dropped) {
                snprintf(note, sizeof(note), " (%u rejected, the last: %s)",
                         dropped, last);
            }
            rf_error_set(errp, RF_ERR_TIMEOUT, "no connection on %s within "
                         "%u ms%s", l->uri, timeout_ms, note);
            return NULL;
        }
        if (!c) {
            rf_error_propagate(errp, err);
            return NULL;
        }
        char peer[RF_URI_CAP] = "unknown";
        const char *name = NULL;
        if (rf_sock_conn_fd(c, &name) >= 0 && name) {
            snprintf(peer, sizeof(peer), "%s", name);
        }
        RfConn *ok = server_conn(s, c, poll ? 0 : deadline, cancel, &err);
        if (ok) {
            return ok;
        }
        if (rf_error_kind(err) == RF_ERR_CANCELLED) {
            rf_error_propagate(errp, err);
            return NULL;
        }
        atomic_fetch_add(&s->nrejected, 1);
        dropped++;
        snprintf(last, sizeof(last), "%s", rf_error_msg(err));
        if (s->rejected) {
            s->rejected(peer, last, s->opaque);
        }
        rf_error_free(err);
    }
}

static RfConn *secure_accept(RfListener *l, unsigned timeout_ms,
                             atomic_int *cancel, RfError **errp)
{
    return accept_within(l, timeout_ms, false, cancel, errp);
}

static void secure_listener_close(RfListener *l)
{
    SecureListener *sl = (SecureListener *)l;
    rf_listener_close(sl->inner);
    free(sl);
}

static const RfListenerOps secure_listener_ops = {
    .accept = secure_accept,
    .close = secure_listener_close,
};

RfListener *rf_secure_listener_wrap(RfSecure *s, RfListener *inner,
                                    RfError **errp)
{
    if (!s || (!s->creds && !s->filter)) {
        return inner;
    }
    SecureListener *sl = calloc(1, sizeof(*sl));
    if (!sl) {
        rf_error_set(errp, RF_ERR_GENERIC, "%s: out of memory", inner->uri);
        rf_listener_close(inner);
        return NULL;
    }
    sl->base.ops = &secure_listener_ops;
    snprintf(sl->base.uri, sizeof(sl->base.uri), "%s", inner->uri);
    sl->inner = inner;
    sl->s = s;
    return &sl->base;
}

/* --- generic calls ------------------------------------------------------- */

bool rf_conn_export(RfConn *c, const char *label, const void *ctx,
                    size_t ctxlen, uint8_t *out, size_t outlen,
                    RfError **errp)
{
    if (!c->ops->export) {
        rf_error_set(errp, RF_ERR_PARAM, "this connection has no TLS "
                     "session: no keying material to export");
        return false;
    }
    return c->ops->export(c, label, ctx, ctxlen, out, outlen, errp);
}

const char *rf_conn_security(const RfConn *c)
{
    return c && c->ops->security ? c->ops->security(c) : NULL;
}

RfConn *rf_secure_accept_poll(RfListener *l, unsigned wait_ms,
                              atomic_int *cancel, RfError **errp)
{
    if (l->ops != &secure_listener_ops) {
        return rf_listener_accept(l, wait_ms, cancel, errp);
    }
    return accept_within(l, wait_ms, true, cancel, errp);
}
