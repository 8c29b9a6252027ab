/*
 * ramflow - the `codec` command (see codec.h for usage and the format).
 *
 * Everything goes through the method registry and the RfMethodOps table,
 * exactly as a migration's channels use them; only the qatzip method needs
 * its codec directly, for the pieces a migration never sends: an input
 * tail that is not a whole page, and packets the method would send raw
 * (the qatzip output must stay a pure gzip stream).
 */
#include "codec/codec.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compress/method.h"
#include "ramflow/ramflow.h"
#include "tools/calibrate.h"
#ifdef RF_HAVE_QATZIP
#include "compress/qatzip/qatzip.h"
#include "compress/qatzip/qz_format.h"
#endif

#define PAGE RF_PAGE_SIZE
#define PKT_BYTES ((size_t)RF_PACKET_MAX_PAGES * RF_PAGE_SIZE)
#define FRAME_RAW 0x80000000u
#define QZ_MEMBER_MAX (1u << 30) /* largest member the decoder accepts */
static const char stream_magic[4] = {'R', 'F', 'C', '1'};

typedef struct CodecOpts {
    const char *method;
    int level;
    bool level_set;
    bool decompress;
    const char *bench_file;
    unsigned max_mb;
    unsigned repeat;
    bool wall;
} CodecOpts;

/* Prints "ramflow codec: MESSAGE" and frees the error. */
static int fail_err(RfError *err, int status)
{
    fprintf(stderr, "ramflow codec: %s\n", rf_error_msg(err));
    rf_error_free(err);
    return status;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ramflow codec [-m METHOD] [-l LEVEL] < in > out\n"
            "       ramflow codec -d [-m METHOD] < in > out\n"
            "       ramflow codec --bench FILE [-m METHOD] [-l LEVEL] "
            "[--max-mb N]\n"
            "                     [--repeat N] [--wall]\n"
            "Compresses stdin to stdout in 512 KiB packets with a "
            "migration compression\nmethod (default qatzip if built, else "
            "none), or decompresses (-d).\nThe qatzip output is plain gzip "
            "(gzip -dc reads it).  --bench prints ratio\nand single-thread "
            "MB/s of each method and level on FILE.\nMethods:");
    for (const char *const *n = rf_method_names(); *n; n++) {
        fprintf(f, " %s", *n);
    }
    fprintf(f, "\n");
}

/* --- small I/O helpers ------------------------------------------------ */

/* Reads up to n bytes, stopping early only at end of file.
 * @return bytes read; sets an error on a read error. */
static size_t read_full(FILE *f, void *buf, size_t n, RfError **errp)
{
    size_t got = 0;
    while (got < n) {
        size_t r = fread((uint8_t *)buf + got, 1, n - got, f);
        if (r == 0) {
            if (ferror(f)) {
                rf_error_set(errp, RF_ERR_IO, "reading input: %s",
                             strerror(errno));
            }
            break;
        }
        got += r;
    }
    return got;
}

static bool write_all(FILE *f, const void *buf, size_t n, RfError **errp)
{
    if (n && fwrite(buf, 1, n, f) != n) {
        rf_error_set(errp, RF_ERR_IO, "writing output: %s",
                     strerror(errno));
        return false;
    }
    return true;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16
           | (uint32_t)p[3] << 24;
}

/* RfReadFn over a stdio stream: the channel's role in decompression. */
static bool file_read(void *ctx, const struct iovec *iov, int iovcnt,
                      RfError **errp)
{
    for (int i = 0; i < iovcnt; i++) {
        RfError *local = NULL;
        size_t n = read_full(ctx, iov[i].iov_base, iov[i].iov_len, &local);
        if (local || n != iov[i].iov_len) {
            rf_error_propagate(errp, local);
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "input truncated inside a payload");
            return false;
        }
    }
    return true;
}

/* The page addresses of a contiguous buffer. */
static void page_list(uint8_t *buf, uint32_t npages, uint8_t **pages)
{
    for (uint32_t i = 0; i < npages; i++) {
        pages[i] = buf + (size_t)i * PAGE;
    }
}

/* --- method and level ------------------------------------------------- */

static const RfMethodOps *pick_method(const char *name, RfError **errp)
{
    if (!name) {
        name = rf_method_find("qatzip") ? "qatzip" : "none";
    }
    const RfMethodOps *ops = rf_method_find(name);
    if (!ops) {
        rf_error_set(errp, RF_ERR_PARAM,
                     rf_method_known(name) ? "method '%s' is not built in"
                                           : "unknown method '%s'",
                     name);
    }
    return ops;
}

/* Sets *level to -l or the method's default and checks its range.
 * @return false with an RF_ERR_PARAM error naming the parameter. */
static bool pick_level(const RfMethodOps *ops, const CodecOpts *o,
                       int *level, RfError **errp)
{
    if (!ops->level_param) {
        if (o->level_set) {
            rf_error_set(errp, RF_ERR_PARAM,
                         "method '%s' has no level (-l %d given)",
                         ops->name, o->level);
            return false;
        }
        *level = 0;
        return true;
    }
    *level = o->level_set ? o->level : ops->level_default;
    if (*level < ops->level_min || *level > ops->level_max) {
        rf_error_set(errp, RF_ERR_PARAM, "%s %d, allowed %d..%d",
                     ops->level_param, *level, ops->level_min,
                     ops->level_max);
        return false;
    }
    return true;
}

/* --- compression ------------------------------------------------------ */

typedef struct Compressor {
    const RfMethodOps *ops;
    void *state;
    bool qatzip;
#ifdef RF_HAVE_QATZIP
    RfQzCodec *qz;  /* qatzip: for tails and raw packets */
    uint8_t *qzbuf;
    size_t qzcap;
#endif
} Compressor;

#ifdef RF_HAVE_QATZIP
/* Compresses n bytes straight with the qatzip codec (whatever the size)
 * and writes the members. */
static bool qz_direct(Compressor *c, const uint8_t *buf, size_t n,
                      FILE *out, RfError **errp)
{
    size_t len = 0;
    RfQzStatus st = rf_qz_compress(c->qz, buf, n, c->qzbuf, c->qzcap, &len,
                                   errp);
    if (st == RF_QZ_NOSPACE) {
        rf_error_set(errp, RF_ERR_GENERIC,
                     "qatzip: %zu bytes did not fit in %zu", n, c->qzcap);
    }
    return st == RF_QZ_OK && write_all(out, c->qzbuf, len, errp);
}
#endif

/* Compresses one packet of n (1..PKT_BYTES) bytes; buf has room for a
 * whole packet and is zero-padded here past n to the page. */
static bool compress_packet(Compressor *c, uint8_t *buf, size_t n,
                            FILE *out, RfError **errp)
{
    uint32_t npages = (uint32_t)((n + PAGE - 1) / PAGE);
#ifdef RF_HAVE_QATZIP
    if (c->qatzip && n % PAGE != 0) {
        return qz_direct(c, buf, n, out, errp);
    }
#endif
    memset(buf + n, 0, (size_t)npages * PAGE - n);
    uint8_t *pages[RF_PACKET_MAX_PAGES];
    page_list(buf, npages, pages);
    RfPageList pl = {.pages = pages, .npages = npages};
    RfSendPayload p;
    if (!c->ops->send_prepare(c->state, &pl, &p, errp)) {
        return false;
    }
#ifdef RF_HAVE_QATZIP
    if (c->qatzip && p.raw) {
        return qz_direct(c, buf, n, out, errp);
    }
#endif
    if (!c->qatzip) {
        /* a zero-padded tail may compress to more than its bytes */
        bool raw = p.raw || p.len >= n;
        uint8_t hdr[8];
        put_le32(hdr, (uint32_t)n);
        put_le32(hdr + 4, raw ? FRAME_RAW | (uint32_t)n : p.len);
        if (!write_all(out, hdr, sizeof(hdr), errp)) {
            return false;
        }
        if (raw) {
            return write_all(out, buf, n, errp);
        }
    }
    for (int i = 0; i < p.iovcnt; i++) {
        if (!write_all(out, p.iov[i].iov_base, p.iov[i].iov_len, errp)) {
            return false;
        }
    }
    return true;
}

static bool compress_stream(const RfMethodOps *ops, int level, FILE *in,
                            FILE *out, RfError **errp)
{
    Compressor c = {.ops = ops, .qatzip = ops->id == RF_METHOD_QATZIP};
    bool ok = false;
    uint8_t *buf = aligned_alloc(PAGE, PKT_BYTES);
    if (!buf) {
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory");
        return false;
    }
    if (!ops->send_setup(&c.state, level, errp)) {
        goto out;
    }
#ifdef RF_HAVE_QATZIP
    if (c.qatzip) {
        c.qz = rf_qz_codec_new(level, RF_QZ_DIR_COMPRESS, errp);
        c.qzcap = rf_qz_compress_bound(PKT_BYTES);
        c.qzbuf = c.qz ? malloc(c.qzcap) : NULL;
        if (!c.qzbuf) {
            rf_error_set(errp, RF_ERR_GENERIC, "out of memory");
            goto out;
        }
    }
#endif
    if (!c.qatzip) {
        uint8_t hdr[8] = {0};
        memcpy(hdr, stream_magic, 4);
        hdr[4] = ops->id;
        hdr[5] = (uint8_t)(int8_t)level;
        if (!write_all(out, hdr, sizeof(hdr), errp)) {
            goto out;
        }
    }
    size_t total = 0;
    for (;;) {
        size_t n = read_full(in, buf, PKT_BYTES, errp);
        if (errp && *errp) {
            goto out;
        }
        if (n == 0) {
#ifdef RF_HAVE_QATZIP
            /* gzip wants at least one member: the empty one */
            if (c.qatzip && total == 0 && !qz_direct(&c, buf, 0, out,
                                                      errp)) {
                goto out;
            }
#endif
            break;
        }
        if (!compress_packet(&c, buf, n, out, errp)) {
            goto out;
        }
        total += n;
        if (n < PKT_BYTES) {
            break;
        }
    }
    if (!c.qatzip) {
        static const uint8_t end[8];
        if (!write_all(out, end, sizeof(end), errp)) {
            goto out;
        }
    }
    ok = fflush(out) == 0;
    if (!ok) {
        rf_error_set(errp, RF_ERR_IO, "writing output: %s",
                     strerror(errno));
    }
out:
#ifdef RF_HAVE_QATZIP
    free(c.qzbuf);
    rf_qz_codec_free(c.qz);
#endif
    if (c.state) {
        ops->send_cleanup(c.state);
    }
    free(buf);
    return ok;
}

/* --- decompression ---------------------------------------------------- */

/* Decodes "RFC1" frames (the 4 magic bytes are already read). */
static bool decompress_frames(const char *want, FILE *in, FILE *out,
                              RfError **errp)
{
    uint8_t hdr[8];
    if (read_full(in, hdr, 4, errp) != 4) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "stream header truncated");
        return false;
    }
    const RfMethodOps *ops = rf_method_by_id(hdr[0]);
    if (!ops) {
        rf_error_set(errp, RF_ERR_MISMATCH,
                     "stream uses method id %u, not built in", hdr[0]);
        return false;
    }
    if (want && strcmp(want, ops->name) != 0) {
        rf_error_set(errp, RF_ERR_MISMATCH,
                     "stream was compressed with '%s', not '%s'", ops->name,
                     want);
        return false;
    }
    void *state = NULL;
    uint8_t *buf = aligned_alloc(PAGE, PKT_BYTES);
    bool ok = false;
    if (!buf) {
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory");
        return false;
    }
    if (!ops->recv_setup(&state, errp)) {
        goto out;
    }
    for (uint64_t pkt = 0;; pkt++) {
        if (read_full(in, hdr, 8, errp) != 8) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "input truncated before packet %llu (no end "
                         "marker)", (unsigned long long)pkt);
            goto out;
        }
        uint32_t ulen = get_le32(hdr), plen = get_le32(hdr + 4);
        bool raw = plen & FRAME_RAW;
        plen &= ~FRAME_RAW;
        if (ulen == 0 && plen == 0 && !raw) {
            if (fgetc(in) != EOF) {
                rf_error_set(errp, RF_ERR_PROTOCOL,
                             "data after the end marker");
                goto out;
            }
            break;
        }
        if (ulen == 0 || ulen > PKT_BYTES) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "packet %llu: length %u, allowed 1..%zu",
                         (unsigned long long)pkt, ulen, PKT_BYTES);
            goto out;
        }
        uint32_t npages = (ulen + PAGE - 1) / PAGE;
        if (raw) {
            if (plen != ulen) {
                rf_error_set(errp, RF_ERR_PROTOCOL,
                             "packet %llu: raw payload of %u bytes for %u "
                             "input bytes", (unsigned long long)pkt, plen,
                             ulen);
                goto out;
            }
            struct iovec iov = {.iov_base = buf, .iov_len = ulen};
            if (!file_read(in, &iov, 1, errp)) {
                goto out;
            }
        } else {
            if (plen > ops->max_payload(npages)) {
                rf_error_set(errp, RF_ERR_PROTOCOL,
                             "packet %llu: payload of %u bytes, at most %zu "
                             "for %u pages", (unsigned long long)pkt, plen,
                             ops->max_payload(npages), npages);
                goto out;
            }
            uint8_t *pages[RF_PACKET_MAX_PAGES];
            page_list(buf, npages, pages);
            RfRecvPayload p = {.len = plen, .pages = pages,
                               .npages = npages, .read = file_read,
                               .read_ctx = in};
            if (!ops->recv(state, &p, errp)) {
                rf_error_prefix(errp, "packet %llu",
                                (unsigned long long)pkt);
                goto out;
            }
        }
        if (!write_all(out, buf, ulen, errp)) {
            goto out;
        }
    }
    ok = true;
out:
    if (state) {
        ops->recv_cleanup(state);
    }
    free(buf);
    return ok;
}

#ifdef RF_HAVE_QATZIP
/* Decodes concatenated QATzip members, one at a time (the first 4 bytes
 * are already in first4). */
static bool decompress_qatzip(const uint8_t *first4, FILE *in, FILE *out,
                              RfError **errp)
{
    RfQzCodec *qz = rf_qz_codec_new(RF_QATZIP_LEVEL_DEFAULT,
                                    RF_QZ_DIR_DECOMPRESS, errp);
    if (!qz) {
        return false;
    }
    size_t mcap = 0, ocap = 0;
    uint8_t *member = NULL, *dec = NULL;
    bool ok = false;
    uint64_t off = 0;
    for (unsigned idx = 0;; idx++) {
        uint8_t hdr[RF_QZ_HDR_LEN];
        size_t have = 0;
        if (idx == 0) {
            memcpy(hdr, first4, 4);
            have = 4;
        }
        have += read_full(in, hdr + have, sizeof(hdr) - have, errp);
        if (errp && *errp) {
            goto out;
        }
        if (have == 0 && idx > 0) {
            break;
        }
        RfQzMember m;
        /* the size check against the input is done by reading below */
        if (!rf_qz_parse_header(hdr, have < sizeof(hdr) ? have : SIZE_MAX,
                                (size_t)off, &m, errp)) {
            goto out;
        }
        if (m.isize > QZ_MEMBER_MAX || m.csize > QZ_MEMBER_MAX) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "qatzip member %u: sizes %u/%u exceed %u", idx,
                         m.isize, m.csize, QZ_MEMBER_MAX);
            goto out;
        }
        size_t mlen = RF_QZ_HDR_LEN + (size_t)m.csize + RF_QZ_TRL_LEN;
        if (mlen > mcap || m.isize > ocap || !dec) {
            mcap = mlen > mcap ? mlen : mcap;
            ocap = m.isize > ocap ? m.isize : ocap;
            free(member);
            free(dec);
            member = malloc(mcap);
            dec = malloc(ocap ? ocap : 1);
            if (!member || !dec) {
                rf_error_set(errp, RF_ERR_GENERIC, "out of memory");
                goto out;
            }
        }
        memcpy(member, hdr, sizeof(hdr));
        if (read_full(in, member + RF_QZ_HDR_LEN, mlen - RF_QZ_HDR_LEN,
                      errp) != mlen - RF_QZ_HDR_LEN) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "input truncated inside qatzip member %u", idx);
            goto out;
        }
        if (!rf_qz_decompress(qz, member, mlen, dec, m.isize, errp)) {
            rf_error_prefix(errp, "at input offset %llu",
                            (unsigned long long)off);
            goto out;
        }
        if (!write_all(out, dec, m.isize, errp)) {
            goto out;
        }
        off += mlen;
    }
    ok = true;
out:
    free(member);
    free(dec);
    rf_qz_codec_free(qz);
    return ok;
}
#endif

static bool decompress_stream(const char *want, FILE *in, FILE *out,
                              RfError **errp)
{
    uint8_t magic[4];
    size_t n = read_full(in, magic, 4, errp);
    if (errp && *errp) {
        return false;
    }
    bool ok;
    if (n == 4 && memcmp(magic, stream_magic, 4) == 0) {
        ok = decompress_frames(want, in, out, errp);
    } else if (n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
#ifdef RF_HAVE_QATZIP
        if (want && strcmp(want, "qatzip") != 0) {
            rf_error_set(errp, RF_ERR_MISMATCH,
                         "input is gzip (qatzip), not '%s'", want);
            return false;
        }
        ok = decompress_qatzip(magic, in, out, errp);
#else
        rf_error_set(errp, RF_ERR_PARAM,
                     "input is gzip (qatzip): method not built in");
        return false;
#endif
    } else {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "input is neither a ramflow codec stream (\"RFC1\") "
                     "nor qatzip gzip members (1f 8b)");
        return false;
    }
    if (ok && fflush(out) != 0) {
        rf_error_set(errp, RF_ERR_IO, "writing output: %s",
                     strerror(errno));
        ok = false;
    }
    return ok;
}

/* --- benchmark -------------------------------------------------------- */

/* Formats a speed, or ">99999" when the method did no real work. */
static const char *speed(char *buf, size_t len, double mbs)
{
    if (mbs > 99999) {
        snprintf(buf, len, ">99999");
    } else {
        snprintf(buf, len, "%.1f", mbs);
    }
    return buf;
}

/* One method at one level through the shared calibration (the channels'
 * own send and receive code), printed as a table row. */
static bool bench_one(const uint8_t *data, size_t size, const CodecOpts *o,
                      const RfMethodOps *ops, int level, RfError **errp)
{
    RfCalibration c;
    if (!rf_method_calibrate(ops, level, data, size, o->repeat,
                             o->wall ? CLOCK_MONOTONIC
                                     : CLOCK_THREAD_CPUTIME_ID,
                             &c, errp)) {
        return false;
    }
    char lvl[8] = "-", cs[16], ds[16];
    if (ops->level_param) {
        snprintf(lvl, sizeof(lvl), "%d", level);
    }
    printf("%-8s %5s %7.3f %10s %10s %6.1f  %s\n", ops->name, lvl, c.ratio,
           speed(cs, sizeof(cs), c.compress_mbps),
           speed(ds, sizeof(ds), c.decompress_mbps),
           100.0 * (double)c.raw_packets / (double)c.packets, c.detail);
    fflush(stdout);
    return true;
}

static int bench(const CodecOpts *o)
{
    RfError *err = NULL;
    FILE *f = fopen(o->bench_file, "rb");
    if (!f) {
        fprintf(stderr, "ramflow codec: %s: %s\n", o->bench_file,
                strerror(errno));
        return 1;
    }
    size_t max = (size_t)o->max_mb << 20;
    uint8_t *data = aligned_alloc(PAGE, max);
    if (!data) {
        fclose(f);
        fprintf(stderr, "ramflow codec: out of memory for %u MiB\n",
                o->max_mb);
        return 1;
    }
    size_t size = read_full(f, data, max, &err) / PAGE * PAGE;
    fclose(f);
    if (err) {
        free(data);
        return fail_err(err, 1);
    }
    if (size == 0) {
        free(data);
        fprintf(stderr, "ramflow codec: %s: less than one %u-byte page\n",
                o->bench_file, PAGE);
        return 1;
    }
    printf("# %s: %.1f MiB in %zu packets of up to 512 KiB; one thread; "
           "MB/s = 10^6 input bytes per %s second; best of %u\n",
           o->bench_file, (double)size / 1048576.0,
           (size + PKT_BYTES - 1) / PKT_BYTES,
           o->wall ? "wall-clock" : "CPU", o->repeat);
    printf("%-8s %5s %7s %10s %10s %6s  %s\n", "method", "level", "ratio",
           "comp MB/s", "dec MB/s", "raw %", "back end");
    int status = 0;
    const char *const *names = rf_method_names();
    for (size_t i = 0; names[i] && !status; i++) {
        if (o->method && strcmp(o->method, names[i]) != 0) {
            continue;
        }
        const RfMethodOps *ops = rf_method_find(names[i]);
        int lo = 0, hi = 0;
        if (o->level_set && (!ops->level_param || o->level < ops->level_min
                             || o->level > ops->level_max)) {
            continue; /* -l given: only methods that have that level */
        }
        if (ops->level_param) {
            lo = o->level_set ? o->level : ops->level_min;
            hi = o->level_set ? o->level : ops->level_max;
        }
        for (int l = lo; l <= hi && !status; l++) {
            if (!bench_one(data, size, o, ops, l, &err)) {
                status = fail_err(err, 1);
            }
        }
    }
    free(data);
    return status;
}

/* --- entry point ------------------------------------------------------ */

static bool parse_int(const char *s, long lo, long hi, long *v)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi) {
        return false;
    }
    *v = x;
    return true;
}

int rf_cli_codec(int argc, char **argv)
{
    enum { OPT_MAX_MB = 256, OPT_WALL, OPT_REPEAT };
    static const struct option longopts[] = {
        {"method", required_argument, NULL, 'm'},
        {"level", required_argument, NULL, 'l'},
        {"decompress", no_argument, NULL, 'd'},
        {"bench", required_argument, NULL, 'b'},
        {"max-mb", required_argument, NULL, OPT_MAX_MB},
        {"wall", no_argument, NULL, OPT_WALL},
        {"repeat", required_argument, NULL, OPT_REPEAT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    CodecOpts o = {.max_mb = 32, .repeat = 1};
    long v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:l:db:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            o.method = optarg;
            break;
        case 'l':
            if (!parse_int(optarg, -1000, 1000, &v)) {
                fprintf(stderr, "ramflow codec: level '%s' is not a "
                                "number\n", optarg);
                return 2;
            }
            o.level = (int)v;
            o.level_set = true;
            break;
        case 'd':
            o.decompress = true;
            break;
        case 'b':
            o.bench_file = optarg;
            break;
        case OPT_MAX_MB:
            if (!parse_int(optarg, 1, 65536, &v)) {
                fprintf(stderr, "ramflow codec: --max-mb '%s', allowed "
                                "1..65536\n", optarg);
                return 2;
            }
            o.max_mb = (unsigned)v;
            break;
        case OPT_WALL:
            o.wall = true;
            break;
        case OPT_REPEAT:
            if (!parse_int(optarg, 1, 100, &v)) {
                fprintf(stderr, "ramflow codec: --repeat '%s', allowed "
                                "1..100\n", optarg);
                return 2;
            }
            o.repeat = (unsigned)v;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "ramflow codec: unexpected argument '%s'\n",
                argv[optind]);
        usage(stderr);
        return 2;
    }
    RfError *err = NULL;
    if (o.method) {
        const RfMethodOps *ops = pick_method(o.method, &err);
        int level;
        if (!ops || (!o.decompress && !pick_level(ops, &o, &level, &err))) {
            return fail_err(err, 2);
        }
    }
    if (o.bench_file) {
        if (o.decompress) {
            fprintf(stderr, "ramflow codec: --bench and -d exclude each "
                            "other\n");
            return 2;
        }
        return bench(&o);
    }
    if (o.decompress) {
        if (o.level_set) {
            fprintf(stderr, "ramflow codec: -l is for compression\n");
            return 2;
        }
        return decompress_stream(o.method, stdin, stdout, &err)
                   ? 0 : fail_err(err, 1);
    }
    const RfMethodOps *ops = pick_method(o.method, &err);
    int level = 0;
    if (!ops || !pick_level(ops, &o, &level, &err)) {
        return fail_err(err, 2);
    }
    return compress_stream(ops, level, stdin, stdout, &err)
               ? 0 : fail_err(err, 1);
}
