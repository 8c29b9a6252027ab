/*
 * ramflow bench - output for issue 13's targets: `auto` against the best
 * fixed method of every cell (link x data x guest x channel count,
 * chosen after the fact from the medians), the grid totals per method,
 * and with --max-cpu the source's CPU against the budget.  The choices
 * themselves are bench_grid.c's; this file lays them out as markdown and
 * JSON.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_common.h"

int rf_bench_auto_index(const RfBenchConfig *c)
{
    for (unsigned m = 0; m < c->nmethods; m++) {
        if (!strcmp(c->methods[m], RF_BENCH_AUTO_NAME)) {
            return (int)m;
        }
    }
    return -1;
}

const char *rf_bench_section_name(const RfBench *b, char *buf, size_t cap)
{
    const RfBenchConfig *c = &b->cfg;
    const char *data = c->data_name ? c->data_name
                                    : c->fill ? c->fill : "generated";
    snprintf(buf, cap, "%s, %s", data, c->live ? "live" : "idle");
    return buf;
}

/* One cell: a section's link, channel count and destination mode
 * (plaintext rows only: --tls twins are a cost table of their own). */
typedef struct Cell {
    const RfBench *b;
    unsigned link, ch, dest;
    double med[RF_BENCH_MAX_METHODS];
    bool have[RF_BENCH_MAX_METHODS];
    RfBenchCell cmp;
    const RfBenchRow *auto_row;
    double lo, hi; /* 90% interval of auto/best (rf_bench_ratio_interval) */
} Cell;

/* The total times of a row's completed runs. @return their count. */
static unsigned ok_times(const RfBenchRow *r, double *t)
{
    unsigned n = 0;
    for (unsigned i = 0; r && i < r->nruns; i++) {
        if (r->runs[i].ok) {
            t[n++] = r->runs[i].total_time_s;
        }
    }
    return n;
}

/* The interval of a cell whose auto and best fixed method both have
 * runs. */
static void interval_of(Cell *x, int ai)
{
    if (x->cmp.ratio <= 0 || x->cmp.best < 0 || ai < 0) {
        return;
    }
    double a[RF_BENCH_MAX_REPEAT], b[RF_BENCH_MAX_REPEAT];
    const RfBenchRow *br = rf_bench_row(x->b, x->link, (unsigned)x->cmp.best,
                                        x->ch, x->dest, false);
    rf_bench_ratio_interval(a, ok_times(x->auto_row, a), b, ok_times(br, b),
                            &x->lo, &x->hi);
}

/* Every cell of the sections, in section, link, channels, destination
 * order.  @return a malloc'd array (NULL when none), count in *n. */
static Cell *collect(RfBench *const *secs, unsigned nsecs, unsigned *n)
{
    *n = 0;
    unsigned cap = 0;
    for (unsigned s = 0; s < nsecs; s++) {
        const RfBenchConfig *c = &secs[s]->cfg;
        cap += secs[s]->rows ? c->nlinks * c->nchannels * rf_bench_ndest(c)
                             : 0;
    }
    Cell *cells = cap ? calloc(cap, sizeof(*cells)) : NULL;
    for (unsigned s = 0; s < nsecs && cells; s++) {
        const RfBench *b = secs[s];
        const RfBenchConfig *c = &b->cfg;
        int ai = rf_bench_auto_index(c);
        for (unsigned l = 0; l < c->nlinks && b->rows; l++) {
            for (unsigned ch = 0; ch < c->nchannels; ch++) {
                for (unsigned d = 0; d < rf_bench_ndest(c); d++) {
                    Cell *x = &cells[(*n)++];
                    x->b = b;
                    x->link = l;
                    x->ch = ch;
                    x->dest = d;
                    for (unsigned m = 0; m < c->nmethods; m++) {
                        const RfBenchRow *r = rf_bench_row(b, l, m, ch, d,
                                                           false);
                        x->have[m] = r->nok > 0;
                        x->med[m] = r->time.med;
                        if ((int)m == ai) {
                            x->auto_row = r;
                        }
                    }
                    rf_bench_cell_compare(x->med, x->have, c->nmethods, ai,
                                          &x->cmp);
                    interval_of(x, ai);
                }
            }
        }
    }
    return cells;
}

static void cell_label(const Cell *x, char *buf, size_t cap)
{
    const RfBenchConfig *c = &x->b->cfg;
    char sec[96];
    rf_bench_section_name(x->b, sec, sizeof(sec));
    char *comma = strrchr(sec, ',');
    *comma = '\0';
    snprintf(buf, cap, "| %s | %s | %s | %u%s%s", c->links[x->link].name,
             sec, comma + 2, c->channels[x->ch], c->ndests ? ", " : "",
             c->ndests ? rf_bench_dest_name(c->dests[x->dest]) : "");
}

/* The totals over all cells (bench_grid.c). */
static void totals_of(const Cell *cells, unsigned n, unsigned nm, int ai,
                      RfBenchTotals *t)
{
    double *med = calloc((size_t)n * nm + 1, sizeof(*med));
    bool *have = calloc((size_t)n * nm + 1, sizeof(*have));
    if (!med || !have) {
        memset(t, 0, sizeof(*t));
    } else {
        for (unsigned i = 0; i < n; i++) {
            memcpy(med + (size_t)i * nm, cells[i].med, nm * sizeof(*med));
            memcpy(have + (size_t)i * nm, cells[i].have, nm * sizeof(*have));
        }
        rf_bench_totals(med, have, n, nm, ai, t);
    }
    free(med);
    free(have);
}

void rf_bench_print_compare(FILE *f, RfBench *const *secs, unsigned nsecs)
{
    if (!nsecs || rf_bench_auto_index(&secs[0]->cfg) < 0) {
        return;
    }
    const RfBenchConfig *c0 = &secs[0]->cfg;
    int ai = rf_bench_auto_index(c0);
    unsigned n;
    Cell *cells = collect(secs, nsecs, &n);
    unsigned clear[2] = {0, 0}; /* clear passes (within 5%), clear misses */
    fprintf(f, "### auto against the best fixed method of each cell\n\n");
    fprintf(f, "| link | data | guest | channels | best fixed | best time "
            "(s) | auto time (s) | auto/best | 90%% interval | verdict | "
            "auto mostly used |\n");
    fprintf(f, "|---|---|---|--:|---|--:|--:|--:|--:|---|---|\n");
    for (unsigned i = 0; i < n; i++) {
        const Cell *x = &cells[i];
        char label[256], best[32] = "-", bt[32] = "-", at[32] = "-",
             ratio[32] = "-", iv[48] = "-", used[160];
        cell_label(x, label, sizeof(label));
        if (x->cmp.best >= 0) {
            snprintf(best, sizeof(best), "%s",
                     x->b->cfg.methods[x->cmp.best]);
            snprintf(bt, sizeof(bt), "%.2f", x->cmp.best_s);
        }
        if (x->cmp.auto_s > 0) {
            snprintf(at, sizeof(at), "%.2f", x->cmp.auto_s);
        } else if (x->auto_row && x->auto_row->nruns) {
            snprintf(at, sizeof(at), "FAILED");
        }
        if (x->cmp.ratio > 0) {
            snprintf(ratio, sizeof(ratio), "%.3f", x->cmp.ratio);
        }
        if (x->lo > 0) {
            snprintf(iv, sizeof(iv), "%.3f-%.3f", x->lo, x->hi);
        }
        const char *sure = rf_bench_interval_word(x->lo, x->hi,
                                                  x->cmp.verdict);
        if (!strcmp(sure, "clear") && strcmp(x->cmp.verdict, "within 10%")) {
            clear[!strcmp(x->cmp.verdict, "MISS")]++;
        }
        rf_bench_auto_describe(&x->auto_row->autosum, used, sizeof(used));
        fprintf(f, "%s | %s | %s | %s | %s | %s | %s%s%s | %s |\n", label,
                best, bt, at, ratio, iv, x->cmp.verdict,
                strcmp(sure, "-") ? ", " : "", strcmp(sure, "-") ? sure : "",
                used);
    }
    RfBenchTotals t;
    totals_of(cells, n, c0->nmethods, ai, &t);
    fprintf(f, "\n| method | grid total (s) | auto / method |\n"
            "|---|--:|--:|\n");
    for (unsigned m = 0; m < c0->nmethods && t.counted; m++) {
        char r[32] = "–";
        if ((int)m != ai && t.total[m] > 0) {
            snprintf(r, sizeof(r), "%.3f", t.total[ai] / t.total[m]);
        }
        fprintf(f, "| %s | %.2f | %s |\n", c0->methods[m], t.total[m], r);
    }
    if (!t.counted) {
        fprintf(f, "| (no cell where every method has a result) | – | – "
                "|\n");
    }
    if (t.counted) {
        fprintf(f, "\nGrid totals over %u cell%s%s: auto %s every fixed "
                "method's total.", t.counted, t.counted == 1 ? "" : "s",
                t.skipped ? " (cells where a method has no result are left "
                            "out of every total)" : "",
                t.auto_beats_all ? "BEATS" : "does NOT beat");
    } else {
        fprintf(f, "\nNo grid totals: no cell where every method has a "
                "result.");
    }
    fprintf(f, "  Cells with auto and a fixed method: %u within 5%%, %u "
            "within 10%%, %u MISS (target: every cell within 5%%, none above "
            "1.10); %u cell%s left out of the totals.  Clear within 5%% "
            "(the whole 90%% interval at or below 1.05): %u; clear misses "
            "(the whole interval above 1.10): %u.\n\n", t.within5,
            t.within10, t.miss, t.skipped, t.skipped == 1 ? "" : "s",
            clear[0], clear[1]);
    fprintf(f, "Cell: one link x data x guest x channel count; times are "
            "the medians of the cell's runs (total time, handshake to "
            "completion); best fixed: the fixed method with the lowest "
            "median, chosen after the fact; verdict: auto/best <= 1.05 "
            "\"within 5%%\", <= 1.10 \"within 10%%\", else \"MISS\"; 90%% "
            "interval: of auto/best, from the cell's runs drawn again with "
            "replacement (bootstrap, 2000 draws, fixed seed); \"clear\" "
            "after the verdict: the whole interval lies on the verdict's "
            "side of its bounds, \"noise\": it reaches across one, so "
            "other runs could give another verdict; auto "
            "mostly used: from the \"auto\" object of auto's source "
            "reports: the choice that carried the most bytes and its "
            "share, the channel count chosen for the longest time, the "
            "number of decisions, and predicted over actual time (\"-\": "
            "no decision data in the reports).\n\n");
    free(cells);
}

json_t *rf_bench_compare_json(RfBench *const *secs, unsigned nsecs)
{
    if (!nsecs || rf_bench_auto_index(&secs[0]->cfg) < 0) {
        return NULL;
    }
    const RfBenchConfig *c0 = &secs[0]->cfg;
    int ai = rf_bench_auto_index(c0);
    unsigned n;
    Cell *cells = collect(secs, nsecs, &n);
    json_t *arr = json_array();
    for (unsigned i = 0; i < n; i++) {
        const Cell *x = &cells[i];
        const RfBenchConfig *c = &x->b->cfg;
        const RfBenchAutoSum *a = &x->auto_row->autosum;
        double share = 0;
        const char *main = rf_bench_auto_main(a, &share);
        unsigned mch = rf_bench_auto_main_channels(a);
        json_t *times = json_object();
        for (unsigned m = 0; m < c->nmethods; m++) {
            json_object_set_new(times, c->methods[m], x->have[m]
                                    ? json_real(x->med[m]) : json_null());
        }
        json_t *o = json_pack(
            "{s:s, s:s, s:s, s:i, s:s?, s:s?, s:o, s:o, s:o, s:s, s:o}",
            "link", c->links[x->link].name,
            "data", c->data_name ? c->data_name
                                 : c->fill ? c->fill : "generated",
            "guest", c->live ? "live" : "idle",
            "channels", (int)c->channels[x->ch],
            "dest_memory", c->ndests ? rf_bench_dest_name(c->dests[x->dest])
                                     : NULL,
            "best_fixed", x->cmp.best >= 0 ? c->methods[x->cmp.best] : NULL,
            "best_time_s", x->cmp.best_s > 0 ? json_real(x->cmp.best_s)
                                             : json_null(),
            "auto_time_s", x->cmp.auto_s > 0 ? json_real(x->cmp.auto_s)
                                             : json_null(),
            "ratio", x->cmp.ratio > 0 ? json_real(x->cmp.ratio)
                                      : json_null(),
            "verdict", x->cmp.verdict, "median_time_s", times);
        json_object_set_new(o, "ratio_interval90", x->lo > 0
            ? json_pack("[f, f]", x->lo, x->hi) : json_null());
        json_object_set_new(o, "verdict_sure", json_string(
            rf_bench_interval_word(x->lo, x->hi, x->cmp.verdict)));
        json_object_set_new(o, "auto_used", !a->present ? json_null()
            : json_pack("{s:s?, s:f, s:o, s:i, s:o}",
                        "choice", main, "share", share,
                        "channels", mch ? json_integer(mch) : json_null(),
                        "decisions", (int)a->decisions,
                        "predicted_over_actual",
                        a->npredicted && a->actual_s > 0
                            ? json_real(a->predicted_s / a->actual_s)
                            : json_null()));
        json_array_append_new(arr, o);
    }
    RfBenchTotals t;
    totals_of(cells, n, c0->nmethods, ai, &t);
    json_t *tot = json_object();
    for (unsigned m = 0; m < c0->nmethods; m++) {
        json_object_set_new(tot, c0->methods[m], t.counted
                                ? json_real(t.total[m]) : json_null());
    }
    free(cells);
    return json_pack("{s:o, s:o, s:i, s:i, s:b, s:i, s:i, s:i}",
                     "cells", arr, "total_time_s", tot,
                     "cells_counted", (int)t.counted,
                     "cells_left_out", (int)t.skipped,
                     "auto_beats_every_fixed_total", t.auto_beats_all,
                     "within_5pct", (int)t.within5,
                     "within_10pct", (int)t.within10, "miss", (int)t.miss);
}

/* The row's worst (highest) source figure over its runs; -1 if none. */
static double worst_cores(const RfBenchRow *r)
{
    double w = -1;
    for (unsigned k = 0; k < r->nruns; k++) {
        if (r->runs[k].ok && r->runs[k].src_cores > w) {
            w = r->runs[k].src_cores;
        }
    }
    return w;
}

void rf_bench_print_budget(FILE *f, RfBench *const *secs, unsigned nsecs)
{
    if (!nsecs || secs[0]->cfg.max_cpu <= 0) {
        return;
    }
    double budget = secs[0]->cfg.max_cpu;
    unsigned held = 0, exceeded = 0, unknown = 0;
    fprintf(f, "### CPU budget: --max-cpu %s on both sides\n\n",
            secs[0]->cfg.max_cpu_arg);
    fprintf(f, "| link | data | guest | method | channels | source cores "
            "(median) | source cores (highest run) | send CPU%% (report) "
            "| budget | verdict |\n");
    fprintf(f, "|---|---|---|---|--:|--:|--:|--:|--:|---|\n");
    for (unsigned s = 0; s < nsecs; s++) {
        const RfBench *b = secs[s];
        char sec[96];
        rf_bench_section_name(b, sec, sizeof(sec));
        char *comma = strrchr(sec, ',');
        *comma = '\0';
        for (unsigned i = 0; i < b->nrows && b->rows; i++) {
            const RfBenchRow *r = &b->rows[i];
            char name[64], med[32] = "-", hi[32] = "-", send[32] = "-";
            double w = worst_cores(r);
            const char *v = rf_bench_budget_verdict(w, budget);
            rf_bench_row_name(b, r, name, sizeof(name));
            if (r->nsrc_cores) {
                snprintf(med, sizeof(med), "%.2f", r->src_cores.med);
                snprintf(hi, sizeof(hi), "%.2f", w);
            }
            if (r->nok) {
                snprintf(send, sizeof(send), "%.1f", r->send_cpu.med);
            }
            held += !strcmp(v, "held");
            exceeded += !strcmp(v, "EXCEEDED");
            unknown += !strcmp(v, "-");
            fprintf(f, "| %s | %s | %s | %s | %u | %s | %s | %s | %s | %s "
                    "|\n", b->cfg.links[r->link].name, sec, comma + 2, name,
                    r->channels, med, hi, send, b->cfg.max_cpu_arg, v);
        }
    }
    fprintf(f, "\nBudget %s cores: held in %u row%s, EXCEEDED in %u, "
            "unknown in %u.  Source cores: utime + stime of the source "
            "process from /proc/PID/stat, sampled every 20 ms, over the "
            "last total-time seconds before its report (the whole process: "
            "a live guest's vCPU threads count too), divided by those "
            "seconds; verdict on the highest run; send CPU%%: what the "
            "source itself reports for its migration threads.\n\n",
            secs[0]->cfg.max_cpu_arg, held, held == 1 ? "" : "s", exceeded,
            unknown);
}

json_t *rf_bench_budget_json(RfBench *const *secs, unsigned nsecs)
{
    if (!nsecs || secs[0]->cfg.max_cpu <= 0) {
        return NULL;
    }
    double budget = secs[0]->cfg.max_cpu;
    json_t *rows = json_array();
    for (unsigned s = 0; s < nsecs; s++) {
        const RfBench *b = secs[s];
        const RfBenchConfig *c = &b->cfg;
        for (unsigned i = 0; i < b->nrows && b->rows; i++) {
            const RfBenchRow *r = &b->rows[i];
            double w = worst_cores(r);
            json_array_append_new(rows, json_pack(
                "{s:s, s:s, s:s, s:s, s:b, s:i, s:o, s:o, s:s}",
                "link", c->links[r->link].name,
                "data", c->data_name ? c->data_name
                                     : c->fill ? c->fill : "generated",
                "guest", c->live ? "live" : "idle",
                "method", c->methods[r->method], "tls", r->tls,
                "channels", (int)r->channels,
                "source_cores_median", r->nsrc_cores
                    ? json_real(r->src_cores.med) : json_null(),
                "source_cores_max", w >= 0 ? json_real(w) : json_null(),
                "verdict", rf_bench_budget_verdict(w, budget)));
        }
    }
    return json_pack("{s:f, s:o}", "max_cpu", budget, "rows", rows);
}
