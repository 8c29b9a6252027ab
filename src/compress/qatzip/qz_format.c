/* ramflow - QATzip's GZIP_EXT member format (see qz_format.h). */
#include "compress/qatzip/qz_format.h"

#include <string.h>

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16
           | (uint32_t)p[3] << 24;
}

/*
 * Per member: header and trailer (32 bytes), plus either deflate's stored
 * block overhead (5 bytes per 65535) or QAT's worst expansion of 1/8 of the
 * chunk; 1/8 covers both with room to spare.  A fixed 1 KiB on top covers
 * the 1024-byte allowance QATzip itself grants a hardware member.
 */
size_t rf_qz_compress_bound(size_t len)
{
    size_t members = len / RF_QZ_CHUNK + 1;
    return len + len / 8 + members * (RF_QZ_HDR_LEN + RF_QZ_TRL_LEN + 64)
           + 1024;
}

void rf_qz_write_header(uint8_t *dst, uint32_t isize, uint32_t csize)
{
    dst[0] = 0x1f;
    dst[1] = 0x8b;
    dst[2] = 8;    /* CM: deflate */
    dst[3] = 0x04; /* FLG: FEXTRA */
    put_le32(dst + 4, 0); /* MTIME */
    dst[8] = 0;    /* XFL, as QAT hardware writes it */
    dst[9] = 0xff; /* OS: unknown */
    put_le16(dst + 10, 12); /* XLEN */
    dst[12] = 'Q';
    dst[13] = 'Z';
    put_le16(dst + 14, 8);
    put_le32(dst + 16, isize);
    put_le32(dst + 20, csize);
}

void rf_qz_write_trailer(uint8_t *dst, uint32_t crc, uint32_t isize)
{
    put_le32(dst, crc);
    put_le32(dst + 4, isize);
}

void rf_qz_read_trailer(const uint8_t *src, uint32_t *crc, uint32_t *isize)
{
    *crc = get_le32(src);
    *isize = get_le32(src + 4);
}

bool rf_qz_parse_header(const uint8_t *p, size_t avail, size_t off,
                        RfQzMember *m, RfError **errp)
{
    if (avail < RF_QZ_HDR_LEN) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "qatzip member at payload offset %zu: %zu bytes left, "
                     "a member header needs %u", off, avail, RF_QZ_HDR_LEN);
        return false;
    }
    if (p[0] != 0x1f || p[1] != 0x8b) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "qatzip member at payload offset %zu: gzip magic is "
                     "%02x %02x, expected 1f 8b", off, p[0], p[1]);
        return false;
    }
    if (p[2] != 8) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "qatzip member at payload offset %zu: gzip CM is %u, "
                     "expected 8 (deflate)", off, p[2]);
        return false;
    }
    if (p[3] != 0x04) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "qatzip member at payload offset %zu: gzip FLG is "
                     "0x%02x, expected 0x04 (FEXTRA only, QATzip's "
                     "GZIP_EXT format)", off, p[3]);
        return false;
    }
    if (p[8] != 0 && p[8] != 2 && p[8] != 4) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "qatzip member at payload offset %zu: gzip XFL is %u, "
                     "expected 0, 2 or 4", off, p[8]);
        return false;
    }
    if (get_le16(p + 10) != 12) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "qatzip member at payload offset %zu: gzip XLEN is %u, "
                     "expected 12", off, get_le16(p + 10));
        return false;
    }
    if (p[12] != 'Q' || p[13] != 'Z' || get_le16(p + 14) != 8) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "qatzip member at payload offset %zu: extra subfield "
                     "is %02x %02x length %u, expected 'QZ' (51 5a) length "
                     "8", off, p[12], p[13], get_le16(p + 14));
        return false;
    }
    m->isize = get_le32(p + 16);
    m->csize = get_le32(p + 20);
    size_t room = avail - RF_QZ_HDR_LEN;
    if (room < RF_QZ_TRL_LEN || m->csize > room - RF_QZ_TRL_LEN) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "qatzip member at payload offset %zu: compressed size "
                     "%u plus the %u-byte trailer exceeds the %zu bytes "
                     "left after the header", off, m->csize, RF_QZ_TRL_LEN,
                     room);
        return false;
    }
    return true;
}

bool rf_qz_walk(const uint8_t *p, size_t len, uint64_t *total,
                unsigned *members, RfError **errp)
{
    size_t off = 0;
    uint64_t sum = 0;
    unsigned n = 0;
    if (len == 0) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "qatzip payload is empty, expected at least one "
                     "%u-byte member", RF_QZ_EMPTY_MEMBER);
        return false;
    }
    while (off < len) {
        RfQzMember m;
        if (!rf_qz_parse_header(p + off, len - off, off, &m, errp)) {
            return false;
        }
        sum += m.isize;
        n++;
        off += RF_QZ_HDR_LEN + (size_t)m.csize + RF_QZ_TRL_LEN;
    }
    *total = sum;
    if (members) {
        *members = n;
    }
    return true;
}
