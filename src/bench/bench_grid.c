/*
 * ramflow bench - the grid's pure logic: --data, --guest and --max-cpu
 * items, a cell's best fixed method chosen after the fact, the verdict
 * on auto's ratio to it, the grid totals and the CPU budget verdict
 * (bench_grid.h).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_grid.h"

bool rf_bench_parse_data(const char *s, RfBenchData *out)
{
    static const struct {
        const char *name;
        RfBenchDataKind kind;
    } kw[] = {
        {"generated", RF_BENCH_DATA_GENERATED},
        {"random", RF_BENCH_DATA_RANDOM},
        {"zero", RF_BENCH_DATA_ZERO},
        {"silesia", RF_BENCH_DATA_SILESIA},
    };
    memset(out, 0, sizeof(*out));
    if (!s || !s[0] || strlen(s) >= sizeof(out->path)) {
        return false;
    }
    for (size_t i = 0; i < sizeof(kw) / sizeof(kw[0]); i++) {
        if (!strcmp(s, kw[i].name)) {
            out->kind = kw[i].kind;
            snprintf(out->name, sizeof(out->name), "%s", kw[i].name);
            return true;
        }
    }
    out->kind = RF_BENCH_DATA_PATH;
    snprintf(out->path, sizeof(out->path), "%s", s);
    /* The base name, trailing slashes ignored: "/dev/shm/silesia/" ->
     * "silesia". */
    size_t len = strlen(s);
    while (len > 1 && s[len - 1] == '/') {
        len--;
    }
    size_t start = len;
    while (start > 0 && s[start - 1] != '/') {
        start--;
    }
    size_t n = len - start;
    if (n == 0) {
        start = 0;
        n = len;
    }
    if (n >= sizeof(out->name)) {
        n = sizeof(out->name) - 1;
    }
    memcpy(out->name, s + start, n);
    out->name[n] = '\0';
    return true;
}

bool rf_bench_parse_guest(const char *s, bool *live)
{
    if (s && !strcmp(s, "idle")) {
        *live = false;
        return true;
    }
    if (s && !strcmp(s, "live")) {
        *live = true;
        return true;
    }
    return false;
}

bool rf_bench_parse_cores(const char *s, double *cores)
{
    if (!s || !s[0]) {
        return false;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    /* Decimal only: no hex, inf or nan from strtod. */
    if (errno || end == s || *end || !isfinite(v) || v <= 0 || v > 1024 ||
        strpbrk(s, "xXnN")) {
        return false;
    }
    *cores = v;
    return true;
}

int rf_bench_best_fixed(const double *med, const bool *have, unsigned n,
                        int auto_idx)
{
    int best = -1;
    for (unsigned m = 0; m < n; m++) {
        if ((int)m == auto_idx || !have[m] || med[m] <= 0) {
            continue;
        }
        if (best < 0 || med[m] < med[best]) {
            best = (int)m;
        }
    }
    return best;
}

const char *rf_bench_verdict(double ratio)
{
    if (ratio <= 0) {
        return "-";
    }
    /* A hair of slack so that 1.05 printed as "1.05" is within 5%. */
    if (ratio <= 1.05 + 1e-9) {
        return "within 5%";
    }
    if (ratio <= 1.10 + 1e-9) {
        return "within 10%";
    }
    return "MISS";
}

void rf_bench_cell_compare(const double *med, const bool *have, unsigned n,
                           int auto_idx, RfBenchCell *c)
{
    memset(c, 0, sizeof(*c));
    c->best = rf_bench_best_fixed(med, have, n, auto_idx);
    if (c->best >= 0) {
        c->best_s = med[c->best];
    }
    if (auto_idx >= 0 && (unsigned)auto_idx < n && have[auto_idx] &&
        med[auto_idx] > 0) {
        c->auto_s = med[auto_idx];
    }
    if (c->best_s > 0 && c->auto_s > 0) {
        c->ratio = c->auto_s / c->best_s;
    }
    c->verdict = rf_bench_verdict(c->ratio);
}

/* splitmix64: the draws of rf_bench_ratio_interval, seeded the same
 * every time. */
static uint64_t next_draw(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void rf_bench_sort(double *v, unsigned n)
{
    qsort(v, n, sizeof(*v), cmp_double);
}

double rf_bench_median(double *v, unsigned n)
{
    if (n == 0) {
        return 0;
    }
    rf_bench_sort(v, n);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The median of n values drawn with replacement from v (n <= MAX_DRAW). */
#define MAX_DRAW 64
static double drawn_median(const double *v, unsigned n, uint64_t *seed)
{
    double d[MAX_DRAW];
    for (unsigned i = 0; i < n; i++) {
        d[i] = v[next_draw(seed) % n];
    }
    return rf_bench_median(d, n);
}

#define DRAWS 2000

bool rf_bench_ratio_interval(const double *a, unsigned na, const double *b,
                             unsigned nb, double *lo, double *hi)
{
    *lo = *hi = 0;
    if (na < 2 || nb < 2 || na > MAX_DRAW || nb > MAX_DRAW) {
        return false;
    }
    for (unsigned i = 0; i < na; i++) {
        if (!(a[i] > 0)) {
            return false;
        }
    }
    for (unsigned i = 0; i < nb; i++) {
        if (!(b[i] > 0)) {
            return false;
        }
    }
    double r[DRAWS];
    uint64_t seed = 1;
    for (unsigned i = 0; i < DRAWS; i++) {
        r[i] = drawn_median(a, na, &seed) / drawn_median(b, nb, &seed);
    }
    rf_bench_sort(r, DRAWS);
    *lo = r[DRAWS / 20];
    *hi = r[DRAWS - 1 - DRAWS / 20];
    return true;
}

const char *rf_bench_interval_word(double lo, double hi, const char *verdict)
{
    if (!(lo > 0) || !(hi >= lo) || !verdict || !strcmp(verdict, "-")) {
        return "-";
    }
    if (!strcmp(verdict, "within 5%")) {
        return hi <= 1.05 ? "clear" : "noise";
    }
    if (!strcmp(verdict, "MISS")) {
        return lo > 1.10 ? "clear" : "noise";
    }
    /* within 10%: clear when the interval stays between the bounds */
    return lo > 1.05 && hi <= 1.10 ? "clear" : "noise";
}

void rf_bench_totals(const double *med, const bool *have, unsigned ncells,
                     unsigned n, int auto_idx, RfBenchTotals *t)
{
    memset(t, 0, sizeof(*t));
    unsigned cap = sizeof(t->total) / sizeof(t->total[0]);
    n = n > cap ? cap : n;
    for (unsigned c = 0; c < ncells; c++) {
        const double *cm = med + (size_t)c * n;
        const bool *ch = have + (size_t)c * n;
        RfBenchCell cell;
        rf_bench_cell_compare(cm, ch, n, auto_idx, &cell);
        if (cell.ratio > 0) {
            const char *v = cell.verdict;
            t->within5 += !strcmp(v, "within 5%");
            t->within10 += !strcmp(v, "within 10%");
            t->miss += !strcmp(v, "MISS");
        }
        bool all = true;
        for (unsigned m = 0; m < n; m++) {
            all = all && ch[m] && cm[m] > 0;
        }
        if (!all) {
            t->skipped++;
            continue;
        }
        t->counted++;
        for (unsigned m = 0; m < n; m++) {
            t->total[m] += cm[m];
        }
    }
    t->auto_beats_all = false;
    if (t->counted == 0 || auto_idx < 0 || (unsigned)auto_idx >= n) {
        return;
    }
    bool beats = true, any_fixed = false;
    for (unsigned m = 0; m < n; m++) {
        if ((int)m != auto_idx) {
            any_fixed = true;
            beats = beats && t->total[auto_idx] < t->total[m];
        }
    }
    t->auto_beats_all = beats && any_fixed;
}

double rf_bench_cores(double cpu_s, double wall_s)
{
    return wall_s > 0 && cpu_s >= 0 ? cpu_s / wall_s : 0;
}

const char *rf_bench_budget_verdict(double cores, double budget)
{
    if (budget <= 0 || cores < 0) {
        return "-";
    }
    return cores <= budget ? "held" : "EXCEEDED";
}

double rf_bench_window_cores(const double *t, const double *cpu, size_t n,
                             double from, double to, double *wall_s)
{
    size_t first = 0;
    while (first < n && t[first] < from) {
        first++;
    }
    size_t last = n;
    while (last > 0 && t[last - 1] > to) {
        last--;
    }
    *wall_s = 0;
    if (last == 0 || first >= last - 1) {
        return -1;
    }
    last--;
    double wall = t[last] - t[first];
    if (wall <= 0) {
        return -1;
    }
    *wall_s = wall;
    double used = cpu[last] - cpu[first];
    return (used > 0 ? used : 0) / wall;
}
