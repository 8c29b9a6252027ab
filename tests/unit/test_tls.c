/* Unit tests: TLS 1.3 and the peer filter (src/channel/secure.h).  The
 * certificates are made here with GnuTLS's x509 API (ECDSA P-256, fast),
 * in QEMU's directory layouts, in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "channel/secure.h"
#include "channel/tls.h"

#define PSK_QEMU "0123456789abcdef0123456789abcdef" \
                 "0123456789abcdef0123456789abcdef"
#define PSK_OTHER "fedcba9876543210fedcba9876543210" \
                  "fedcba9876543210fedcba9876543210"
#define CLIENT_DN_SET "C=GB,O=ramflow test,CN=source"
#define SILENT_MS 300

static char tmp[64];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
static char client_dn[256];  /* as gnutls_x509_crt_get_dn() writes it */
static char client_dn_rfc[256]; /* as RFC 4514 (and certtool -i) write it */

/* --- certificates -------------------------------------------------------- */

typedef struct Cert {
    gnutls_x509_crt_t crt;
    gnutls_x509_privkey_t key;
} Cert;

enum { CA, SERVER, CLIENT };

static void gt(int r, const char *what)
{
    if (r < 0) {
        fail_msg("%s: %s", what, gnutls_strerror(r));
    }
}

/* Makes a certificate for dn, signed by issuer (NULL = self-signed),
 * valid from `from` to `to` (seconds from now). */
static void cert_make(Cert *c, int kind, const char *dn, const Cert *issuer,
                      long from, long to)
{
    static unsigned serial = 1;
    time_t now = time(NULL);
    gt(gnutls_x509_privkey_init(&c->key), "privkey_init");
    gt(gnutls_x509_privkey_generate(
           c->key, GNUTLS_PK_ECDSA,
           GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
       "privkey_generate");
    gt(gnutls_x509_crt_init(&c->crt), "crt_init");
    gnutls_x509_crt_t x = c->crt;
    gt(gnutls_x509_crt_set_version(x, 3), "set_version");
    unsigned s = serial++;
    gt(gnutls_x509_crt_set_serial(x, &s, sizeof(s)), "set_serial");
    gt(gnutls_x509_crt_set_dn(x, dn, NULL), "set_dn");
    gt(gnutls_x509_crt_set_key(x, c->key), "set_key");
    gt(gnutls_x509_crt_set_activation_time(x, now + from), "activation");
    gt(gnutls_x509_crt_set_expiration_time(x, now + to), "expiration");
    gt(gnutls_x509_crt_set_basic_constraints(x, kind == CA, -1), "bc");
    gt(gnutls_x509_crt_set_key_usage(
           x, kind == CA ? GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN
                         : GNUTLS_KEY_DIGITAL_SIGNATURE), "key_usage");
    if (kind == SERVER) {
        static const unsigned char lo[4] = { 127, 0, 0, 1 };
        gt(gnutls_x509_crt_set_key_purpose_oid(x, GNUTLS_KP_TLS_WWW_SERVER,
                                               0), "purpose");
        gt(gnutls_x509_crt_set_subject_alt_name(x, GNUTLS_SAN_DNSNAME,
                                                "localhost", 9,
                                                GNUTLS_FSAN_APPEND), "san");
        gt(gnutls_x509_crt_set_subject_alt_name(x, GNUTLS_SAN_IPADDRESS, lo,
                                                4, GNUTLS_FSAN_APPEND),
           "san ip");
    } else if (kind == CLIENT) {
        gt(gnutls_x509_crt_set_key_purpose_oid(x, GNUTLS_KP_TLS_WWW_CLIENT,
                                               0), "purpose");
    }
    const Cert *by = issuer ? issuer : c;
    gt(gnutls_x509_crt_sign2(x, by->crt, by->key, GNUTLS_DIG_SHA256, 0),
       "sign");
}

static void cert_free(Cert *c)
{
    gnutls_x509_crt_deinit(c->crt);
    gnutls_x509_privkey_deinit(c->key);
}

static void write_file(const char *dir, const char *name, const void *data,
                       size_t len)
{
    char path[512];
    mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    fclose(fp);
}

/* Writes c (and its key if key_name) into dir/sub. */
static void cert_write(const char *sub, const char *crt_name,
                       const char *key_name, const Cert *c)
{
    char dir[256];
    gnutls_datum_t d;
    snprintf(dir, sizeof(dir), "%s/%s", tmp, sub);
    gt(gnutls_x509_crt_export2(c->crt, GNUTLS_X509_FMT_PEM, &d), "export");
    write_file(dir, crt_name, d.data, d.size);
    gnutls_free(d.data);
    if (key_name) {
        gt(gnutls_x509_privkey_export2(c->key, GNUTLS_X509_FMT_PEM, &d),
           "key export");
        write_file(dir, key_name, d.data, d.size);
        gnutls_free(d.data);
    }
}

static void text_write(const char *sub, const char *name, const char *text)
{
    char dir[256];
    snprintf(dir, sizeof(dir), "%s/%s", tmp, sub);
    write_file(dir, name, text, strlen(text));
}

/* The credentials directories every test uses:
 *   srv, cli          CA1; server cert (localhost, 127.0.0.1), client cert
 *   cli_expired       CA1; a client cert that expired yesterday
 *   cli_nocert        CA1 only
 *   cli_foreign       CA1 (trusts srv); a client cert signed by CA2
 *   srv2              CA2; a server cert signed by CA2
 *   psk, psk_wrong, psk_bob   keys.psk files */
static int setup(void **state)
{
    (void)state;
    snprintf(tmp, sizeof(tmp), "/tmp/rf_tls_XXXXXX");
    assert_non_null(mkdtemp(tmp));
    gnutls_global_init();
    Cert ca, ca2, srv, cli, old, foreign, srv2;
    cert_make(&ca, CA, "C=GB,O=ramflow test,CN=test CA", NULL, -60, 86400);
    cert_make(&ca2, CA, "C=GB,O=elsewhere,CN=other CA", NULL, -60, 86400);
    cert_make(&srv, SERVER, "O=ramflow test,CN=localhost", &ca, -60, 86400);
    cert_make(&cli, CLIENT, CLIENT_DN_SET, &ca, -60, 86400);
    cert_make(&old, CLIENT, "O=ramflow test,CN=old", &ca, -3 * 86400,
              -86400);
    cert_make(&foreign, CLIENT, "O=elsewhere,CN=source", &ca2, -60, 86400);
    cert_make(&srv2, SERVER, "O=elsewhere,CN=localhost", &ca2, -60, 86400);
    size_t len = sizeof(client_dn);
    gt(gnutls_x509_crt_get_dn(cli.crt, client_dn, &len), "get_dn");
    gnutls_datum_t dn = {NULL, 0};
    gt(gnutls_x509_crt_get_dn3(cli.crt, &dn, 0), "get_dn3");
    snprintf(client_dn_rfc, sizeof(client_dn_rfc), "%.*s", (int)dn.size,
             (const char *)dn.data);
    gnutls_free(dn.data);
    assert_string_not_equal(client_dn, client_dn_rfc);

    const char *ca1_dirs[] = { "srv", "cli", "cli_expired", "cli_nocert",
                               "cli_foreign" };
    for (size_t i = 0; i < 5; i++) {
        cert_write(ca1_dirs[i], "ca-cert.pem", NULL, &ca);
    }
    cert_write("srv", "server-cert.pem", "server-key.pem", &srv);
    cert_write("cli", "client-cert.pem", "client-key.pem", &cli);
    cert_write("cli_expired", "client-cert.pem", "client-key.pem", &old);
    cert_write("cli_foreign", "client-cert.pem", "client-key.pem", &foreign);
    cert_write("srv2", "ca-cert.pem", NULL, &ca2);
    cert_write("srv2", "server-cert.pem", "server-key.pem", &srv2);
    Cert *all[] = { &ca, &ca2, &srv, &cli, &old, &foreign, &srv2 };
    for (size_t i = 0; i < 7; i++) {
        cert_free(all[i]);
    }
    text_write("psk", "keys.psk", "qemu:" PSK_QEMU "\nalice:" PSK_OTHER "\n");
    text_write("psk_wrong", "keys.psk", "qemu:" PSK_OTHER "\n");
    text_write("psk_bob", "keys.psk", "bob:" PSK_QEMU "\n");
    char authz[512];
    snprintf(authz, sizeof(authz), "# accepted sources\n\nCN=nobody\n%s\n",
             client_dn);
    text_write("authz", "list", authz);
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    (void)state;
    nftw(tmp, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    gnutls_global_deinit();
    return 0;
}

static const char *dir(const char *sub)
{
    static char bufs[4][256];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, 256, "%s/%s", tmp, sub);
    return b;
}

/* --- running a client against a server ----------------------------------- */

/* What the accepting side saw: its connection or error, and the drops. */
typedef struct Server Server;
struct Server {
    RfSecure *sec;
    RfListener *l;      /* plain listener */
    RfListener *wl;     /* wrapped, or NULL: accept then server_wrap */
    bool plain;         /* no RfSecure: accept a plain connection */
    void (*plain_run)(struct Server *s);  /* ... and then run this */
    RfConn *conn;
    RfError *err;
    pthread_t th;
    unsigned drops;
    char why[512];
    char port[8];
};

static void on_rejected(const char *peer, const char *why, void *opaque)
{
    Server *s = opaque;
    assert_non_null(peer);
    s->drops++;
    snprintf(s->why, sizeof(s->why), "%s", why);
}

static void *server_main(void *arg)
{
    Server *s = arg;
    if (s->wl) {
        s->conn = rf_listener_accept(s->wl, 8000, NULL, &s->err);
        return NULL;
    }
    RfConn *c = rf_listener_accept(s->l, 8000, NULL, &s->err);
    if (c) {
        s->conn = s->plain ? c : rf_secure_server_wrap(s->sec, c, &s->err);
    }
    if (c && s->plain && s->plain_run) {
        s->conn->timeout_ms = 5000;
        s->plain_run(s);
    }
    return NULL;
}

/* Starts a server with cfg (NULL = plaintext) on 127.0.0.1, its accept
 * wrapped as a listener if `wrapped`. */
static void server_start(Server *s, RfSecureConfig *cfg, bool wrapped)
{
    memset(s, 0, sizeof(*s));
    RfError *err = NULL;
    s->l = rf_listen("tcp:127.0.0.1:0", &err);
    assert_non_null(s->l);
    snprintf(s->port, sizeof(s->port), "%s", strrchr(s->l->uri, ':') + 1);
    s->plain = cfg == NULL;
    if (cfg) {
        cfg->rejected = on_rejected;
        cfg->opaque = s;
        s->sec = rf_secure_new(cfg, true, &err);
        if (!s->sec) {
            fail_msg("server rf_secure_new: %s", rf_error_msg(err));
        }
    }
    if (wrapped) {
        s->wl = rf_secure_listener_wrap(s->sec, s->l, &err);
        assert_non_null(s->wl);
        assert_ptr_not_equal(s->wl, s->l);
    }
    assert_int_equal(pthread_create(&s->th, NULL, server_main, s), 0);
}

/* A plaintext server that runs `run` on the connection it accepts. */
static void server_start_plain(Server *s, void (*run)(Server *s))
{
    memset(s, 0, sizeof(*s));
    RfError *err = NULL;
    s->l = rf_listen("tcp:127.0.0.1:0", &err);
    assert_non_null(s->l);
    snprintf(s->port, sizeof(s->port), "%s", strrchr(s->l->uri, ':') + 1);
    s->plain = true;
    s->plain_run = run;
    assert_int_equal(pthread_create(&s->th, NULL, server_main, s), 0);
}

static void server_join(Server *s)
{
    pthread_join(s->th, NULL);
}

static void server_free(Server *s)
{
    rf_conn_close(s->conn);
    rf_error_free(s->err);
    rf_listener_close(s->wl ? s->wl : s->l);
    rf_secure_free(s->sec);
}

/* Connects to the server on `host` with cfg. */
static RfConn *client_connect(const Server *s, const char *host,
                              const RfSecureConfig *cfg, RfError **errp)
{
    char uri[128];
    snprintf(uri, sizeof(uri), "tcp:%s:%s", host, s->port);
    RfSecure *sec = rf_secure_new(cfg, false, errp);
    if (!sec) {
        fail_msg("client rf_secure_new: %s", rf_error_msg(*errp));
    }
    RfConn *c = rf_secure_connect(sec, uri, 5000, NULL, errp);
    rf_secure_free(sec);  /* the connection does not need it any more */
    return c;
}

/* Checks err's kind and that its message holds every word given. */
static void expect_error(const RfError *err, RfErrorKind kind, ...)
{
    if (!err) {
        fail_msg("expected an error of kind %d, got success", kind);
    }
    const char *msg = rf_error_msg(err);
    printf("  (kind %d) %s\n", rf_error_kind(err), msg);
    va_list ap;
    va_start(ap, kind);
    for (const char *w = va_arg(ap, const char *); w;
         w = va_arg(ap, const char *)) {
        if (!strstr(msg, w)) {
            fail_msg("error '%s' lacks '%s'", msg, w);
        }
    }
    va_end(ap);
    assert_int_equal(rf_error_kind(err), kind);
}

/* A client that must fail against a server that must fail. */
static void expect_both_fail(RfSecureConfig *scfg, const RfSecureConfig *ccfg,
                             RfErrorKind ckind, const char *cword,
                             const char *cword2, RfErrorKind skind,
                             const char *sword, const char *sword2)
{
    Server s;
    server_start(&s, scfg, false);
    RfError *err = NULL;
    RfConn *c = client_connect(&s, "localhost", ccfg, &err);
    server_join(&s);
    assert_null(c);
    expect_error(err, ckind, cword, cword2, NULL);
    assert_null(s.conn);
    expect_error(s.err, skind, sword, sword2, NULL);
    assert_int_equal(rf_secure_rejected(s.sec), 1);
    rf_error_free(err);
    server_free(&s);
}

/* --- data over TLS ------------------------------------------------------- */

#define BULK (3 * 16384 + 777)

typedef struct Sender {
    RfConn *c;
    unsigned char seed;
    bool ok;
} Sender;

static void fill(unsigned char *b, size_t n, unsigned char seed)
{
    for (size_t i = 0; i < n; i++) {
        b[i] = (unsigned char)(i * 31 + seed);
    }
}

/* Sends a small header and a bulk payload in one sendv, the way the
 * engine sends a packet. */
static void *sender_main(void *arg)
{
    Sender *s = arg;
    static __thread unsigned char payload[BULK];
    uint32_t hdr = 0x52464c57;
    fill(payload, sizeof(payload), s->seed);
    struct iovec iov[2] = { { &hdr, sizeof(hdr) },
                            { payload, sizeof(payload) } };
    s->ok = rf_conn_sendv(s->c, iov, 2, NULL);
    return NULL;
}

static void receive_check(RfConn *c, unsigned char seed)
{
    static __thread unsigned char got[BULK], want[BULK];
    uint32_t hdr = 0;
    RfError *err = NULL;
    struct iovec iov[2] = { { &hdr, sizeof(hdr) }, { got, sizeof(got) } };
    if (!rf_conn_recvv(c, iov, 2, &err)) {
        fail_msg("recvv: %s", rf_error_msg(err));
    }
    assert_int_equal(hdr, 0x52464c57);
    fill(want, sizeof(want), seed);
    assert_memory_equal(got, want, sizeof(got));
}

/* Both ends send and receive at the same time, each with two threads on
 * one connection. */
static void exchange(RfConn *a, RfConn *b)
{
    Sender sa = { a, 1, false }, sb = { b, 2, false };
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, sender_main, &sa), 0);
    assert_int_equal(pthread_create(&tb, NULL, sender_main, &sb), 0);
    receive_check(b, 1);
    receive_check(a, 2);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_true(sa.ok && sb.ok);
    assert_int_equal(rf_conn_bytes_out(a), 4 + BULK);
    assert_int_equal(rf_conn_bytes_in(b), 4 + BULK);
}

static void export_key(RfConn *c, uint8_t out[32])
{
    RfError *err = NULL;
    if (!rf_conn_export(c, "EXPORTER-ramflow-test", "ctx", 3, out, 32,
                        &err)) {
        fail_msg("export: %s", rf_error_msg(err));
    }
}

/* A session that works: data both ways, the same exported key on both
 * ends.  key receives that key. */
/* How records travel on a TCP connection here: the kernel takes them
 * (src/channel/ktls.c) exactly when it offers the "tls" ULP. */
static const char *record_mode(void)
{
    char ulp[256] = "";
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "r");
    if (f) {
        if (!fgets(ulp, sizeof(ulp), f)) {
            ulp[0] = '\0';
        }
        fclose(f);
    }
    for (char *w = strtok(ulp, " \n"); w; w = strtok(NULL, " \n")) {
        if (strcmp(w, "tls") == 0) {
            return "kernel TLS";
        }
    }
    return "user-space TLS";
}

/* A session over TCP that must succeed; `kind` is "TLS 1.3 x509" or
 * "TLS 1.3 PSK", and both ends must report it with the record mode. */
static void session_ok(RfSecureConfig *scfg, const RfSecureConfig *ccfg,
                       const char *host, const char *kind,
                       uint8_t key[32], void (*more)(RfConn *c, RfConn *s))
{
    Server s;
    server_start(&s, scfg, true);
    RfError *err = NULL;
    RfConn *c = client_connect(&s, host, ccfg, &err);
    if (!c) {
        fail_msg("client: %s", rf_error_msg(err));
    }
    server_join(&s);
    if (!s.conn) {
        fail_msg("server: %s", rf_error_msg(s.err));
    }
    char security[96];
    snprintf(security, sizeof(security), "%s, %s", kind, record_mode());
    assert_string_equal(rf_conn_security(c), security);
    assert_string_equal(rf_conn_security(s.conn), security);
    c->timeout_ms = s.conn->timeout_ms = 5000;
    exchange(c, s.conn);
    uint8_t other[32];
    export_key(c, key);
    export_key(s.conn, other);
    assert_memory_equal(key, other, 32);
    char uri[RF_URI_CAP];
    assert_true(rf_conn_peer_uri(c, uri, sizeof(uri), NULL));
    assert_string_equal(uri + strlen(uri) - strlen(s.port), s.port);
    assert_int_equal(rf_secure_rejected(s.sec), 0);
    if (more) {
        more(c, s.conn);
    }
    rf_conn_close(c);
    server_free(&s);
}

static void *recv_main(void *arg)
{
    RfConn *c = arg;
    char b;
    RfError *err = NULL;
    bool ok = rf_conn_recv(c, &b, 1, &err);
    if (!ok) {
        expect_error(err, RF_ERR_IO, NULL);
        rf_error_free(err);
    }
    return ok ? c : NULL;
}

/* The stall limit, wait_readable (with bytes GnuTLS already holds), and
 * shutdown waking a blocked receiver. */
static void conn_ops_check(RfConn *c, RfConn *s)
{
    RfError *err = NULL;
    char b[2];
    c->timeout_ms = 200;
    assert_false(rf_conn_recv(c, b, 1, &err));
    expect_error(err, RF_ERR_TIMEOUT, "peer stalled: no data for 200 ms",
                 NULL);
    rf_error_free(err);
    assert_false(rf_conn_wait_readable(c, 20));
    assert_true(rf_conn_send(s, "ab", 2, NULL));
    assert_true(rf_conn_wait_readable(c, 5000));
    assert_true(rf_conn_recv(c, b, 1, NULL));
    assert_true(rf_conn_wait_readable(c, 0));  /* 'b', decrypted already */
    assert_true(rf_conn_recv(c, b + 1, 1, NULL));
    assert_memory_equal(b, "ab", 2);
    c->timeout_ms = 0;
    pthread_t t;
    void *res = c;
    assert_int_equal(pthread_create(&t, NULL, recv_main, c), 0);
    rf_conn_shutdown(c);  /* before or during its recv: it fails */
    pthread_join(t, &res);
    assert_null(res);
}

static void test_x509_ok(void **state)
{
    (void)state;
    RfSecureConfig scfg = { .tls_creds = dir("srv") };
    RfSecureConfig ccfg = { .tls_creds = dir("cli") };
    uint8_t k1[32], k2[32];
    session_ok(&scfg, &ccfg, "localhost", "TLS 1.3 x509",
               k1, conn_ops_check);
    /* The IP address SAN matches a connection to 127.0.0.1. */
    session_ok(&scfg, &ccfg, "127.0.0.1", "TLS 1.3 x509",
               k2, NULL);
    assert_memory_not_equal(k1, k2, 32);
}

static void test_untrusted_server(void **state)
{
    (void)state;
    RfSecureConfig scfg = { .tls_creds = dir("srv2") };
    RfSecureConfig ccfg = { .tls_creds = dir("cli") };
    expect_both_fail(&scfg, &ccfg, RF_ERR_AUTH,
                     "the destination's certificate is not trusted by "
                     "tls-creds' ca-cert.pem (signer not found)", NULL,
                     RF_ERR_AUTH, "refused", "alert: unknown CA");
}

static void test_untrusted_client(void **state)
{
    (void)state;
    RfSecureConfig scfg = { .tls_creds = dir("srv") };
    RfSecureConfig ccfg = { .tls_creds = dir("cli_foreign") };
    expect_both_fail(&scfg, &ccfg, RF_ERR_AUTH, "refused",
                     "alert: unknown CA", RF_ERR_AUTH,
                     "the source's certificate is not trusted by "
                     "tls-creds' ca-cert.pem (signer not found)", NULL);
}

static void test_hostname_mismatch(void **state)
{
    (void)state;
    RfSecureConfig scfg = { .tls_creds = dir("srv") };
    RfSecureConfig ccfg = { .tls_creds = dir("cli"),
                            .hostname = "foo.example" };
    expect_both_fail(&scfg, &ccfg, RF_ERR_AUTH,
                     "does not match host name 'foo.example'", NULL,
                     RF_ERR_AUTH, "refused", "alert: bad certificate");
}

static void test_authz(void **state)
{
    (void)state;
    RfSecureConfig scfg = { .tls_creds = dir("srv"), .authz = "CN=other" };
    RfSecureConfig ccfg = { .tls_creds = dir("cli") };
    char want[512];
    snprintf(want, sizeof(want), "client identity '%s' is not on the "
             "tls-authz list", client_dn_rfc);
    expect_both_fail(&scfg, &ccfg, RF_ERR_AUTH, "alert: access denied",
                     "tls-authz", RF_ERR_AUTH, want, NULL);

    char list[512];
    uint8_t key[32];
    snprintf(list, sizeof(list), "CN=other; %s", client_dn);
    scfg.authz = list;
    session_ok(&scfg, &ccfg, "localhost", "TLS 1.3 x509",
               key, NULL);
    /* Either way of writing the DN is accepted. */
    snprintf(list, sizeof(list), "%s", client_dn_rfc);
    session_ok(&scfg, &ccfg, "localhost", "TLS 1.3 x509",
               key, NULL);
    char file[512];
    snprintf(file, sizeof(file), "%s/list", dir("authz"));
    RfSecureConfig fcfg = { .tls_creds = dir("srv"), .authz_file = file };
    session_ok(&fcfg, &ccfg, "localhost", "TLS 1.3 x509",
               key, NULL);
}

static void test_no_client_cert(void **state)
{
    (void)state;
    RfSecureConfig scfg = { .tls_creds = dir("srv") };
    RfSecureConfig ccfg = { .tls_creds = dir("cli_nocert") };
    expect_both_fail(&scfg, &ccfg, RF_ERR_AUTH,
                     "alert: certificate required", "client-cert.pem",
                     RF_ERR_AUTH, "client certificate missing", NULL);
}

static void test_expired_client_cert(void **state)
{
    (void)state;
    RfSecureConfig scfg = { .tls_creds = dir("srv") };
    RfSecureConfig ccfg = { .tls_creds = dir("cli_expired") };
    expect_both_fail(&scfg, &ccfg, RF_ERR_AUTH,
                     "alert: certificate expired", NULL, RF_ERR_AUTH,
                     "the source's certificate has expired", NULL);
}

static void test_psk(void **state)
{
    (void)state;
    RfSecureConfig scfg = { .tls_psk = dir("psk") };
    RfSecureConfig ccfg = { .tls_psk = dir("psk") };
    uint8_t key[32];
    session_ok(&scfg, &ccfg, "localhost", "TLS 1.3 PSK",
               key, NULL);
    /* authz names PSK users. */
    RfSecureConfig acfg = { .tls_psk = dir("psk"), .authz = "alice" };
    expect_both_fail(&acfg, &ccfg, RF_ERR_AUTH, "alert: access denied",
                     NULL, RF_ERR_AUTH,
                     "client identity 'qemu' is not on the tls-authz list",
                     NULL);
}

static void test_psk_wrong_key(void **state)
{
    (void)state;
    RfSecureConfig scfg = { .tls_psk = dir("psk") };
    RfSecureConfig ccfg = { .tls_psk = dir("psk_wrong") };
    expect_both_fail(&scfg, &ccfg, RF_ERR_AUTH, "alert: decrypt error",
                     "pre-shared keys differ", RF_ERR_AUTH,
                     "pre-shared key for 'qemu' differs",
                     "keys.psk");
}

static void test_psk_unknown_user(void **state)
{
    (void)state;
    RfSecureConfig scfg = { .tls_psk = dir("psk") };
    RfSecureConfig ccfg = { .tls_psk = dir("psk_bob"),
                            .psk_username = "bob" };
    expect_both_fail(&scfg, &ccfg, RF_ERR_AUTH,
                     "alert: unknown PSK identity", NULL, RF_ERR_AUTH,
                     "PSK username 'bob'", "is not in");
}

/* --- TLS against plaintext, stalls, the accept loop ---------------------- */

/* A plaintext destination's part: says hello, checks that what came is
 * a TLS ClientHello, reads until the client goes. */
static void plain_hello(Server *s)
{
    unsigned char b = 0;
    assert_true(rf_conn_send(s->conn, "RAMFLOW hello\n", 14, NULL));
    assert_true(rf_conn_recv(s->conn, &b, 1, NULL));
    assert_int_equal(b, 0x16);
    unsigned char rest[4096];
    while (rf_conn_recv(s->conn, rest, sizeof(rest), &s->err)) {
    }
}

/* A plaintext destination that reads until the client goes. */
static void plain_silent(Server *s)
{
    unsigned char rest[4096];
    while (rf_conn_recv(s->conn, rest, sizeof(rest), &s->err)) {
    }
}

static void test_tls_client_plain_server(void **state)
{
    (void)state;
    Server s;
    server_start_plain(&s, plain_hello);
    RfSecureConfig ccfg = { .tls_creds = dir("cli") };
    RfError *err = NULL;
    assert_null(client_connect(&s, "localhost", &ccfg, &err));
    expect_error(err, RF_ERR_AUTH, "the destination does not speak TLS",
                 "0x52", NULL);
    server_join(&s);
    expect_error(s.err, RF_ERR_IO, NULL);  /* closed or reset */
    rf_error_free(err);
    server_free(&s);
}

static void test_tls_client_silent_server(void **state)
{
    (void)state;
    Server s;
    server_start_plain(&s, plain_silent);
    RfSecureConfig ccfg = { .tls_creds = dir("cli"),
                            .handshake_timeout_ms = SILENT_MS };
    RfError *err = NULL;
    assert_null(client_connect(&s, "localhost", &ccfg, &err));
    expect_error(err, RF_ERR_TIMEOUT, "no answer within 300 ms", NULL);
    server_join(&s);
    expect_error(s.err, RF_ERR_IO, "closed by peer", NULL);
    rf_error_free(err);
    server_free(&s);
}

/* A valid TLS client, after a bad one: the wrapped listener's accept
 * (still the same call) returns it. */
static void valid_client_after(Server *s, const char *reason)
{
    RfSecureConfig ccfg = { .tls_creds = dir("cli") };
    RfError *err = NULL;
    RfConn *c = client_connect(s, "localhost", &ccfg, &err);
    if (!c) {
        fail_msg("client: %s", rf_error_msg(err));
    }
    server_join(s);
    if (!s->conn) {
        fail_msg("server: %s", rf_error_msg(s->err));
    }
    assert_int_equal(s->drops, 1);
    assert_int_equal(rf_secure_rejected(s->sec), 1);
    if (!strstr(s->why, reason)) {
        fail_msg("rejection reason '%s' lacks '%s'", s->why, reason);
    }
    printf("  (rejected) %s\n", s->why);
    rf_conn_close(c);
}

static void test_plain_client_tls_listener(void **state)
{
    (void)state;
    Server s;
    RfSecureConfig scfg = { .tls_creds = dir("srv") };
    server_start(&s, &scfg, true);
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%s", s.port);
    RfError *err = NULL;
    RfConn *plain = rf_conn_connect(uri, 5000, &err);
    assert_non_null(plain);
    plain->timeout_ms = 5000;
    assert_true(rf_conn_send(plain, "RAMFLOW hello\n", 14, NULL));
    /* The listener drops it (perhaps after an alert). */
    unsigned char buf[256];
    while (rf_conn_recv(plain, buf, 1, &err)) {
    }
    expect_error(err, RF_ERR_IO, NULL);  /* closed or reset */
    rf_error_free(err);
    rf_conn_close(plain);
    valid_client_after(&s, "the source does not speak TLS");
    server_free(&s);
}

static void test_silent_client_dropped(void **state)
{
    (void)state;
    Server s;
    RfSecureConfig scfg = { .tls_creds = dir("srv"),
                            .handshake_timeout_ms = SILENT_MS };
    server_start(&s, &scfg, true);
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%s", s.port);
    RfConn *silent = rf_conn_connect(uri, 5000, NULL);
    assert_non_null(silent);
    double t0 = now_s();
    valid_client_after(&s, "no answer within 300 ms");
    assert_true(now_s() - t0 >= SILENT_MS / 1000.0);
    rf_conn_close(silent);
    server_free(&s);
}

static void test_allow_peer(void **state)
{
    (void)state;
    RfSecureConfig none = { 0 };
    RfSecureConfig ok = { .allow_peer = "127.0.0.1" };
    Server s;
    server_start(&s, &ok, false);
    RfError *err = NULL;
    RfConn *c = client_connect(&s, "127.0.0.1", &none, &err);
    assert_non_null(c);
    server_join(&s);
    assert_non_null(s.conn);
    assert_null(rf_conn_security(c));
    assert_true(rf_conn_send(c, "x", 1, NULL));
    char b = 0;
    assert_true(rf_conn_recv(s.conn, &b, 1, NULL));
    assert_int_equal(b, 'x');
    rf_conn_close(c);
    server_free(&s);

    RfSecureConfig far = { .allow_peer = "10.0.0.0/8, fd00::/8" };
    server_start(&s, &far, false);
    c = client_connect(&s, "127.0.0.1", &none, &err);
    assert_non_null(c);
    server_join(&s);
    assert_null(s.conn);
    expect_error(s.err, RF_ERR_AUTH, "refused: not in allow-peer "
                 "'10.0.0.0/8, fd00::/8'", NULL);
    /* Closed without a byte read or sent. */
    c->timeout_ms = 5000;
    assert_false(rf_conn_recv(c, &b, 1, &err));
    expect_error(err, RF_ERR_IO, "closed by peer after 0 of 1", NULL);
    rf_error_free(err);
    rf_conn_close(c);
    server_free(&s);
}

/* The wrapped listener's timeout says how many it dropped, and why. */
static void test_filter_listener_timeout(void **state)
{
    (void)state;
    RfSecureConfig cfg = { .allow_peer = "10.0.0.0/8" };
    RfError *err = NULL;
    RfSecure *sec = rf_secure_new(&cfg, true, &err);
    assert_non_null(sec);
    RfListener *l = rf_listen("tcp:127.0.0.1:0", &err);
    assert_non_null(l);
    RfListener *wl = rf_secure_listener_wrap(sec, l, &err);
    RfConn *c = rf_conn_connect(l->uri, 5000, &err);
    assert_non_null(c);
    assert_null(rf_listener_accept(wl, 300, NULL, &err));
    expect_error(err, RF_ERR_TIMEOUT, "within 300 ms (1 rejected, the "
                 "last: connection from tcp:127.0.0.1:", "not in allow-peer",
                 NULL);
    assert_int_equal(rf_secure_rejected(sec), 1);
    rf_error_free(err);
    rf_conn_close(c);
    rf_listener_close(wl);
    rf_secure_free(sec);

    /* Neither TLS nor a filter: the listener itself. */
    RfSecureConfig empty = { 0 };
    sec = rf_secure_new(&empty, true, NULL);
    assert_false(rf_secure_tls(sec));
    l = rf_listen("tcp:127.0.0.1:0", NULL);
    assert_ptr_equal(rf_secure_listener_wrap(sec, l, NULL), l);
    rf_listener_close(l);
    rf_secure_free(sec);
}

static void sin_set(struct sockaddr_in *a, const char *ip)
{
    memset(a, 0, sizeof(*a));
    a->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
}

static void sin6_set(struct sockaddr_in6 *a, const char *ip)
{
    memset(a, 0, sizeof(*a));
    a->sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
}

static void test_peer_filter(void **state)
{
    (void)state;
    RfError *err = NULL;
    RfPeerFilter *f = rf_peer_filter_new(
        "10.0.0.0/8, 192.0.2.7,fd00::/16,[2001:db8::1], 172.16.0.0/12", &err);
    assert_non_null(f);
    struct sockaddr_in a;
    struct sockaddr_in6 b;
    const char *yes4[] = { "10.1.2.3", "192.0.2.7", "172.31.255.1" };
    const char *no4[] = { "11.0.0.1", "192.0.2.8", "172.32.0.1",
                          "127.0.0.1" };
    const char *yes6[] = { "::ffff:10.9.9.9", "fd00:1::5", "2001:db8::1" };
    const char *no6[] = { "fe80::1", "2001:db8::2", "::1",
                          "::ffff:127.0.0.1" };
    for (size_t i = 0; i < 3; i++) {
        sin_set(&a, yes4[i]);
        assert_true(rf_peer_filter_allows(f, (struct sockaddr *)&a));
        sin6_set(&b, yes6[i]);
        assert_true(rf_peer_filter_allows(f, (struct sockaddr *)&b));
    }
    for (size_t i = 0; i < 4; i++) {
        sin_set(&a, no4[i]);
        assert_false(rf_peer_filter_allows(f, (struct sockaddr *)&a));
        sin6_set(&b, no6[i]);
        assert_false(rf_peer_filter_allows(f, (struct sockaddr *)&b));
    }
    struct sockaddr u = { .sa_family = AF_UNIX };
    assert_true(rf_peer_filter_allows(f, &u));
    rf_peer_filter_free(f);
    assert_null(rf_peer_filter_new(" , ", &err));
    expect_error(err, RF_ERR_PARAM, "names no network", NULL);
    rf_error_free(err);
    err = NULL;
    assert_null(rf_peer_filter_new("10.0.0.0/8,localhost", &err));
    expect_error(err, RF_ERR_PARAM, "'localhost' is not an address", NULL);
    rf_error_free(err);
}

/* Plain connections export nothing; an adopted unix socket has no host
 * name to check a certificate against. */
static void test_plain_conn_and_hostname(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    RfError *err = NULL;
    RfConn *a = rf_conn_from_fd(sv[0], &err);
    RfConn *b = rf_conn_from_fd(sv[1], &err);
    assert_non_null(a);
    assert_non_null(b);
    uint8_t out[16];
    assert_false(rf_conn_export(a, "x", NULL, 0, out, sizeof(out), &err));
    expect_error(err, RF_ERR_PARAM, "no TLS session", NULL);
    rf_error_free(err);
    err = NULL;
    assert_null(rf_conn_security(a));
    RfSecureConfig cfg = { .tls_creds = dir("cli") };
    RfSecure *sec = rf_secure_new(&cfg, false, &err);
    assert_non_null(sec);
    assert_true(rf_secure_tls(sec));
    assert_null(rf_secure_client_wrap(sec, a, NULL, &err));  /* closes a */
    expect_error(err, RF_ERR_PARAM, "set tls-hostname", NULL);
    rf_error_free(err);
    rf_conn_close(b);
    rf_secure_free(sec);
    assert_false(rf_secure_tls(NULL));
    assert_int_equal(rf_secure_rejected(NULL), 0);
}

/* --- configuration, filter, addresses ------------------------------------ */

static void test_new_errors(void **state)
{
    (void)state;
    RfError *err = NULL;
    RfSecureConfig cfg = { .tls_creds = "/nonexistent/rf" };
    assert_null(rf_secure_new(&cfg, true, &err));
    expect_error(err, RF_ERR_PARAM,
                 "tls-creds: /nonexistent/rf/ca-cert.pem: No such file or "
                 "directory", NULL);
    rf_error_free(err);
    err = NULL;
    cfg.tls_psk = dir("psk");
    assert_null(rf_secure_new(&cfg, false, &err));
    expect_error(err, RF_ERR_PARAM, "tls-creds and tls-psk", NULL);
    rf_error_free(err);
    err = NULL;
    RfSecureConfig pcfg = { .tls_psk = dir("psk"), .psk_username = "eve" };
    assert_null(rf_secure_new(&pcfg, false, &err));
    expect_error(err, RF_ERR_PARAM, "keys.psk has no key for user 'eve'",
                 NULL);
    rf_error_free(err);
    err = NULL;
    RfSecureConfig bad = { .allow_peer = "10.0.0.0/33" };
    assert_null(rf_secure_new(&bad, true, &err));
    expect_error(err, RF_ERR_PARAM, "allow-peer: '10.0.0.0/33'", NULL);
    rf_error_free(err);
}

static void test_uri_is_local(void **state)
{
    (void)state;
    assert_true(rf_uri_is_local("unix:/tmp/x.sock"));
    assert_true(rf_uri_is_local("tcp:127.0.0.1:4444"));
    assert_true(rf_uri_is_local("tcp:127.3.2.1:4444"));
    assert_true(rf_uri_is_local("tcp:localhost:4444"));
    assert_true(rf_uri_is_local("tcp:[::1]:4444"));
    assert_true(rf_uri_is_local("tcp:[::ffff:127.0.0.1]:4444"));
    assert_true(rf_uri_is_local("tcp::4444"));
    assert_false(rf_uri_is_local("tcp:10.1.2.3:4444"));
    assert_false(rf_uri_is_local("tcp:[fd00::1]:4444"));
    assert_false(rf_uri_is_local("tcp:example.com:4444"));
    assert_false(rf_uri_is_local("bogus"));
    assert_false(rf_uri_is_local(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_x509_ok),
        cmocka_unit_test(test_untrusted_server),
        cmocka_unit_test(test_untrusted_client),
        cmocka_unit_test(test_hostname_mismatch),
        cmocka_unit_test(test_authz),
        cmocka_unit_test(test_no_client_cert),
        cmocka_unit_test(test_expired_client_cert),
        cmocka_unit_test(test_psk),
        cmocka_unit_test(test_psk_wrong_key),
        cmocka_unit_test(test_psk_unknown_user),
        cmocka_unit_test(test_tls_client_plain_server),
        cmocka_unit_test(test_tls_client_silent_server),
        cmocka_unit_test(test_plain_client_tls_listener),
        cmocka_unit_test(test_silent_client_dropped),
        cmocka_unit_test(test_allow_peer),
        cmocka_unit_test(test_filter_listener_timeout),
        cmocka_unit_test(test_peer_filter),
        cmocka_unit_test(test_plain_conn_and_hostname),
        cmocka_unit_test(test_new_errors),
        cmocka_unit_test(test_uri_is_local),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
