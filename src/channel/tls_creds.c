/*
 * ramflow - loading TLS credentials and authz lists.
 *
 * Files are read here (not by GnuTLS's *_file calls) so that a missing or
 * unreadable one is reported with its path and errno's words, the way an
 * operator can act on: "tls-creds: /dir/ca-cert.pem: No such file or
 * directory".  GnuTLS then parses the bytes.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "channel/tls.h"

/* TLS 1.3 only; PSK adds the pre-shared-key exchanges (with ECDHE or DHE
 * for forward secrecy first, plain PSK last). */
#define PRIO_X509 "NORMAL:-VERS-ALL:+VERS-TLS1.3"
#define PRIO_PSK  PRIO_X509 ":+ECDHE-PSK:+DHE-PSK:+PSK"

/* Cap on a credentials or authz file: they are a few KiB. */
#define FILE_MAX (1 << 20)

typedef struct PskEntry {
    char *user;
    gnutls_datum_t key;
} PskEntry;

struct RfTlsCreds {
    bool server;
    gnutls_certificate_credentials_t x509;   /* x509, else NULL */
    gnutls_psk_server_credentials_t psk_srv; /* PSK server */
    gnutls_psk_client_credentials_t psk_cli; /* PSK client */
    gnutls_priority_t prio;
    char psk_file[PATH_MAX];
    PskEntry *keys; /* PSK server: every line of keys.psk */
    size_t nkeys;
};

/* Reads path whole into *d (free d->data).  `what` ("tls-creds") starts
 * the error message, followed by the path and errno's words. */
static bool file_read(const char *what, const char *path, gnutls_datum_t *d,
                      RfError **errp)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        rf_error_set(errp, RF_ERR_PARAM, "%s: %s: %s", what, path,
                     strerror(errno));
        return false;
    }
    unsigned char *buf = malloc(FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, FILE_MAX + 1, fp) : 0;
    int err = ferror(fp) ? errno : 0;
    fclose(fp);
    if (!buf || err || n > FILE_MAX) {
        rf_error_set(errp, RF_ERR_PARAM, "%s: %s: %s", what, path,
                     !buf ? "out of memory" : err ? strerror(err)
                                                  : "larger than 1 MiB");
        free(buf);
        return false;
    }
    buf[n] = '\0';  /* text files are then also C strings */
    d->data = buf;
    d->size = (unsigned)n;
    return true;
}

static void path_join(char *out, const char *dir, const char *name)
{
    snprintf(out, PATH_MAX, "%s/%s", dir, name);
}

static bool file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* --- x509 ---------------------------------------------------------------- */

/* Loads one PEM file with `load` (trust, CRL); ok_zero = a file with no
 * entry is fine (a CRL listing nothing). */
static bool x509_load_one(RfTlsCreds *cr, const char *path,
                          int (*load)(gnutls_certificate_credentials_t,
                                      const gnutls_datum_t *,
                                      gnutls_x509_crt_fmt_t),
                          bool ok_zero, RfError **errp)
{
    gnutls_datum_t d;
    if (!file_read("tls-creds", path, &d, errp)) {
        return false;
    }
    int r = load(cr->x509, &d, GNUTLS_X509_FMT_PEM);
    free(d.data);
    if (r < 0 || (r == 0 && !ok_zero)) {
        rf_error_set(errp, RF_ERR_PARAM, "tls-creds: %s: %s", path,
                     r < 0 ? gnutls_strerror(r)
                           : "holds no PEM certificate");
        return false;
    }
    return true;
}

/* The own certificate and key: required on the server; on the client
 * both may be absent (the server will then refuse it, clearly). */
static bool x509_load_keypair(RfTlsCreds *cr, const char *dir,
                              RfError **errp)
{
    const char *role = cr->server ? "server" : "client";
    char cert[PATH_MAX], key[PATH_MAX], name[32];
    snprintf(name, sizeof(name), "%s-cert.pem", role);
    path_join(cert, dir, name);
    snprintf(name, sizeof(name), "%s-key.pem", role);
    path_join(key, dir, name);
    if (!cr->server && !file_exists(cert) && !file_exists(key)) {
        return true;
    }
    gnutls_datum_t c, k = { NULL, 0 };
    if (!file_read("tls-creds", cert, &c, errp)) {
        return false;
    }
    if (!file_read("tls-creds", key, &k, errp)) {
        free(c.data);
        return false;
    }
    int r = gnutls_certificate_set_x509_key_mem(cr->x509, &c, &k,
                                                GNUTLS_X509_FMT_PEM);
    free(c.data);
    gnutls_memset(k.data, 0, k.size);
    free(k.data);
    if (r < 0) {
        rf_error_set(errp, RF_ERR_PARAM, "tls-creds: %s with %s: %s", cert,
                     key, gnutls_strerror(r));
        return false;
    }
    return true;
}

static bool x509_load(RfTlsCreds *cr, const char *dir, RfError **errp)
{
    char path[PATH_MAX];
    int r = gnutls_certificate_allocate_credentials(&cr->x509);
    if (r < 0) {
        rf_error_set(errp, RF_ERR_GENERIC, "tls-creds: %s",
                     gnutls_strerror(r));
        return false;
    }
    path_join(path, dir, "ca-cert.pem");
    if (!x509_load_one(cr, path, gnutls_certificate_set_x509_trust_mem,
                       false, errp)) {
        return false;
    }
    path_join(path, dir, "ca-crl.pem");
    if (file_exists(path) &&
        !x509_load_one(cr, path, gnutls_certificate_set_x509_crl_mem, true,
                       errp)) {
        return false;
    }
    return x509_load_keypair(cr, dir, errp);
}

/* --- PSK ----------------------------------------------------------------- */

/* Parses one "user:hexkey" line into e.  @return false if malformed. */
static bool psk_parse_line(char *line, PskEntry *e)
{
    char *colon = strchr(line, ':');
    if (!colon || colon == line || !colon[1]) {
        return false;
    }
    *colon = '\0';
    gnutls_datum_t hex = { (unsigned char *)colon + 1,
                           (unsigned)strlen(colon + 1) };
    if (gnutls_hex_decode2(&hex, &e->key) < 0 || e->key.size == 0) {
        return false;
    }
    e->user = strdup(line);
    if (!e->user) {
        gnutls_free(e->key.data);
        return false;
    }
    return true;
}

static void psk_entry_free(PskEntry *e)
{
    free(e->user);
    if (e->key.data) {
        gnutls_memset(e->key.data, 0, e->key.size);
        gnutls_free(e->key.data);
    }
}

/* Reads every line of keys.psk into cr->keys (blank lines and '#'
 * comments skipped). */
static bool psk_read(RfTlsCreds *cr, RfError **errp)
{
    gnutls_datum_t d;
    if (!file_read("tls-psk", cr->psk_file, &d, errp)) {
        return false;
    }
    bool ok = true;
    unsigned lineno = 0;
    char *save = NULL;
    for (char *line = strtok_r((char *)d.data, "\n", &save); line && ok;
         line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        line[strcspn(line, "\r")] = '\0';
        if (!*line || *line == '#') {
            continue;
        }
        PskEntry *grown = realloc(cr->keys, (cr->nkeys + 1) * sizeof(*grown));
        if (!grown) {
            rf_error_set(errp, RF_ERR_GENERIC, "tls-psk: out of memory");
            ok = false;
            break;
        }
        cr->keys = grown;
        if (!psk_parse_line(line, &cr->keys[cr->nkeys])) {
            rf_error_set(errp, RF_ERR_PARAM, "tls-psk: %s: line %u: "
                         "expected USERNAME:HEXKEY", cr->psk_file, lineno);
            ok = false;
            break;
        }
        cr->nkeys++;
    }
    gnutls_memset(d.data, 0, d.size);
    free(d.data);
    return ok;
}

static const PskEntry *psk_find(const RfTlsCreds *cr, const char *user)
{
    for (size_t i = 0; i < cr->nkeys; i++) {
        if (strcmp(cr->keys[i].user, user) == 0) {
            return &cr->keys[i];
        }
    }
    return NULL;
}

bool rf_tls_creds_psk_key(const RfTlsCreds *cr, const char *user,
                          gnutls_datum_t *key)
{
    const PskEntry *e = psk_find(cr, user);
    if (!e) {
        return false;
    }
    key->data = gnutls_malloc(e->key.size);
    if (!key->data) {
        return false;
    }
    memcpy(key->data, e->key.data, e->key.size);
    key->size = e->key.size;
    return true;
}

static bool psk_load(RfTlsCreds *cr, const char *dir, const char *user,
                     RfError **errp)
{
    path_join(cr->psk_file, dir, "keys.psk");
    if (!psk_read(cr, errp)) {
        return false;
    }
    int r;
    if (cr->server) {
        r = gnutls_psk_allocate_server_credentials(&cr->psk_srv);
        if (r >= 0) {
            gnutls_psk_set_server_credentials_function2(cr->psk_srv,
                                                        rf_tls_psk_server_cb);
        }
    } else {
        const PskEntry *e = psk_find(cr, user);
        if (!e) {
            rf_error_set(errp, RF_ERR_PARAM, "tls-psk: %s has no key for "
                         "user '%s' (add a line '%s:HEXKEY' or set "
                         "psk-username)", cr->psk_file, user, user);
            return false;
        }
        r = gnutls_psk_allocate_client_credentials(&cr->psk_cli);
        if (r >= 0) {
            r = gnutls_psk_set_client_credentials(cr->psk_cli, user, &e->key,
                                                  GNUTLS_PSK_KEY_RAW);
        }
    }
    if (r < 0) {
        rf_error_set(errp, RF_ERR_GENERIC, "tls-psk: %s: %s", cr->psk_file,
                     gnutls_strerror(r));
        return false;
    }
    return true;
}

/* --- the credentials ----------------------------------------------------- */

RfTlsCreds *rf_tls_creds_load(const char *x509_dir, const char *psk_dir,
                              const char *psk_user, bool server,
                              RfError **errp)
{
    RfTlsCreds *cr = calloc(1, sizeof(*cr));
    if (!cr) {
        rf_error_set(errp, RF_ERR_GENERIC, "tls-creds: out of memory");
        return NULL;
    }
    cr->server = server;
    bool ok = x509_dir ? x509_load(cr, x509_dir, errp)
                       : psk_load(cr, psk_dir, psk_user, errp);
    if (ok) {
        const char *where = NULL;
        int r = gnutls_priority_init(&cr->prio,
                                     x509_dir ? PRIO_X509 : PRIO_PSK, &where);
        if (r < 0) {
            rf_error_set(errp, RF_ERR_GENERIC, "TLS priorities at '%s': %s",
                         where ? where : "", gnutls_strerror(r));
            ok = false;
        }
    }
    if (!ok) {
        rf_tls_creds_free(cr);
        return NULL;
    }
    return cr;
}

void rf_tls_creds_free(RfTlsCreds *cr)
{
    if (!cr) {
        return;
    }
    if (cr->x509) {
        gnutls_certificate_free_credentials(cr->x509);
    }
    if (cr->psk_srv) {
        gnutls_psk_free_server_credentials(cr->psk_srv);
    }
    if (cr->psk_cli) {
        gnutls_psk_free_client_credentials(cr->psk_cli);
    }
    if (cr->prio) {
        gnutls_priority_deinit(cr->prio);
    }
    for (size_t i = 0; i < cr->nkeys; i++) {
        psk_entry_free(&cr->keys[i]);
    }
    free(cr->keys);
    free(cr);
}

bool rf_tls_creds_is_psk(const RfTlsCreds *cr)
{
    return cr->x509 == NULL;
}

const char *rf_tls_creds_psk_file(const RfTlsCreds *cr)
{
    return cr->psk_file;
}

int rf_tls_creds_apply(const RfTlsCreds *cr, gnutls_session_t sess)
{
    int r = gnutls_priority_set(sess, cr->prio);
    if (r < 0) {
        return r;
    }
    if (cr->x509) {
        r = gnutls_credentials_set(sess, GNUTLS_CRD_CERTIFICATE, cr->x509);
        if (r >= 0 && cr->server) {
            gnutls_certificate_server_set_request(sess, GNUTLS_CERT_REQUIRE);
        }
        return r;
    }
    return gnutls_credentials_set(sess, GNUTLS_CRD_PSK,
                                  cr->server ? (void *)cr->psk_srv
                                             : (void *)cr->psk_cli);
}

/* --- authz --------------------------------------------------------------- */

/* Adds s[0..len) to a, spaces around it dropped, if anything is left. */
static bool authz_add(RfAuthz *a, const char *s, size_t len, RfError **errp)
{
    while (len && isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    while (len && isspace((unsigned char)s[len - 1])) {
        len--;
    }
    if (!len) {
        return true;
    }
    char **grown = realloc(a->ids, (a->n + 1) * sizeof(*grown));
    char *id = grown ? strndup(s, len) : NULL;
    if (!id) {
        if (grown) {
            a->ids = grown;
        }
        rf_error_set(errp, RF_ERR_GENERIC, "tls-authz: out of memory");
        return false;
    }
    a->ids = grown;
    a->ids[a->n++] = id;
    return true;
}

/* Adds each piece of text separated by `sep`, skipping '#' comments if
 * `comments`. */
static bool authz_add_split(RfAuthz *a, const char *text, char sep,
                            bool comments, RfError **errp)
{
    while (*text) {
        const char *end = strchr(text, sep);
        size_t len = end ? (size_t)(end - text) : strlen(text);
        const char *p = text;
        while (p < text + len && isspace((unsigned char)*p)) {
            p++;
        }
        bool skip = comments && p < text + len && *p == '#';
        if (!skip && !authz_add(a, text, len, errp)) {
            return false;
        }
        text += len + (end != NULL);
    }
    return true;
}

bool rf_authz_load(RfAuthz *a, const char *list, const char *file,
                   RfError **errp)
{
    a->ids = NULL;
    a->n = 0;
    a->any = !(list && *list) && !(file && *file);
    if (list && !authz_add_split(a, list, ';', false, errp)) {
        rf_authz_free(a);
        return false;
    }
    if (file && *file) {
        gnutls_datum_t d;
        if (!file_read("tls-authz-file", file, &d, errp)) {
            rf_authz_free(a);
            return false;
        }
        bool ok = authz_add_split(a, (char *)d.data, '\n', true, errp);
        free(d.data);
        if (!ok) {
            rf_authz_free(a);
            return false;
        }
    }
    return true;
}

bool rf_authz_allows(const RfAuthz *a, const char *id)
{
    if (a->any) {
        return true;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->ids[i], id) == 0) {
            return true;
        }
    }
    return false;
}

void rf_authz_free(RfAuthz *a)
{
    for (size_t i = 0; a->ids && i < a->n; i++) {
        free(a->ids[i]);
    }
    free(a->ids);
    a->ids = NULL;
    a->n = 0;
}
