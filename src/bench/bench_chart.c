/*
 * ramflow bench - the chart: for each link, three panels (time, send
 * CPU%, recv CPU%) of bars clustered by channel count, one bar per
 * method (with --tls two: plaintext, and TLS hatched), written by
 * gnuplot as chart.svg.  The data (chart-LINK.dat)
 * and the script (chart.gp) stay in the results folder, so the chart can
 * be redrawn or restyled by hand.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench_common.h"

/* Is gnuplot in PATH? */
static bool have_gnuplot(void)
{
    const char *path = getenv("PATH");
    char buf[PATH_MAX];
    for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
        size_t n = strcspn(p, ":");
        snprintf(buf, sizeof(buf), "%.*s/gnuplot", (int)n, p);
        if (access(buf, X_OK) == 0) {
            return true;
        }
        p += n + (p[n] == ':');
    }
    return false;
}

/* Bars per channel count: a method, or a method and its TLS twin, per
 * destination mode. */
static unsigned nseries(const RfBenchConfig *c)
{
    return c->nmethods * rf_bench_ndest(c) * (c->tls ? 2u : 1u);
}

/* The row of series k at channel index ch of link l. */
static const RfBenchRow *series_row(const RfBench *b, unsigned l,
                                    unsigned k, unsigned ch)
{
    unsigned nsec = b->cfg.tls ? 2u : 1u, nd = rf_bench_ndest(&b->cfg);
    return rf_bench_row(b, l, k / (nsec * nd), ch, (k / nsec) % nd,
                        k % nsec);
}

/* One data file per link: channels, then per series its median time,
 * send CPU% and recv CPU% ("NaN" for a failed row: no bar). */
static bool write_data(const RfBench *b, unsigned l, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        return false;
    }
    const RfBenchConfig *c = &b->cfg;
    unsigned ns = nseries(c);
    fprintf(f, "# channels; time_s x %u %s; send_cpu x %u; recv_cpu x %u\n",
            ns, c->tls ? "(method, method + TLS)" : "methods", ns, ns);
    for (unsigned ch = 0; ch < c->nchannels; ch++) {
        fprintf(f, "%u", c->channels[ch]);
        for (int what = 0; what < 3; what++) {
            for (unsigned k = 0; k < ns; k++) {
                const RfBenchRow *r = series_row(b, l, k, ch);
                double v = what == 0 ? r->time.med
                         : what == 1 ? r->send_cpu.med : r->recv_cpu.med;
                if (r->nok) {
                    fprintf(f, " %.4f", v);
                } else {
                    fprintf(f, " NaN");
                }
            }
        }
        fprintf(f, "\n");
    }
    return fclose(f) == 0;
}

/* Colours per method name, so that charts compare across runs. */
static const char *colour(const char *method)
{
    static const struct { const char *m, *c; } map[] = {
        {"none", "#7f7f7f"}, {"zlib", "#1f77b4"}, {"zstd", "#2ca02c"},
        {"qatzip", "#d62728"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (!strcmp(map[i].m, method)) {
            return map[i].c;
        }
    }
    return "#9467bd";
}

/* One panel of link l: a bar per method that has a measured row there
 * (gnuplot rejects a histogram column without a point). */
static void plot_panel(FILE *f, const RfBench *b, unsigned l,
                       const char *dat, int what, const char *title)
{
    const RfBenchConfig *c = &b->cfg;
    unsigned ns = nseries(c), shown = 0;
    fprintf(f, "set title '%s' noenhanced\n", title);
    fprintf(f, "set ylabel '%s'\n", what == 0 ? "seconds" : "% of one core");
    fprintf(f, "plot ");
    for (unsigned k = 0; k < ns; k++) {
        bool has = false;
        for (unsigned ch = 0; ch < c->nchannels; ch++) {
            has |= series_row(b, l, k, ch)->nok > 0;
        }
        if (!has) {
            continue;
        }
        const RfBenchRow *r = series_row(b, l, k, 0);
        char name[64];
        fprintf(f, "%s'%s' using %u%s title '%s' lc rgb '%s'%s",
                shown ? ", " : "", shown ? "" : dat, 2 + what * ns + k,
                shown ? "" : ":xtic(1)",
                rf_bench_row_name(b, r, name, sizeof(name)),
                colour(c->methods[r->method]),
                r->tls ? " fs pattern 4 border" : "");
        shown++;
    }
    fprintf(f, "\n");
}

bool rf_bench_write_chart(const RfBench *b, char *why, size_t cap)
{
    const RfBenchConfig *c = &b->cfg;
    if (!have_gnuplot()) {
        snprintf(why, cap, "gnuplot is not installed (Debian: "
                 "gnuplot-nox)");
        return false;
    }
    /* Links with at least one measured row: gnuplot refuses a panel
     * without a point. */
    unsigned per_link = rf_bench_per_link(c), nlinks = 0;
    bool shown[RF_BENCH_MAX_LINKS] = {false};
    for (unsigned i = 0; i < b->nrows; i++) {
        if (b->rows[i].nok && !shown[i / per_link]) {
            shown[i / per_link] = true;
            nlinks++;
        }
    }
    if (nlinks == 0) {
        snprintf(why, cap, "no row completed");
        return false;
    }
    char gp[PATH_MAX + 16], svg[PATH_MAX + 16];
    snprintf(gp, sizeof(gp), "%s/chart.gp", c->out_dir);
    snprintf(svg, sizeof(svg), "%s/chart.svg", c->out_dir);
    FILE *f = fopen(gp, "w");
    if (!f) {
        snprintf(why, cap, "cannot write %s", gp);
        return false;
    }
    unsigned w = 420 * 3, h = 300 * nlinks + 60;
    fprintf(f, "set terminal svg size %u,%u dynamic font 'sans,11' "
            "background rgb 'white'\n", w, h);
    fprintf(f, "set output '%s'\n", svg);
    char fill[64] = "generated mix";
    if (c->fill) {
        const char *slash = strrchr(c->fill, '/');
        const char *base = slash && slash[1] ? slash + 1 : c->fill;
        snprintf(fill, sizeof(fill), "%.40s", base);
        fill[strcspn(fill, "\"'\\")] = '\0'; /* no quotes in gnuplot */
    }
    fprintf(f, "set multiplot layout %u,3 title \"ramflow bench: %.0f MiB "
            "guest filled with %s, %s vCPUs, %u cores (median of %u)\" "
            "noenhanced\n", nlinks, (double)c->mem_size / 1048576, fill,
            c->live ? "writing" : "idle", b->calib.cores, c->repeat);
    fprintf(f, "set style data histograms\n"
               "set style histogram clustered gap 1\n"
               "set style fill solid 0.85 border -1\n"
               "set boxwidth 0.9\nset grid ytics\nset yrange [0:*]\n"
               "set offsets 0, 0, graph 0.18, 0\n"
               "set key top left horizontal samplen 1 width -1 font ',9'\n"
               "set xlabel 'channels'\n");
    for (unsigned l = 0; l < c->nlinks; l++) {
        if (!shown[l]) {
            continue;
        }
        char dat[PATH_MAX + 64], title[96];
        snprintf(dat, sizeof(dat), "%s/chart-%s.dat", c->out_dir,
                 c->links[l].name);
        if (!write_data(b, l, dat)) {
            fclose(f);
            snprintf(why, cap, "cannot write %s", dat);
            return false;
        }
        const char *names[] = {"time (s)", "send CPU%", "recv CPU%"};
        for (int what = 0; what < 3; what++) {
            snprintf(title, sizeof(title), "%s, link %s", names[what],
                     c->links[l].name);
            plot_panel(f, b, l, dat, what, title);
        }
    }
    return rf_bench_gnuplot_run(b, f, gp, svg, why, cap);
}

bool rf_bench_gnuplot_run(const RfBench *b, FILE *f, const char *gp,
                          const char *svg, char *why, size_t cap)
{
    fprintf(f, "unset multiplot\n");
    if (fclose(f) != 0) {
        snprintf(why, cap, "cannot write %s", gp);
        return false;
    }
    const char *argv[] = {"gnuplot", gp, NULL};
    if (rf_bench_cmd(b->log, argv) != 0 || access(svg, R_OK) != 0) {
        snprintf(why, cap, "gnuplot failed (see bench.log)");
        return false;
    }
    return true;
}
