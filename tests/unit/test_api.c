/*
 * The public API v1, used only through include/ramflow/ramflow.h as an
 * embedding VMM would: handles, callbacks, statuses, query, cancel, live
 * parameters, the _fd starts, blocking mode, growable structs, and two
 * migrations at once in one process.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ramflow/ramflow.h"

#define SIZE (8u << 20)

/* One side: its memory, handle and what its callbacks saw. */
typedef struct Side {
    uint8_t *mem;
    RfRamSource *src;
    RfRamSink *sink;
    RfMigration *m;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    RfStatus seen[16];
    unsigned nseen;
    char uri[300];
    unsigned passes, progress;
    bool paused, resumed;
    bool report_at_final; /* rf_migration_report worked in the callback of
                           * the final status (QMP's query-migrate relies
                           * on it) */
    /* for the cancel test: block the source in its first pass */
    bool hold_in_pass;
    bool in_pass;
    bool release;
    RfMigrationInfo info_in_pass;
} Side;

static void side_init(Side *s, bool source, uint8_t seed)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->mem = mmap(NULL, SIZE, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(s->mem != MAP_FAILED);
    RfRegion r = {.name = "ram", .addr = s->mem, .size = SIZE};
    RfError *err = NULL;
    if (source) {
        for (size_t i = 0; i < SIZE; i += 8) {
            s->mem[i] = (uint8_t)(seed + i / 4096 * 7 + i);
        }
        s->src = rf_region_source_open(&r, 1, RF_REGION_NO_UFFD, &err);
        assert_non_null(s->src);
    } else {
        s->sink = rf_region_sink_new(&r, 1, &err);
        assert_non_null(s->sink);
    }
}

static void side_free(Side *s)
{
    rf_migration_free(s->m);
    rf_ram_source_free(s->src);
    rf_ram_sink_free(s->sink);
    munmap(s->mem, SIZE);
}

static void on_status(RfMigration *m, RfStatus st, void *opaque)
{
    Side *s = opaque;
    if (st == RF_STATUS_COMPLETED || st == RF_STATUS_FAILED ||
        st == RF_STATUS_CANCELLED) {
        RfReport rep = RF_REPORT_INIT;
        s->report_at_final = rf_migration_report(m, &rep);
    }
    pthread_mutex_lock(&s->lock);
    if (s->nseen < 16) {
        s->seen[s->nseen++] = st;
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void on_listening(RfMigration *m, const char *uri, void *opaque)
{
    Side *s = opaque;
    (void)m;
    pthread_mutex_lock(&s->lock);
    snprintf(s->uri, sizeof(s->uri), "%s", uri);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void on_pass(RfMigration *m, unsigned pass, void *opaque)
{
    Side *s = opaque;
    pthread_mutex_lock(&s->lock);
    s->passes++;
    if (s->hold_in_pass && pass == 2) {
        s->info_in_pass.size = sizeof(s->info_in_pass);
        rf_migration_query(m, &s->info_in_pass);
        s->in_pass = true;
        pthread_cond_broadcast(&s->cond);
        while (!s->release) {
            pthread_cond_wait(&s->cond, &s->lock);
        }
    }
    pthread_mutex_unlock(&s->lock);
}

static void on_progress(RfMigration *m, const RfProgress *p, void *opaque)
{
    Side *s = opaque;
    (void)m;
    (void)p;
    pthread_mutex_lock(&s->lock);
    s->progress++;
    pthread_mutex_unlock(&s->lock);
}

static void on_pause(void *opaque)
{
    Side *s = opaque;
    s->paused = true;
}

static void on_resume(void *opaque)
{
    Side *s = opaque;
    s->resumed = true;
}

static RfMigration *side_handle(Side *s, RfParams *p)
{
    RfError *err = NULL;
    s->m = rf_migration_new(p, &err);
    assert_non_null(s->m);
    RfCallbacks cb = RF_CALLBACKS_INIT;
    cb.status = on_status;
    cb.listening = on_listening;
    cb.pass = on_pass;
    cb.progress = on_progress;
    cb.pause = on_pause;
    cb.resume = on_resume;
    cb.opaque = s;
    assert_true(rf_migration_set_callbacks(s->m, &cb, &err));
    return s->m;
}

static void wait_uri(Side *s)
{
    pthread_mutex_lock(&s->lock);
    while (!s->uri[0]) {
        pthread_cond_wait(&s->cond, &s->lock);
    }
    pthread_mutex_unlock(&s->lock);
}

static void start_dest(Side *d, RfParams *p)
{
    RfError *err = NULL;
    side_handle(d, p);
    assert_true(rf_migration_start_incoming(d->m, d->sink, "tcp:127.0.0.1:0",
                                            0, &err));
    wait_uri(d);
}

static void test_version(void **state)
{
    (void)state;
    assert_int_equal(rf_version_number(), RAMFLOW_VERSION_NUMBER);
    assert_string_equal(rf_version_string(), RAMFLOW_VERSION_STRING);
    assert_int_equal(RAMFLOW_VERSION_MAJOR, 1);
    assert_string_equal(rf_status_name(RF_STATUS_CANCELLING), "cancelling");
    assert_string_equal(rf_status_name(RF_STATUS_DEVICE), "device");
}

static void test_params(void **state)
{
    (void)state;
    RfError *err = NULL;
    RfParams *p = rf_params_new();
    char buf[64];
    assert_true(rf_params_get(p, "multifd-channels", buf, sizeof(buf), &err));
    assert_string_equal(buf, "2");
    assert_true(rf_params_set_level(p, "zstd", 5, &err));
    assert_int_equal(rf_params_get_level(p, "zstd"), 5);
    assert_true(rf_params_get(p, "multifd-zstd-level", buf, sizeof(buf),
                              &err));
    assert_string_equal(buf, "5");
    assert_int_equal(rf_params_get_level(p, "none"), -1);
    assert_false(rf_params_set_level(p, "zstd", 99, &err));
    assert_non_null(strstr(rf_error_msg(err), "multifd-zstd-level"));
    rf_error_free(err);
    err = NULL;
    assert_true(rf_params_set(p, "max-bandwidth", "1G", &err));
    assert_true(rf_params_get(p, "max-bandwidth", buf, sizeof(buf), &err));
    assert_string_equal(buf, "1073741824");
    assert_false(rf_params_get_cap(p, "verify"));
    assert_true(rf_params_set_cap(p, "verify", true, &err));
    assert_true(rf_params_get_cap(p, "verify"));
    assert_false(rf_params_set_cap(p, "postcopy-ram", true, &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_PARAM);
    rf_error_free(err);
    err = NULL;
    RfParams *q = rf_params_dup(p);
    assert_int_equal(rf_params_get_level(q, "zstd"), 5);
    assert_false(rf_params_get(q, "nope", buf, sizeof(buf), &err));
    rf_error_free(err);
    rf_params_free(p);
    rf_params_free(q);
}

static void expect_statuses(Side *s, const RfStatus *want, unsigned n)
{
    pthread_mutex_lock(&s->lock);
    assert_int_equal(s->nseen, n);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(s->seen[i], want[i]);
    }
    pthread_mutex_unlock(&s->lock);
}

/* Two migrations at once, each with its own handles and memory, on the
 * library's threads; statuses, query, report and data checked. */
static void test_two_at_once(void **state)
{
    (void)state;
    Side src[2], dst[2];
    RfError *err = NULL;
    RfParams *p = rf_params_new();
    assert_true(rf_params_set(p, "multifd-channels", "3", &err));
    assert_true(rf_params_set_cap(p, "verify", true, &err));
    for (int i = 0; i < 2; i++) {
        side_init(&src[i], true, (uint8_t)(i * 100));
        side_init(&dst[i], false, 0);
        start_dest(&dst[i], NULL);
        side_handle(&src[i], p);
    }
    for (int i = 0; i < 2; i++) {
        assert_true(rf_migration_start_outgoing(src[i].m, src[i].src,
                                                dst[i].uri, 0, &err));
    }
    for (int i = 0; i < 2; i++) {
        assert_true(rf_migration_wait(src[i].m, &err));
        assert_true(rf_migration_wait(dst[i].m, &err));
        assert_memory_equal(src[i].mem, dst[i].mem, SIZE);
        RfStatus want[] = {RF_STATUS_SETUP, RF_STATUS_ACTIVE,
                           RF_STATUS_DEVICE, RF_STATUS_COMPLETED};
        expect_statuses(&src[i], want, 4);
        expect_statuses(&dst[i], want, 4);
        assert_true(src[i].report_at_final);
        assert_true(dst[i].report_at_final);
        assert_true(src[i].paused);
        assert_false(src[i].resumed); /* completed: it runs elsewhere now */
        assert_true(src[i].passes >= 1);
        RfMigrationInfo info = RF_MIGRATION_INFO_INIT;
        assert_true(rf_migration_query(src[i].m, &info));
        assert_int_equal(info.status, RF_STATUS_COMPLETED);
        assert_int_equal(info.ram_total, SIZE);
        assert_true(info.ram_transferred > 0);
        RfReport rep = RF_REPORT_INIT;
        assert_true(rf_migration_report(src[i].m, &rep));
        assert_true(rep.verified);
        assert_int_equal(rep.channels, 3);
        assert_true(rep.send_cpu_pct > 0);
        assert_true(rep.process_cpu_pct >= rep.send_cpu_pct * 0.5);
    }
    assert_memory_not_equal(dst[0].mem, dst[1].mem, 4096);
    for (int i = 0; i < 2; i++) {
        side_free(&src[i]);
        side_free(&dst[i]);
    }
    rf_params_free(p);
}

/* Cancel from another thread while the source sits in its second pass;
 * query and set_param from that thread too. */
static void test_cancel_and_live_params(void **state)
{
    (void)state;
    Side s, d;
    RfError *err = NULL;
    side_init(&s, true, 3);
    side_init(&d, false, 0);
    start_dest(&d, NULL);
    RfParams *p = rf_params_new();
    /* Never converges by itself: max-rounds high, downtime-limit 0. */
    assert_true(rf_params_set(p, "downtime-limit", "0", &err));
    side_handle(&s, p);
    rf_params_free(p);
    uint8_t *copy = malloc(SIZE);
    memcpy(copy, s.mem, SIZE);
    s.hold_in_pass = true;
    assert_true(rf_migration_start_outgoing(s.m, s.src, d.uri, 0, &err));
    pthread_mutex_lock(&s.lock);
    while (!s.in_pass) {
        pthread_cond_wait(&s.cond, &s.lock);
    }
    pthread_mutex_unlock(&s.lock);
    /* Queried from inside the pass callback: active, round 2. */
    assert_int_equal(s.info_in_pass.status, RF_STATUS_ACTIVE);
    assert_int_equal(s.info_in_pass.ram_total, SIZE);
    assert_int_equal(rf_migration_status(s.m), RF_STATUS_ACTIVE);
    assert_true(rf_migration_set_param(s.m, "max-bandwidth", "100M", &err));
    assert_true(rf_migration_set_param(s.m, "downtime-limit", "50", &err));
    assert_false(rf_migration_set_param(s.m, "multifd-channels", "4", &err));
    assert_non_null(strstr(rf_error_msg(err), "while a migration runs"));
    rf_error_free(err);
    err = NULL;
    rf_migration_cancel(s.m);
    assert_int_equal(rf_migration_status(s.m), RF_STATUS_CANCELLING);
    pthread_mutex_lock(&s.lock);
    s.release = true;
    pthread_cond_broadcast(&s.cond);
    pthread_mutex_unlock(&s.lock);
    assert_false(rf_migration_wait(s.m, &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_CANCELLED);
    rf_error_free(err);
    err = NULL;
    assert_int_equal(rf_migration_status(s.m), RF_STATUS_CANCELLED);
    RfStatus want[] = {RF_STATUS_SETUP, RF_STATUS_ACTIVE,
                       RF_STATUS_CANCELLING, RF_STATUS_CANCELLED};
    expect_statuses(&s, want, 4);
    assert_true(s.report_at_final);
    assert_memory_equal(copy, s.mem, SIZE); /* source memory intact */
    assert_false(rf_migration_wait(d.m, &err));
    rf_error_free(err);
    err = NULL;
    assert_int_equal(rf_migration_status(d.m), RF_STATUS_FAILED);
    assert_false(rf_migration_set_param(s.m, "downtime-limit", "9", &err));
    rf_error_free(err);
    free(copy);
    side_free(&s);
    side_free(&d);
}

/* The caller's sockets: a listening one for the destination, a connected
 * one for the source's main channel; the source runs blocking. */
static void test_fd_starts_blocking(void **state)
{
    (void)state;
    Side s, d;
    RfError *err = NULL;
    side_init(&s, true, 9);
    side_init(&d, false, 0);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 16), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
    side_handle(&d, NULL);
    assert_true(rf_migration_start_incoming_fd(d.m, d.sink, lfd, -1, 0,
                                               &err));
    int cfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(cfd, (struct sockaddr *)&a, sizeof(a)), 0);
    side_handle(&s, NULL);
    assert_true(rf_migration_start_outgoing_fd(s.m, s.src, cfd,
                                               RF_START_BLOCKING, &err));
    assert_int_equal(rf_migration_status(s.m), RF_STATUS_COMPLETED);
    assert_true(rf_migration_wait(d.m, &err));
    assert_memory_equal(s.mem, d.mem, SIZE);
    /* A handle runs once. */
    assert_false(rf_migration_start_outgoing(s.m, s.src, "tcp:127.0.0.1:1",
                                             0, &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_PARAM);
    rf_error_free(err);
    err = NULL;
    /* A bad fd fails the start with a message, and the handle ends. */
    RfMigration *m = rf_migration_new(NULL, &err);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_false(rf_migration_start_outgoing_fd(m, s.src, fds[0], 0, &err));
    assert_non_null(err);
    rf_error_free(err);
    err = NULL;
    assert_false(rf_migration_wait(m, &err));
    rf_error_free(err);
    rf_migration_free(m);
    close(fds[1]);
    side_free(&s);
    side_free(&d);
}

/* A caller built against a shorter RfReport / RfMigrationInfo gets only
 * what its size covers: the bytes after it stay untouched. */
static void test_growable_structs(void **state)
{
    (void)state;
    RfError *err = NULL;
    RfMigration *m = rf_migration_new(NULL, &err);
    assert_non_null(m);
    union {
        RfMigrationInfo info;
        uint8_t raw[sizeof(RfMigrationInfo) + 64];
    } u;
    memset(&u, 0xA5, sizeof(u));
    u.info.size = offsetof(RfMigrationInfo, ram_total);
    assert_true(rf_migration_query(m, &u.info));
    assert_int_equal(u.info.status, RF_STATUS_NONE);
    for (size_t i = offsetof(RfMigrationInfo, ram_total); i < sizeof(u);
         i++) {
        assert_int_equal(u.raw[i], 0xA5);
    }
    RfReport rep = RF_REPORT_INIT;
    assert_false(rf_migration_report(m, &rep)); /* not ended */
    RfCallbacks cb = {0};
    assert_false(rf_migration_set_callbacks(m, &cb, &err));
    rf_error_free(err);
    err = NULL;
    assert_false(rf_migration_wait(m, &err)); /* never started */
    rf_error_free(err);
    rf_migration_free(m);
    RfParams *bad = rf_params_new();
    /* rf_migration_new checks the parameters it copies. */
    assert_true(rf_params_set(bad, "multifd-compression", "none", NULL));
    rf_params_free(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_two_at_once),
        cmocka_unit_test(test_cancel_and_live_params),
        cmocka_unit_test(test_fd_starts_blocking),
        cmocka_unit_test(test_growable_structs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
