/*
 * ramflow - the qatzip method's codec, for the method itself, the `codec`
 * command, the report and the tests.
 *
 * A codec is one QATzip-format compressor/decompressor with its back end
 * chosen when it is created: QAT hardware through a run-time loaded
 * libqatzip.so.3 when a hardware session can be set up, otherwise ISA-L
 * (igzip) in software.  Both write and read the same format (qz_format.h).
 * One codec per thread; nothing is allocated per call.
 */
#ifndef RF_COMPRESS_QATZIP_QATZIP_H
#define RF_COMPRESS_QATZIP_QATZIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ramflow/error.h"

/* multifd-qatzip-level: range and default (as upstream QEMU). */
#define RF_QATZIP_LEVEL_MIN 1
#define RF_QATZIP_LEVEL_MAX 9
#define RF_QATZIP_LEVEL_DEFAULT 1

/* Environment variable naming the QATzip library to load instead of
 * "libqatzip.so.3"; set but empty disables the hardware back end. */
#define RF_QATZIP_LIB_ENV "RAMFLOW_QATZIP_LIB"
#define RF_QATZIP_LIB_DEFAULT "libqatzip.so.3"

/* What a codec is used for (QATzip's direction values). */
typedef enum {
    RF_QZ_DIR_COMPRESS = 0,
    RF_QZ_DIR_DECOMPRESS = 1,
    RF_QZ_DIR_BOTH = 2,
} RfQzDirection;

/* Result of a compression. */
typedef enum {
    RF_QZ_OK = 0,      /* *out_len bytes written */
    RF_QZ_NOSPACE = 1, /* the output would not fit in cap: no error set */
    RF_QZ_FAIL = 2,    /* error set */
} RfQzStatus;

typedef struct RfQzCodec RfQzCodec;

/*! rf_qz_codec_new() :
 *  Creates a codec at multifd-qatzip-level `level` (1..9), trying the
 *  hardware back end first.  Failing to get hardware is not an error: the
 *  reason is kept for rf_qz_codec_describe().
 *  @return the codec, or NULL with an error (bad level, out of memory). */
RfQzCodec *rf_qz_codec_new(int level, RfQzDirection dir, RfError **errp);

/*! rf_qz_codec_free() : frees the codec; NULL is allowed.  Buffers from
 *  rf_qz_codec_alloc() must be freed first. */
void rf_qz_codec_free(RfQzCodec *c);

/*! rf_qz_codec_is_hardware() : @return true for a QAT hardware session. */
bool rf_qz_codec_is_hardware(const RfQzCodec *c);

/*! rf_qz_codec_describe() :
 *  @return e.g. "hardware (QAT via libqatzip.so.3, level 1, pinned
 *  buffers)" or "software (ISA-L level 1): libqatzip.so.3 not found".
 *  Valid until the codec is freed. */
const char *rf_qz_codec_describe(const RfQzCodec *c);

/*! rf_qz_codec_alloc() :
 *  Allocates a buffer suited to the back end: QATzip pinned memory, else
 *  QATzip common memory, for hardware; 64-byte aligned malloc otherwise.
 *  @return the buffer or NULL. */
void *rf_qz_codec_alloc(RfQzCodec *c, size_t size);

/*! rf_qz_codec_free_buf() : frees a buffer from rf_qz_codec_alloc(). */
void rf_qz_codec_free_buf(RfQzCodec *c, void *p);

/*! rf_qz_compress() :
 *  Compresses len bytes (any length, 0 included) into dst as members of at
 *  most 64 KiB of input each, writing at most cap bytes.
 *  @return RF_QZ_OK with *out_len set, RF_QZ_NOSPACE if it does not fit
 *  (software stops as soon as it knows), RF_QZ_FAIL with an error. */
RfQzStatus rf_qz_compress(RfQzCodec *c, const uint8_t *src, size_t len,
                          uint8_t *dst, size_t cap, size_t *out_len,
                          RfError **errp);

/*! rf_qz_decompress() :
 *  Decodes a payload of concatenated members into dst, which must hold
 *  exactly `expect` bytes; never writes past dst + expect.
 *  @return true if every member is valid (header, deflate data, CRC-32,
 *  ISIZE) and the total is exactly expect; false with an RF_ERR_PROTOCOL
 *  error naming the member and the check otherwise. */
bool rf_qz_decompress(RfQzCodec *c, const uint8_t *src, size_t len,
                      uint8_t *dst, size_t expect, RfError **errp);

/*! rf_qz_isal_level() : @return the ISA-L level (0..3) the software back
 *  end uses for multifd-qatzip-level `level` (docs/qatzip.md). */
int rf_qz_isal_level(int level);

/*! rf_qatzip_probe() :
 *  Sets up (and frees) a compression codec at `level` to learn which back
 *  end a migration would use, and writes its description into buf.
 *  @return true if it would use hardware. */
bool rf_qatzip_probe(int level, char *buf, size_t buf_len);

#endif /* RF_COMPRESS_QATZIP_QATZIP_H */
