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
#include "ramflow/ramflow.h"

typedef enum { P_UINT, P_SIZE, P_METHOD } ParamKind;

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
};

#define N_SPECS (sizeof(specs) / sizeof(specs[0]))

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
}

/* Filled once from specs[], then only read: any thread may call
 * rf_params_names() at any time. */
static const char *params_names[N_SPECS + 1];
static pthread_once_t params_names_once = PTHREAD_ONCE_INIT;

static void params_names_fill(void)
{
    for (size_t i = 0; i < N_SPECS; i++) {
        params_names[i] = specs[i].name;
    }
    params_names[N_SPECS] = NULL;
}

const char *const *rf_params_names(void)
{
    pthread_once(&params_names_once, params_names_fill);
    return params_names;
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

/* Checks a method name: unknown and known-but-not-built get different
 * messages, since the fix differs (typo vs rebuild). */
static bool check_method(const char *value, RfError **errp)
{
    if (rf_method_find(value)) {
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
                     "(available: %s)", value, list);
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
        char list[512];
        join_names(rf_params_names(), list, sizeof(list));
        rf_error_set(errp, RF_ERR_PARAM, "unknown parameter '%s' (known: %s)",
                     name, list);
        return false;
    }
    if (s->kind == P_METHOD) {
        if (!check_method(value, errp)) {
            return false;
        }
        snprintf(p->multifd_compression, sizeof(p->multifd_compression),
                 "%s", value);
        return true;
    }
    uint64_t v;
    if (!parse_number(value, s->kind == P_SIZE, &v) || v < s->min ||
        v > s->max) {
        range_error(s, value, errp);
        return false;
    }
    store(p, s, v);
    return true;
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
