/*
 * ramflow - the qatzip method's two back ends, used only by qz_codec.c.
 *
 * qz_hw.c: QAT hardware through libqatzip.so.3 loaded at run time.
 * qz_sw.c: ISA-L igzip in software.
 * Both produce and accept the format of qz_format.h.
 */
#ifndef RF_COMPRESS_QATZIP_QZ_BACKEND_H
#define RF_COMPRESS_QATZIP_QZ_BACKEND_H

#include "compress/qatzip/qatzip.h"

/* --- software (qz_sw.c) ---------------------------------------------- */

typedef struct RfQzSw RfQzSw;

/* Allocates the ISA-L state `dir` needs at `level` (1..9, mapped by
 * rf_qz_isal_level()).  @return NULL with an error when out of memory. */
RfQzSw *rf_qz_sw_new(int level, RfQzDirection dir, RfError **errp);
void rf_qz_sw_free(RfQzSw *s);
RfQzStatus rf_qz_sw_compress(RfQzSw *s, const uint8_t *src, size_t len,
                             uint8_t *dst, size_t cap, size_t *out_len,
                             RfError **errp);
bool rf_qz_sw_decompress(RfQzSw *s, const uint8_t *src, size_t len,
                         uint8_t *dst, size_t expect, RfError **errp);

/* --- hardware (qz_hw.c) ---------------------------------------------- */

typedef struct RfQzHw RfQzHw;

/* Loads the QATzip library (RF_QATZIP_LIB_ENV or the default name) and
 * sets up a session.  @return the session only if it runs on hardware
 * (hw_session_stat 0); otherwise NULL with the reason in why (never an
 * error: the software back end takes over). */
RfQzHw *rf_qz_hw_open(int level, RfQzDirection dir, char *why,
                      size_t why_len);
void rf_qz_hw_close(RfQzHw *h);
/* @return the library path or name that was loaded. */
const char *rf_qz_hw_lib(const RfQzHw *h);
/* qzMalloc(PINNED_MEM), falling back to COMMON_MEM; *pinned tells. */
void *rf_qz_hw_alloc(RfQzHw *h, size_t size, bool *pinned);
void rf_qz_hw_free_buf(RfQzHw *h, void *p);
RfQzStatus rf_qz_hw_compress(RfQzHw *h, const uint8_t *src, size_t len,
                             uint8_t *dst, size_t cap, size_t *out_len,
                             RfError **errp);
bool rf_qz_hw_decompress(RfQzHw *h, const uint8_t *src, size_t len,
                         uint8_t *dst, size_t expect, RfError **errp);

#endif /* RF_COMPRESS_QATZIP_QZ_BACKEND_H */
