/*
 * ramflow - the qatzip codec: picks the back end once, at creation, and
 * forwards every call to it (see qatzip.h).
 */
#include "compress/qatzip/qatzip.h"
#include "compress/qatzip/qz_backend.h"
#include "compress/qatzip/qz_format.h"

#include <stdio.h>
#include <stdlib.h>

#define QZ_DESC_MAX 320

struct RfQzCodec {
    int level;
    RfQzHw *hw;          /* non-NULL: hardware session */
    RfQzSw *sw;          /* non-NULL: ISA-L */
    char why[224];       /* why not hardware */
    unsigned pinned;     /* buffers in pinned memory */
    unsigned common;     /* buffers in common memory (hardware only) */
    char desc[QZ_DESC_MAX];
};

/* Rewrites desc; called whenever what it says changes. */
static void codec_update_desc(RfQzCodec *c)
{
    if (c->hw) {
        const char *mem = c->common == 0 ? (c->pinned ? "pinned buffers"
                                                      : "no buffers yet")
                          : c->pinned == 0 ? "common (unpinned) buffers"
                                           : "some buffers unpinned";
        snprintf(c->desc, sizeof(c->desc),
                 "hardware (QAT via %s, level %d, %s)", rf_qz_hw_lib(c->hw),
                 c->level, mem);
    } else {
        snprintf(c->desc, sizeof(c->desc), "software (ISA-L level %d): %s",
                 rf_qz_isal_level(c->level), c->why);
    }
}

RfQzCodec *rf_qz_codec_new(int level, RfQzDirection dir, RfError **errp)
{
    if (level < RF_QATZIP_LEVEL_MIN || level > RF_QATZIP_LEVEL_MAX) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "multifd-qatzip-level %d, allowed %d..%d", level,
                     RF_QATZIP_LEVEL_MIN, RF_QATZIP_LEVEL_MAX);
        return NULL;
    }
    RfQzCodec *c = calloc(1, sizeof(*c));
    if (!c) {
        rf_error_set(errp, RF_ERR_GENERIC,
                     "qatzip: out of memory for the codec");
        return NULL;
    }
    c->level = level;
    c->hw = rf_qz_hw_open(level, dir, c->why, sizeof(c->why));
    if (!c->hw) {
        c->sw = rf_qz_sw_new(level, dir, errp);
        if (!c->sw) {
            free(c);
            return NULL;
        }
    }
    codec_update_desc(c);
    return c;
}

void rf_qz_codec_free(RfQzCodec *c)
{
    if (!c) {
        return;
    }
    rf_qz_hw_close(c->hw);
    rf_qz_sw_free(c->sw);
    free(c);
}

bool rf_qz_codec_is_hardware(const RfQzCodec *c)
{
    return c->hw != NULL;
}

const char *rf_qz_codec_describe(const RfQzCodec *c)
{
    return c->desc;
}

void *rf_qz_codec_alloc(RfQzCodec *c, size_t size)
{
    if (c->hw) {
        bool pinned = false;
        void *p = rf_qz_hw_alloc(c->hw, size, &pinned);
        if (p) {
            if (pinned) {
                c->pinned++;
            } else {
                c->common++;
            }
            codec_update_desc(c);
        }
        return p;
    }
    return aligned_alloc(64, (size + 63) & ~(size_t)63);
}

void rf_qz_codec_free_buf(RfQzCodec *c, void *p)
{
    if (c->hw) {
        rf_qz_hw_free_buf(c->hw, p);
    } else {
        free(p);
    }
}

RfQzStatus rf_qz_compress(RfQzCodec *c, const uint8_t *src, size_t len,
                          uint8_t *dst, size_t cap, size_t *out_len,
                          RfError **errp)
{
    if (len == 0 && c->hw) {
        /* QATzip may refuse an empty input; the empty member is fixed:
         * header, an empty final static block (03 00), zero CRC/ISIZE. */
        if (cap < RF_QZ_EMPTY_MEMBER) {
            return RF_QZ_NOSPACE;
        }
        rf_qz_write_header(dst, 0, 2);
        dst[RF_QZ_HDR_LEN] = 0x03;
        dst[RF_QZ_HDR_LEN + 1] = 0x00;
        rf_qz_write_trailer(dst + RF_QZ_HDR_LEN + 2, 0, 0);
        *out_len = RF_QZ_EMPTY_MEMBER;
        return RF_QZ_OK;
    }
    if (c->hw) {
        return rf_qz_hw_compress(c->hw, src, len, dst, cap, out_len, errp);
    }
    return rf_qz_sw_compress(c->sw, src, len, dst, cap, out_len, errp);
}

bool rf_qz_decompress(RfQzCodec *c, const uint8_t *src, size_t len,
                      uint8_t *dst, size_t expect, RfError **errp)
{
    if (c->hw) {
        return rf_qz_hw_decompress(c->hw, src, len, dst, expect, errp);
    }
    return rf_qz_sw_decompress(c->sw, src, len, dst, expect, errp);
}

bool rf_qatzip_probe(int level, char *buf, size_t buf_len)
{
    RfError *err = NULL;
    RfQzCodec *c = rf_qz_codec_new(level, RF_QZ_DIR_COMPRESS, &err);
    if (!c) {
        snprintf(buf, buf_len, "unavailable: %s", rf_error_msg(err));
        rf_error_free(err);
        return false;
    }
    snprintf(buf, buf_len, "%s", rf_qz_codec_describe(c));
    bool hw = rf_qz_codec_is_hardware(c);
    rf_qz_codec_free(c);
    return hw;
}
