/*
 * ramflow bench - the --compare qemu chart: two panels (time, and
 * CPU-seconds of both sides together), a cluster per row (method,
 * channels, destination mode) with one bar for ramflow and one for QEMU,
 * written by gnuplot as chart-qemu.svg beside its data (chart-qemu.dat)
 * and script (chart-qemu.gp).  Loopback only, as --compare is.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_common.h"

/* Medians of each row of link 0: label, ramflow time, QEMU time, ramflow
 * CPU-s, QEMU CPU-s ("NaN": no successful run).  @return rows written. */
static unsigned write_data(const RfBench *b, const char *path, bool *ok)
{
    FILE *f = fopen(path, "w");
    *ok = f != NULL;
    if (!f) {
        return 0;
    }
    const RfBenchConfig *c = &b->cfg;
    unsigned per_link = rf_bench_per_link(c), shown = 0;
    fprintf(f, "# row; ramflow time_s; QEMU time_s; ramflow CPU-s; "
            "QEMU CPU-s\n");
    for (unsigned i = 0; i < per_link && i < b->nrows; i++) {
        const RfBenchRow *r = &b->rows[i];
        if (!r->nok && !r->nqok) {
            continue;
        }
        fprintf(f, "\"%s%s%s %uch %s\"", c->methods[r->method],
                strcmp(c->methods[r->method], r->qmethod) ? "/" : "",
                strcmp(c->methods[r->method], r->qmethod) ? r->qmethod : "",
                r->channels, rf_bench_dest_name(c->dests[r->dest]));
        double v[4] = {r->nok ? r->time.med : NAN,
                       r->nqok ? r->qtime.med : NAN,
                       r->nok ? r->cpu_s.med : NAN,
                       r->nqok ? r->qcpu_s.med : NAN};
        for (int k = 0; k < 4; k++) {
            if (isnan(v[k])) {
                fprintf(f, " NaN");
            } else {
                fprintf(f, " %.4f", v[k]);
            }
        }
        fprintf(f, "\n");
        shown++;
    }
    *ok = fclose(f) == 0;
    return shown;
}

bool rf_bench_write_qemu_chart(const RfBench *b, char *why, size_t cap)
{
    const RfBenchConfig *c = &b->cfg;
    char gp[PATH_MAX + 16], svg[PATH_MAX + 16], dat[PATH_MAX + 16];
    snprintf(gp, sizeof(gp), "%s/chart-qemu.gp", c->out_dir);
    snprintf(svg, sizeof(svg), "%s/chart-qemu.svg", c->out_dir);
    snprintf(dat, sizeof(dat), "%s/chart-qemu.dat", c->out_dir);
    bool ok;
    unsigned n = write_data(b, dat, &ok);
    if (!ok || n == 0) {
        snprintf(why, cap, ok ? "no row completed" : "cannot write %s", dat);
        return false;
    }
    FILE *f = fopen(gp, "w");
    if (!f) {
        snprintf(why, cap, "cannot write %s", gp);
        return false;
    }
    fprintf(f, "set terminal svg size %u,420 dynamic font 'sans,11' "
            "background rgb 'white'\n", 160 + 2 * 70 * n);
    fprintf(f, "set output '%s'\n", svg);
    fprintf(f, "set multiplot layout 1,2 title \"ramflow vs QEMU %s (%s): "
            "%.0f MiB image, loopback, median of %u, runs interleaved\" "
            "noenhanced\n", c->qemu_version, c->qemu_accel,
            (double)c->mem_size / 1048576, c->repeat);
    fprintf(f, "set style data histograms\n"
               "set style histogram clustered gap 1\n"
               "set style fill solid 0.85 border -1\n"
               "set boxwidth 0.9\nset grid ytics\nset yrange [0:*]\n"
               "set xtics rotate by -35 noenhanced font ',9'\n"
               "set key top left horizontal samplen 1\n");
    const char *titles[] = {"time (s)", "CPU-seconds, both sides"};
    for (int what = 0; what < 2; what++) {
        fprintf(f, "set title '%s'\n", titles[what]);
        fprintf(f, "plot '%s' using %d:xtic(1) title 'ramflow' lc rgb "
                "'#2ca02c', '' using %d title 'QEMU' lc rgb '#7f7f7f'\n",
                dat, 2 + 2 * what, 3 + 2 * what);
    }
    return rf_bench_gnuplot_run(b, f, gp, svg, why, cap);
}
