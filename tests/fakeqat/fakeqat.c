/*
 * ramflow tests - a stand-in for libqatzip.so.3 (see fakeqat.h).
 *
 * Written from the behaviour described in shared/docs/qatzip-format.md,
 * not from QATzip's code.  The "hardware" variant encodes with zlib
 * independently of ramflow's encoder, so the tests also cross-check the
 * two writers of the format.
 */
#include "fakeqat.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#ifndef FAKEQAT_HW
#define FAKEQAT_HW 0
#endif

enum {
    QZ_OK = 0,
    QZ_DUPLICATE = 1,
    QZ_NO_HW = 11,
    QZ_PARAMS = -1,
    QZ_FAIL = -2,
    QZ_BUF_ERROR = -3,
    QZ_DATA_ERROR = -4,
    QZ_NOSW_NO_HW = -101,
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static FakeQatStats stats;
static int initialised;
static int deny_pinned, fail_compress;

void fakeqat_stats(FakeQatStats *out)
{
    pthread_mutex_lock(&lock);
    *out = stats;
    pthread_mutex_unlock(&lock);
}

void fakeqat_control(int deny, int fail)
{
    pthread_mutex_lock(&lock);
    deny_pinned = deny;
    fail_compress = fail;
    pthread_mutex_unlock(&lock);
}

void fakeqat_reset(void)
{
    pthread_mutex_lock(&lock);
    memset(&stats, 0, sizeof(stats));
    initialised = 0;
    deny_pinned = fail_compress = 0;
    pthread_mutex_unlock(&lock);
}

int qzInit(QzSession_T *sess, unsigned char sw_backup)
{
    (void)sess;
    pthread_mutex_lock(&lock);
    stats.init_calls++;
    int rc;
    if (!FAKEQAT_HW && !sw_backup) {
        rc = QZ_NOSW_NO_HW;
    } else {
        rc = initialised ? QZ_DUPLICATE : QZ_OK;
        initialised = 1;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

int qzGetDefaultsDeflate(QzSessionParamsDeflate_T *d)
{
    memset(d, 0, sizeof(*d));
    d->common.direction = 2;
    d->common.comp_lvl = 1;
    d->common.comp_algorithm = 8;
    d->common.max_forks = 3;
    d->common.sw_backup = 1;
    d->common.hw_buff_sz = 65536;
    d->common.strm_buff_sz = 65536;
    d->common.input_sz_thrshold = 1024;
    d->common.req_cnt_thrshold = 32;
    d->common.wait_cnt_thrshold = 8;
    d->huffman_hdr = 0;
    d->data_fmt = 2;
    return QZ_OK;
}

#ifndef FAKEQAT_OMIT_SETUP
int qzSetupSessionDeflate(QzSession_T *sess,
                          QzSessionParamsDeflate_T *params)
{
    pthread_mutex_lock(&lock);
    stats.setup_calls++;
    stats.direction = params->common.direction;
    stats.comp_lvl = params->common.comp_lvl;
    stats.comp_algorithm = params->common.comp_algorithm;
    stats.sw_backup = params->common.sw_backup;
    stats.hw_buff_sz = params->common.hw_buff_sz;
    stats.data_fmt = params->data_fmt;
    int ok = initialised;
    if (ok) {
        stats.live_sessions++;
    }
    pthread_mutex_unlock(&lock);
    if (!ok) {
        return QZ_FAIL;
    }
    QzSessionParamsDeflate_T *copy = malloc(sizeof(*copy));
    if (!copy) {
        return QZ_FAIL;
    }
    *copy = *params;
    sess->internal = copy;
    sess->hw_session_stat = FAKEQAT_HW ? QZ_OK : QZ_NO_HW;
    return QZ_OK;
}
#endif

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

/* One GZIP_EXT member per hw_buff_sz of input, encoded with zlib. */
int qzCompress(QzSession_T *sess, const unsigned char *src,
               unsigned int *src_len, unsigned char *dest,
               unsigned int *dest_len, unsigned int last)
{
    (void)last;
    pthread_mutex_lock(&lock);
    stats.compress_calls++;
    int fail = fail_compress;
    pthread_mutex_unlock(&lock);
    const QzSessionParamsDeflate_T *p = sess->internal;
    if (!FAKEQAT_HW || fail || !p) {
        return QZ_FAIL;
    }
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, p->common.comp_lvl, Z_DEFLATED, -15, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        return QZ_FAIL;
    }
    unsigned int in = 0, out = 0, total = *src_len, cap = *dest_len;
    int rc = QZ_OK;
    do {
        unsigned int n = total - in;
        if (n > p->common.hw_buff_sz) {
            n = p->common.hw_buff_sz;
        }
        if (cap - out < 32) {
            rc = QZ_BUF_ERROR;
            break;
        }
        deflateReset(&z);
        z.next_in = (Bytef *)(src + in);
        z.avail_in = n;
        z.next_out = dest + out + 24;
        z.avail_out = cap - out - 32;
        if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
            rc = QZ_BUF_ERROR;
            break;
        }
        unsigned int csize = (unsigned int)z.total_out;
        static const unsigned char hdr[16] = {
            0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 12, 0, 'Q', 'Z', 8, 0};
        memcpy(dest + out, hdr, sizeof(hdr));
        put32(dest + out + 16, n);
        put32(dest + out + 20, csize);
        uint32_t crc = (uint32_t)crc32(0, src + in, n);
        put32(dest + out + 24 + csize, crc);
        put32(dest + out + 28 + csize, n);
        out += 32 + csize;
        in += n;
    } while (in < total);
    deflateEnd(&z);
    if (rc != QZ_OK) {
        return rc;
    }
    *src_len = in;
    *dest_len = out;
    sess->total_in += in;
    sess->total_out += out;
    return QZ_OK;
}

/* Any concatenation of gzip members; zlib checks CRC and ISIZE. */
int qzDecompress(QzSession_T *sess, const unsigned char *src,
                 unsigned int *src_len, unsigned char *dest,
                 unsigned int *dest_len)
{
    pthread_mutex_lock(&lock);
    stats.decompress_calls++;
    pthread_mutex_unlock(&lock);
    if (!FAKEQAT_HW || !sess->internal) {
        return QZ_FAIL;
    }
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 31) != Z_OK) {
        return QZ_FAIL;
    }
    z.next_in = (Bytef *)src;
    z.avail_in = *src_len;
    z.next_out = dest;
    z.avail_out = *dest_len;
    int rc = QZ_OK;
    while (z.avail_in > 0) {
        int zr = inflate(&z, Z_FINISH);
        if (zr == Z_STREAM_END) {
            inflateReset(&z);
            continue;
        }
        rc = zr == Z_BUF_ERROR && z.avail_out == 0 ? QZ_BUF_ERROR
                                                   : QZ_DATA_ERROR;
        break;
    }
    *src_len -= z.avail_in;
    *dest_len -= z.avail_out;
    inflateEnd(&z);
    return rc;
}

unsigned int qzMaxCompressedLength(unsigned int src_sz, QzSession_T *sess)
{
    (void)sess;
    /* Undercounts on purpose, like the real one for multi-member data. */
    return src_sz + src_sz / 8 + 1024 + 32;
}

void *qzMalloc(size_t sz, int numa, int force_pinned)
{
    (void)numa;
    pthread_mutex_lock(&lock);
    void *p = NULL;
    if (force_pinned) {
        if (FAKEQAT_HW && !deny_pinned) {
            p = malloc(sz);
            stats.malloc_pinned += p != NULL;
        } else {
            stats.malloc_denied++;
        }
    } else {
        p = malloc(sz);
        stats.malloc_common += p != NULL;
    }
    pthread_mutex_unlock(&lock);
    return p;
}

void qzFree(void *m)
{
    pthread_mutex_lock(&lock);
    stats.frees++;
    pthread_mutex_unlock(&lock);
    free(m);
}

int qzTeardownSession(QzSession_T *sess)
{
    pthread_mutex_lock(&lock);
    stats.teardown_calls++;
    if (sess->internal) {
        stats.live_sessions--;
    }
    pthread_mutex_unlock(&lock);
    free(sess->internal);
    sess->internal = NULL;
    return QZ_OK;
}

int qzClose(QzSession_T *sess)
{
    (void)sess;
    pthread_mutex_lock(&lock);
    stats.close_calls++;
    pthread_mutex_unlock(&lock);
    return QZ_OK;
}
