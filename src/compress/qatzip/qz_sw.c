/*
 * ramflow - the qatzip method's software back end: ISA-L igzip.
 *
 * Compression: each <= 64 KiB chunk of input becomes one member.  ISA-L's
 * one-shot deflate (isal_deflate_stateless) writes the raw deflate data
 * and, with IGZIP_GZIP_NO_HDR, the CRC-32 + ISIZE trailer; ramflow writes
 * the 24-byte QZ header in front once the compressed size is known (the
 * space is reserved first, so nothing is moved).
 *
 * Decompression: each member's header is checked (qz_format.c), its
 * deflate data inflated in one shot straight to the output with ISA-L
 * computing the CRC-32 as it goes, then the trailer is compared.
 *
 * All ISA-L state is allocated once per codec: the stream, the level
 * buffer for the mapped level, the inflate state.
 */
#include "compress/qatzip/qz_backend.h"
#include "compress/qatzip/qz_format.h"

#include <isa-l/igzip_lib.h>
#include <stdlib.h>
#include <string.h>

struct RfQzSw {
    int isal_level;
    struct isal_zstream *z;      /* compression (NULL if not needed) */
    uint8_t *level_buf;
    uint32_t level_buf_size;
    struct inflate_state *inf;   /* decompression (NULL if not needed) */
};

/*
 * multifd-qatzip-level -> ISA-L level.  ISA-L has four levels (0 fastest
 * in principle, 3 best).  Measured on the Silesia mix in 64 KiB members
 * (docs/qatzip.md): level 0 compresses no faster than 1 there and its
 * output is 15% larger, so it is not used; the default maps to 1 (ratio
 * 3.00); 2 gives 2% smaller output for ~10% of speed, 3 gives 3% smaller
 * output for ~30% of speed.
 */
static const int isal_levels[RF_QATZIP_LEVEL_MAX + 1] = {
    [1] = 1, [2] = 1, [3] = 2, [4] = 2, [5] = 2,
    [6] = 3, [7] = 3, [8] = 3, [9] = 3,
};

int rf_qz_isal_level(int level)
{
    if (level < RF_QATZIP_LEVEL_MIN) {
        level = RF_QATZIP_LEVEL_MIN;
    } else if (level > RF_QATZIP_LEVEL_MAX) {
        level = RF_QATZIP_LEVEL_MAX;
    }
    return isal_levels[level];
}

/* The level buffer ISA-L suggests for one-shot compression of a 64 KiB
 * chunk at each level (its token buffer holds the whole chunk). */
static uint32_t level_buf_size(int isal_level)
{
    switch (isal_level) {
    case 1:
        return ISAL_DEF_LVL1_DEFAULT;
    case 2:
        return ISAL_DEF_LVL2_DEFAULT;
    case 3:
        return ISAL_DEF_LVL3_DEFAULT;
    default:
        return 0;
    }
}

void rf_qz_sw_free(RfQzSw *s)
{
    if (!s) {
        return;
    }
    free(s->z);
    free(s->level_buf);
    free(s->inf);
    free(s);
}

RfQzSw *rf_qz_sw_new(int level, RfQzDirection dir, RfError **errp)
{
    RfQzSw *s = calloc(1, sizeof(*s));
    if (!s) {
        goto oom;
    }
    s->isal_level = rf_qz_isal_level(level);
    if (dir != RF_QZ_DIR_DECOMPRESS) {
        size_t zsize = (sizeof(*s->z) + 63) & ~(size_t)63;
        s->z = aligned_alloc(64, zsize);
        s->level_buf_size = level_buf_size(s->isal_level);
        if (s->level_buf_size) {
            s->level_buf = malloc(s->level_buf_size);
        }
        if (!s->z || (s->level_buf_size && !s->level_buf)) {
            goto oom;
        }
    }
    if (dir != RF_QZ_DIR_COMPRESS) {
        s->inf = malloc(sizeof(*s->inf));
        if (!s->inf) {
            goto oom;
        }
        isal_inflate_init(s->inf);
    }
    return s;
oom:
    rf_qz_sw_free(s);
    rf_error_set(errp, RF_ERR_GENERIC,
                 "qatzip: out of memory for the ISA-L state (level %d)",
                 level);
    return NULL;
}

/* Compresses one chunk (n <= 64 KiB) into a member at dst, room bytes
 * available.  @return RF_QZ_OK with *used set, or RF_QZ_NOSPACE. */
static RfQzStatus sw_member(RfQzSw *s, const uint8_t *src, uint32_t n,
                            uint8_t *dst, size_t room, size_t *used,
                            RfError **errp)
{
    if (room < RF_QZ_EMPTY_MEMBER) {
        return RF_QZ_NOSPACE;
    }
    size_t body = room - RF_QZ_HDR_LEN;
    struct isal_zstream *z = s->z;
    isal_deflate_stateless_init(z);
    z->level = (uint32_t)s->isal_level;
    z->level_buf = s->level_buf;
    z->level_buf_size = s->level_buf_size;
    z->gzip_flag = IGZIP_GZIP_NO_HDR; /* raw deflate + gzip trailer */
    z->end_of_stream = 1;
    z->flush = NO_FLUSH;
    z->next_in = (uint8_t *)src;
    z->avail_in = n;
    z->next_out = dst + RF_QZ_HDR_LEN;
    z->avail_out = body > UINT32_MAX ? UINT32_MAX : (uint32_t)body;
    int rc = isal_deflate_stateless(z);
    if (rc == STATELESS_OVERFLOW) {
        return RF_QZ_NOSPACE;
    }
    if (rc != COMP_OK || z->avail_in != 0
        || z->total_out < RF_QZ_TRL_LEN + 2) {
        rf_error_set(errp, RF_ERR_GENERIC,
                     "qatzip: ISA-L deflate of a %u-byte chunk at level %d "
                     "failed (status %d, %u bytes left)", n, s->isal_level,
                     rc, z->avail_in);
        return RF_QZ_FAIL;
    }
    rf_qz_write_header(dst, n, z->total_out - RF_QZ_TRL_LEN);
    *used = RF_QZ_HDR_LEN + z->total_out;
    return RF_QZ_OK;
}

RfQzStatus rf_qz_sw_compress(RfQzSw *s, const uint8_t *src, size_t len,
                             uint8_t *dst, size_t cap, size_t *out_len,
                             RfError **errp)
{
    if (!s->z) {
        rf_error_set(errp, RF_ERR_GENERIC,
                     "qatzip: codec was set up for decompression only");
        return RF_QZ_FAIL;
    }
    size_t in = 0, out = 0;
    do {
        size_t n = len - in < RF_QZ_CHUNK ? len - in : RF_QZ_CHUNK;
        size_t used = 0;
        RfQzStatus st = sw_member(s, src + in, (uint32_t)n, dst + out,
                                  cap - out, &used, errp);
        if (st != RF_QZ_OK) {
            return st;
        }
        in += n;
        out += used;
    } while (in < len);
    *out_len = out;
    return RF_QZ_OK;
}

/* ISA-L inflate status -> words for messages. */
static const char *inflate_status(int rc)
{
    switch (rc) {
    case ISAL_END_INPUT:
        return "input ends before the final block";
    case ISAL_OUT_OVERFLOW:
        return "output larger than the member's declared size";
    case ISAL_INVALID_BLOCK:
        return "invalid deflate block";
    case ISAL_INVALID_SYMBOL:
        return "invalid Huffman symbol";
    case ISAL_INVALID_LOOKBACK:
        return "match distance before the start of the member";
    case ISAL_NEED_DICT:
        return "stream needs a dictionary";
    default:
        return "unexpected ISA-L status";
    }
}

bool rf_qz_sw_decompress(RfQzSw *s, const uint8_t *src, size_t len,
                         uint8_t *dst, size_t expect, RfError **errp)
{
    if (!s->inf) {
        rf_error_set(errp, RF_ERR_GENERIC,
                     "qatzip: codec was set up for compression only");
        return false;
    }
    size_t off = 0, out = 0;
    unsigned idx = 0;
    if (len == 0) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "qatzip payload is empty, expected at least one "
                     "%u-byte member", RF_QZ_EMPTY_MEMBER);
        return false;
    }
    for (; off < len; idx++) {
        RfQzMember m;
        if (!rf_qz_parse_header(src + off, len - off, off, &m, errp)) {
            return false;
        }
        if (m.isize > expect - out) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "qatzip member %u at payload offset %zu declares "
                         "%u uncompressed bytes, but only %zu of the "
                         "expected %zu remain", idx, off, m.isize,
                         expect - out, expect);
            return false;
        }
        const uint8_t *body = src + off + RF_QZ_HDR_LEN;
        struct inflate_state *st = s->inf;
        isal_inflate_reset(st);
        st->next_in = (uint8_t *)body;
        st->avail_in = m.csize;
        st->next_out = dst + out;
        st->avail_out = m.isize;
        st->crc_flag = ISAL_GZIP_NO_HDR; /* raw deflate, CRC-32 of output */
        int rc = isal_inflate_stateless(st);
        if (rc != ISAL_DECOMP_OK) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "qatzip member %u at payload offset %zu: "
                         "decompression failed: %s (ISA-L status %d)", idx,
                         off, inflate_status(rc), rc);
            return false;
        }
        if (st->total_out != m.isize || st->avail_in != 0) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "qatzip member %u at payload offset %zu: deflate "
                         "data decodes to %u bytes using %u of %u "
                         "compressed bytes; the header declares %u and %u",
                         idx, off, st->total_out, m.csize - st->avail_in,
                         m.csize, m.isize, m.csize);
            return false;
        }
        uint32_t crc, isize;
        rf_qz_read_trailer(body + m.csize, &crc, &isize);
        if (crc != st->crc) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "qatzip member %u at payload offset %zu: CRC-32 "
                         "0x%08x in the trailer, data has 0x%08x", idx, off,
                         crc, st->crc);
            return false;
        }
        if (isize != m.isize) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "qatzip member %u at payload offset %zu: trailer "
                         "ISIZE %u differs from the header's %u", idx, off,
                         isize, m.isize);
            return false;
        }
        out += m.isize;
        off += RF_QZ_HDR_LEN + (size_t)m.csize + RF_QZ_TRL_LEN;
    }
    if (out != expect) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "qatzip payload decompresses to %zu bytes, expected "
                     "%zu", out, expect);
        return false;
    }
    return true;
}
