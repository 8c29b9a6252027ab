/*
 * ramflow - QATzip's GZIP_EXT member format (docs/qatzip.md, byte layout in
 * shared/docs/qatzip-format.md section 1).
 *
 * A payload is one or more concatenated gzip members (RFC 1952), each with
 * a fixed 24-byte header whose 'QZ' extra subfield records the member's
 * uncompressed and compressed sizes, a complete raw deflate stream, and the
 * usual CRC-32 + ISIZE trailer.  ramflow writes one member per <= 64 KiB of
 * input, like QAT hardware, so every QATzip receiver can decode each member
 * on its device.
 */
#ifndef RF_COMPRESS_QATZIP_QZ_FORMAT_H
#define RF_COMPRESS_QATZIP_QZ_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ramflow/error.h"

#define RF_QZ_HDR_LEN 24u     /* gzip header with the QZ extra field */
#define RF_QZ_TRL_LEN 8u      /* CRC-32 + ISIZE */
#define RF_QZ_CHUNK 65536u    /* input per member (QATzip's hw_buff_sz) */
#define RF_QZ_EMPTY_MEMBER 34u /* header + empty final block + trailer */

/* Sizes read from one member's header. */
typedef struct RfQzMember {
    uint32_t isize; /* uncompressed bytes (QZ subfield) */
    uint32_t csize; /* deflate bytes between header and trailer */
} RfQzMember;

/* @return an upper bound of the payload for len input bytes that holds for
 * ramflow's encoders (stored blocks at worst) and for QAT hardware (which
 * may expand a chunk to 9/8 of it): used to size output buffers, since
 * qzMaxCompressedLength() undercounts multi-member output. */
size_t rf_qz_compress_bound(size_t len);

/* Writes the 24-byte header of a member holding isize input bytes and
 * csize deflate bytes. */
void rf_qz_write_header(uint8_t *dst, uint32_t isize, uint32_t csize);

/* Writes the 8-byte trailer (little-endian CRC-32 then ISIZE). */
void rf_qz_write_trailer(uint8_t *dst, uint32_t crc, uint32_t isize);

/* Reads the 8-byte trailer. */
void rf_qz_read_trailer(const uint8_t *src, uint32_t *crc, uint32_t *isize);

/*
 * Checks the member header at p (avail bytes left in the payload, the
 * member starting at payload offset `off`, used in messages) and fills *m.
 * Accepts exactly what QATzip's GZIP_EXT encoders write: ID 1f 8b, CM 8,
 * FLG 0x04, XFL 0/2/4, XLEN 12, subfield 'QZ' of length 8; MTIME and OS
 * are not checked.  Also checks that the deflate data and trailer fit in
 * avail.  @return false with an RF_ERR_PROTOCOL error naming the field.
 */
bool rf_qz_parse_header(const uint8_t *p, size_t avail, size_t off,
                        RfQzMember *m, RfError **errp);

/*
 * Walks every member header of a payload.  @return true with *total set to
 * the sum of the members' uncompressed sizes; false with the first bad
 * header's error.  Checks only structure, not the deflate data.
 */
bool rf_qz_walk(const uint8_t *p, size_t len, uint64_t *total,
                unsigned *members, RfError **errp);

#endif /* RF_COMPRESS_QATZIP_QZ_FORMAT_H */
