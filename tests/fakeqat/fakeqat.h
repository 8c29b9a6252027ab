/*
 * ramflow tests - a stand-in for libqatzip.so.3 (QATzip 1.1.2 API).
 *
 * Built by tests/fakeqat/meson.build in three variants, loaded by the
 * qatzip method through RAMFLOW_QATZIP_LIB:
 *   libfakeqat_nohw.so   a machine without a QAT device, as
 *                        shared/docs/qatzip-format.md describes it: first
 *                        qzInit(s, 1) returns 0, later ones 1, qzInit(s, 0)
 *                        returns -101; sessions get hw_session_stat 11;
 *                        qzMalloc(PINNED) returns NULL.  qzCompress and
 *                        qzDecompress fail (ramflow must not call them).
 *   libfakeqat_hw.so     a "device": hw_session_stat 0, pinned memory,
 *                        compression with zlib into the GZIP_EXT format
 *                        (one member per hw_buff_sz), decompression of any
 *                        concatenation of gzip members.
 *   libfakeqat_nosym.so  lacks qzSetupSessionDeflate.
 * The extra fakeqat_* functions let a test see what ramflow called.
 */
#ifndef RF_TESTS_FAKEQAT_H
#define RF_TESTS_FAKEQAT_H

#include <stddef.h>

/* Same layouts as QATzip's QzSession_T and QzSessionParamsDeflate_T. */
typedef struct QzSession_S {
    long hw_session_stat;
    int thd_sess_stat;
    void *internal;
    unsigned long total_in;
    unsigned long total_out;
} QzSession_T;

typedef struct QzSessionParamsCommon_S {
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
} QzSessionParamsCommon_T;

typedef struct QzSessionParamsDeflate_S {
    QzSessionParamsCommon_T common;
    int huffman_hdr;
    int data_fmt;
} QzSessionParamsDeflate_T;

int qzInit(QzSession_T *sess, unsigned char sw_backup);
int qzGetDefaultsDeflate(QzSessionParamsDeflate_T *defaults);
int qzSetupSessionDeflate(QzSession_T *sess,
                          QzSessionParamsDeflate_T *params);
int qzCompress(QzSession_T *sess, const unsigned char *src,
               unsigned int *src_len, unsigned char *dest,
               unsigned int *dest_len, unsigned int last);
int qzDecompress(QzSession_T *sess, const unsigned char *src,
                 unsigned int *src_len, unsigned char *dest,
                 unsigned int *dest_len);
unsigned int qzMaxCompressedLength(unsigned int src_sz, QzSession_T *sess);
void *qzMalloc(size_t sz, int numa, int force_pinned);
void qzFree(void *m);
int qzTeardownSession(QzSession_T *sess);
int qzClose(QzSession_T *sess);

/* What the library saw, for the tests. */
typedef struct FakeQatStats {
    int init_calls;
    int setup_calls;
    int teardown_calls;
    int close_calls;
    int malloc_pinned;   /* pinned allocations that succeeded */
    int malloc_common;   /* common allocations */
    int malloc_denied;   /* pinned requests answered NULL */
    int frees;
    int compress_calls;
    int decompress_calls;
    int live_sessions;   /* set up and not torn down */
    /* parameters of the last qzSetupSessionDeflate */
    int direction;
    int comp_lvl;
    int comp_algorithm;
    int sw_backup;
    unsigned hw_buff_sz;
    int data_fmt;
} FakeQatStats;

void fakeqat_stats(FakeQatStats *out);
/* deny_pinned: qzMalloc(PINNED) returns NULL (hw variant);
 * fail_compress: qzCompress returns QZ_FAIL. */
void fakeqat_control(int deny_pinned, int fail_compress);
/* Forget the counters and the process-wide init state. */
void fakeqat_reset(void);

#endif /* RF_TESTS_FAKEQAT_H */
