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

#include "bench/bench_common.h"
#include "compress/method.h"
#include "control/cli.h"
#include "engine/engine.h"
#include "testvm/guest.h"
#include "tools/calibrate.h"
#include "tools/imagegen.h"
#include "util/clock.h"
#include "util/zero.h"

#define PAGE RF_PAGE_SIZE

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static double thread_cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
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

/* The sample: RAM filled as the guest's, and its normal (non-zero)
 * pages, in order. */
typedef struct Sample {
    uint8_t *data, *out;
    size_t size;
    uint8_t **pages;
    size_t npages;
} Sample;

static bool sample_build(Sample *s, const RfBenchConfig *cfg,
                         RfError **errp)
{
    size_t total = s->size / PAGE;
    s->pages = calloc(total ? total : 1, sizeof(*s->pages));
    if (!s->pages) {
        rf_error_set(errp, RF_ERR_GENERIC, "calibration: out of memory");
        return false;
    }
    /* As the guest's --fill (rf_image_fill_from_path). */
    bool ok = cfg->fill
                  ? rf_image_fill_from_path(s->data, s->size, cfg->fill, errp)
                  : rf_image_generate(s->data, s->size, 1, 2, errp);
    if (!ok) {
        return false;
    }
    /* As the guest: reserved pages zero, byte 0 of every page zero. */
    memset(s->data, 0, (size_t)RF_GUEST_RESERVED_PAGES * PAGE);
    for (size_t p = 0; p < total; p++) {
        s->data[p * PAGE] = 0;
    }
    for (size_t p = 0; p < total; p++) {
        if (!rf_page_is_zero(s->data + p * PAGE)) {
            s->pages[s->npages++] = s->data + p * PAGE;
        }
    }
    return true;
}

static void sample_free(Sample *s)
{
    free(s->data);
    free(s->out);
    free(s->pages);
}

/* One method through the shared calibration (src/tools/calibrate.c):
 * the sample's normal pages, packed together as the engine packs them
 * into packets (zero pages never reach a method), one thread, CPU time.
 * Fills c. */
static bool codec_one(Sample *s, const RfMethodOps *ops, int level,
                      RfBenchCodec *c, RfError **errp)
{
    for (size_t p = 0; p < s->npages; p++) {
        memcpy(s->out + p * PAGE, s->pages[p], PAGE);
    }
    RfCalibration cal;
    if (!rf_method_calibrate(ops, level, s->out, s->npages * PAGE, 1,
                             CLOCK_THREAD_CPUTIME_ID, &cal, errp)) {
        rf_error_prefix(errp, "calibration");
        return false;
    }
    snprintf(c->detail, sizeof(c->detail), "%.*s",
             (int)sizeof(c->detail) - 1, cal.detail);
    c->ratio = cal.ratio;
    c->comp_MBps = cal.compress_mbps;
    c->decomp_MBps = cal.decompress_mbps;
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

/* First touch of fresh shared memory (a memfd, like the guest's RAM,
 * faulted in the way the destination pre-faults it): the CPU a
 * destination spends on its RAM before any page arrives, one thread, MB/s
 * of thread CPU time.  Memory the host took back a while ago is slower to
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
    /* As the destination pre-faults (src/ram/prefault.c): one
     * MADV_POPULATE_WRITE per 16 MiB, or a write per page where the
     * kernel lacks it. */
    double t0 = thread_cpu();
    for (size_t off = 0; off < size; off += 16u << 20) {
        size_t len = size - off < (16u << 20) ? size - off : 16u << 20;
        if (madvise((uint8_t *)p + off, len, MADV_POPULATE_WRITE) != 0) {
            for (size_t o = off; o < off + len; o += PAGE) {
                ((volatile uint8_t *)p)[o] = 1;
            }
        }
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
    cal->sample_bytes = s.size;
    cal->zero_fraction = 1.0 - (double)s.npages / (double)(s.size / PAGE);
    cal->memcpy_MBps = memcpy_MBps(&s);
    cal->touch_MBps = first_touch_MBps(s.size);
    double normal = 1.0 - cal->zero_fraction;
    for (unsigned m = 0; m < cfg->nmethods && !rf_cli_cancel; m++) {
        RfBenchCodec *c = &cal->codec[m];
        if (!strcmp(cfg->methods[m], RF_BENCH_AUTO_NAME)) {
            /* No one codec to measure: the engine picks per window. */
            c->level = -1;
            snprintf(c->error, sizeof(c->error), "not calibrated: the "
                     "engine chooses method and level per window");
            continue;
        }
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
