/* ramflow - error values (see include/ramflow/error.h). */
#include "ramflow/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct RfError {
    RfErrorKind kind;
    char *msg;
};

void rf_error_setv(RfError **errp, RfErrorKind kind, const char *fmt,
                   va_list ap)
{
    if (!errp || *errp) {
        return;
    }
    RfError *e = calloc(1, sizeof(*e));
    if (!e) {
        return;
    }
    e->kind = kind;
    if (vasprintf(&e->msg, fmt, ap) < 0) {
        e->msg = NULL;
    }
    *errp = e;
}

void rf_error_set(RfError **errp, RfErrorKind kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rf_error_setv(errp, kind, fmt, ap);
    va_end(ap);
}

void rf_error_prefix(RfError **errp, const char *fmt, ...)
{
    if (!errp || !*errp) {
        return;
    }
    char *pre = NULL, *joined = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&pre, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if (asprintf(&joined, "%s: %s", pre, rf_error_msg(*errp)) >= 0) {
        free((*errp)->msg);
        (*errp)->msg = joined;
    }
    free(pre);
}

void rf_error_propagate(RfError **dst, RfError *local)
{
    if (!local) {
        return;
    }
    if (dst && !*dst) {
        *dst = local;
    } else {
        rf_error_free(local);
    }
}

const char *rf_error_msg(const RfError *err)
{
    if (!err) {
        return "(no error)";
    }
    return err->msg ? err->msg : "out of memory while formatting an error";
}

RfErrorKind rf_error_kind(const RfError *err)
{
    return err ? err->kind : RF_ERR_GENERIC;
}

void rf_error_free(RfError *err)
{
    if (err) {
        free(err->msg);
        free(err);
    }
}
