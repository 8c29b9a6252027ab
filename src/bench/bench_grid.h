/*
 * ramflow bench - the grid of issue 13: data x guest sections around the
 * link x method x channels matrix, and the comparison of `auto` with the
 * best fixed method of every cell.
 *
 * Pure logic only (no processes, no files): option items, the choice of
 * a cell's best fixed method after the fact, verdicts, grid totals, the
 * CPU budget verdict, and the summary of the decision data `auto` puts
 * in its source report.  tests/unit/test_bench_grid.c tests all of it.
 *   bench_grid.c       items, cells, verdicts, totals, budget
 *   bench_auto_json.c  the "auto" object of a source report
 */
#ifndef RF_BENCH_GRID_H
#define RF_BENCH_GRID_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RF_BENCH_MAX_DATA 8
#define RF_BENCH_AUTO_NAME "auto"

/* --- the data dimension (--data) -------------------------------------- */

typedef enum RfBenchDataKind {
    RF_BENCH_DATA_GENERATED = 1, /* imagegen's mix, seed 1 (no --fill) */
    RF_BENCH_DATA_RANDOM,        /* incompressible pages */
    RF_BENCH_DATA_ZERO,          /* 80% zero pages, the rest the mix */
    RF_BENCH_DATA_SILESIA,       /* the Silesia members, repeated */
    RF_BENCH_DATA_PATH,          /* a file or folder, as --fill */
} RfBenchDataKind;

typedef struct RfBenchData {
    RfBenchDataKind kind;
    char name[40];               /* "generated", ..., or the path's base
                                    name: in tables and folder names */
    char path[PATH_MAX];         /* PATH: as given; RANDOM, ZERO, SILESIA:
                                    the fill made for this bench; GENERATED:
                                    "" (the guest's own generator) */
} RfBenchData;

/* Parses one --data item: "generated", "random", "zero", "silesia", or
 * anything else as a path (not checked here).  @return false for an
 * empty item or a path too long. */
bool rf_bench_parse_data(const char *s, RfBenchData *out);

/* Parses one --guest item: "idle" or "live". */
bool rf_bench_parse_guest(const char *s, bool *live);

/* Parses --max-cpu CORES: a decimal number of cores, above 0 and at most
 * 1024 ("0.5", "2").  @return false otherwise. */
bool rf_bench_parse_cores(const char *s, double *cores);

/* --- cells: auto against the best fixed method ------------------------ */

/* One cell (link x data x guest x channel count): per method of the
 * bench, its median total time, have[m] false when no run of it
 * completed.  auto_idx: the index of "auto", or -1. */
typedef struct RfBenchCell {
    int best;                    /* best fixed method, or -1 */
    double best_s, auto_s;       /* 0 when missing */
    double ratio;                /* auto_s / best_s, 0 when unknown */
    const char *verdict;         /* rf_bench_verdict(ratio) */
} RfBenchCell;

/* The fixed method (any but auto_idx) with the lowest median time among
 * those with a result; ties go to the first listed.  @return its index,
 * or -1 if none has a result. */
int rf_bench_best_fixed(const double *med, const bool *have, unsigned n,
                        int auto_idx);

/* "within 5%" for ratio <= 1.05 (faster included), "within 10%" for
 * <= 1.10, "MISS" above, "-" when ratio <= 0 (a side is missing). */
const char *rf_bench_verdict(double ratio);

/* Fills *c from one cell's medians. */
void rf_bench_cell_compare(const double *med, const bool *have, unsigned n,
                           int auto_idx, RfBenchCell *c);

/* Sorts v[0..n) ascending. */
void rf_bench_sort(double *v, unsigned n);
/* Sorts v[0..n) and @return its median (the mean of the middle two for
 * an even n; 0 for n == 0). */
double rf_bench_median(double *v, unsigned n);

/* A 90% bootstrap interval of median(a) / median(b): both sides' runs
 * drawn again with replacement 2000 times, the ratio of the two medians
 * each time, and the 5th and 95th percentiles of those ratios.  The
 * draws use a fixed seed, so the same runs give the same interval.  Why:
 * a sub-second cell's runs spread by a fifth and more, and the medians
 * of 9 runs then differ by 5% from noise alone; the interval tells a
 * verdict the noise could have made from one it could not.
 * @return false (*lo = *hi = 0) when either side has fewer than 2 runs
 * or a time that is not above 0. */
bool rf_bench_ratio_interval(const double *a, unsigned na, const double *b,
                             unsigned nb, double *lo, double *hi);

/* How sure a verdict is, from the interval of auto/best: "clear" when
 * the whole interval lies on the verdict's side of its bounds (a pass:
 * hi <= 1.05; a miss: lo > 1.10), else "noise" (the interval reaches
 * across a bound: with other runs the verdict could differ), "-" when
 * there is no interval. */
const char *rf_bench_interval_word(double lo, double hi, const char *verdict);

/* Grid totals: per method, the sum of its median times over the cells
 * where every method has a result (so that each total covers the same
 * cells); med and have are ncells x n, row-major. */
typedef struct RfBenchTotals {
    double total[16];            /* per method; n <= 16 */
    unsigned counted;            /* cells summed */
    unsigned skipped;            /* cells left out: a method missing */
    unsigned within5, within10, miss; /* verdicts over the cells with both
                                         auto and a best fixed method */
    bool auto_beats_all;         /* counted > 0 and auto's total is below
                                    every fixed method's */
} RfBenchTotals;

void rf_bench_totals(const double *med, const bool *have, unsigned ncells,
                     unsigned n, int auto_idx, RfBenchTotals *t);

/* --- the CPU budget (--max-cpu) --------------------------------------- */

/* Cores used: CPU-seconds over wall seconds (0 when wall <= 0). */
double rf_bench_cores(double cpu_s, double wall_s);

/* "held" when cores <= budget, "EXCEEDED" above, "-" when cores is
 * unknown (< 0) or no budget was given (budget <= 0). */
const char *rf_bench_budget_verdict(double cores, double budget);

/* Cores used over [from, to] from a trace of cumulative CPU-seconds
 * cpu[i] sampled at times t[i] (ascending): from the first sample at or
 * after from to the last at or before to; their time difference in
 * *wall_s.  @return -1 when fewer than two samples fall in the window. */
double rf_bench_window_cores(const double *t, const double *cpu, size_t n,
                             double from, double to, double *wall_s);

/* --- auto's decision data (bench_auto_json.c) ------------------------- */

#define RF_BENCH_AUTO_CHOICES 12
#define RF_BENCH_AUTO_CHANNELS 8

/* What the "auto" object of one or more source reports says: bytes per
 * choice ("none", "zstd-1", ...) over all rounds, and for how long each
 * channel count was chosen. */
typedef struct RfBenchAutoSum {
    bool present;                /* some report had an "auto" object */
    unsigned nchoices;
    char choice[RF_BENCH_AUTO_CHOICES][24];
    double bytes[RF_BENCH_AUTO_CHOICES];
    unsigned nchan;
    unsigned chan[RF_BENCH_AUTO_CHANNELS];
    double chan_s[RF_BENCH_AUTO_CHANNELS]; /* seconds chosen */
    unsigned decisions, reports;
    double predicted_s, actual_s; /* summed over reports that have both */
    unsigned npredicted;
} RfBenchAutoSum;

struct json_t;

/* Reads the "auto" object of a source report (the top-level object) into
 * *out, defensively: missing or mistyped members are skipped, an absent
 * object leaves out->present false.  Decisions are ordered by "t"; each
 * holds until the next one, the last until "actual_s" (when given). */
void rf_bench_auto_parse(struct json_t *report, RfBenchAutoSum *out);

/* Adds one report's summary to an accumulated one (a cell's runs). */
void rf_bench_auto_merge(RfBenchAutoSum *acc, const RfBenchAutoSum *r);

/* The choice with the most bytes and its share of all bytes (0..1);
 * @return NULL when no bytes were recorded. */
const char *rf_bench_auto_main(const RfBenchAutoSum *a, double *share);

/* The channel count chosen for the longest time, or 0 if unknown. */
unsigned rf_bench_auto_main_channels(const RfBenchAutoSum *a);

/* "zstd-1 72%, 4 ch, 5 decisions, predicted/actual 0.95", or "-" when
 * no report carried decision data. */
void rf_bench_auto_describe(const RfBenchAutoSum *a, char *buf, size_t cap);

#endif /* RF_BENCH_GRID_H */
