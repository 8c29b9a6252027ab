/*
 * ramflow - migration parameters: QEMU's names, ranges and defaults,
 * checked in one place (as QEMU's migrate_params_check) before anything
 * starts.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress/method.h"
#include "engine/engine.h"
#include "engine/params.h"
#include "ramflow/ramflow.h"

/* P_CORES: a decimal number of cores ("0.5"), kept in 1/1000 core. */
typedef enum { P_UINT, P_SIZE, P_METHOD, P_STRING, P_BOOL, P_CORES } ParamKind;

typedef struct {
    const char *name;
    ParamKind kind;
    uint64_t min, max;
    size_t offset; /* into RfParams */
    size_t width;  /* sizeof the field */
    bool is_signed;
} ParamSpec;

#define FIELD(f) offsetof(RfParams, f), sizeof(((RfParams *)0)->f)

static const ParamSpec specs[] = {
    {"multifd-channels", P_UINT, 1, 255, FIELD(multifd_channels), false},
    {"multifd-compression", P_METHOD, 0, 0, FIELD(multifd_compression),
     false},
    {"multifd-zlib-level", P_UINT, 0, 9, FIELD(multifd_zlib_level), true},
    {"multifd-zstd-level", P_UINT, 0, 20, FIELD(multifd_zstd_level), true},
    {"multifd-qatzip-level", P_UINT, 1, 9, FIELD(multifd_qatzip_level),
     true},
    {"max-bandwidth", P_SIZE, 0, UINT64_MAX / 2, FIELD(max_bandwidth),
     false},
    {"downtime-limit", P_UINT, 0, 2000000, FIELD(downtime_limit), false},
    {"max-rounds", P_UINT, 1, 10000, FIELD(max_rounds), false},
    {"timeout", P_UINT, 100, 3600000, FIELD(timeout_ms), false},
    {"tcp-keepalive", P_UINT, 0, 32767, FIELD(tcp_keepalive_s), false},
    {"tcp-user-timeout", P_UINT, 0, 3600000, FIELD(tcp_user_timeout_ms),
     false},
    {"multifd-reconnect-attempts", P_UINT, 0, 100,
     FIELD(multifd_reconnect_attempts), false},
    {"multifd-reconnect-backoff", P_UINT, 0, 60000,
     FIELD(multifd_reconnect_backoff_ms), false},
    {"tls-creds", P_STRING, 0, 0, FIELD(tls_creds), false},
    {"tls-psk", P_STRING, 0, 0, FIELD(tls_psk), false},
    {"tls-psk-username", P_STRING, 0, 0, FIELD(tls_psk_username), false},
    {"tls-hostname", P_STRING, 0, 0, FIELD(tls_hostname), false},
    {"tls-authz", P_STRING, 0, 0, FIELD(tls_authz), false},
    {"tls-authz-file", P_STRING, 0, 0, FIELD(tls_authz_file), false},
    {"allow-peer", P_STRING, 0, 0, FIELD(allow_peer), false},
    {"insecure", P_BOOL, 0, 1, FIELD(insecure), false},
    {"max-memory", P_SIZE, 0, UINT64_MAX / 2, FIELD(max_memory), false},
    {"crc32c", P_BOOL, 0, 1, FIELD(crc32c), false},
    {"max-cpu", P_CORES, 0, 1024000, FIELD(max_cpu_milli), false},
    {"multifd-auto-methods", P_STRING, 0, 0, FIELD(multifd_auto_methods),
     false},
};

/* The parameters QEMU lets migrate-set-parameters change while a migration
 * runs (and that ramflow's engine re-reads as it goes). */
static const char *const live_names[] = {"max-bandwidth", "downtime-limit",
                                         "max-rounds", NULL};

typedef struct {
    const char *name;
    size_t offset; /* of a bool in RfParams */
} CapSpec;

static const CapSpec caps[] = {
    {"auto-converge", offsetof(RfParams, auto_converge)},
    {"verify", offsetof(RfParams, verify)},
};

#define N_CAPS (sizeof(caps) / sizeof(caps[0]))

#define N_SPECS (sizeof(specs) / sizeof(specs[0]))
_Static_assert(N_SPECS <= 32, "explicit_set has one bit per parameter");

void rf_params_init(RfParams *p)
{
    memset(p, 0, sizeof(*p));
    p->multifd_channels = 2;
    snprintf(p->multifd_compression, sizeof(p->multifd_compression), "none");
    p->multifd_zlib_level = 1;
    p->multifd_zstd_level = 1;
    p->multifd_qatzip_level = 1;
    p->max_bandwidth = 0;
    p->downtime_limit = 300;
    p->max_rounds = 30;
    p->timeout_ms = 30000;
    p->multifd_reconnect_attempts = 3;
    p->multifd_reconnect_backoff_ms = 200;
    snprintf(p->tls_psk_username, sizeof(p->tls_psk_username), "qemu");
    p->crc32c = true;
    snprintf(p->multifd_auto_methods, sizeof(p->multifd_auto_methods),
             "%s", RF_AUTO_METHODS_DEFAULT);
}

RfParams *rf_params_new(void)
{
    RfParams *p = malloc(sizeof(*p));
    if (p) {
        rf_params_init(p);
    }
    return p;
}

RfParams *rf_params_dup(const RfParams *p)
{
    RfParams *d = malloc(sizeof(*d));
    if (d) {
        *d = *p;
    }
    return d;
}

void rf_params_free(RfParams *p)
{
    free(p);
}

/* A constant table (never written at run time), so concurrent callers
 * read it safely. */
static const char *const param_names[] = {
    "multifd-channels", "multifd-compression", "multifd-zlib-level",
    "multifd-zstd-level", "multifd-qatzip-level", "max-bandwidth",
    "downtime-limit", "max-rounds", "timeout", "tcp-keepalive",
    "tcp-user-timeout", "multifd-reconnect-attempts",
    "multifd-reconnect-backoff", "tls-creds", "tls-psk",
    "tls-psk-username", "tls-hostname", "tls-authz", "tls-authz-file",
    "allow-peer", "insecure", "max-memory", "crc32c", "max-cpu",
    "multifd-auto-methods", NULL,
};
_Static_assert(sizeof(param_names) / sizeof(param_names[0]) == N_SPECS + 1,
               "param_names lists every spec");

const char *const *rf_params_names(void)
{
    return param_names;
}

static const char *const cap_names[] = {"auto-converge", "verify", NULL};
_Static_assert(sizeof(cap_names) / sizeof(cap_names[0]) == N_CAPS + 1,
               "cap_names lists every capability");

const char *const *rf_params_cap_names(void)
{
    return cap_names;
}

bool rf_params_live(const char *name)
{
    for (size_t i = 0; live_names[i]; i++) {
        if (strcmp(live_names[i], name) == 0) {
            return true;
        }
    }
    return false;
}

static const ParamSpec *find_spec(const char *name)
{
    for (size_t i = 0; i < N_SPECS; i++) {
        if (strcmp(specs[i].name, name) == 0) {
            return &specs[i];
        }
    }
    return NULL;
}

static void join_names(const char *const *names, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; names[i]; i++) {
        int n = snprintf(out + used, cap - used, "%s%s", i ? ", " : "",
                         names[i]);
        if (n < 0 || (size_t)n >= cap - used) {
            break;
        }
        used += (size_t)n;
    }
}

static void unknown_param(const char *name, RfError **errp)
{
    char list[512];
    join_names(rf_params_names(), list, sizeof(list));
    rf_error_set(errp, RF_ERR_PARAM, "unknown parameter '%s' (known: %s)",
                 name, list);
}

/* Checks a method name: unknown and known-but-not-built get different
 * messages, since the fix differs (typo vs rebuild). */
static bool check_method(const char *value, RfError **errp)
{
    if (rf_method_find(value) || strcmp(value, "auto") == 0) {
        return true;
    }
    char list[256];
    join_names(rf_method_names(), list, sizeof(list));
    if (rf_method_known(value)) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "multifd-compression: method '%s' is not built into "
                     "this ramflow (available: %s; rebuild with -D%s=enabled)",
                     value, list, value);
    } else {
        rf_error_set(errp, RF_ERR_PARAM,
                     "multifd-compression: unknown method '%s' "
                     "(available: %s, auto)", value, list);
    }
    return false;
}

/* Stores a string parameter; control characters are refused so a value
 * never breaks a log line or a list. */
static bool set_string(RfParams *p, const ParamSpec *s, const char *value,
                       RfError **errp)
{
    value = value ? value : "";
    size_t len = strlen(value);
    if (len >= s->width) {
        rf_error_set(errp, RF_ERR_PARAM, "%s: value of %zu bytes is too "
                     "long (at most %zu)", s->name, len, s->width - 1);
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)value[i] < 0x20) {
            rf_error_set(errp, RF_ERR_PARAM, "%s: control character in "
                         "the value", s->name);
            return false;
        }
    }
    memcpy((char *)p + s->offset, value, len + 1);
    p->explicit_set |= 1u << (s - specs);
    return true;
}

/* on/off as QEMU writes booleans, plus the usual spellings. */
static bool parse_bool(const char *value, uint64_t *out)
{
    static const char *const on[] = {"on", "true", "yes", "1"};
    static const char *const off[] = {"off", "false", "no", "0"};
    for (size_t i = 0; value && i < 4; i++) {
        if (strcmp(value, on[i]) == 0 || strcmp(value, off[i]) == 0) {
            *out = strcmp(value, on[i]) == 0;
            return true;
        }
    }
    return false;
}

/* Parses a whole decimal number with an optional K/M/G/T suffix (powers of
 * 1024) when `size` is set.  Rejects signs, junk and overflow. */
static bool parse_number(const char *value, bool size, uint64_t *out)
{
    if (!value || !*value || *value == '-' || *value == '+') {
        return false;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    if (errno || end == value) {
        return false;
    }
    uint64_t mul = 1;
    if (size && *end) {
        switch (*end) {
        case 'k': case 'K': mul = 1ull << 10; break;
        case 'm': case 'M': mul = 1ull << 20; break;
        case 'g': case 'G': mul = 1ull << 30; break;
        case 't': case 'T': mul = 1ull << 40; break;
        default: return false;
        }
        end++;
        if (*end == 'B' || *end == 'b') {
            end++;
        }
    }
    if (*end || (v && mul > UINT64_MAX / v)) {
        return false;
    }
    *out = v * mul;
    return true;
}

/* A decimal number of cores with up to three decimals ("2", "0.5"),
 * in 1/1000 core. */
static bool parse_cores(const char *value, uint64_t *out)
{
    if (!value || !*value || *value == '-' || *value == '+') {
        return false;
    }
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || *end || !(v >= 0) || v > 1e9) {
        return false;
    }
    double milli = v * 1000.0;
    if (milli - (double)(uint64_t)(milli + 0.5) > 1e-6 ||
        (double)(uint64_t)(milli + 0.5) - milli > 1e-6) {
        return false; /* finer than 1/1000 core */
    }
    *out = (uint64_t)(milli + 0.5);
    return true;
}

static void store(RfParams *p, const ParamSpec *s, uint64_t v)
{
    void *f = (char *)p + s->offset;
    if (s->width == sizeof(uint64_t)) {
        *(uint64_t *)f = v;
    } else if (s->is_signed) {
        *(int *)f = (int)v;
    } else {
        *(unsigned *)f = (unsigned)v;
    }
}

static uint64_t load(const RfParams *p, const ParamSpec *s)
{
    const void *f = (const char *)p + s->offset;
    if (s->width == sizeof(uint64_t)) {
        return *(const uint64_t *)f;
    }
    if (s->is_signed) {
        int v = *(const int *)f;
        return v < 0 ? UINT64_MAX : (uint64_t)v;
    }
    return *(const unsigned *)f;
}

static void range_error(const ParamSpec *s, const char *value,
                        RfError **errp)
{
    if (s->kind == P_CORES) {
        rf_error_set(errp, RF_ERR_PARAM, "%s: invalid value '%s' (allowed: "
                     "a number of cores from 0 to %" PRIu64 " with at most "
                     "three decimals, e.g. 0.5; 0 = no limit)", s->name,
                     value, s->max / 1000);
        return;
    }
    rf_error_set(errp, RF_ERR_PARAM,
                 "%s: invalid value '%s' (allowed: %s %" PRIu64 " to %"
                 PRIu64 "%s)", s->name, value,
                 s->kind == P_SIZE ? "a size in bytes," : "an integer",
                 s->min, s->max,
                 s->kind == P_SIZE ? ", suffixes K M G T" : "");
}

bool rf_params_set(RfParams *p, const char *name, const char *value,
                   RfError **errp)
{
    const ParamSpec *s = find_spec(name);
    if (!s) {
        unknown_param(name, errp);
        return false;
    }
    if (s->kind == P_METHOD) {
        if (!check_method(value, errp)) {
            return false;
        }
        snprintf(p->multifd_compression, sizeof(p->multifd_compression),
                 "%s", value);
        p->explicit_set |= 1u << (s - specs);
        return true;
    }
    if (s->kind == P_STRING) {
        return set_string(p, s, value, errp);
    }
    uint64_t v;
    if (s->kind == P_BOOL) {
        if (!parse_bool(value, &v)) {
            rf_error_set(errp, RF_ERR_PARAM, "%s: invalid value '%s' "
                         "(allowed: on, off)", s->name, value ? value : "");
            return false;
        }
        *(bool *)((char *)p + s->offset) = v;
        p->explicit_set |= 1u << (s - specs);
        return true;
    }
    if (s->kind == P_CORES ? !parse_cores(value, &v)
                           : !parse_number(value, s->kind == P_SIZE, &v)) {
        range_error(s, value, errp);
        return false;
    }
    if (v < s->min || v > s->max) {
        range_error(s, value, errp);
        return false;
    }
    store(p, s, v);
    p->explicit_set |= 1u << (s - specs);
    return true;
}

bool rf_params_is_explicit(const RfParams *p, const char *name)
{
    const ParamSpec *s = find_spec(name);
    return s && (p->explicit_set & (1u << (s - specs)));
}

bool rf_params_get(const RfParams *p, const char *name, char *buf,
                   size_t cap, RfError **errp)
{
    const ParamSpec *s = find_spec(name);
    if (!s) {
        unknown_param(name, errp);
        return false;
    }
    int n;
    if (s->kind == P_METHOD) {
        n = snprintf(buf, cap, "%s", p->multifd_compression);
    } else if (s->kind == P_STRING) {
        n = snprintf(buf, cap, "%s", (const char *)p + s->offset);
    } else if (s->kind == P_BOOL) {
        n = snprintf(buf, cap, "%s",
                     *(const bool *)((const char *)p + s->offset) ? "on"
                                                                  : "off");
    } else if (s->kind == P_CORES) {
        uint64_t v = load(p, s);
        n = v % 1000 ? snprintf(buf, cap, "%" PRIu64 ".%03" PRIu64, v / 1000,
                                v % 1000)
                     : snprintf(buf, cap, "%" PRIu64, v / 1000);
        /* "0.500" -> "0.5" */
        while (n > 0 && v % 1000 && (size_t)n < cap && buf[n - 1] == '0') {
            buf[--n] = '\0';
        }
    } else if (s->is_signed && load(p, s) == UINT64_MAX) {
        n = snprintf(buf, cap, "-1");
    } else {
        n = snprintf(buf, cap, "%" PRIu64, load(p, s));
    }
    if (n < 0 || (size_t)n >= cap) {
        rf_error_set(errp, RF_ERR_PARAM, "%s: buffer of %zu bytes too small",
                     name, cap);
        return false;
    }
    return true;
}

/* "multifd-<method>-level", the parameter that holds method's level. */
static const ParamSpec *level_spec(const char *method)
{
    char name[64];
    snprintf(name, sizeof(name), "multifd-%s-level", method ? method : "");
    return find_spec(name);
}

bool rf_params_set_level(RfParams *p, const char *method, int level,
                         RfError **errp)
{
    const ParamSpec *s = level_spec(method);
    if (!s) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "method '%s' has no compression level", method);
        return false;
    }
    char text[16];
    snprintf(text, sizeof(text), "%d", level);
    return rf_params_set(p, s->name, text, errp);
}

int rf_params_get_level(const RfParams *p, const char *method)
{
    const ParamSpec *s = level_spec(method);
    return s ? (int)load(p, s) : -1;
}

static const CapSpec *find_cap(const char *name)
{
    for (size_t i = 0; i < N_CAPS; i++) {
        if (strcmp(caps[i].name, name) == 0) {
            return &caps[i];
        }
    }
    return NULL;
}

bool rf_params_set_cap(RfParams *p, const char *name, bool on,
                       RfError **errp)
{
    const CapSpec *c = find_cap(name);
    if (!c) {
        char list[128];
        join_names(rf_params_cap_names(), list, sizeof(list));
        rf_error_set(errp, RF_ERR_PARAM,
                     "unknown capability '%s' (known: %s)", name, list);
        return false;
    }
    *(bool *)((char *)p + c->offset) = on;
    return true;
}

bool rf_params_get_cap(const RfParams *p, const char *name)
{
    const CapSpec *c = find_cap(name);
    return c && *(const bool *)((const char *)p + c->offset);
}

bool rf_params_check(const RfParams *p, RfError **errp)
{
    for (size_t i = 0; i < N_SPECS; i++) {
        const ParamSpec *s = &specs[i];
        if (s->kind == P_METHOD) {
            if (!check_method(p->multifd_compression, errp)) {
                return false;
            }
            continue;
        }
        if (s->kind == P_STRING || s->kind == P_BOOL) {
            continue;
        }
        uint64_t v = load(p, s);
        if (v < s->min || v > s->max) {
            char text[32];
            if (v == UINT64_MAX) {
                snprintf(text, sizeof(text), "negative");
            } else {
                snprintf(text, sizeof(text), "%" PRIu64, v);
            }
            range_error(s, text, errp);
            return false;
        }
    }
    if (!rf_auto_candidates(p, UINT32_MAX, NULL, errp)) {
        return false;
    }
    if (p->tls_creds[0] && p->tls_psk[0]) {
        rf_error_set(errp, RF_ERR_PARAM, "tls-creds and tls-psk: give one "
                     "kind of TLS credentials, not both");
        return false;
    }
    if ((p->tls_authz[0] || p->tls_authz_file[0]) && !p->tls_creds[0] &&
        !p->tls_psk[0]) {
        rf_error_set(errp, RF_ERR_PARAM, "tls-authz%s needs TLS: set "
                     "tls-creds or tls-psk", p->tls_authz[0] ? "" : "-file");
        return false;
    }
    return true;
}

/* @return the value of the level parameter named level_param (a
 * method's RfMethodOps.level_param), or 0 for NULL: the method decides
 * which parameter applies, params.c needs no list of methods. */
int rf_params_level(const RfParams *p, const char *level_param)
{
    const ParamSpec *s = level_param ? find_spec(level_param) : NULL;
    return s ? (int)load(p, s) : 0;
}
