/*
 * ramflow bench - the matrix: machine description, calibration, every
 * link x method x channels x repeat migration, and each row's statistics
 * (median, min, max), bound and efficiency.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_common.h"
#include "control/cli.h"
#include "util/clock.h"

/* --- machine ------------------------------------------------------------ */

/* Copies the value of the first line of path that starts with key. */
static void read_key(const char *path, const char *key, char sep,
                     char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    char line[512];
    while (f && fgets(line, sizeof(line), f)) {
        if (strncmp(line, key, strlen(key)) != 0) {
            continue;
        }
        char *v = strchr(line, sep);
        if (v) {
            v++;
            v += strspn(v, " \t\"");
            v[strcspn(v, "\"\n")] = '\0';
            snprintf(buf, cap, "%s", v);
            break;
        }
    }
    if (f) {
        fclose(f);
    }
}

/* The 1-minute load average (0 if unknown). */
static double load_average(void)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double v = 0;
    if (f) {
        if (fscanf(f, "%lf", &v) != 1) {
            v = 0;
        }
        fclose(f);
    }
    return v;
}

void rf_bench_machine_info(RfBench *b)
{
    RfBenchMachine *m = &b->machine;
    time_t now = time(NULL);
    strftime(m->date, sizeof(m->date), "%Y-%m-%d %H:%M UTC", gmtime(&now));
    read_key("/proc/cpuinfo", "model name", ':', m->cpu, sizeof(m->cpu));
    read_key("/etc/os-release", "PRETTY_NAME", '=', m->os, sizeof(m->os));
    char mem[64] = "0";
    read_key("/proc/meminfo", "MemTotal", ':', mem, sizeof(mem));
    m->mem_gib = strtod(mem, NULL) / 1048576.0;
    struct utsname u;
    if (uname(&u) == 0) {
        snprintf(m->kernel, sizeof(m->kernel), "%s %s", u.sysname,
                 u.release);
    }
    snprintf(m->version, sizeof(m->version), "%s", RAMFLOW_VERSION_STRING);
    m->load1 = load_average();
    m->root = geteuid() == 0;
    m->kvm = access("/dev/kvm", R_OK | W_OK) == 0;
    /* Kernel TLS needs the "tls" upper-layer protocol (module tls); the
     * processes report whether they used it, this says whether they
     * could have. */
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "r");
    if (f) {
        if (fgets(m->ulps, sizeof(m->ulps), f)) {
            m->ulps[strcspn(m->ulps, "\n")] = '\0';
        }
        fclose(f);
    }
    char list[sizeof(m->ulps) + 2];
    snprintf(list, sizeof(list), " %s ", m->ulps);
    m->ktls_ulp = strstr(list, " tls ") != NULL;
}

/* --- statistics ------------------------------------------------------- */

/* Median (mean of the middle two for an even count), min and max of one
 * field over the successful runs of runs[0..nruns). */
static RfBenchStat stat_of(const RfBenchRun *runs, unsigned nruns,
                           size_t field_off)
{
    double v[RF_BENCH_MAX_REPEAT];
    unsigned n = 0;
    for (unsigned i = 0; i < nruns; i++) {
        if (runs[i].ok) {
            v[n++] = *(const double *)((const char *)&runs[i] + field_off);
        }
    }
    RfBenchStat s = {0, 0, 0};
    if (n == 0) {
        return s;
    }
    s.med = rf_bench_median(v, n); /* sorts v */
    s.min = v[0];
    s.max = v[n - 1];
    return s;
}

#define STAT(row, f) stat_of((row)->runs, (row)->nruns, \
                             offsetof(RfBenchRun, f))
#define QSTAT(row, f) stat_of((row)->qruns, (row)->nqruns, \
                              offsetof(RfBenchRun, f))

/* The source's cores from /proc (runs that have the figure) and auto's
 * decision data, over the row's completed runs. */
static void row_finish_source(RfBenchRow *row)
{
    RfBenchRun tmp[RF_BENCH_MAX_REPEAT];
    unsigned n = 0;
    memset(&row->autosum, 0, sizeof(row->autosum));
    for (unsigned i = 0; i < row->nruns; i++) {
        const RfBenchRun *r = &row->runs[i];
        if (r->ok) {
            rf_bench_auto_merge(&row->autosum, &r->autosum);
        }
        if (r->ok && r->src_cores >= 0) {
            tmp[n] = *r;
            tmp[n++].ok = true;
        }
    }
    row->nsrc_cores = n;
    row->src_cores = stat_of(tmp, n, offsetof(RfBenchRun, src_cores));
}

/* QEMU's runs of a row: their median time and CPU-seconds. */
static void row_finish_qemu(RfBenchRow *row)
{
    row->qtime = QSTAT(row, total_time_s);
    row->qcpu_s = QSTAT(row, cpu_s);
    row->qverified = row->nqruns > 0 && row->nqok == row->nqruns;
    for (unsigned i = 0; i < row->nqruns; i++) {
        row->qverified &= row->qruns[i].verified;
    }
}

/* Statistics, the row's bound in RAM MB/s (the lower of the link, i.e.
 * the raw TCP throughput of the path scaled by this row's page bytes per
 * wire byte, and the method's CPU bound) and its efficiency: page bytes
 * moved per second (median pages/s) over the bound. */
static void row_finish(RfBench *b, RfBenchRow *row)
{
    row->time = STAT(row, total_time_s);
    row->mbps = STAT(row, throughput_mbps);
    row->pps = STAT(row, pages_per_s);
    row->send_cpu = STAT(row, send_cpu);
    row->recv_cpu = STAT(row, recv_cpu);
    row->downtime = STAT(row, downtime_ms);
    row->ratio = STAT(row, ratio);
    row->cpu_s = STAT(row, cpu_s);
    row_finish_source(row);
    row->verified = row->nruns > 0 && row->nok == row->nruns;
    for (unsigned i = 0; i < row->nruns; i++) {
        row->verified &= row->runs[i].verified;
    }
    const RfBenchRun *r = NULL;
    for (unsigned i = 0; i < row->nruns && !r; i++) {
        r = row->runs[i].ok ? &row->runs[i] : NULL;
    }
    if (!r || row->time.med <= 0 || !r->wire_bytes || !r->pages_sent) {
        return;
    }
    /* Pages moved per second: RAM size / time for an idle guest; a live
     * guest's resent pages count too. */
    double moved = (double)r->pages_sent * RF_PAGE_SIZE;
    row->ram_MBps = row->pps.med * RF_PAGE_SIZE / 1e6;
    unsigned ci = 0;
    while (b->cfg.channels[ci] != row->channels) {
        ci++;
    }
    double tcp = b->calib.tcp_mbps[row->link][ci];
    if (tcp <= 0) {
        tcp = (double)b->cfg.links[row->link].rate_bps / 1e6;
    }
    double link = tcp / 8 * moved / (double)r->wire_bytes;
    double cpu = b->calib.codec[row->method].cpu_bound_MBps;
    if (link > 0 && (cpu <= 0 || link <= cpu)) {
        row->bound_MBps = link;
        row->bound_kind = "link";
    } else if (cpu > 0) {
        row->bound_MBps = cpu;
        row->bound_kind = "CPU";
    }
    if (row->bound_MBps > 0) {
        row->efficiency = row->ram_MBps / row->bound_MBps;
    }
    double touch = b->calib.codec[row->method].touch_bound_MBps;
    row->bound_touch_MBps = touch > 0 && (link <= 0 || touch < link)
                                ? touch : link;
    if (row->bound_touch_MBps > 0) {
        row->efficiency_touch = row->ram_MBps / row->bound_touch_MBps;
    }
}

/* --- the matrix ------------------------------------------------------- */

void rf_bench_say(RfBench *b, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "ramflow bench: %s\n", line);
    if (b->log) {
        fprintf(b->log, "## %s\n", line);
        fflush(b->log);
    }
}

/* Without root or iproute2, emulated links become one loopback link. */
static void links_fallback(RfBench *b)
{
    RfBenchConfig *cfg = &b->cfg;
    bool shaped = false;
    for (unsigned i = 0; i < cfg->nlinks; i++) {
        shaped |= cfg->links[i].rate_bps != 0;
    }
    const char *why = shaped ? rf_bench_link_unsupported() : NULL;
    if (!why) {
        return;
    }
    snprintf(b->machine.link_note, sizeof(b->machine.link_note), "%s", why);
    rf_bench_say(b, "%s", why);
    rf_bench_parse_link("unlimited", &cfg->links[0]);
    cfg->nlinks = 1;
}

static void say_calibration(RfBench *b)
{
    const RfBenchCalib *c = &b->calib;
    rf_bench_say(b, "calibration: %.0f MiB sample, %.1f%% zero pages, %u cores, "
        "memcpy %.0f MB/s, first touch %.0f MB/s",
        (double)c->sample_bytes / 1048576, 100 * c->zero_fraction,
        c->cores, c->memcpy_MBps, c->touch_MBps);
    for (unsigned m = 0; m < b->cfg.nmethods; m++) {
        const RfBenchCodec *k = &c->codec[m];
        if (!k->ok) {
            rf_bench_say(b, "  %s: %s%s", b->cfg.methods[m],
                strcmp(b->cfg.methods[m], RF_BENCH_AUTO_NAME)
                    ? "calibration failed: " : "", k->error);
            continue;
        }
        if (k->cpu_bound_MBps <= 0) {
            rf_bench_say(b, "  %s: %s; with first touch %.0f MB/s of RAM",
                b->cfg.methods[m], k->detail, k->touch_bound_MBps);
            continue;
        }
        rf_bench_say(b, "  %s level %d: ratio %.2f, compress %.0f MB/s, decompress "
            "%.0f MB/s, CPU bound %.0f MB/s of RAM (%.0f with first "
            "touch)", b->cfg.methods[m], k->level, k->ratio, k->comp_MBps,
            k->decomp_MBps, k->cpu_bound_MBps, k->touch_bound_MBps);
    }
}

/* Waits up to idle_wait_s for the machine to be quiet (under a quarter
 * of one core busy over half a second): other work on the two cores
 * would show up as lower figures.  Says so when it gives up. */
static void wait_idle(RfBench *b)
{
    double t0 = rf_now();
    while (b->cfg.idle_wait_s > 0 && !rf_cli_cancel) {
        uint64_t b0, t0j, b1, t1j;
        if (!rf_bench_cpu_jiffies(&b0, &t0j)) {
            return;
        }
        rf_sleep(0.5);
        if (!rf_bench_cpu_jiffies(&b1, &t1j) || t1j <= t0j) {
            return;
        }
        double pct = 100.0 * b->calib.cores * (double)(b1 - b0) /
                     (double)(t1j - t0j);
        if (pct < 25) {
            return;
        }
        if (rf_now() - t0 > b->cfg.idle_wait_s) {
            rf_bench_say(b, "machine still busy (%.0f%% of one core) after %.0f s: "
                "measuring anyway", pct, b->cfg.idle_wait_s);
            return;
        }
    }
}

/* QEMU's run r of a row, right after ramflow's (--compare qemu).
 * @return false when cancelled. */
static bool run_qemu_once(RfBench *b, RfBenchRow *row, const char *name,
                          unsigned r)
{
    const RfBenchConfig *cfg = &b->cfg;
    const char *m = cfg->methods[row->method];
    RfBenchRun *run = &row->qruns[row->nqruns];
    wait_idle(b);
    if (!rf_bench_qemu_run_one(b, m, row->channels, cfg->dests[row->dest],
                               name, run)) {
        return false;
    }
    row->nqruns++;
    row->nqok += run->ok;
    if (run->ok) {
        rf_bench_say(b, "    QEMU %s %u ch %s run %u: %.2f s, %.2f CPU-s, %s",
            rf_bench_qemu_method(m), row->channels,
            rf_bench_dest_name(cfg->dests[row->dest]), r + 1,
            run->total_time_s, run->cpu_s,
            run->verified ? "verified" : "NOT verified");
    } else {
        rf_bench_say(b, "    QEMU %s %u ch %s run %u: FAILED: %s",
            rf_bench_qemu_method(m), row->channels,
            rf_bench_dest_name(cfg->dests[row->dest]), r + 1, run->error);
    }
    return true;
}

/* Run r of one row, with a progress line.  @return false when
 * cancelled. */
static bool run_row_once(RfBench *b, const RfBenchPath *path,
                         RfBenchRow *row, unsigned r, unsigned *done)
{
    const RfBenchConfig *cfg = &b->cfg;
    const char *link = cfg->links[row->link].name;
    const char *m = cfg->methods[row->method];
    char name[96], label[64];
    snprintf(name, sizeof(name), "%s-%s-%uch%s%s%s-r%u", link, m,
             row->channels, cfg->ndests ? "-" : "",
             cfg->ndests ? rf_bench_dest_name(cfg->dests[row->dest]) : "",
             row->tls ? "-tls" : "", r + 1);
    rf_bench_row_name(b, row, label, sizeof(label));
    RfBenchRun *run = &row->runs[row->nruns];
    wait_idle(b);
    if (!rf_bench_run_one(b, path, m, row->channels, row->dest, row->tls,
                          name, run)) {
        return false;
    }
    row->nruns++;
    row->nok += run->ok;
    if (run->guest[0] && !b->machine.guest[0]) {
        snprintf(b->machine.guest, sizeof(b->machine.guest), "%s",
                 run->guest);
    }
    ++*done;
    char budget[96] = "";
    if (run->ok && cfg->max_cpu > 0 && run->src_cores >= 0) {
        snprintf(budget, sizeof(budget), ", source %.2f cores, budget %s: "
                 "%s", run->src_cores, cfg->max_cpu_arg,
                 rf_bench_budget_verdict(run->src_cores, cfg->max_cpu));
    } else if (run->ok && cfg->max_cpu > 0) {
        snprintf(budget, sizeof(budget), ", source cores unknown");
    }
    if (run->ok) {
        rf_bench_say(b, "[%u/%u] %s%s%s %s %u ch run %u: %.2f s, %.0f Mbit/s, "
            "downtime %.1f ms, %s%s%s%s", *done, b->planned, b->prefix,
            b->prefix[0] ? " " : "", link, label, row->channels,
            r + 1, run->total_time_s, run->throughput_mbps,
            run->downtime_ms, run->verified ? "verified" : "NOT verified",
            row->tls ? ", " : "", row->tls ? run->security : "", budget);
    } else {
        rf_bench_say(b, "[%u/%u] %s%s%s %s %u ch run %u: FAILED: %s", *done, b->planned,
            b->prefix, b->prefix[0] ? " " : "", link, label, row->channels,
            r + 1, run->error);
    }
    return !cfg->compare_qemu || run_qemu_once(b, row, name, r);
}

/* Run r of each of a link's rows, in order. */
static void run_round(RfBench *b, const RfBenchPath *path, RfBenchRow *rows,
                      unsigned n, unsigned r, unsigned *done)
{
    for (unsigned i = 0; i < n && !rf_cli_cancel; i++) {
        if (!run_row_once(b, path, &rows[i], r, done)) {
            return;
        }
    }
}

/* The lowest median time among a link's rows so far (a large value when
 * no row has a successful run). */
static double link_fastest(RfBenchRow *rows, unsigned n)
{
    double best = 1e9;
    for (unsigned i = 0; i < n; i++) {
        RfBenchStat t = STAT(&rows[i], total_time_s);
        if (t.med > 0 && t.med < best) {
            best = t.med;
        }
    }
    return best;
}

/* Runs every row of one link.  @return false when cancelled. */
static bool run_link(RfBench *b, unsigned l, unsigned *done)
{
    const RfBenchConfig *cfg = &b->cfg;
    const RfBenchLink *link = &cfg->links[l];
    RfBenchPath path;
    RfError *err = NULL;
    unsigned per_link = rf_bench_per_link(cfg);
    RfBenchRow *rows = b->rows + l * per_link;
    if (!rf_bench_link_up(link, cfg->delay_ms, &path, &err)) {
        rf_bench_say(b, "link %s: %s", link->name, rf_error_msg(err));
        for (unsigned i = 0; i < per_link; i++) {
            rows[i].nruns = 1;
            snprintf(rows[i].runs[0].error, sizeof(rows[i].runs[0].error),
                     "link %s: %s", link->name, rf_error_msg(err));
        }
        rf_error_free(err);
        return !rf_cli_cancel;
    }
    rf_bench_say(b, "link %s: %s", link->name, path.netns[0]
        ? "destination in network namespace behind a shaped veth pair"
        : "loopback");
    for (unsigned c = 0; c < cfg->nchannels && cfg->blast_s > 0 &&
         !cfg->reuse_calib && !rf_cli_cancel; c++) {
        double mbps = 0;
        if (rf_bench_tcp_blast(&path, cfg->channels[c], cfg->blast_s,
                               &mbps, &err)) {
            b->calib.tcp_mbps[l][c] = mbps;
            rf_bench_say(b, "link %s: raw TCP, %u stream%s: %.0f Mbit/s", link->name,
                cfg->channels[c], cfg->channels[c] == 1 ? "" : "s", mbps);
        } else {
            rf_bench_say(b, "link %s: raw TCP failed: %s", link->name,
                rf_error_msg(err));
            rf_error_free(err);
            err = NULL;
        }
    }
    /* Run 1 of every row of the link (methods, channel counts, TLS twins),
     * then run 2 of each, ... so that what else happens on the machine
     * meanwhile hits all rows alike. */
    unsigned r = 0;
    for (; r < cfg->repeat && !rf_cli_cancel; r++) {
        run_round(b, &path, rows, per_link, r, done);
    }
    if (cfg->short_runs > r && !rf_cli_cancel &&
        link_fastest(rows, per_link) < RF_BENCH_SHORT_S) {
        b->planned += per_link * (cfg->short_runs - r);
        rf_bench_say(b, "link %s: its fastest row takes under %.0f s: %u runs "
            "per row in all", link->name, RF_BENCH_SHORT_S, cfg->short_runs);
        for (; r < cfg->short_runs && !rf_cli_cancel; r++) {
            run_round(b, &path, rows, per_link, r, done);
        }
    }
    rf_bench_link_down();
    return !rf_cli_cancel;
}

int rf_bench_run_matrix(RfBench *b)
{
    RfBenchConfig *cfg = &b->cfg;
    rf_bench_machine_info(b);
    links_fallback(b);
    unsigned per_link = rf_bench_per_link(cfg);
    b->nrows = cfg->nlinks * per_link;
    b->planned = b->nrows * cfg->repeat;
    b->rows = calloc(b->nrows, sizeof(*b->rows));
    if (!b->rows) {
        rf_bench_say(b, "out of memory");
        return RF_EXIT_FAIL;
    }
    for (unsigned l = 0; l < cfg->nlinks; l++) {
        for (unsigned m = 0; m < cfg->nmethods; m++) {
            for (unsigned ch = 0; ch < cfg->nchannels; ch++) {
                for (unsigned d = 0; d < rf_bench_ndest(cfg); d++) {
                    for (unsigned s = 0; s < (cfg->tls ? 2u : 1u); s++) {
                        RfBenchRow *r = rf_bench_row(b, l, m, ch, d, s);
                        r->link = l;
                        r->method = m;
                        r->channels = cfg->channels[ch];
                        r->dest = d;
                        r->tls = s;
                        snprintf(r->qmethod, sizeof(r->qmethod), "%s",
                                 rf_bench_qemu_method(cfg->methods[m]));
                    }
                }
            }
        }
    }
    rf_bench_say(b, "%u rows (%u link%s x %u methods x %u channel counts%s%s), %u "
        "run%s each, %.0f MiB guest, results in %s", b->nrows, cfg->nlinks,
        cfg->nlinks == 1 ? "" : "s", cfg->nmethods, cfg->nchannels,
        cfg->ndests > 1 ? " x warm and cold destination" : "",
        cfg->tls ? " x plaintext and TLS, runs interleaved" : "",
        cfg->repeat, cfg->repeat == 1 ? "" : "s",
        (double)cfg->mem_size / 1048576, cfg->out_dir);
    if (cfg->ndests) {
        RfError *ierr = NULL;
        rf_bench_say(b, "file mode: writing the %.0f MiB RAM image",
            (double)cfg->mem_size / 1048576);
        if (!rf_bench_image_make(cfg, &ierr)) {
            rf_bench_say(b, "the RAM image: %s", rf_error_msg(ierr));
            rf_error_free(ierr);
            return RF_EXIT_FAIL;
        }
        rf_bench_say(b, "file mode: image %s; %s", cfg->image, cfg->huge_note);
    }
    if (cfg->compare_qemu) {
        rf_bench_say(b, "--compare qemu: QEMU %s (%s), accel %s%s; each ramflow run "
            "followed by QEMU's of the same row", cfg->qemu_version,
            cfg->qemu_exe, cfg->qemu_accel,
            strcmp(cfg->qemu_accel, "tcg") == 0 ? " (no /dev/kvm)" : "");
    }
    if (cfg->tls) {
        rf_bench_say(b, "TLS: PSK in %s; kernel TLS %s (tcp_available_ulp: %s)",
            cfg->psk_dir, b->machine.ktls_ulp ? "offered by the kernel"
                                              : "not offered by the kernel",
            b->machine.ulps[0] ? b->machine.ulps : "none");
    }
    RfError *err = NULL;
    if (cfg->reuse_calib) {
        rf_bench_say(b, "calibration: the same data's, from the previous section");
    } else if (!rf_bench_calibrate_codecs(b, &err)) {
        rf_bench_say(b, "calibration failed: %s", rf_error_msg(err));
        rf_error_free(err);
        return RF_EXIT_FAIL;
    }
    say_calibration(b);
    unsigned done = 0;
    for (unsigned l = 0; l < cfg->nlinks; l++) {
        if (!run_link(b, l, &done)) {
            break;
        }
    }
    for (unsigned i = 0; i < b->nrows; i++) {
        row_finish(b, &b->rows[i]);
        row_finish_qemu(&b->rows[i]);
    }
    b->machine.load1_end = load_average();
    if (rf_cli_cancel) {
        rf_bench_say(b, "interrupted: partial results written");
        return 130;
    }
    for (unsigned i = 0; i < b->nrows; i++) {
        if (!b->rows[i].verified ||
            (cfg->compare_qemu && !b->rows[i].qverified)) {
            return RF_EXIT_FAIL;
        }
    }
    return RF_EXIT_OK;
}
