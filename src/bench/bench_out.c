/*
 * ramflow bench - output: the markdown tables (upstream's columns plus
 * ratio, verified, bound and efficiency; with --tls the TLS cost table),
 * results.json (jansson: machine, configuration, calibration, every run)
 * and a gnuplot chart of time and CPU per method x channels, one row of
 * panels per link.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench_common.h"
#include "control/cli.h"

/* "1.23" or, with several runs, "1.23 (1.20–1.31)". */
static const char *fmt_stat(char *buf, size_t cap, RfBenchStat s,
                            unsigned nok, int prec)
{
    if (nok > 1) {
        snprintf(buf, cap, "%.*f (%.*f–%.*f)", prec, s.med, prec, s.min,
                 prec, s.max);
    } else {
        snprintf(buf, cap, "%.*f", prec, s.med);
    }
    return buf;
}

static void describe_link(const RfBench *b, unsigned l, char *buf,
                          size_t cap)
{
    const RfBenchLink *k = &b->cfg.links[l];
    if (!k->rate_bps) {
        snprintf(buf, cap, "%s (loopback)", k->name);
    } else if (b->cfg.delay_ms > 0) {
        snprintf(buf, cap, "%s (emulated: veth pair, tc tbf, netem delay "
                 "%.1f ms each way)", k->name, b->cfg.delay_ms);
    } else {
        snprintf(buf, cap, "%s (emulated: veth pair shaped with tc tbf)",
                 k->name);
    }
}

static void print_header(FILE *f, const RfBench *b)
{
    const RfBenchMachine *m = &b->machine;
    const RfBenchConfig *c = &b->cfg;
    fprintf(f, "## ramflow bench, %s\n\n", m->date);
    fprintf(f, "- machine: %s, %u cores, %.1f GiB, %s, %s; load average "
            "%.2f at start, %.2f at the end\n", m->cpu, b->calib.cores,
            m->mem_gib, m->kernel, m->os, m->load1, m->load1_end);
    fprintf(f, "- guest: %s\n", m->guest[0] ? m->guest : "(not started)");
    char guest[96];
    if (c->live && c->dirty_rate) {
        snprintf(guest, sizeof(guest), "writing (live guest, %llu pages/s)",
                 (unsigned long long)c->dirty_rate);
    } else {
        snprintf(guest, sizeof(guest), "%s", c->live
                 ? "writing (live guest, flat out)"
                 : "idle (halted), as upstream's table");
    }
    fprintf(f, "- RAM: %.0f MiB filled with %s; %u vCPU%s %s\n",
            (double)c->mem_size / 1048576,
            c->fill ? c->fill : "the generated mix (seed 1)", c->vcpus,
            c->vcpus == 1 ? "" : "s", guest);
    fprintf(f, "- every run: a fresh destination and source process; "
            "--verify (digests) and the destination's memory pattern "
            "check; runs per row: %u", c->repeat);
    if (c->short_runs > c->repeat) {
        fprintf(f, ", %u on a link whose fastest row took under %.0f s",
                c->short_runs, RF_BENCH_SHORT_S);
    }
    fprintf(f, "%s; rows interleaved run by run\n",
            c->short_runs > 1 ? " (median, min–max in brackets)" : "");
    for (unsigned i = 0; i < c->npass; i++) {
        fprintf(f, "%s%s", i ? " " : "- parameters: ", c->pass[i]);
    }
    if (c->npass) {
        fprintf(f, "\n");
    }
    if (m->link_note[0]) {
        fprintf(f, "- links: %s\n", m->link_note);
    }
    if (c->ndests) {
        fprintf(f, "- file mode (--dest-memory): the source sends a RAM "
                "image (`ramflow migrate --memory`), the destination "
                "receives into a file (`ramflow incoming --memory`); warm: "
                "an existing file, populated before the run, received into "
                "in place (`--reuse-memory`); cold: a fresh file; every "
                "destination compared with the image after the run; %s\n",
                c->huge_note);
    }
    if (c->compare_qemu) {
        fprintf(f, "- QEMU: %s, accel %s%s; both QEMUs paused (-S), RAM a "
                "memory-backend-file (share=on), the source's the same "
                "image, the destination's fresh (cold) or populated and "
                "prealloc=on (warm); multifd with the same method, level "
                "and channels, max-bandwidth lifted; time: QEMU's "
                "total-time; each ramflow run followed by QEMU's\n",
                c->qemu_version, c->qemu_accel,
                strcmp(c->qemu_accel, "tcg") == 0 ? " (no /dev/kvm)" : "");
    }
    if (c->tls) {
        fprintf(f, "- TLS: every row also as \"METHOD + TLS\": TLS 1.3 with "
                "a pre-shared key made for this bench, on every channel; "
                "plaintext and TLS runs interleaved; the kernel %s "
                "(tcp_available_ulp: %s)\n", m->ktls_ulp
                ? "offers kernel TLS (\"tls\" ULP)"
                : "offers no kernel TLS (no \"tls\" ULP)",
                m->ulps[0] ? m->ulps : "none");
    }
    fprintf(f, "\n");
}

static void print_calibration(FILE *f, const RfBench *b)
{
    const RfBenchCalib *k = &b->calib;
    fprintf(f, "### Calibration (same run, same data)\n\n");
    fprintf(f, "One thread, thread CPU time, on a %.0f MiB sample filled "
            "as the guest's RAM (%.1f%% zero pages, left out as the engine "
            "leaves them out); memcpy %.0f MB/s and first touch of fresh "
            "memory %.0f MB/s (one thread); CPU bound = %u cores / "
            "(normal-page fraction x (1/compress + 1/decompress)), in RAM "
            "MB/s; with first touch: the same with the destination's first "
            "touch of its RAM added to the per-byte cost (none: two copies "
            "and the first touch).\n\n",
            (double)k->sample_bytes / 1048576, 100 * k->zero_fraction,
            k->memcpy_MBps, k->touch_MBps, k->cores);
    fprintf(f, "| method | level | ratio | compress (MB/s) | decompress "
            "(MB/s) | CPU bound (RAM MB/s) | with first touch | back end "
            "|\n");
    fprintf(f, "|---|--:|--:|--:|--:|--:|--:|---|\n");
    for (unsigned m = 0; m < b->cfg.nmethods; m++) {
        const RfBenchCodec *c = &k->codec[m];
        char lvl[16] = "–";
        if (c->level >= 0) {
            snprintf(lvl, sizeof(lvl), "%d", c->level);
        }
        if (!c->ok && !strcmp(b->cfg.methods[m], RF_BENCH_AUTO_NAME)) {
            fprintf(f, "| %s | – | – | – | – | – | – | %s |\n",
                    b->cfg.methods[m], c->error);
            continue;
        }
        if (!c->ok) {
            fprintf(f, "| %s | %s | failed: %s | | | | | |\n",
                    b->cfg.methods[m], lvl, c->error);
            continue;
        }
        if (c->cpu_bound_MBps <= 0) {
            fprintf(f, "| %s | %s | %.2f | – | – | – | %.0f | %s |\n",
                    b->cfg.methods[m], lvl, c->ratio, c->touch_bound_MBps,
                    c->detail);
            continue;
        }
        fprintf(f, "| %s | %s | %.2f | %.0f | %.0f | %.0f | %.0f | %s |\n",
                b->cfg.methods[m], lvl, c->ratio, c->comp_MBps,
                c->decomp_MBps, c->cpu_bound_MBps, c->touch_bound_MBps,
                c->detail);
    }
    fprintf(f, "\n| link | streams | raw TCP (Mbit/s) |\n|---|--:|--:|\n");
    for (unsigned l = 0; l < b->cfg.nlinks; l++) {
        for (unsigned c = 0; c < b->cfg.nchannels; c++) {
            double v = k->tcp_mbps[l][c];
            if (v > 0) {
                fprintf(f, "| %s | %u | %.0f |\n", b->cfg.links[l].name,
                        b->cfg.channels[c], v);
            } else {
                fprintf(f, "| %s | %u | not measured |\n",
                        b->cfg.links[l].name, b->cfg.channels[c]);
            }
        }
    }
    fprintf(f, "\n");
}

/* Did other processes use the CPUs (over 30% of a core on average)
 * during a run of this row? */
static bool row_shared(const RfBenchRow *r)
{
    for (unsigned k = 0; k < r->nruns; k++) {
        if (r->runs[k].ok && r->runs[k].other_cpu > 30) {
            return true;
        }
    }
    return false;
}

static void print_row(FILE *f, const RfBench *b, const RfBenchRow *r)
{
    char m[64];
    rf_bench_row_name(b, r, m, sizeof(m));
    if (r->nok == 0) {
        fprintf(f, "| %s | %u | %s | – | – | – | – | – | – | no "
                "| – | – | – |\n", m, r->channels,
                r->nruns ? "FAILED" : "not run");
        return;
    }
    char t[64], mb[64], dt[64], bound[32] = "–", eff[16] = "–",
        efft[16] = "–";
    if (r->bound_touch_MBps > 0) {
        snprintf(efft, sizeof(efft), "%.0f%%", 100 * r->efficiency_touch);
    }
    if (r->bound_MBps > 0) {
        snprintf(bound, sizeof(bound), "%s %.0f", r->bound_kind,
                 r->bound_MBps);
        snprintf(eff, sizeof(eff), "%.0f%%%s", 100 * r->efficiency,
                 row_shared(r) ? "*" : "");
    }
    fprintf(f, "| %s | %u | %s | %s | %.0f | %.1f | %.1f | %s | %.2f | %s "
            "| %s | %s | %s |\n", m, r->channels,
            fmt_stat(t, sizeof(t), r->time, r->nok, 2),
            fmt_stat(mb, sizeof(mb), r->mbps, r->nok, 0), r->pps.med,
            r->send_cpu.med, r->recv_cpu.med,
            fmt_stat(dt, sizeof(dt), r->downtime, r->nok, 1), r->ratio.med,
            r->verified ? "yes" : "no", bound, eff, efft);
}

/* The TLS mode of a row ("user-space TLS", "kernel TLS": the end of the
 * reports' "security"), from its runs on both sides; "A / B" when they
 * differ, "" when no run reported one. */
static void tls_mode(const RfBenchRow *r, char *buf, size_t cap)
{
    buf[0] = '\0';
    for (unsigned k = 0; k < r->nruns; k++) {
        const char *sides[] = {r->runs[k].security, r->runs[k].dst_security};
        for (int i = 0; i < 2; i++) {
            const char *comma = strrchr(sides[i], ',');
            const char *mode = comma ? comma + 2 : sides[i];
            if (!mode[0] || !strcmp(mode, "none") || strstr(buf, mode)) {
                continue;
            }
            size_t n = strlen(buf);
            snprintf(buf + n, cap - n, "%s%s", n ? " / " : "", mode);
        }
    }
}

/* The ratio y time / x time of every pair of runs (x run k, y run k, run
 * back to back) where both completed: their min and max in *s, each
 * appended to arr if not NULL.  @return how many pairs. */
static unsigned run_ratios(const RfBenchRun *xs, unsigned nx,
                           const RfBenchRun *ys, unsigned ny, RfBenchStat *s,
                           json_t *arr)
{
    unsigned n = 0;
    for (unsigned k = 0; k < nx && k < ny; k++) {
        const RfBenchRun *x = &xs[k], *y = &ys[k];
        if (!x->ok || !y->ok || x->total_time_s <= 0) {
            continue;
        }
        double v = y->total_time_s / x->total_time_s;
        s->min = n == 0 || v < s->min ? v : s->min;
        s->max = n == 0 || v > s->max ? v : s->max;
        n++;
        if (arr) {
            json_array_append_new(arr, json_real(v));
        }
    }
    return n;
}

/* TLS time / plaintext time of every pair of runs of a row and its TLS
 * twin. */
static unsigned pair_ratios(const RfBenchRow *p, const RfBenchRow *t,
                            RfBenchStat *s, json_t *arr)
{
    return run_ratios(p->runs, p->nruns, t->runs, t->nruns, s, arr);
}

/* The destination's mode over the completed runs of rows: every run
 * gets a fresh process and fresh memory, which it pre-faults from the
 * handshake on ("dest_memory_warm") or touches during the transfer.
 * @return 1 if pre-faulted in every run, 0 in none, -1 if mixed, -2 if
 * no run completed. */
static int dest_prefaulted(const RfBenchRow *const *rows, unsigned n)
{
    unsigned yes = 0, all = 0;
    for (unsigned i = 0; i < n; i++) {
        for (unsigned k = 0; k < rows[i]->nruns; k++) {
            all += rows[i]->runs[k].ok;
            yes += rows[i]->runs[k].ok && rows[i]->runs[k].dest_warm;
        }
    }
    return !all ? -2 : yes == all ? 1 : yes == 0 ? 0 : -1;
}

static const char *prefault_text(int mode)
{
    return mode == 1 ? "pre-faulted from the handshake on"
         : mode == 0 ? "first touched during the transfer"
         : mode == -1 ? "WARNING: pre-faulted in some runs only"
                      : "no run completed";
}

static void print_tls_cost(FILE *f, const RfBench *b, unsigned l,
                           const char *desc)
{
    const RfBenchConfig *c = &b->cfg;
    unsigned per_link = rf_bench_per_link(c);
    const RfBenchRow *rows[RF_BENCH_MAX_METHODS * RF_BENCH_MAX_CHANNELS *
                          RF_BENCH_MAX_DEST * 2];
    for (unsigned i = 0; i < per_link; i++) {
        rows[i] = &b->rows[l * per_link + i];
    }
    fprintf(f, "### TLS cost, link %s: plaintext and TLS start cold the "
            "same way (a fresh destination process and fresh memory every "
            "run, %s), same image, runs interleaved\n\n", desc,
            prefault_text(dest_prefaulted(rows, per_link)));
    fprintf(f, "| method | channels | plain time (s) | TLS time (s) | "
            "TLS/plain | plain send CPU%% | TLS send CPU%% | plain recv "
            "CPU%% | TLS recv CPU%% | verified | TLS mode |\n");
    fprintf(f, "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|\n");
    for (unsigned i = 0; i < per_link; i += 2) {
        const RfBenchRow *p = rows[i], *t = rows[i + 1];
        char label[64];
        rf_bench_row_name(b, p, label, sizeof(label));
        char pt[64] = "FAILED", tt[64] = "FAILED", ratio[48] = "–",
             ps[16] = "–", ts[16] = "–", pr[16] = "–", tr[16] = "–",
             mode[96];
        if (p->nok) {
            fmt_stat(pt, sizeof(pt), p->time, p->nok, 2);
            snprintf(ps, sizeof(ps), "%.1f", p->send_cpu.med);
            snprintf(pr, sizeof(pr), "%.1f", p->recv_cpu.med);
        }
        if (t->nok) {
            fmt_stat(tt, sizeof(tt), t->time, t->nok, 2);
            snprintf(ts, sizeof(ts), "%.1f", t->send_cpu.med);
            snprintf(tr, sizeof(tr), "%.1f", t->recv_cpu.med);
        }
        if (p->nok && t->nok && p->time.med > 0) {
            RfBenchStat pr_s;
            unsigned npairs = pair_ratios(p, t, &pr_s, NULL);
            int n = snprintf(ratio, sizeof(ratio), "%.2f",
                             t->time.med / p->time.med);
            if (npairs > 1) {
                snprintf(ratio + n, sizeof(ratio) - (size_t)n,
                         " (%.2f–%.2f)", pr_s.min, pr_s.max);
            }
            if (row_shared(p) || row_shared(t)) {
                strcat(ratio, "*");
            }
        }
        tls_mode(t, mode, sizeof(mode));
        fprintf(f, "| %s | %u | %s | %s | %s | %s | %s | %s | %s | %s "
                "| %s |\n", label, p->channels, pt, tt, ratio,
                ps, ts, pr, tr, p->verified && t->verified ? "yes"
                                                           : "no",
                mode[0] ? mode : "–");
    }
    fprintf(f, "\nTLS/plain: median TLS time over median plaintext time; in "
            "brackets the lowest and highest ratio of a pair of runs "
            "(plaintext run k and TLS run k ran back to back); * as in the "
            "main table; TLS mode: what both processes reported "
            "(\"security\" in their JSON).\n\n");
}

/* "1.23 (0.9–1.4)": the ratio of the medians, and the lowest and
 * highest of the pairs of back-to-back runs. */
static void fmt_ratio(char *buf, size_t cap, double num, double den,
                      RfBenchStat pairs, unsigned npairs)
{
    int n = snprintf(buf, cap, "%.2f", num / den);
    if (npairs > 1 && n > 0 && (size_t)n < cap) {
        snprintf(buf + n, cap - (size_t)n, " (%.2f–%.2f)", pairs.min,
                 pairs.max);
    }
}

/* --compare qemu: each row against QEMU's runs of the same row. */
static void print_qemu_compare(FILE *f, const RfBench *b, unsigned l)
{
    const RfBenchConfig *c = &b->cfg;
    unsigned per_link = rf_bench_per_link(c);
    fprintf(f, "### ramflow vs QEMU %s (%s), same image, method, level, "
            "channels and destination mode, runs interleaved\n\n",
            c->qemu_version, c->qemu_accel);
    fprintf(f, "| method | channels | dest memory | ramflow time (s) | QEMU "
            "time (s) | ramflow / QEMU | ramflow CPU-s | QEMU CPU-s | CPU "
            "ramflow / QEMU | verified |\n");
    fprintf(f, "|---|--:|---|--:|--:|--:|--:|--:|--:|---|\n");
    for (unsigned i = 0; i < per_link; i++) {
        const RfBenchRow *r = &b->rows[l * per_link + i];
        const char *m = c->methods[r->method];
        char label[64], rt[64] = "FAILED", qt[64] = "FAILED", ratio[48] = "–",
             rc[16] = "–", qc[16] = "–", cratio[16] = "–";
        if (strcmp(m, r->qmethod) != 0) {
            snprintf(label, sizeof(label), "%s vs QEMU %s", m, r->qmethod);
        } else {
            snprintf(label, sizeof(label), "%s", m);
        }
        if (r->nok) {
            fmt_stat(rt, sizeof(rt), r->time, r->nok, 2);
            snprintf(rc, sizeof(rc), "%.2f", r->cpu_s.med);
        }
        if (r->nqok) {
            fmt_stat(qt, sizeof(qt), r->qtime, r->nqok, 2);
            snprintf(qc, sizeof(qc), "%.2f", r->qcpu_s.med);
        }
        if (r->nok && r->nqok && r->qtime.med > 0) {
            RfBenchStat ps = {0, 0, 0};
            unsigned np = run_ratios(r->qruns, r->nqruns, r->runs, r->nruns,
                                     &ps, NULL);
            fmt_ratio(ratio, sizeof(ratio), r->time.med, r->qtime.med, ps,
                      np);
            if (row_shared(r)) {
                strcat(ratio, "*");
            }
            if (r->qcpu_s.med > 0) {
                snprintf(cratio, sizeof(cratio), "%.2f",
                         r->cpu_s.med / r->qcpu_s.med);
            }
        }
        fprintf(f, "| %s | %u | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                label, r->channels, rf_bench_dest_name(c->dests[r->dest]),
                rt, qt, ratio, rc, qc, cratio,
                r->verified && r->qverified ? "yes" : "no");
    }
    fprintf(f, "\nramflow / QEMU: median ramflow time over median QEMU time "
            "(below 1: ramflow is faster); in brackets the lowest and "
            "highest ratio of a pair of runs (ramflow run k, then QEMU run "
            "k); CPU-s: CPU-seconds of source and destination together "
            "during the migration (ramflow: send + recv CPU%% x time from "
            "the reports; QEMU: utime + stime of both processes from "
            "/proc/PID/stat, from `migrate` to completion), median; QEMU "
            "has no software qatzip, so ramflow's qatzip is set against "
            "QEMU's zstd; verified: both tools' destinations equal the "
            "image in every run.\n\n");
}

/* Lists a row's failed runs (or runs whose destination differed), under
 * one "Failures:" heading for the whole output. */
static void print_failures(FILE *f, const RfBench *b, const RfBenchRow *r,
                           const RfBenchRun *runs, unsigned n,
                           const char *who, bool *failed)
{
    char name[64];
    rf_bench_row_name(b, r, name, sizeof(name));
    for (unsigned k = 0; k < n; k++) {
        if (!runs[k].ok || (!runs[k].verified && runs[k].error[0])) {
            fprintf(f, "%s- %s %s %u ch %srun %u failed: %s\n",
                    *failed ? "" : "\nFailures:\n\n",
                    b->cfg.links[r->link].name, name, r->channels, who,
                    k + 1, runs[k].error);
            *failed = true;
        }
    }
}

void rf_bench_print_markdown(FILE *f, const RfBench *b)
{
    print_header(f, b);
    print_calibration(f, b);
    unsigned per_link = rf_bench_per_link(&b->cfg);
    for (unsigned l = 0; l < b->cfg.nlinks; l++) {
        char desc[160];
        describe_link(b, l, desc, sizeof(desc));
        fprintf(f, "### Link: %s\n\n", desc);
        fprintf(f, "| method | channels | time (s) | throughput (Mbit/s) | "
                "pages/s | send CPU%% | recv CPU%% | downtime (ms) | ratio "
                "| verified | bound (RAM MB/s) | efficiency | with first "
                "touch |\n");
        fprintf(f, "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|"
                "\n");
        for (unsigned i = 0; i < per_link; i++) {
            print_row(f, b, &b->rows[l * per_link + i]);
        }
        fprintf(f, "\n");
        if (b->cfg.tls) {
            print_tls_cost(f, b, l, desc);
        }
        if (b->cfg.compare_qemu) {
            print_qemu_compare(f, b, l);
        }
    }
    fprintf(f, "time: handshake to completion (the source's report); "
            "throughput: bytes on the wire; CPU%%: each process, 100 = one "
            "core; bound: the lower of the link (raw TCP of the path with as "
            "many streams, times this row's page bytes per wire byte) and the "
            "CPU bound, in MB/s of guest pages; efficiency: pages/s x 4 KiB "
            "over the bound; with first touch: over the lower of the link and "
            "the CPU bound with first touch.\n");
    unsigned shared = 0, runs = 0;
    for (unsigned i = 0; i < b->nrows; i++) {
        for (unsigned k = 0; k < b->rows[i].nruns; k++) {
            const RfBenchRun *r = &b->rows[i].runs[k];
            runs += r->ok;
            shared += r->ok && r->other_cpu > 30;
        }
    }
    if (shared) {
        fprintf(f, "\n\\*: in %u of %u runs (rows marked), other "
                "processes used more than 30%% of a core on average besides "
                "the two ramflow processes (other_cpu_pct in results.json): "
                "their figures may be low.\n", shared, runs);
    }
    bool failed = false;
    for (unsigned i = 0; i < b->nrows; i++) {
        const RfBenchRow *r = &b->rows[i];
        print_failures(f, b, r, r->runs, r->nruns, "", &failed);
        print_failures(f, b, r, r->qruns, r->nqruns, "QEMU ", &failed);
    }
}

/* --- JSON ------------------------------------------------------------- */

static json_t *stat_json(RfBenchStat s)
{
    return json_pack("{s:f, s:f, s:f}", "median", s.med, "min", s.min,
                     "max", s.max);
}

static json_t *run_json(const RfBenchRun *r)
{
    json_t *o = json_pack(
        "{s:b, s:b, s:b, s:b, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f,"
        " s:f, s:I, s:I, s:I, s:I, s:I, s:i}",
        "ok", r->ok, "verified", r->verified, "converged", r->converged,
        "dest_memory_warm", r->dest_warm,
        "total_time_s", r->total_time_s, "setup_time_s", r->setup_time_s,
        "downtime_ms", r->downtime_ms,
        "dest_downtime_ms", r->dest_downtime_ms,
        "throughput_mbps", r->throughput_mbps, "pages_per_s", r->pages_per_s,
        "send_cpu_pct", r->send_cpu, "recv_cpu_pct", r->recv_cpu,
        "compression_ratio", r->ratio, "other_cpu_pct", r->other_cpu,
        "ram_bytes", (json_int_t)r->ram_bytes,
        "wire_bytes", (json_int_t)r->wire_bytes,
        "pages_sent", (json_int_t)r->pages_sent,
        "normal_pages", (json_int_t)r->normal_pages,
        "zero_pages", (json_int_t)r->zero_pages, "rounds", (int)r->rounds);
    if (o) {
        json_object_set_new(o, "cpu_s", json_real(r->cpu_s));
        json_object_set_new(o, "source_cores", r->src_cores >= 0
                                ? json_real(r->src_cores) : json_null());
        json_object_set_new(o, "security", json_string(r->security));
        json_object_set_new(o, "dest_security",
                            json_string(r->dst_security));
    }
    if (o && r->error[0]) {
        json_object_set_new(o, "error", json_string(r->error));
    }
    return o;
}

/* --dest-memory and --compare qemu: the row's destination mode and
 * QEMU's runs. */
static void row_json_files(const RfBench *b, const RfBenchRow *r, json_t *o)
{
    const RfBenchConfig *c = &b->cfg;
    if (!o || !c->ndests) {
        return;
    }
    json_object_set_new(o, "dest_memory",
                        json_string(rf_bench_dest_name(c->dests[r->dest])));
    json_object_set_new(o, "cpu_s", stat_json(r->cpu_s));
    if (!c->compare_qemu) {
        return;
    }
    json_t *runs = json_array();
    for (unsigned i = 0; i < r->nqruns; i++) {
        json_array_append_new(runs, run_json(&r->qruns[i]));
    }
    json_t *pairs = json_array();
    RfBenchStat unused;
    run_ratios(r->qruns, r->nqruns, r->runs, r->nruns, &unused, pairs);
    bool both = r->nok && r->nqok && r->qtime.med > 0;
    json_object_set_new(o, "qemu", json_pack(
        "{s:s, s:s, s:b, s:i, s:o, s:o, s:o, s:o, s:o}",
        "version", c->qemu_version, "method", r->qmethod,
        "verified", r->qverified, "runs_ok", (int)r->nqok,
        "total_time_s", stat_json(r->qtime), "cpu_s", stat_json(r->qcpu_s),
        "ratio", both ? json_real(r->time.med / r->qtime.med) : json_null(),
        "pair_ratios", pairs, "runs", runs));
}

static json_t *row_json(const RfBench *b, const RfBenchRow *r)
{
    json_t *runs = json_array();
    for (unsigned i = 0; i < r->nruns; i++) {
        json_array_append_new(runs, run_json(&r->runs[i]));
    }
    json_t *o = json_pack(
        "{s:s, s:s, s:i, s:b, s:b, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o,"
        " s:o, s:f, s:f, s:s?, s:f, s:f, s:f}",
        "link", b->cfg.links[r->link].name,
        "method", b->cfg.methods[r->method], "channels", (int)r->channels,
        "tls", r->tls,
        "verified", r->verified, "runs_ok", (int)r->nok,
        "total_time_s", stat_json(r->time),
        "throughput_mbps", stat_json(r->mbps),
        "pages_per_s", stat_json(r->pps),
        "send_cpu_pct", stat_json(r->send_cpu),
        "recv_cpu_pct", stat_json(r->recv_cpu),
        "downtime_ms", stat_json(r->downtime),
        "compression_ratio", stat_json(r->ratio),
        "runs", runs, "ram_MBps", r->ram_MBps, "bound_MBps", r->bound_MBps,
        "bound_kind", r->bound_kind, "efficiency", r->efficiency,
        "bound_touch_MBps", r->bound_touch_MBps,
        "efficiency_touch", r->efficiency_touch);
    row_json_files(b, r, o);
    return o;
}

static json_t *calib_json(const RfBench *b)
{
    const RfBenchCalib *k = &b->calib;
    json_t *codecs = json_array(), *tcp = json_array();
    for (unsigned m = 0; m < b->cfg.nmethods; m++) {
        const RfBenchCodec *c = &k->codec[m];
        json_t *o = json_pack(
            "{s:s, s:b, s:i, s:s, s:f, s:f, s:f, s:f, s:f}",
            "method", b->cfg.methods[m], "ok", c->ok, "level", c->level,
            "back_end", c->detail, "ratio", c->ratio,
            "compress_MBps", c->comp_MBps, "decompress_MBps", c->decomp_MBps,
            "cpu_bound_MBps", c->cpu_bound_MBps,
            "touch_bound_MBps", c->touch_bound_MBps);
        if (o && c->error[0]) {
            json_object_set_new(o, "error", json_string(c->error));
        }
        json_array_append_new(codecs, o);
    }
    for (unsigned l = 0; l < b->cfg.nlinks; l++) {
        for (unsigned c = 0; c < b->cfg.nchannels; c++) {
            json_array_append_new(tcp, json_pack(
                "{s:s, s:i, s:f}", "link", b->cfg.links[l].name, "streams",
                (int)b->cfg.channels[c], "mbps", k->tcp_mbps[l][c]));
        }
    }
    return json_pack("{s:i, s:I, s:f, s:f, s:f, s:o, s:o}", "cores",
                     (int)k->cores, "sample_bytes",
                     (json_int_t)k->sample_bytes, "zero_fraction",
                     k->zero_fraction, "memcpy_MBps", k->memcpy_MBps,
                     "first_touch_MBps", k->touch_MBps, "codecs", codecs,
                     "tcp", tcp);
}

static json_t *config_json(const RfBench *b)
{
    const RfBenchConfig *c = &b->cfg;
    json_t *methods = json_array(), *channels = json_array(),
           *links = json_array(), *params = json_array();
    for (unsigned i = 0; i < c->nmethods; i++) {
        json_array_append_new(methods, json_string(c->methods[i]));
    }
    for (unsigned i = 0; i < c->nchannels; i++) {
        json_array_append_new(channels, json_integer(c->channels[i]));
    }
    for (unsigned i = 0; i < c->nlinks; i++) {
        json_array_append_new(links, json_pack(
            "{s:s, s:I}", "name", c->links[i].name, "rate_bps",
            (json_int_t)c->links[i].rate_bps));
    }
    for (unsigned i = 0; i < c->npass; i++) {
        json_array_append_new(params, json_string(c->pass[i]));
    }
    json_t *o = json_pack(
        "{s:I, s:s?, s:o, s:o, s:o, s:i, s:b, s:I, s:i, s:s, s:f, s:b, "
        "s:o, s:b}",
        "memory_bytes", (json_int_t)c->mem_size, "fill", c->fill,
        "methods", methods, "channels", channels, "links", links,
        "repeat", (int)c->repeat, "live", c->live,
        "dirty_rate", (json_int_t)c->dirty_rate, "vcpus", (int)c->vcpus,
        "kind", c->kind, "delay_ms", c->delay_ms, "quick", c->quick,
        "params", params, "tls", c->tls);
    if (o) {
        json_object_set_new(o, "data", c->data_name
                                ? json_string(c->data_name)
                                : json_string(c->fill ? c->fill
                                                      : "generated"));
        json_object_set_new(o, "short_runs", json_integer(c->short_runs));
        json_object_set_new(o, "max_cpu", c->max_cpu > 0
                                ? json_real(c->max_cpu) : json_null());
    }
    if (o && c->ndests) {
        json_t *d = json_array();
        for (unsigned i = 0; i < c->ndests; i++) {
            json_array_append_new(d,
                                  json_string(rf_bench_dest_name(c->dests[i])));
        }
        json_object_set_new(o, "dest_memory", d);
        json_object_set_new(o, "memory_note", json_string(c->huge_note));
        json_object_set_new(o, "compare", json_string(c->compare_qemu
                                                      ? "qemu" : "none"));
        if (c->compare_qemu) {
            json_object_set_new(o, "qemu_version",
                                json_string(c->qemu_version));
            json_object_set_new(o, "qemu_accel", json_string(c->qemu_accel));
        }
    }
    return o;
}

/* The TLS cost table: each plaintext row against its TLS twin, with the
 * ratio of every pair of runs (plaintext run k, then TLS run k). */
static json_t *tls_cost_json(const RfBench *b)
{
    const RfBenchConfig *c = &b->cfg;
    json_t *a = json_array();
    for (unsigned l = 0; l < c->nlinks && c->tls; l++) {
        unsigned per_link = rf_bench_per_link(c);
        for (unsigned i = 0; i < per_link; i += 2) {
            const RfBenchRow *p = &b->rows[l * per_link + i];
            const RfBenchRow *t = p + 1;
            unsigned m = p->method;
            json_t *pairs = json_array();
            RfBenchStat unused;
            pair_ratios(p, t, &unused, pairs);
            char mode[96];
            tls_mode(t, mode, sizeof(mode));
            bool both = p->nok && t->nok && p->time.med > 0;
            json_array_append_new(a, json_pack(
                "{s:s, s:s, s:s?, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o,"
                " s:o, s:b, s:s, s:s}",
                "link", c->links[l].name, "method", c->methods[m],
                "dest_memory", c->ndests ? rf_bench_dest_name(
                    c->dests[p->dest]) : NULL,
                "channels", (int)p->channels,
                "plain_time_s", stat_json(p->time),
                "tls_time_s", stat_json(t->time),
                "ratio", both ? json_real(t->time.med / p->time.med)
                              : json_null(),
                "pair_ratios", pairs,
                "plain_send_cpu_pct", stat_json(p->send_cpu),
                "tls_send_cpu_pct", stat_json(t->send_cpu),
                "plain_recv_cpu_pct", stat_json(p->recv_cpu),
                "tls_recv_cpu_pct", stat_json(t->recv_cpu),
                "verified", p->verified && t->verified,
                "dest_prefaulted", (const char *[]){"no run", "mixed",
                    "none", "all"}[2 + dest_prefaulted(
                    (const RfBenchRow *const[]){p, t}, 2)],
                "tls_mode", mode));
        }
    }
    return a;
}

json_t *rf_bench_json(const RfBench *b)
{
    const RfBenchMachine *m = &b->machine;
    json_t *rows = json_array();
    for (unsigned i = 0; i < b->nrows; i++) {
        json_array_append_new(rows, row_json(b, &b->rows[i]));
    }
    json_t *machine = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:f, s:f, s:f, s:b, s:b, s:s, s:s, "
        "s:b}",
        "date", m->date, "cpu", m->cpu, "kernel", m->kernel, "os", m->os,
        "ramflow", m->version, "guest", m->guest, "memory_gib", m->mem_gib,
        "load1", m->load1, "load1_end", m->load1_end, "root", m->root,
        "kvm", m->kvm, "link_note", m->link_note, "tcp_available_ulp", m->ulps, "kernel_tls_ulp",
        m->ktls_ulp);
    return json_pack("{s:o, s:o, s:o, s:o, s:o}", "machine", machine,
                     "config", config_json(b), "calibration",
                     calib_json(b), "rows", rows, "tls_cost",
                     tls_cost_json(b));
}

bool rf_bench_write_json(const RfBench *b, const char *path,
                         RfError **errp)
{
    json_t *o = rf_bench_json(b);
    RfBench *self = (RfBench *)b;
    json_t *cmp = rf_bench_compare_json(&self, 1);
    json_t *budget = rf_bench_budget_json(&self, 1);
    if (o && cmp) {
        json_object_set_new(o, "auto_comparison", cmp);
        cmp = NULL;
    }
    if (o && budget) {
        json_object_set_new(o, "cpu_budget", budget);
        budget = NULL;
    }
    json_decref(cmp);
    json_decref(budget);
    if (!o || json_dump_file(o, path, JSON_INDENT(2)) != 0) {
        rf_error_set(errp, RF_ERR_IO, "cannot write %s", path);
        json_decref(o);
        return false;
    }
    json_decref(o);
    return true;
}
