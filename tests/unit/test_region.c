/*
 * Region source tests (rf_region_source_open): memory of this process,
 * written by a thread that never calls rf_ram_source_mark_dirty(), so
 * every later-round page must have been found by userfaultfd.
 *
 * - the ops by hand: exactly the written pages (plus explicit marks) come
 *   out of each sync, and nothing the second time;
 * - a real migration (rf_migrate to rf_incoming in a thread, unix socket,
 *   file sink in /dev/shm) with the writer running until the final round:
 *   destination files equal the regions byte for byte, --verify passes;
 * - both in async (WP_ASYNC + PAGEMAP_SCAN) and forced synchronous mode;
 * - bad input rejected naming the region; a region the kernel refuses at
 *   dirty_start leaves no region tracked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "ram/ram.h"
#include "ram/uffd_dirty.h"
#include "engine/engine.h"
#include "ramflow/ramflow.h"
#include "util/guest_writes.h"

#define PAGE RF_PAGE_SIZE
#define A_PAGES 1536u /* 6 MiB */
#define B_PAGES 512u  /* 2 MiB */

/* ---- helpers ----------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static uint8_t *anon_map(size_t pages)
{
    void *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    return p;
}

/* Mixed contents: untouched (zero) pages, constant pages, random ones. */
static void fill(uint8_t *p, size_t pages, uint64_t seed)
{
    for (size_t i = 0; i < pages; i++) {
        uint8_t *pg = p + i * PAGE;
        if (i % 7 == 0) {
            continue;
        }
        if (i % 3 == 0) {
            memset(pg, (int)(i * 13 + 1), PAGE);
            continue;
        }
        for (size_t k = 0; k < PAGE; k += 8) {
            uint64_t v = xorshift(&seed);
            memcpy(pg + k, &v, 8);
        }
    }
}

/* Skips the test (with the reason) where userfaultfd WP is missing. */
static bool uffd_usable(bool force_sync)
{
    RfError *err = NULL;
    if (!rf_uffd_probe(force_sync, &err)) {
        printf("userfaultfd unavailable, test skipped: %s\n",
               rf_error_msg(err));
        rf_error_free(err);
        return false;
    }
    return true;
}

static bool bit(const uint64_t *bm, uint64_t i)
{
    return bm[i / 64] >> (i % 64) & 1;
}

static uint64_t count_bits(const uint64_t *bm, uint64_t n)
{
    uint64_t c = 0;
    for (uint64_t i = 0; i < n; i++) {
        c += bit(bm, i);
    }
    return c;
}

/* ---- a writer that only writes ------------------------------------------ */

typedef struct Writer {
    uint8_t *base[2];
    uint64_t pages[2];
    pthread_t thread;
    pthread_mutex_t lock;   /* held while writing a batch */
    pthread_cond_t cond;
    bool paused, stop;
    _Atomic uint64_t written;
    uint64_t round_mark;    /* `written` at the last round_start */
    unsigned rounds_seen;
    unsigned pauses;
} Writer;

/* The guest's stores into one page (uninstrumented: see
 * util/guest_writes.h). */
static RF_GUEST_WRITES void guest_store(uint8_t *p, uint64_t v, uint64_t x)
{
    memcpy(p, &v, 8);
    memcpy(p + 8 + (x % (PAGE / 8 - 1)) * 8, &x, 8);
}

/* Writes random pages of both regions, 8 per batch, about 2000 batches a
 * second: a counter in the first 8 bytes and a random word elsewhere. */
static void *writer_main(void *arg)
{
    Writer *w = arg;
    uint64_t seed = 0x9e3779b97f4a7c15ull, counter = 0;
    uint64_t total = w->pages[0] + w->pages[1];
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (w->paused && !w->stop) {
            pthread_cond_wait(&w->cond, &w->lock);
        }
        if (w->stop) {
            pthread_mutex_unlock(&w->lock);
            return NULL;
        }
        for (unsigned k = 0; k < 8; k++) {
            uint64_t pg = xorshift(&seed) % total;
            unsigned r = pg < w->pages[0] ? 0 : 1;
            uint8_t *p = w->base[r] + (r ? pg - w->pages[0] : pg) * PAGE;
            guest_store(p, ++counter, xorshift(&seed));
        }
        atomic_fetch_add(&w->written, 8);
        pthread_mutex_unlock(&w->lock);
        usleep(500);
    }
}

static void writer_start(Writer *w, uint8_t *a, uint8_t *b)
{
    w->base[0] = a;
    w->base[1] = b;
    w->pages[0] = A_PAGES;
    w->pages[1] = B_PAGES;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    assert_int_equal(pthread_create(&w->thread, NULL, writer_main, w), 0);
}

static void writer_stop(Writer *w)
{
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
}

/* RfMigrateOptions.pause: returns with no write in flight. */
static void writer_pause(void *opaque)
{
    Writer *w = opaque;
    pthread_mutex_lock(&w->lock);
    w->paused = true;
    w->pauses++;
    pthread_mutex_unlock(&w->lock);
}

static void writer_resume(void *opaque)
{
    Writer *w = opaque;
    pthread_mutex_lock(&w->lock);
    w->paused = false;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* RfMigrateOptions.round_start: each round after the first waits for 300
 * more page writes, so every sync has writes to find. */
static void writer_round_start(unsigned round, void *opaque)
{
    Writer *w = opaque;
    w->rounds_seen = round;
    if (round > 1) {
        double t0 = now_s();
        while (atomic_load(&w->written) < w->round_mark + 300 &&
               now_s() - t0 < 5) {
            usleep(1000);
        }
    }
    w->round_mark = atomic_load(&w->written);
}

/* ---- the ops by hand ---------------------------------------------------- */

static void ops_by_hand(bool force_sync)
{
    if (!uffd_usable(force_sync)) {
        skip();
    }
    unsetenv("RAMFLOW_UFFD_SYNC");
    uint8_t *a = anon_map(A_PAGES), *b = anon_map(B_PAGES);
    fill(a, A_PAGES, 1);
    RfRegion regs[2] = {{"ram-a", a, A_PAGES * PAGE},
                        {NULL, b, B_PAGES * PAGE}};
    RfError *err = NULL;
    RfRamSource *src = rf_region_source_open(regs, 2, force_sync, &err);
    if (!src) {
        fail_msg("open: %s", rf_error_msg(err));
    }
    const char *name;
    uint64_t size;
    uint8_t *host;
    assert_int_equal(rf_ram_source_block_count(src), 2);
    assert_true(rf_ram_source_block(src, 1, &name, &size, &host));
    assert_string_equal(name, "region1");
    assert_int_equal(size, B_PAGES * PAGE);
    assert_ptr_equal(host, b);
    const char *mode = rf_ram_source_describe(src);
    printf("%s\n", mode);
    if (force_sync) {
        assert_string_equal(mode, RF_UFFD_DESC_SYNC);
    } else {
        assert_non_null(strstr(mode, "userfaultfd"));
    }

    /* Writes before dirty_start do not count. */
    a[5 * PAGE] = 1;
    assert_true(src->ops->dirty_start(src, &err));
    uint64_t bma[A_PAGES / 64], bmb[B_PAGES / 64];
    memset(bma, 0, sizeof(bma));
    memset(bmb, 0, sizeof(bmb));
    a[3 * PAGE + 17] ^= 0x5a;
    a[100 * PAGE + PAGE - 1] = 7;
    volatile uint8_t r = a[200 * PAGE] + b[9 * PAGE]; /* reads only */
    (void)r;
    b[0] = 1;
    b[(B_PAGES - 1) * PAGE + 4000] = 2;
    rf_ram_source_mark_dirty(src, 1, 7 * PAGE + 10, 2);
    rf_ram_source_mark_dirty(src, 1, B_PAGES * PAGE, PAGE); /* ignored */
    assert_true(src->ops->dirty_sync(src, 0, bma, &err));
    assert_true(src->ops->dirty_sync(src, 1, bmb, &err));
    assert_int_equal(count_bits(bma, A_PAGES), 2);
    assert_true(bit(bma, 3) && bit(bma, 100));
    assert_int_equal(count_bits(bmb, B_PAGES), 3);
    assert_true(bit(bmb, 0) && bit(bmb, 7) && bit(bmb, B_PAGES - 1));

    /* Nothing new: nothing reported.  Then a page written again is. */
    memset(bma, 0, sizeof(bma));
    memset(bmb, 0, sizeof(bmb));
    assert_true(src->ops->dirty_sync(src, 0, bma, &err));
    assert_true(src->ops->dirty_sync(src, 1, bmb, &err));
    assert_int_equal(count_bits(bma, A_PAGES), 0);
    assert_int_equal(count_bits(bmb, B_PAGES), 0);
    a[3 * PAGE] = 9;
    assert_true(src->ops->dirty_sync(src, 0, bma, &err));
    assert_int_equal(count_bits(bma, A_PAGES), 1);
    assert_true(bit(bma, 3));

    assert_false(src->ops->dirty_sync(src, 2, bma, &err));
    assert_non_null(strstr(rf_error_msg(err), "block 2"));
    rf_error_free(err);
    err = NULL;

    /* Restarting begins afresh; after stop, a sync is refused. */
    a[50 * PAGE] = 1;
    assert_true(src->ops->dirty_start(src, &err));
    memset(bma, 0, sizeof(bma));
    assert_true(src->ops->dirty_sync(src, 0, bma, &err));
    assert_int_equal(count_bits(bma, A_PAGES), 0);
    src->ops->dirty_stop(src);
    assert_false(src->ops->dirty_sync(src, 0, bma, &err));
    assert_non_null(strstr(rf_error_msg(err), "'ram-a'"));
    rf_error_free(err);
    err = NULL;
    rf_ram_source_free(src);
    /* The memory is still ours and writable. */
    a[0] = 3;
    b[0] = 3;
    munmap(a, A_PAGES * PAGE);
    munmap(b, B_PAGES * PAGE);
}

static void test_ops_async(void **state)
{
    (void)state;
    ops_by_hand(false);
}

static void test_ops_sync(void **state)
{
    (void)state;
    ops_by_hand(true);
}

/* ---- a real migration --------------------------------------------------- */

typedef struct Dest {
    char dir[64], uri[128], path[2][128];
    RfRamSink *sink;
    pthread_t thread;
    RfIncomingOptions iopts;
    RfReport rep;
    RfError *err;
    bool ok;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool listening;
} Dest;

static void on_listening(const char *uri, void *opaque)
{
    Dest *d = opaque;
    (void)uri;
    pthread_mutex_lock(&d->lock);
    d->listening = true;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

static void *dest_thread(void *arg)
{
    Dest *d = arg;
    d->ok = rf_incoming(d->uri, d->sink, &d->iopts, &d->rep, &d->err);
    on_listening(NULL, d); /* unblock the waiter if listening never came */
    return NULL;
}

/* A file sink in a fresh /dev/shm directory, listening on a unix socket
 * there, in its own thread. */
static void dest_start(Dest *d)
{
    snprintf(d->dir, sizeof(d->dir), "/dev/shm/rf-region-XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    snprintf(d->uri, sizeof(d->uri), "unix:%s/sock", d->dir);
    snprintf(d->path[0], sizeof(d->path[0]), "%s/a", d->dir);
    snprintf(d->path[1], sizeof(d->path[1]), "%s/b", d->dir);
    char sa[160], sb[160];
    snprintf(sa, sizeof(sa), "ram-a=%s", d->path[0]);
    snprintf(sb, sizeof(sb), "ram-b=%s", d->path[1]);
    const char *specs[2] = {sa, sb};
    RfError *err = NULL;
    d->sink = rf_file_sink_new(specs, 2, 0, &err);
    if (!d->sink) {
        fail_msg("sink: %s", rf_error_msg(err));
    }
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->cond, NULL);
    d->iopts.listening = on_listening;
    d->iopts.opaque = d;
    d->iopts.timeout_ms = 10000;
    assert_int_equal(pthread_create(&d->thread, NULL, dest_thread, d), 0);
    pthread_mutex_lock(&d->lock);
    while (!d->listening) {
        pthread_cond_wait(&d->cond, &d->lock);
    }
    pthread_mutex_unlock(&d->lock);
}

/* Joins the destination; the sink is freed (files flushed) first. */
static void dest_join(Dest *d)
{
    pthread_join(d->thread, NULL);
    rf_ram_sink_free(d->sink);
    d->sink = NULL;
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->cond);
}

static void dest_cleanup(Dest *d)
{
    char sock[128];
    snprintf(sock, sizeof(sock), "%s/sock", d->dir);
    unlink(d->path[0]);
    unlink(d->path[1]);
    unlink(sock);
    rmdir(d->dir);
    rf_error_free(d->err);
}

/* The destination file must hold exactly `len` bytes equal to `want`. */
static void assert_file_equals(const char *path, const uint8_t *want,
                               size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    off_t end = lseek(fd, 0, SEEK_END);
    assert_int_equal(end, (off_t)len);
    uint8_t *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    assert_true(p != MAP_FAILED);
    if (memcmp(p, want, len) != 0) {
        size_t i = 0;
        while (p[i] == want[i]) {
            i++;
        }
        munmap(p, len);
        fail_msg("%s differs from its region first at byte %zu (page %zu)",
                 path, i, i / PAGE);
    }
    munmap(p, len);
}

static void live_migration(bool force_sync)
{
    if (!uffd_usable(force_sync)) {
        skip();
    }
    unsetenv("RAMFLOW_UFFD_SYNC");
    double t0 = now_s();
    uint8_t *a = anon_map(A_PAGES), *b = anon_map(B_PAGES);
    fill(a, A_PAGES, 11);
    fill(b, B_PAGES, 12);
    RfRegion regs[2] = {{"ram-a", a, A_PAGES * PAGE},
                        {"ram-b", b, B_PAGES * PAGE}};
    RfError *err = NULL;
    RfRamSource *src = rf_region_source_open(regs, 2, force_sync, &err);
    if (!src) {
        fail_msg("open: %s", rf_error_msg(err));
    }
    Dest d = {0};
    dest_start(&d);

    Writer w = {0};
    writer_start(&w, a, b);
    RfParams p;
    rf_params_init(&p);
    assert_true(rf_params_set(&p, "multifd-channels", "3", NULL));
    /* Never converges by estimate: exactly max-rounds live rounds, then
     * the final one. */
    assert_true(rf_params_set(&p, "downtime-limit", "0", NULL));
    assert_true(rf_params_set(&p, "max-rounds", "6", NULL));
    RfMigrateOptions o = {.verify = true, .pause = writer_pause,
                          .resume = writer_resume,
                          .round_start = writer_round_start, .opaque = &w};
    RfReport rep;
    bool ok = rf_migrate(d.uri, src, &p, &o, &rep, &err);
    uint64_t written = atomic_load(&w.written);
    dest_join(&d);
    if (!ok || !d.ok) {
        writer_stop(&w);
        printf("incoming: %s\n", d.ok ? "ok" : rf_error_msg(d.err));
        dest_cleanup(&d);
        fail_msg("migrate: %s", ok ? "ok" : rf_error_msg(err));
    }
    /* Still paused: the regions are what the final round sent. */
    assert_int_equal(atomic_load(&w.written), written);
    const uint64_t total = A_PAGES + B_PAGES;
    printf("%s: %u rounds, %llu pages sent for %llu, %llu page writes, "
           "%.2f s\n", rf_ram_source_describe(src), rep.rounds,
           (unsigned long long)rep.pages_sent, (unsigned long long)total,
           (unsigned long long)written, now_s() - t0);
    assert_int_equal(rep.rounds, 7);
    assert_int_equal(w.pauses, 1);
    assert_true(rep.verified);
    /* Each of the 6 later rounds had >= 300 writes (about 280 distinct
     * pages out of 2048) that only userfaultfd could report. */
    assert_true(rep.pages_sent >= total + 6 * 200);
    assert_file_equals(d.path[0], a, A_PAGES * PAGE);
    assert_file_equals(d.path[1], b, B_PAGES * PAGE);
    writer_stop(&w);
    rf_ram_source_free(src);
    dest_cleanup(&d);
    munmap(a, A_PAGES * PAGE);
    munmap(b, B_PAGES * PAGE);
}

static void test_migrate_async(void **state)
{
    (void)state;
    live_migration(false);
}

static void test_migrate_sync(void **state)
{
    (void)state;
    live_migration(true);
}

/* ---- bad input --------------------------------------------------------- */

/* Opening must fail with an RF_ERR_PARAM error containing `want`. */
static void expect_bad(const RfRegion *regs, unsigned n, const char *want)
{
    RfError *err = NULL;
    RfRamSource *src = rf_region_source_open(regs, n, false, &err);
    assert_null(src);
    assert_non_null(err);
    printf("  %s\n", rf_error_msg(err));
    assert_int_equal(rf_error_kind(err), RF_ERR_PARAM);
    if (!strstr(rf_error_msg(err), want)) {
        fail_msg("error '%s' does not contain '%s'", rf_error_msg(err),
                 want);
    }
    rf_error_free(err);
}

static void test_bad_input(void **state)
{
    (void)state;
    uint8_t *m = anon_map(16);
    char longname[300];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';

    RfRegion unaligned[2] = {{"ok", m, 4 * PAGE},
                             {"skewed", m + 4 * PAGE + 8, 4 * PAGE}};
    expect_bad(unaligned, 2, "region 'skewed': address");
    RfRegion zero[1] = {{"empty", m, 0}};
    expect_bad(zero, 1, "region 'empty': size 0");
    RfRegion odd[1] = {{NULL, m, PAGE + 1}};
    expect_bad(odd, 1, "region 'region0': size 4097");
    RfRegion null_addr[1] = {{"nowhere", NULL, PAGE}};
    expect_bad(null_addr, 1, "region 'nowhere'");
    RfRegion dup[2] = {{"ram", m, 4 * PAGE}, {"ram", m + 8 * PAGE, PAGE}};
    expect_bad(dup, 2, "region 1: name 'ram' is already used by region 0");
    /* A default name collides with an explicit one too. */
    RfRegion dup2[2] = {{"region1", m, 4 * PAGE},
                        {NULL, m + 8 * PAGE, PAGE}};
    expect_bad(dup2, 2, "name 'region1' is already used by region 0");
    RfRegion overlap[2] = {{"low", m, 4 * PAGE},
                           {"high", m + 3 * PAGE, 4 * PAGE}};
    expect_bad(overlap, 2, "region 'high'");
    expect_bad(overlap, 2, "overlaps region 'low'");
    RfRegion noname[1] = {{"", m, PAGE}};
    expect_bad(noname, 1, "region 0: the name is empty");
    RfRegion toolong[2] = {{"ok", m, PAGE}, {longname, m + PAGE, PAGE}};
    expect_bad(toolong, 2, "region 1: the name is too long");
    expect_bad(zero, 0, "got 0");
    expect_bad(NULL, 1, "NULL");
    RfRegion many[RF_MAX_BLOCKS + 1] = {{0}};
    expect_bad(many, RF_MAX_BLOCKS + 1, "1-64 allowed");
    munmap(m, 16 * PAGE);
}

/* A read-only shared file mapping: userfaultfd refuses to register it
 * (no VM_MAYWRITE), in either mode. */
static void map_readonly_over(uint8_t *at, size_t len)
{
    char path[] = "/dev/shm/rf-region-ro-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)len), 0);
    close(fd);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    void *p = mmap(at, len, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
    close(fd);
    unlink(path); /* the mapping keeps the object */
    assert_ptr_equal(p, at);
}

/* The kernel refuses a region: at open, naming it; at dirty_start (the
 * region changed after open), naming it and leaving no region tracked. */
static void refused_region(bool force_sync)
{
    if (!uffd_usable(force_sync)) {
        skip();
    }
    unsetenv("RAMFLOW_UFFD_SYNC");
    uint8_t *a = anon_map(64), *b = anon_map(64), *c = anon_map(64);
    map_readonly_over(c, 64 * PAGE);
    RfRegion regs[2] = {{"good", a, 64 * PAGE}, {"readonly", c, 64 * PAGE}};
    RfError *err = NULL;
    assert_null(rf_region_source_open(regs, 2, force_sync, &err));
    printf("  %s\n", rf_error_msg(err));
    assert_non_null(strstr(rf_error_msg(err), "region 'readonly'"));
    rf_error_free(err);
    err = NULL;

    regs[1] = (RfRegion){"later-readonly", b, 64 * PAGE};
    RfRamSource *src = rf_region_source_open(regs, 2, force_sync, &err);
    if (!src) {
        fail_msg("open: %s", rf_error_msg(err));
    }
    map_readonly_over(b, 64 * PAGE);
    assert_false(src->ops->dirty_start(src, &err));
    printf("  %s\n", rf_error_msg(err));
    assert_non_null(strstr(rf_error_msg(err), "region 'later-readonly'"));
    rf_error_free(err);
    err = NULL;
    /* "good" was tracked first and must be free again: a new tracker may
     * take it (one userfaultfd per range), and writes go through. */
    RfUffdTracker *t = rf_uffd_track(a, 64 * PAGE, force_sync, &err);
    if (!t) {
        fail_msg("region 'good' still tracked: %s", rf_error_msg(err));
    }
    rf_uffd_stop(t);
    memset(a, 1, 64 * PAGE);
    assert_false(src->ops->dirty_sync(src, 0, (uint64_t[1]){0}, &err));
    rf_error_free(err);
    rf_ram_source_free(src);
    munmap(a, 64 * PAGE);
    munmap(b, 64 * PAGE);
    munmap(c, 64 * PAGE);
}

static void test_refused_async(void **state)
{
    (void)state;
    refused_region(false);
}

static void test_refused_sync(void **state)
{
    (void)state;
    refused_region(true);
}

/* Sources without their own describe report explicit marks. */
static void test_describe_default(void **state)
{
    (void)state;
    char dir[] = "/dev/shm/rf-region-f-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/m", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, PAGE), 0);
    close(fd);
    const char *specs[1] = {path};
    RfRamSource *src = rf_file_source_open(specs, 1, NULL);
    assert_non_null(src);
    assert_string_equal(rf_ram_source_describe(src), "explicit marks");
    rf_ram_source_free(src);
    assert_non_null(rf_ram_source_describe(NULL));
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_describe_default),
        cmocka_unit_test(test_ops_async),
        cmocka_unit_test(test_ops_sync),
        cmocka_unit_test(test_refused_async),
        cmocka_unit_test(test_refused_sync),
        cmocka_unit_test(test_migrate_async),
        cmocka_unit_test(test_migrate_sync),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
