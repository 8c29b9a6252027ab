/*
 * ramflow - the qatzip method's hardware back end: QAT through QATzip.
 *
 * No build-time dependency: libqatzip.so.3 is loaded with dlopen() when a
 * codec is created (Debian packages no QATzip, and a build must run on
 * hosts without QAT).  Only the QATzip 1.1.2 function set is used, and the
 * few structures it needs are declared here with the layouts documented in
 * shared/docs/qatzip-format.md section 2 (identical from 1.1.2 to 1.3.1 on
 * x86-64), pinned by static assertions.
 *
 * The decision: qzInit(sess, 1) may return 0 or 1 (QZ_DUPLICATE) whether
 * or not a device exists, since its state is per process; only
 * hw_session_stat after qzSetupSessionDeflate tells: 0 is a hardware
 * session, anything else (11, QZ_NO_HW) means QATzip would compress in its
 * own slow software path, so ramflow uses ISA-L instead and says why.
 *
 * The library handle is never closed once qzInit has run: QATzip keeps
 * per-process state (and, on real hardware, threads and pinned memory) that
 * must not vanish under other sessions.  dlopen() of an already loaded
 * library only raises its reference count.
 */
#include "compress/qatzip/qz_backend.h"
#include "compress/qatzip/qz_format.h"

#include <assert.h>
#include <dlfcn.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- QATzip declarations (layouts from qatzip.h 1.1.2 .. 1.3.1) ------- */

enum {
    QZ_OK = 0,
    QZ_DUPLICATE = 1,
    QZ_NO_HW = 11,
    QZ_PARAMS = -1,
    QZ_FAIL = -2,
    QZ_BUF_ERROR = -3,
    QZ_DATA_ERROR = -4,
};
enum { QZ_COMMON_MEM = 0, QZ_PINNED_MEM = 1 };
enum { QZ_DEFLATE = 8, QZ_DEFLATE_GZIP_EXT = 2 };

typedef struct QzSession {
    long hw_session_stat;
    int thd_sess_stat;
    void *internal;
    unsigned long total_in;
    unsigned long total_out;
} QzSession;

typedef struct QzSessionParamsCommon {
    int direction;
    int comp_lvl;
    unsigned char comp_algorithm;
    unsigned int max_forks;
    unsigned char sw_backup;
    unsigned int hw_buff_sz;
    unsigned int strm_buff_sz;
    unsigned int input_sz_thrshold;
    unsigned int req_cnt_thrshold;
    unsigned int wait_cnt_thrshold;
    int polling_mode;
    unsigned int is_sensitive_mode;
} QzSessionParamsCommon;

typedef struct QzSessionParamsDeflate {
    QzSessionParamsCommon common;
    int huffman_hdr;
    int data_fmt;
} QzSessionParamsDeflate;

static_assert(sizeof(QzSession) == 40, "QzSession_T is 40 bytes");
static_assert(offsetof(QzSession, thd_sess_stat) == 8, "thd_sess_stat @8");
static_assert(offsetof(QzSession, internal) == 16, "internal @16");
static_assert(offsetof(QzSession, total_out) == 32, "total_out @32");
static_assert(sizeof(QzSessionParamsCommon) == 48, "common params 48");
static_assert(offsetof(QzSessionParamsCommon, comp_algorithm) == 8,
              "comp_algorithm @8");
static_assert(offsetof(QzSessionParamsCommon, sw_backup) == 16,
              "sw_backup @16");
static_assert(offsetof(QzSessionParamsCommon, hw_buff_sz) == 20,
              "hw_buff_sz @20");
static_assert(offsetof(QzSessionParamsCommon, polling_mode) == 40,
              "polling_mode @40");
static_assert(sizeof(QzSessionParamsDeflate) == 56, "deflate params 56");
static_assert(offsetof(QzSessionParamsDeflate, huffman_hdr) == 48,
              "huffman_hdr @48");
static_assert(offsetof(QzSessionParamsDeflate, data_fmt) == 52,
              "data_fmt @52");

/* The functions ramflow calls, resolved by name. */
typedef struct QzApi {
    int (*init)(QzSession *sess, unsigned char sw_backup);
    int (*get_defaults_deflate)(QzSessionParamsDeflate *defaults);
    int (*setup_session_deflate)(QzSession *sess,
                                 QzSessionParamsDeflate *params);
    int (*compress)(QzSession *sess, const unsigned char *src,
                    unsigned int *src_len, unsigned char *dest,
                    unsigned int *dest_len, unsigned int last);
    int (*decompress)(QzSession *sess, const unsigned char *src,
                      unsigned int *src_len, unsigned char *dest,
                      unsigned int *dest_len);
    void *(*malloc_)(size_t sz, int numa, int force_pinned);
    void (*free_)(void *m);
    int (*teardown)(QzSession *sess);
    int (*close)(QzSession *sess);
} QzApi;

static const struct {
    const char *name;
    size_t offset;
} qz_symbols[] = {
    {"qzInit", offsetof(QzApi, init)},
    {"qzGetDefaultsDeflate", offsetof(QzApi, get_defaults_deflate)},
    {"qzSetupSessionDeflate", offsetof(QzApi, setup_session_deflate)},
    {"qzCompress", offsetof(QzApi, compress)},
    {"qzDecompress", offsetof(QzApi, decompress)},
    {"qzMalloc", offsetof(QzApi, malloc_)},
    {"qzFree", offsetof(QzApi, free_)},
    {"qzTeardownSession", offsetof(QzApi, teardown)},
    {"qzClose", offsetof(QzApi, close)},
};

struct RfQzHw {
    QzApi api;
    QzSession sess;
    char lib[256];
};

/* Names a QATzip status for messages. */
static const char *qz_status(int rc)
{
    switch (rc) {
    case QZ_OK:
        return "QZ_OK";
    case QZ_DUPLICATE:
        return "QZ_DUPLICATE";
    case QZ_NO_HW:
        return "QZ_NO_HW";
    case QZ_PARAMS:
        return "QZ_PARAMS";
    case QZ_FAIL:
        return "QZ_FAIL";
    case QZ_BUF_ERROR:
        return "QZ_BUF_ERROR";
    case QZ_DATA_ERROR:
        return "QZ_DATA_ERROR";
    default:
        return rc <= -100 ? "QZ_NOSW_*" : "unknown status";
    }
}

/* Fills why with the dlopen failure, shortened to "not found" when it is
 * the library itself (not one of its dependencies) that is missing. */
static void describe_dlopen_failure(const char *lib, const char *err,
                                    char *why, size_t why_len)
{
    if (!err) {
        err = "unknown dlopen error";
    }
    size_t n = strlen(lib);
    if (strncmp(err, lib, n) == 0 && err[n] == ':'
        && strstr(err, "No such file")) {
        snprintf(why, why_len, "%s not found", lib);
    } else {
        snprintf(why, why_len, "%s not loadable: %s", lib, err);
    }
}

/* Resolves every QATzip function.  @return the first missing name, or
 * NULL when all were found. */
static const char *resolve(void *handle, QzApi *api)
{
    for (size_t i = 0; i < sizeof(qz_symbols) / sizeof(qz_symbols[0]);
         i++) {
        void *sym = dlsym(handle, qz_symbols[i].name);
        if (!sym) {
            return qz_symbols[i].name;
        }
        /* POSIX guarantees a data pointer from dlsym() converts to a
         * function pointer; memcpy keeps ISO C quiet about it. */
        memcpy((char *)api + qz_symbols[i].offset, &sym, sizeof(sym));
    }
    return NULL;
}

RfQzHw *rf_qz_hw_open(int level, RfQzDirection dir, char *why,
                      size_t why_len)
{
    const char *lib = getenv(RF_QATZIP_LIB_ENV);
    if (lib && !*lib) {
        snprintf(why, why_len, "hardware disabled (%s is empty)",
                 RF_QATZIP_LIB_ENV);
        return NULL;
    }
    if (!lib) {
        lib = RF_QATZIP_LIB_DEFAULT;
    }
    void *handle = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        describe_dlopen_failure(lib, dlerror(), why, why_len);
        return NULL;
    }
    RfQzHw *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(why, why_len, "out of memory for the QATzip session");
        dlclose(handle);
        return NULL;
    }
    snprintf(h->lib, sizeof(h->lib), "%s", lib);
    const char *missing = resolve(handle, &h->api);
    if (missing) {
        snprintf(why, why_len, "%s has no %s (QATzip >= 1.1.2 needed)",
                 lib, missing);
        free(h);
        dlclose(handle); /* qzInit never ran: nothing of it can linger */
        return NULL;
    }

    /* From here on the library stays loaded (see the file comment). */
    int rc = h->api.init(&h->sess, 1);
    if (rc != QZ_OK && rc != QZ_DUPLICATE) {
        snprintf(why, why_len, "qzInit failed with %d (%s)", rc,
                 qz_status(rc));
        free(h);
        return NULL;
    }
    QzSessionParamsDeflate params;
    memset(&params, 0, sizeof(params));
    rc = h->api.get_defaults_deflate(&params);
    if (rc != QZ_OK) {
        snprintf(why, why_len, "qzGetDefaultsDeflate failed with %d (%s)",
                 rc, qz_status(rc));
        h->api.close(&h->sess);
        free(h);
        return NULL;
    }
    params.common.direction = (int)dir;
    params.common.comp_lvl = level;
    params.common.comp_algorithm = QZ_DEFLATE;
    params.common.sw_backup = 1;
    params.common.hw_buff_sz = RF_QZ_CHUNK;
    params.data_fmt = QZ_DEFLATE_GZIP_EXT;
    rc = h->api.setup_session_deflate(&h->sess, &params);
    if (rc != QZ_OK) {
        snprintf(why, why_len, "qzSetupSessionDeflate failed with %d (%s)",
                 rc, qz_status(rc));
        h->api.teardown(&h->sess);
        h->api.close(&h->sess);
        free(h);
        return NULL;
    }
    if (h->sess.hw_session_stat != QZ_OK) {
        snprintf(why, why_len, "no QAT device (hw_session_stat %ld%s)",
                 h->sess.hw_session_stat,
                 h->sess.hw_session_stat == QZ_NO_HW ? ", QZ_NO_HW" : "");
        h->api.teardown(&h->sess);
        h->api.close(&h->sess);
        free(h);
        return NULL;
    }
    return h;
}

void rf_qz_hw_close(RfQzHw *h)
{
    if (!h) {
        return;
    }
    h->api.teardown(&h->sess);
    h->api.close(&h->sess);
    free(h);
}

const char *rf_qz_hw_lib(const RfQzHw *h)
{
    return h->lib;
}

void *rf_qz_hw_alloc(RfQzHw *h, size_t size, bool *pinned)
{
    void *p = h->api.malloc_(size, 0, QZ_PINNED_MEM);
    *pinned = p != NULL;
    if (!p) {
        p = h->api.malloc_(size, 0, QZ_COMMON_MEM);
    }
    return p;
}

void rf_qz_hw_free_buf(RfQzHw *h, void *p)
{
    if (p) {
        h->api.free_(p);
    }
}

RfQzStatus rf_qz_hw_compress(RfQzHw *h, const uint8_t *src, size_t len,
                             uint8_t *dst, size_t cap, size_t *out_len,
                             RfError **errp)
{
    if (len > UINT_MAX) {
        rf_error_set(errp, RF_ERR_GENERIC,
                     "qatzip: %zu bytes is too large for one qzCompress "
                     "call", len);
        return RF_QZ_FAIL;
    }
    unsigned int src_len = (unsigned int)len;
    unsigned int dst_len = cap > UINT_MAX ? UINT_MAX : (unsigned int)cap;
    int rc = h->api.compress(&h->sess, src, &src_len, dst, &dst_len, 1);
    if (rc == QZ_BUF_ERROR) {
        return RF_QZ_NOSPACE;
    }
    if (rc != QZ_OK) {
        rf_error_set(errp, RF_ERR_GENERIC,
                     "qatzip: qzCompress of %zu bytes failed with %d (%s)",
                     len, rc, qz_status(rc));
        return RF_QZ_FAIL;
    }
    if (src_len != len || dst_len > cap) {
        rf_error_set(errp, RF_ERR_GENERIC,
                     "qatzip: qzCompress consumed %u of %zu bytes and wrote "
                     "%u into a %zu-byte buffer", src_len, len, dst_len,
                     cap);
        return RF_QZ_FAIL;
    }
    *out_len = dst_len;
    return RF_QZ_OK;
}

bool rf_qz_hw_decompress(RfQzHw *h, const uint8_t *src, size_t len,
                         uint8_t *dst, size_t expect, RfError **errp)
{
    if (len > UINT_MAX || expect > UINT_MAX) {
        rf_error_set(errp, RF_ERR_GENERIC,
                     "qatzip: %zu bytes is too large for one qzDecompress "
                     "call", len);
        return false;
    }
    unsigned int src_len = (unsigned int)len;
    unsigned int dst_len = (unsigned int)expect;
    int rc = h->api.decompress(&h->sess, src, &src_len, dst, &dst_len);
    if (rc != QZ_OK) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "qatzip: decompression failed: qzDecompress returned "
                     "%d (%s)%s", rc, qz_status(rc),
                     rc == QZ_BUF_ERROR ? ", output larger than expected"
                                        : "");
        return false;
    }
    if (src_len != len) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "qatzip: qzDecompress used %u of the %zu payload bytes",
                     src_len, len);
        return false;
    }
    if (dst_len != expect) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "qatzip payload decompresses to %u bytes, expected %zu",
                     dst_len, expect);
        return false;
    }
    return true;
}
