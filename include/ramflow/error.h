/*
 * ramflow - error values.
 *
 * Errors travel up as values: a function that can fail takes an
 * `RfError **errp` as its last argument and returns false (or NULL, or -1)
 * on failure after filling *errp.  The first error wins: setting an error
 * when *errp is already set keeps the first one.  errp may be NULL when the
 * caller does not care about the message.  The message is printed once, at
 * the top (the CLI), never by the layer that detected the problem.
 */
#ifndef RAMFLOW_ERROR_H
#define RAMFLOW_ERROR_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* RF_API marks the functions libramflow exports; everything else in the
 * library is hidden (it is built with -fvisibility=hidden). */
#ifndef RF_API
#  if defined(__GNUC__) && defined(RF_BUILDING_LIBRAMFLOW)
#    define RF_API __attribute__((visibility("default")))
#  else
#    define RF_API
#  endif
#endif

/*! RfErrorKind :
 *  Broad classes of errors, so that a caller can choose an exit status
 *  without parsing the message.
 *  The numbers are stable: they travel in the wire protocol's ERROR
 *  message (docs/protocol.md, "ERROR") and are part of the ABI.  An
 *  existing kind never changes its number, 0 is never a kind, and a new
 *  kind takes the next free number; a peer that receives a kind it does
 *  not know reports it as RF_ERR_GENERIC. */
typedef enum {
    RF_ERR_GENERIC = 1,   /* anything not listed below */
    RF_ERR_PARAM = 2,     /* invalid parameter or usage (CLI exit status 2) */
    RF_ERR_IO = 3,        /* socket or file I/O failed, peer vanished */
    RF_ERR_PROTOCOL = 4,  /* peer sent something that breaks the protocol */
    RF_ERR_MISMATCH = 5,  /* peers disagree (method, layout, version,
                           * capabilities) */
    RF_ERR_VERIFY = 6,    /* --verify found different memory */
    RF_ERR_CANCELLED = 7, /* the user cancelled */
    RF_ERR_TIMEOUT = 8,   /* a peer stalled past the timeout */
    RF_ERR_AUTH = 9,      /* TLS or peer authentication failed, or the
                           * peer is not allowed (since 1.1) */
} RfErrorKind;

typedef struct RfError RfError;

/*! rf_error_set() :
 *  Stores a new error of kind `kind` in *errp unless errp is NULL or *errp
 *  already holds one (the first error wins). */
RF_API void rf_error_set(RfError **errp, RfErrorKind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*! rf_error_setv() : as rf_error_set() with a va_list. */
RF_API void rf_error_setv(RfError **errp, RfErrorKind kind, const char *fmt,
                   va_list ap);

/*! rf_error_prefix() :
 *  Prepends "prefix: " to the message of *err, if any, so a lower layer's
 *  message gains context ("channel 3: ...") on its way up. */
RF_API void rf_error_prefix(RfError **errp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*! rf_error_propagate() :
 *  Moves `local` into *dst (first error wins; a losing `local` is freed). */
RF_API void rf_error_propagate(RfError **dst, RfError *local);

/*! rf_error_msg() : @return the message; never NULL for a set error. */
RF_API const char *rf_error_msg(const RfError *err);

/*! rf_error_kind() : @return the kind of err. */
RF_API RfErrorKind rf_error_kind(const RfError *err);

/*! rf_error_free() : frees err; NULL is allowed. */
RF_API void rf_error_free(RfError *err);

#ifdef __cplusplus
}
#endif
#endif /* RAMFLOW_ERROR_H */
