/*
 * Unit tests of the bench grid's pure logic (src/bench/bench_grid.c,
 * bench_auto_json.c): --data/--guest/--max-cpu items, the best fixed
 * method of a cell, verdicts, grid totals, the budget verdict and the
 * summary of auto's decision data.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <string.h>

#include "bench/bench_grid.h"
#include "ramflow/ramflow.h"
#include "tools/imagegen.h"
#include <stdlib.h>

static void test_parse_data(void **state)
{
    (void)state;
    RfBenchData d;
    assert_true(rf_bench_parse_data("generated", &d));
    assert_int_equal(d.kind, RF_BENCH_DATA_GENERATED);
    assert_string_equal(d.name, "generated");
    assert_string_equal(d.path, "");
    assert_true(rf_bench_parse_data("random", &d));
    assert_int_equal(d.kind, RF_BENCH_DATA_RANDOM);
    assert_true(rf_bench_parse_data("zero", &d));
    assert_int_equal(d.kind, RF_BENCH_DATA_ZERO);
    assert_true(rf_bench_parse_data("silesia", &d));
    assert_int_equal(d.kind, RF_BENCH_DATA_SILESIA);
    /* Anything else is a path, named by its base name. */
    assert_true(rf_bench_parse_data("/dev/shm/silesia/", &d));
    assert_int_equal(d.kind, RF_BENCH_DATA_PATH);
    assert_string_equal(d.path, "/dev/shm/silesia/");
    assert_string_equal(d.name, "silesia");
    assert_true(rf_bench_parse_data("img.bin", &d));
    assert_int_equal(d.kind, RF_BENCH_DATA_PATH);
    assert_string_equal(d.name, "img.bin");
    assert_true(rf_bench_parse_data("/", &d));
    assert_string_equal(d.name, "/");
    /* Keywords are exact. */
    assert_true(rf_bench_parse_data("Random", &d));
    assert_int_equal(d.kind, RF_BENCH_DATA_PATH);
    assert_false(rf_bench_parse_data("", &d));
    assert_false(rf_bench_parse_data(NULL, &d));
}

static void test_parse_guest_and_cores(void **state)
{
    (void)state;
    bool live = true;
    assert_true(rf_bench_parse_guest("idle", &live));
    assert_false(live);
    assert_true(rf_bench_parse_guest("live", &live));
    assert_true(live);
    assert_false(rf_bench_parse_guest("busy", &live));
    assert_false(rf_bench_parse_guest("", &live));

    double c = 0;
    assert_true(rf_bench_parse_cores("0.5", &c));
    assert_true(c == 0.5);
    assert_true(rf_bench_parse_cores("2", &c));
    assert_true(c == 2);
    assert_false(rf_bench_parse_cores("0", &c));
    assert_false(rf_bench_parse_cores("-1", &c));
    assert_false(rf_bench_parse_cores("0.5x", &c));
    assert_false(rf_bench_parse_cores("0x1", &c));
    assert_false(rf_bench_parse_cores("nan", &c));
    assert_false(rf_bench_parse_cores("inf", &c));
    assert_false(rf_bench_parse_cores("2000", &c));
    assert_false(rf_bench_parse_cores("", &c));
    assert_true(c == 2); /* unchanged by the refusals */
}

static void test_best_fixed(void **state)
{
    (void)state;
    /* none, zstd, qatzip, auto */
    double med[] = {3.0, 1.5, 1.6, 1.0};
    bool have[] = {true, true, true, true};
    /* auto (index 3) is fastest but never the best fixed method. */
    assert_int_equal(rf_bench_best_fixed(med, have, 4, 3), 1);
    /* Without auto in the list, every method is fixed. */
    assert_int_equal(rf_bench_best_fixed(med, have, 4, -1), 3);
    /* A method without a result is not a candidate. */
    have[1] = false;
    assert_int_equal(rf_bench_best_fixed(med, have, 4, 3), 2);
    /* Ties go to the first listed. */
    double tie[] = {2.0, 2.0, 2.0};
    bool all[] = {true, true, true};
    assert_int_equal(rf_bench_best_fixed(tie, all, 3, 0), 1);
    /* No fixed result at all. */
    bool none[] = {false, false, false, true};
    assert_int_equal(rf_bench_best_fixed(med, none, 4, 3), -1);
    /* A zero time is no result. */
    double zero[] = {0.0, 4.0};
    bool both[] = {true, true};
    assert_int_equal(rf_bench_best_fixed(zero, both, 2, -1), 1);
}

static void test_verdict(void **state)
{
    (void)state;
    assert_string_equal(rf_bench_verdict(0.8), "within 5%");
    assert_string_equal(rf_bench_verdict(1.0), "within 5%");
    assert_string_equal(rf_bench_verdict(1.05), "within 5%");
    assert_string_equal(rf_bench_verdict(1.0501), "within 10%");
    assert_string_equal(rf_bench_verdict(1.10), "within 10%");
    assert_string_equal(rf_bench_verdict(1.1001), "MISS");
    assert_string_equal(rf_bench_verdict(3), "MISS");
    assert_string_equal(rf_bench_verdict(0), "-");
    /* The same boundaries from real division. */
    assert_string_equal(rf_bench_verdict(2.1 / 2.0), "within 5%");
    assert_string_equal(rf_bench_verdict(2.2 / 2.0), "within 10%");
}

static void test_cell_compare(void **state)
{
    (void)state;
    double med[] = {3.0, 2.0, 2.5, 2.2};
    bool have[] = {true, true, true, true};
    RfBenchCell c;
    rf_bench_cell_compare(med, have, 4, 3, &c);
    assert_int_equal(c.best, 1);
    assert_true(c.best_s == 2.0);
    assert_true(c.auto_s == 2.2);
    assert_true(c.ratio > 1.099 && c.ratio < 1.101);
    assert_string_equal(c.verdict, "within 10%");
    /* auto failed: no ratio, verdict "-", the best still named. */
    have[3] = false;
    rf_bench_cell_compare(med, have, 4, 3, &c);
    assert_int_equal(c.best, 1);
    assert_true(c.auto_s == 0 && c.ratio == 0);
    assert_string_equal(c.verdict, "-");
    /* No auto in the bench. */
    have[3] = true;
    rf_bench_cell_compare(med, have, 4, -1, &c);
    assert_int_equal(c.best, 1);
    assert_string_equal(c.verdict, "-");
}

static void test_ratio_interval(void **state)
{
    (void)state;
    double lo, hi, lo2, hi2;
    /* Every run the same: the interval is the one ratio. */
    double a[] = {1.2, 1.2, 1.2}, b[] = {1.0, 1.0, 1.0, 1.0};
    assert_true(rf_bench_ratio_interval(a, 3, b, 4, &lo, &hi));
    assert_true(lo > 1.1999 && lo < 1.2001 && hi > 1.1999 && hi < 1.2001);
    /* Spread runs, one side twice the other: an interval around 2. */
    double x[] = {0.08, 0.12, 0.09, 0.10, 0.11, 0.095, 0.105, 0.13, 0.085};
    double y[9];
    for (int i = 0; i < 9; i++) {
        y[i] = 2 * x[i];
    }
    assert_true(rf_bench_ratio_interval(y, 9, x, 9, &lo, &hi));
    assert_true(lo < 2.0 && hi > 2.0 && lo > 1.5 && hi < 2.6);
    /* The same sample against itself reaches below and above 1: a 9-run
     * median of a spread this wide is no better than a few percent. */
    assert_true(rf_bench_ratio_interval(x, 9, x, 9, &lo, &hi));
    assert_true(lo < 0.95 && hi > 1.05);
    /* The same runs give the same interval (a fixed seed). */
    assert_true(rf_bench_ratio_interval(x, 9, x, 9, &lo2, &hi2));
    assert_true(lo == lo2 && hi == hi2);
    /* Separated samples: the whole interval on one side. */
    double slow[] = {2.0, 2.05, 2.1, 2.02}, fast[] = {1.0, 1.05, 1.01};
    assert_true(rf_bench_ratio_interval(slow, 4, fast, 3, &lo, &hi));
    assert_true(lo > 1.85 && hi < 2.15);
    /* Too few runs, or a time that is not above 0: no interval. */
    assert_false(rf_bench_ratio_interval(a, 1, b, 4, &lo, &hi));
    assert_true(lo == 0 && hi == 0);
    double bad[] = {1.0, 0.0};
    assert_false(rf_bench_ratio_interval(a, 3, bad, 2, &lo, &hi));
}

static void test_interval_word(void **state)
{
    (void)state;
    assert_string_equal(rf_bench_interval_word(0.95, 1.04, "within 5%"),
                        "clear");
    assert_string_equal(rf_bench_interval_word(0.95, 1.07, "within 5%"),
                        "noise");
    assert_string_equal(rf_bench_interval_word(1.06, 1.09, "within 10%"),
                        "clear");
    assert_string_equal(rf_bench_interval_word(1.02, 1.09, "within 10%"),
                        "noise");
    assert_string_equal(rf_bench_interval_word(1.08, 1.14, "within 10%"),
                        "noise");
    assert_string_equal(rf_bench_interval_word(1.12, 1.3, "MISS"), "clear");
    assert_string_equal(rf_bench_interval_word(1.0, 1.3, "MISS"), "noise");
    assert_string_equal(rf_bench_interval_word(0, 0, "MISS"), "-");
    assert_string_equal(rf_bench_interval_word(1.0, 1.1, "-"), "-");
}

static void test_totals(void **state)
{
    (void)state;
    /* 3 cells x (none, zstd, auto). */
    double med[] = {
        4.0, 2.0, 2.0,  /* auto ties the best: within 5% */
        1.0, 3.0, 1.2,  /* 1.2: MISS */
        5.0, 5.0, 5.4,  /* 1.08: within 10% */
    };
    bool have[9];
    for (int i = 0; i < 9; i++) {
        have[i] = true;
    }
    RfBenchTotals t;
    rf_bench_totals(med, have, 3, 3, 2, &t);
    assert_int_equal(t.counted, 3);
    assert_int_equal(t.skipped, 0);
    assert_true(t.total[0] == 10.0);
    assert_true(t.total[1] == 10.0);
    assert_true(t.total[2] > 8.59 && t.total[2] < 8.61);
    assert_true(t.auto_beats_all);
    assert_int_equal(t.within5, 1);
    assert_int_equal(t.within10, 1);
    assert_int_equal(t.miss, 1);

    /* A cell where zstd failed is left out of every total, but still
     * has a verdict (against none). */
    have[4] = false;
    rf_bench_totals(med, have, 3, 3, 2, &t);
    assert_int_equal(t.counted, 2);
    assert_int_equal(t.skipped, 1);
    assert_true(t.total[0] == 9.0);
    assert_true(t.total[1] == 7.0);
    assert_true(t.total[2] > 7.39 && t.total[2] < 7.41);
    assert_false(t.auto_beats_all); /* 7.4 is not below zstd's 7.0 */
    assert_int_equal(t.miss, 1);

    /* Equal totals do not beat. */
    double eq[] = {2.0, 3.0, 2.0};
    bool h3[] = {true, true, true};
    rf_bench_totals(eq, h3, 1, 3, 2, &t);
    assert_false(t.auto_beats_all);
    /* Nothing counted: no claim. */
    bool none[] = {false, false, false};
    rf_bench_totals(eq, none, 1, 3, 2, &t);
    assert_int_equal(t.counted, 0);
    assert_false(t.auto_beats_all);
}

static void test_budget(void **state)
{
    (void)state;
    assert_true(rf_bench_cores(1.0, 2.0) == 0.5);
    assert_true(rf_bench_cores(1.0, 0) == 0);
    assert_string_equal(rf_bench_budget_verdict(0.48, 0.5), "held");
    assert_string_equal(rf_bench_budget_verdict(0.5, 0.5), "held");
    assert_string_equal(rf_bench_budget_verdict(0.51, 0.5), "EXCEEDED");
    assert_string_equal(rf_bench_budget_verdict(0.3, 0), "-");
    assert_string_equal(rf_bench_budget_verdict(-1, 0.5), "-");
}

static void test_window_cores(void **state)
{
    (void)state;
    /* Samples every 0.1 s; CPU grows 0.05 s per sample up to t = 1.0,
     * then 0.1 s per sample (one full core). */
    double t[21], cpu[21];
    for (int i = 0; i <= 20; i++) {
        t[i] = 0.1 * i;
        cpu[i] = i <= 10 ? 0.05 * i : 0.5 + 0.1 * (i - 10);
    }
    double wall;
    double c = rf_bench_window_cores(t, cpu, 21, 0.0, 1.0, &wall);
    assert_true(c > 0.499 && c < 0.501);
    assert_true(wall > 0.999 && wall < 1.001);
    c = rf_bench_window_cores(t, cpu, 21, 1.0, 2.0, &wall);
    assert_true(c > 0.999 && c < 1.001);
    /* Window ends between samples: the samples inside it. */
    c = rf_bench_window_cores(t, cpu, 21, 0.95, 1.55, &wall);
    assert_true(wall > 0.499 && wall < 0.501); /* 1.0 .. 1.5 */
    assert_true(c > 0.999 && c < 1.001);
    /* A window before the trace, or holding one sample: unknown. */
    assert_true(rf_bench_window_cores(t, cpu, 21, -2, -1, &wall) < 0);
    assert_true(rf_bench_window_cores(t, cpu, 21, 0.41, 0.49, &wall) < 0);
    assert_true(wall == 0);
    assert_true(rf_bench_window_cores(t, cpu, 0, 0, 1, &wall) < 0);
    /* A window wider than the trace: the whole trace. */
    c = rf_bench_window_cores(t, cpu, 21, -5, 50, &wall);
    assert_true(wall > 1.999 && wall < 2.001);
    assert_true(c > 0.749 && c < 0.751);
}

static bool page_zero(const uint8_t *p)
{
    for (unsigned i = 0; i < RF_PAGE_SIZE; i++) {
        if (p[i]) {
            return false;
        }
    }
    return true;
}

/* --data random and zero: the images (src/tools/imagegen_kinds.c). */
static void test_images(void **state)
{
    (void)state;
    const uint64_t size = 4u << 20; /* 1024 pages */
    uint8_t *a = malloc(size), *b = malloc(size), *mix = malloc(size);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(mix);
    /* Random: no zero page, the same for the same seed, not for
     * another. */
    assert_true(rf_image_generate_random(a, size, 1, NULL));
    assert_true(rf_image_generate_random(b, size, 1, NULL));
    assert_memory_equal(a, b, size);
    for (uint64_t p = 0; p < size / RF_PAGE_SIZE; p++) {
        assert_false(page_zero(a + p * RF_PAGE_SIZE));
    }
    assert_true(rf_image_generate_random(b, size, 2, NULL));
    assert_memory_not_equal(a, b, RF_PAGE_SIZE);
    /* Zero-heavy: pages 0-63 of every 80 zero, pages 64-79 the mix's. */
    assert_true(rf_image_generate_zero_heavy(a, size, 1, 2, NULL));
    assert_true(rf_image_generate(mix, size, 1, 1, NULL));
    unsigned zero = 0, n = (unsigned)(size / RF_PAGE_SIZE);
    for (unsigned p = 0; p < n; p++) {
        const uint8_t *pg = a + (size_t)p * RF_PAGE_SIZE;
        if (p % RF_IMAGE_ZERO_GROUP < RF_IMAGE_ZERO_RUN) {
            assert_true(page_zero(pg));
        } else {
            assert_memory_equal(pg, mix + (size_t)p * RF_PAGE_SIZE,
                                RF_PAGE_SIZE);
        }
        zero += page_zero(pg);
    }
    assert_true(zero >= n * 8 / 10); /* 80% and the mix's own */
    assert_true(zero < n);
    /* A size that is not whole pages is refused. */
    RfError *err = NULL;
    assert_false(rf_image_generate_random(a, 100, 1, &err));
    assert_non_null(err);
    rf_error_free(err);
    free(a);
    free(b);
    free(mix);
}

static json_t *load(const char *text)
{
    json_error_t e;
    json_t *o = json_loads(text, 0, &e);
    assert_non_null(o);
    return o;
}

static void test_auto_parse(void **state)
{
    (void)state;
    json_t *r = load(
        "{\"status\": \"completed\", \"auto\": {"
        " \"rounds\": ["
        "  {\"round\": 1, \"bytes\": {\"none\": 100, \"zstd-1\": 700},"
        "   \"packets\": {\"none\": 1, \"zstd-1\": 7}},"
        "  {\"round\": 2, \"bytes\": {\"zstd-1\": 100, \"zstd-3\": 100}}],"
        " \"decisions\": ["
        "  {\"t\": 0, \"choice\": \"zstd-1\", \"channels\": 2,"
        "   \"reason\": \"start\"},"
        "  {\"t\": 0.5, \"choice\": \"zstd-1\", \"channels\": 4},"
        "  {\"t\": 1.0, \"choice\": \"none\", \"channels\": 2}],"
        " \"predicted_s\": 1.8, \"actual_s\": 2.0}}");
    RfBenchAutoSum a;
    rf_bench_auto_parse(r, &a);
    json_decref(r);
    assert_true(a.present);
    assert_int_equal(a.nchoices, 3);
    assert_int_equal(a.decisions, 3);
    double share;
    assert_string_equal(rf_bench_auto_main(&a, &share), "zstd-1");
    assert_true(share > 0.799 && share < 0.801);
    /* 2 ch: 0-0.5 s and 1.0-2.0 s (until actual_s); 4 ch: 0.5 s. */
    assert_int_equal(rf_bench_auto_main_channels(&a), 2);
    char buf[128];
    rf_bench_auto_describe(&a, buf, sizeof(buf));
    assert_string_equal(buf, "zstd-1 80%, 2 ch, 3 decisions, "
                        "predicted/actual 0.90");

    /* Merging two runs sums bytes and time. */
    RfBenchAutoSum acc;
    memset(&acc, 0, sizeof(acc));
    rf_bench_auto_merge(&acc, &a);
    json_t *r2 = load("{\"auto\": {\"rounds\": [{\"bytes\": "
                      "{\"none\": 5000}}], \"decisions\": [{\"t\": 0, "
                      "\"channels\": 4}], \"actual_s\": 10}}");
    RfBenchAutoSum b;
    rf_bench_auto_parse(r2, &b);
    json_decref(r2);
    assert_int_equal(b.npredicted, 0); /* no predicted_s */
    rf_bench_auto_merge(&acc, &b);
    assert_int_equal(acc.reports, 2);
    assert_string_equal(rf_bench_auto_main(&acc, &share), "none");
    assert_int_equal(rf_bench_auto_main_channels(&acc), 4);
    assert_int_equal(acc.npredicted, 1);
}

static void test_auto_parse_defensive(void **state)
{
    (void)state;
    RfBenchAutoSum a;
    char buf[64];
    /* No "auto" object: "-". */
    json_t *r = load("{\"status\": \"completed\"}");
    rf_bench_auto_parse(r, &a);
    json_decref(r);
    assert_false(a.present);
    rf_bench_auto_describe(&a, buf, sizeof(buf));
    assert_string_equal(buf, "-");
    /* Mistyped members are skipped, not trusted. */
    r = load("{\"auto\": {\"rounds\": {\"x\": 1}, \"decisions\": ["
             "  \"zstd\", {\"t\": \"soon\", \"channels\": 2},"
             "  {\"t\": 1, \"channels\": -3}],"
             " \"predicted_s\": \"fast\", \"actual_s\": 2}}");
    rf_bench_auto_parse(r, &a);
    json_decref(r);
    assert_true(a.present);
    assert_int_equal(a.nchoices, 0);
    assert_int_equal(a.nchan, 0);
    assert_int_equal(a.npredicted, 0);
    assert_int_equal(a.decisions, 2); /* the two objects */
    rf_bench_auto_describe(&a, buf, sizeof(buf));
    assert_string_equal(buf, "no bytes, 2 decisions");
    /* "auto" of the wrong type; a NULL report. */
    r = load("{\"auto\": [1, 2]}");
    rf_bench_auto_parse(r, &a);
    json_decref(r);
    assert_false(a.present);
    rf_bench_auto_parse(NULL, &a);
    assert_false(a.present);
    /* A tiny buffer is cut, not overrun. */
    r = load("{\"auto\": {\"rounds\": [{\"bytes\": {\"zstd-1\": 1}}]}}");
    rf_bench_auto_parse(r, &a);
    json_decref(r);
    char small[6];
    rf_bench_auto_describe(&a, small, sizeof(small));
    assert_string_equal(small, "zstd-");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_data),
        cmocka_unit_test(test_parse_guest_and_cores),
        cmocka_unit_test(test_best_fixed),
        cmocka_unit_test(test_verdict),
        cmocka_unit_test(test_cell_compare),
        cmocka_unit_test(test_ratio_interval),
        cmocka_unit_test(test_interval_word),
        cmocka_unit_test(test_totals),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_window_cores),
        cmocka_unit_test(test_images),
        cmocka_unit_test(test_auto_parse),
        cmocka_unit_test(test_auto_parse_defensive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
