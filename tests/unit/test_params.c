/* Parameter validation: names, ranges, defaults, messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "engine/engine.h"
#include "ramflow/ramflow.h"
#include "util/zero.h"

static void expect_reject(const char *name, const char *value,
                          const char *text)
{
    RfParams p;
    rf_params_init(&p);
    RfParams before = p;
    RfError *err = NULL;
    assert_false(rf_params_set(&p, name, value, &err));
    assert_non_null(err);
    assert_int_equal(rf_error_kind(err), RF_ERR_PARAM);
    if (!strstr(rf_error_msg(err), text)) {
        fail_msg("%s=%s: '%s' lacks '%s'", name, value, rf_error_msg(err),
                 text);
    }
    /* A rejected value changes nothing. */
    assert_memory_equal(&p, &before, sizeof(p));
    rf_error_free(err);
}

static void test_defaults(void **state)
{
    (void)state;
    RfParams p;
    rf_params_init(&p);
    assert_int_equal(p.multifd_channels, 2);
    assert_string_equal(p.multifd_compression, "none");
    assert_int_equal(p.multifd_zlib_level, 1);
    assert_int_equal(p.multifd_zstd_level, 1);
    assert_int_equal(p.multifd_qatzip_level, 1);
    assert_int_equal(p.max_bandwidth, 0);
    assert_int_equal(p.downtime_limit, 300);
    assert_true(rf_params_check(&p, NULL));
}

static void test_ranges(void **state)
{
    (void)state;
    expect_reject("multifd-channels", "0", "1 to 255");
    expect_reject("multifd-channels", "256", "multifd-channels");
    expect_reject("multifd-zlib-level", "10", "0 to 9");
    expect_reject("multifd-zstd-level", "21", "0 to 20");
    expect_reject("multifd-qatzip-level", "0", "1 to 9");
    expect_reject("multifd-qatzip-level", "10", "1 to 9");
    expect_reject("downtime-limit", "2000001", "0 to 2000000");
    expect_reject("max-bandwidth", "-1", "max-bandwidth");
    expect_reject("max-bandwidth", "12Q", "max-bandwidth");
    expect_reject("multifd-channels", "", "multifd-channels");
    expect_reject("multifd-channels", "4x", "multifd-channels");
    expect_reject("multifd-channels", "99999999999999999999999",
                  "multifd-channels");
    expect_reject("multifd-compression", "lz4", "unknown method 'lz4'");
    expect_reject("no-such-thing", "1", "unknown parameter 'no-such-thing'");
}

static void test_accept(void **state)
{
    (void)state;
    RfParams p;
    rf_params_init(&p);
    assert_true(rf_params_set(&p, "multifd-channels", "255", NULL));
    assert_int_equal(p.multifd_channels, 255);
    assert_true(rf_params_set(&p, "multifd-zstd-level", "20", NULL));
    assert_int_equal(p.multifd_zstd_level, 20);
    assert_true(rf_params_set(&p, "max-bandwidth", "64M", NULL));
    assert_int_equal(p.max_bandwidth, 64ull << 20);
    assert_true(rf_params_set(&p, "downtime-limit", "0", NULL));
    assert_int_equal(p.downtime_limit, 0);
    for (const char *const *m = rf_method_names(); *m; m++) {
        assert_true(rf_params_set(&p, "multifd-compression", *m, NULL));
        assert_string_equal(p.multifd_compression, *m);
    }
    assert_true(rf_params_check(&p, NULL));
}

static void test_check_catches_direct_writes(void **state)
{
    (void)state;
    RfParams p;
    rf_params_init(&p);
    p.multifd_zstd_level = -3;
    RfError *err = NULL;
    assert_false(rf_params_check(&p, &err));
    assert_non_null(strstr(rf_error_msg(err), "multifd-zstd-level"));
    rf_error_free(err);
    rf_params_init(&p);
    strcpy(p.multifd_compression, "bogus");
    err = NULL;
    assert_false(rf_params_check(&p, &err));
    assert_non_null(strstr(rf_error_msg(err), "multifd-compression"));
    rf_error_free(err);
}

static void test_zero_page(void **state)
{
    (void)state;
    static _Alignas(64) uint8_t page[RF_PAGE_SIZE];
    memset(page, 0, sizeof(page));
    assert_true(rf_page_is_zero(page));
    /* Any single non-zero byte anywhere is seen. */
    for (size_t i = 0; i < RF_PAGE_SIZE; i += 37) {
        page[i] = 1;
        assert_false(rf_page_is_zero(page));
        page[i] = 0;
    }
    page[RF_PAGE_SIZE - 1] = 0x80;
    assert_false(rf_page_is_zero(page));
}

/* ---- the name lists from several threads at once ------------------------ */

#define NAME_THREADS 4

typedef struct NamesRun {
    pthread_barrier_t *start;
    const char *const *methods, *const *params;
    bool unknown_named_all;
} NamesRun;

/* Asks for both lists (directly, and through the error message of an
 * unknown name, which lists them) right after every thread is released. */
static void *names_thread(void *arg)
{
    NamesRun *r = arg;
    pthread_barrier_wait(r->start);
    RfParams p;
    rf_params_init(&p);
    RfError *err = NULL;
    rf_params_set(&p, "no-such-thing", "1", &err);
    r->unknown_named_all = err && strstr(rf_error_msg(err),
                                         "multifd-channels");
    rf_error_free(err);
    err = NULL;
    rf_params_set(&p, "multifd-compression", "lz4", &err);
    r->unknown_named_all = r->unknown_named_all && err &&
                           strstr(rf_error_msg(err), "none");
    rf_error_free(err);
    r->methods = rf_method_names();
    r->params = rf_params_names();
    return NULL;
}

/* rf_method_names() and rf_params_names() may be called from any thread
 * at any time (a ThreadSanitizer build reports it if they write shared
 * state each call) and give the same complete lists. */
static void test_names_from_threads(void **state)
{
    (void)state;
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NAME_THREADS);
    pthread_t th[NAME_THREADS];
    NamesRun runs[NAME_THREADS];
    for (int i = 0; i < NAME_THREADS; i++) {
        runs[i] = (NamesRun){.start = &start};
        assert_int_equal(pthread_create(&th[i], NULL, names_thread,
                                        &runs[i]), 0);
    }
    for (int i = 0; i < NAME_THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    pthread_barrier_destroy(&start);
    const char *const *m = rf_method_names(), *const *n = rf_params_names();
    assert_string_equal(m[0], "none");
    assert_string_equal(n[0], "multifd-channels");
    size_t nm = 0, np = 0;
    while (m[nm]) {
        nm++;
    }
    while (n[np]) {
        np++;
    }
    /* with "timeout", tcp-keepalive, tcp-user-timeout, the two
     * multifd-reconnect ones, security's 9, "crc32c", "max-cpu" and
     * "multifd-auto-methods" */
    assert_int_equal(np, 25);
    for (int i = 0; i < NAME_THREADS; i++) {
        assert_true(runs[i].unknown_named_all);
        assert_ptr_equal(runs[i].methods, m);
        assert_ptr_equal(runs[i].params, n);
        for (size_t k = 0; k <= nm; k++) {
            assert_ptr_equal(runs[i].methods[k], m[k]);
        }
        for (size_t k = 0; k <= np; k++) {
            assert_ptr_equal(runs[i].params[k], n[k]);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_accept),
        cmocka_unit_test(test_check_catches_direct_writes),
        cmocka_unit_test(test_zero_page),
        cmocka_unit_test(test_names_from_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
