/*
 * ramflow bench - calibration, in the same run and on the same data.
 *
 * Codecs: a sample of RAM filled exactly as the test VM fills its RAM
 * (same generated mix and seed, or the same files in the same order,
 * byte 0 of each page cleared as the guest's pattern does; --calib-mb
 * MiB, or one period of the fill data if shorter) is cut into
 * packets of up to 128 pages; zero pages are left out as the engine
 * leaves them out, and the other pages go through each method's own
 * send_prepare and recv (src/compress/method.h), one thread, timed in
 * thread CPU time.  From that: the ratio, compress and decompress MB/s
 * (of page bytes) and the CPU bound: the RAM bytes per second all cores
 * could move if they did nothing but compress and decompress,
 *     cores / (normal_fraction * (1/compress + 1/decompress)).
 * Also memcpy bandwidth and the first touch of fresh memory (one
 * thread), which every destination pays on top: the bound "with first
 * touch" adds it to the per-byte cost (for `none`, whose per-byte cost is
 * two copies: into the socket and out of it).  The raw TCP throughput of each
 * path is measured by bench_tcp.c.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "compress/method.h"
#include "control/bench_common.h"
#include "control/cli.h"
#include "engine/engine.h"
#include "testvm/guest.h"
#include "testvm/imagegen.h"
#include "util/clock.h"
#include "util/zero.h"

#define PAGE RF_PAGE_SIZE

static double thread_cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Fills like the guest's --fill: a file, or a folder's regular,
 * non-hidden files in name order, repeated. */
static bool fill_from_path(uint8_t *dst, uint64_t size, const char *path,
                           RfError **errp)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        rf_error_set(errp, RF_ERR_IO, "--fill '%s': %s", path,
                     strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        return rf_image_fill_from_files(dst, size, &path, 1, errp);
    }
    DIR *d = opendir(path);
    if (!d) {
        rf_error_set(errp, RF_ERR_IO, "--fill '%s': %s", path,
                     strerror(errno));
        return false;
    }
    char *names[1024];
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 1024) {
        char full[PATH_MAX];
        snprintf(full, sizeof(full), "%s/%s", path, e->d_name);
        if (e->d_name[0] == '.' || stat(full, &st) < 0 ||
            !S_ISREG(st.st_mode)) {
            continue;
        }
        names[n] = strdup(full);
        n += names[n] != NULL;
    }
    closedir(d);
    qsort(names, n, sizeof(*names), cmp_str);
    bool ok = false;
    if (n == 0) {
        rf_error_set(errp, RF_ERR_PARAM, "--fill folder '%s' has no "
                     "regular files", path);
    } else {
        ok = rf_image_fill_from_files(dst, size, (const char *const *)names,
                                      n, errp);
    }
    for (unsigned i = 0; i < n; i++) {
        free(names[i]);
    }
    return ok;
}

/* Bytes of fill data before it repeats (0 if unknown). */
static uint64_t fill_period(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        return (uint64_t)st.st_size;
    }
    DIR *d = opendir(path);
    uint64_t total = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char full[PATH_MAX];
        snprintf(full, sizeof(full), "%s/%s", path, e->d_name);
        if (e->d_name[0] != '.' && stat(full, &st) == 0 &&
            S_ISREG(st.st_mode)) {
            total += (uint64_t)st.st_size;
        }
    }
    if (d) {
        closedir(d);
    }
    return total;
}

/* The sample, cut into packets of the normal pages of up to 128
 * consecutive pages. */
typedef struct Sample {
    uint8_t *data, *out, *arena;
    size_t size;
    uint8_t **pages, **out_pages; /* normal pages, in order */
    size_t npages;
    size_t *pk_first;             /* first index in pages of each packet */
    uint32_t *pk_n, *pk_len;
    size_t *pk_off;
    bool *pk_raw;
    size_t npk;
} Sample;

static bool sample_build(Sample *s, const RfBenchConfig *cfg,
                         RfError **errp)
{
    size_t total = s->size / PAGE;
    s->pages = calloc(total, sizeof(*s->pages));
    s->out_pages = calloc(total, sizeof(*s->out_pages));
    size_t maxpk = (total + RF_PACKET_MAX_PAGES - 1) / RF_PACKET_MAX_PAGES;
    s->pk_first = calloc(maxpk, sizeof(*s->pk_first));
    s->pk_n = calloc(maxpk, sizeof(*s->pk_n));
    s->pk_len = calloc(maxpk, sizeof(*s->pk_len));
    s->pk_off = calloc(maxpk, sizeof(*s->pk_off));
    s->pk_raw = calloc(maxpk, sizeof(*s->pk_raw));
    if (!s->pages || !s->out_pages || !s->pk_first || !s->pk_n ||
        !s->pk_len || !s->pk_off || !s->pk_raw) {
        rf_error_set(errp, RF_ERR_GENERIC, "calibration: out of memory");
        return false;
    }
    bool ok = cfg->fill ? fill_from_path(s->data, s->size, cfg->fill, errp)
                        : rf_image_generate(s->data, s->size, 1, 2, errp);
    if (!ok) {
        return false;
    }
    /* As the guest: reserved pages zero, byte 0 of every page zero. */
    memset(s->data, 0, (size_t)RF_GUEST_RESERVED_PAGES * PAGE);
    for (size_t p = 0; p < total; p++) {
        s->data[p * PAGE] = 0;
    }
    for (size_t first = 0; first < total; first += RF_PACKET_MAX_PAGES) {
        size_t end = first + RF_PACKET_MAX_PAGES;
        end = end > total ? total : end;
        size_t start = s->npages;
        for (size_t p = first; p < end; p++) {
            if (!rf_page_is_zero(s->data + p * PAGE)) {
                s->out_pages[s->npages] = s->out + p * PAGE;
                s->pages[s->npages++] = s->data + p * PAGE;
            }
        }
        if (s->npages > start) {
            s->pk_first[s->npk] = start;
            s->pk_n[s->npk++] = (uint32_t)(s->npages - start);
        }
    }
    return true;
}

static void sample_free(Sample *s)
{
    free(s->data);
    free(s->out);
    free(s->arena);
    free(s->pages);
    free(s->out_pages);
    free(s->pk_first);
    free(s->pk_n);
    free(s->pk_len);
    free(s->pk_off);
    free(s->pk_raw);
}

typedef struct ArenaReader {
    const uint8_t *p;
    size_t left;
} ArenaReader;

static bool arena_read(void *ctx, const struct iovec *iov, int iovcnt,
                       RfError **errp)
{
    ArenaReader *r = ctx;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > r->left) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "payload overrun");
            return false;
        }
        memcpy(iov[i].iov_base, r->p, iov[i].iov_len);
        r->p += iov[i].iov_len;
        r->left -= iov[i].iov_len;
    }
    return true;
}

/* Compresses every packet into the arena, then decodes every packet into
 * out as a receiving channel would (raw packets: a copy), then compares.
 * Fills c. */
static bool codec_one(Sample *s, const RfMethodOps *ops, int level,
                      RfBenchCodec *c, RfError **errp)
{
    void *st = NULL;
    if (!ops->send_setup(&st, level, errp)) {
        return false;
    }
    if (ops->describe) {
        snprintf(c->detail, sizeof(c->detail), "%s", ops->describe(st));
    }
    size_t off = 0, payload = 0;
    double tc = 0;
    bool ok = true;
    for (size_t i = 0; i < s->npk && ok; i++) {
        RfPageList pl = {.pages = s->pages + s->pk_first[i],
                         .npages = s->pk_n[i]};
        RfSendPayload sp;
        double t0 = thread_cpu();
        ok = ops->send_prepare(st, &pl, &sp, errp);
        tc += thread_cpu() - t0; /* not the copy into the arena */
        for (int k = 0; ok && k < sp.iovcnt; k++) {
            memcpy(s->arena + off, sp.iov[k].iov_base, sp.iov[k].iov_len);
            off += sp.iov[k].iov_len;
        }
        if (ok) {
            s->pk_off[i] = off - sp.len;
            s->pk_len[i] = sp.len;
            s->pk_raw[i] = sp.raw;
            payload += sp.len;
        }
    }
    ops->send_cleanup(st);
    st = NULL;
    if (!ok || !ops->recv_setup(&st, errp)) {
        return false;
    }
    memset(s->out, 0xa5, s->size);
    double t0 = thread_cpu();
    for (size_t i = 0; i < s->npk && ok; i++) {
        ArenaReader r = {s->arena + s->pk_off[i], s->pk_len[i]};
        uint8_t *const *pages = s->out_pages + s->pk_first[i];
        if (s->pk_raw[i]) {
            struct iovec iov[RF_PACKET_MAX_PAGES];
            for (uint32_t k = 0; k < s->pk_n[i]; k++) {
                iov[k] = (struct iovec){pages[k], PAGE};
            }
            ok = arena_read(&r, iov, (int)s->pk_n[i], errp);
        } else {
            RfRecvPayload rp = {.len = s->pk_len[i], .pages = pages,
                                .npages = s->pk_n[i], .read = arena_read,
                                .read_ctx = &r};
            ok = ops->recv(st, &rp, errp);
        }
    }
    double td = thread_cpu() - t0;
    ops->recv_cleanup(st);
    for (size_t p = 0; ok && p < s->npages; p++) {
        if (memcmp(s->pages[p], s->out_pages[p], PAGE) != 0) {
            rf_error_set(errp, RF_ERR_VERIFY, "calibration: %s level %d "
                         "decoded page %zu differs", ops->name, level, p);
            ok = false;
        }
    }
    if (!ok) {
        return false;
    }
    double bytes = (double)s->npages * PAGE;
    c->ratio = payload ? bytes / (double)payload : 0;
    c->comp_MBps = tc > 0 ? bytes / tc / 1e6 : 0;
    c->decomp_MBps = td > 0 ? bytes / td / 1e6 : 0;
    return true;
}

/* Single-thread memcpy bandwidth over the sample, best of three. */
static double memcpy_MBps(Sample *s)
{
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = rf_now();
        memcpy(s->out, s->data, s->size);
        double t = rf_now() - t0;
        if (t > 0 && (best == 0 || s->size / t > best)) {
            best = (double)s->size / t;
        }
    }
    return best / 1e6;
}

/* First touch of fresh shared memory (a memfd, like the guest's RAM):
 * the CPU a destination spends faulting in its RAM, one thread, MB/s of
 * thread CPU time.  Memory the host took back a while ago is slower to
 * touch than memory freed a moment ago: this is the figure of the moment,
 * an indication rather than a bound. */
static double first_touch_MBps(size_t size)
{
    int fd = memfd_create("rf-bench-touch", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return 0;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        return 0;
    }
    double t0 = thread_cpu();
    for (size_t off = 0; off < size; off += PAGE) {
        ((volatile uint8_t *)p)[off] = 1;
    }
    double t = thread_cpu() - t0;
    munmap(p, size);
    return t > 0 ? (double)size / t / 1e6 : 0;
}

bool rf_bench_calibrate_codecs(RfBench *b, RfError **errp)
{
    RfBenchCalib *cal = &b->calib;
    const RfBenchConfig *cfg = &b->cfg;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cal->cores = ncpu < 1 ? 1 : (unsigned)ncpu;
    uint64_t size = (uint64_t)cfg->calib_mb << 20;
    /* Fill data shorter than the sample: exactly one period of it, whose
     * mix is what a large guest holds. */
    uint64_t period = cfg->fill ? fill_period(cfg->fill) : 0;
    if (period && period < size) {
        size = (period + PAGE - 1) / PAGE * PAGE;
    }
    size = size > cfg->mem_size ? cfg->mem_size : size;
    Sample s = {.size = (size_t)size};
    s.data = aligned_alloc(PAGE, s.size);
    s.out = aligned_alloc(PAGE, s.size);
    bool ok = false;
    if (!s.data || !s.out) {
        rf_error_set(errp, RF_ERR_GENERIC, "calibration: out of memory for "
                     "a %llu MiB sample", (unsigned long long)(size >> 20));
        goto out;
    }
    if (!sample_build(&s, cfg, errp)) {
        goto out;
    }
    size_t arena = 0;
    for (unsigned m = 0; m < cfg->nmethods; m++) {
        const RfMethodOps *ops = rf_method_find(cfg->methods[m]);
        size_t need = 0;
        for (size_t i = 0; ops && i < s.npk; i++) {
            need += ops->max_payload(s.pk_n[i]);
        }
        arena = need > arena ? need : arena;
    }
    s.arena = malloc(arena ? arena : 1);
    if (!s.arena) {
        rf_error_set(errp, RF_ERR_GENERIC, "calibration: out of memory");
        goto out;
    }
    cal->sample_bytes = s.size;
    cal->zero_fraction = 1.0 - (double)s.npages / (double)(s.size / PAGE);
    cal->memcpy_MBps = memcpy_MBps(&s);
    cal->touch_MBps = first_touch_MBps(s.size);
    double normal = 1.0 - cal->zero_fraction;
    for (unsigned m = 0; m < cfg->nmethods && !rf_cli_cancel; m++) {
        RfBenchCodec *c = &cal->codec[m];
        const RfMethodOps *ops = rf_method_find(cfg->methods[m]);
        c->level = ops->level_param ? rf_params_level(&cfg->params,
                                                      ops->level_param)
                                    : -1;
        RfError *err = NULL;
        if (ops->id == RF_METHOD_NONE) {
            /* Nothing to measure: pages go out as they are. */
            snprintf(c->detail, sizeof(c->detail), "uncompressed pages");
            c->ratio = 1;
            c->ok = true;
            /* Its CPU per byte: a copy into the socket, a copy out of
             * it. */
            if (cal->memcpy_MBps > 0 && cal->touch_MBps > 0) {
                c->touch_bound_MBps = cal->cores /
                    (normal * 2 / cal->memcpy_MBps + 1 / cal->touch_MBps);
            }
            continue;
        }
        if (!codec_one(&s, ops, c->level, c, &err)) {
            snprintf(c->error, sizeof(c->error), "%s", rf_error_msg(err));
            rf_error_free(err);
            continue;
        }
        c->ok = true;
        if (ops->id != RF_METHOD_NONE && c->comp_MBps > 0 &&
            c->decomp_MBps > 0 && normal > 0) {
            double per_byte = normal * (1 / c->comp_MBps +
                                        1 / c->decomp_MBps);
            c->cpu_bound_MBps = cal->cores / per_byte;
            if (cal->touch_MBps > 0) {
                c->touch_bound_MBps = cal->cores /
                    (per_byte + 1 / cal->touch_MBps);
            }
        }
    }
    ok = true;
out:
    sample_free(&s);
    return ok;
}
