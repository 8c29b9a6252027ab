/*
 * Public source and sink interfaces (issue 8): the region sink, the file
 * sink's reuse mode, custom sources and sinks made from a caller's ops,
 * the dirty-log provider, and the pre-fault threads' CPU time.
 *
 * Migrations are real: rf_incoming on a thread, rf_migrate on the test's
 * thread, over a unix socket.  Sources are region sources without
 * userfaultfd (RF_REGION_NO_UFFD) or custom ones, so no test depends on
 * the kernel's write tracking.  Destination memory of region sinks sits
 * between PROT_NONE guard pages: a byte written outside a region kills
 * the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "engine/engine.h"
#include "ram/ram.h"
#include "ramflow/ramflow.h"

#define PAGE RF_PAGE_SIZE

static char shmdir[64]; /* files and sockets of this run */

/* ---- memory ------------------------------------------------------------- */

/* Maps `size` bytes between two PROT_NONE guard pages. */
static uint8_t *guarded_map(size_t size)
{
    uint8_t *p = mmap(NULL, size + 2 * PAGE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    assert_int_equal(mprotect(p, PAGE, PROT_NONE), 0);
    assert_int_equal(mprotect(p + PAGE + size, PAGE, PROT_NONE), 0);
    return p + PAGE;
}

static void guarded_unmap(uint8_t *mem, size_t size)
{
    munmap(mem - PAGE, size + 2 * PAGE);
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Mixed contents: zero pages, constant pages, random pages. */
static void fill(uint8_t *p, size_t pages, uint64_t seed)
{
    for (size_t i = 0; i < pages; i++) {
        uint8_t *pg = p + i * PAGE;
        if (i % 5 == 0) {
            memset(pg, 0, PAGE);
        } else if (i % 3 == 0) {
            memset(pg, (int)(i * 7 + seed), PAGE);
        } else {
            for (size_t k = 0; k < PAGE; k += 8) {
                uint64_t v = xorshift(&seed);
                memcpy(pg + k, &v, 8);
            }
        }
    }
}

static void assert_mem_equal(const uint8_t *got, const uint8_t *want,
                             size_t len, const char *what)
{
    if (memcmp(got, want, len) != 0) {
        size_t i = 0;
        while (got[i] == want[i]) {
            i++;
        }
        fail_msg("%s differs first at byte %zu (page %zu): %02x, want %02x",
                 what, i, i / PAGE, got[i], want[i]);
    }
}

static void assert_all_bytes(const uint8_t *p, size_t len, uint8_t v,
                             const char *what)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != v) {
            fail_msg("%s: byte %zu is %02x, want %02x", what, i, p[i], v);
        }
    }
}

static void expect_error(RfError *err, RfErrorKind kind, const char *want)
{
    if (!err) {
        fail_msg("no error, want one with '%s'", want);
    }
    if (rf_error_kind(err) != kind || !strstr(rf_error_msg(err), want)) {
        fail_msg("want kind %d with '%s', got kind %d: %s", kind, want,
                 rf_error_kind(err), rf_error_msg(err));
    }
}

/* A region source over caller memory, without userfaultfd. */
static RfRamSource *region_source(const RfRegion *regs, unsigned n)
{
    RfError *err = NULL;
    RfRamSource *src = rf_region_source_open(regs, n, RF_REGION_NO_UFFD,
                                             &err);
    if (!src) {
        fail_msg("region source: %s", rf_error_msg(err));
    }
    return src;
}

/* ---- one migration ------------------------------------------------------ */

typedef struct Dest {
    char uri[128];
    RfRamSink *sink;
    pthread_t thread;
    RfIncomingOptions opts;
    RfReport rep;
    RfError *err;
    bool ok;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool listening;
} Dest;

typedef struct Run {
    bool ok;            /* source side */
    RfError *err;
    RfReport rep;
    Dest d;             /* destination side: d.ok, d.err, d.rep */
} Run;

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
    d->ok = rf_incoming(d->uri, d->sink, &d->opts, &d->rep, &d->err);
    on_listening(NULL, d); /* unblock the waiter if listening never came */
    return NULL;
}

/* Migrates src into sink (3 channels unless params say otherwise); the
 * caller frees r->err and r->d.err (run_free). */
static void run_migration(RfRamSource *src, RfRamSink *sink,
                          RfParams *params, RfMigrateOptions *mo, Run *r)
{
    static unsigned seq;
    memset(r, 0, sizeof(*r));
    Dest *d = &r->d;
    snprintf(d->uri, sizeof(d->uri), "unix:%s/sock%u", shmdir, seq++);
    d->sink = sink;
    d->opts.listening = on_listening;
    d->opts.opaque = d;
    d->opts.timeout_ms = 20000;
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->cond, NULL);
    assert_int_equal(pthread_create(&d->thread, NULL, dest_thread, d), 0);
    pthread_mutex_lock(&d->lock);
    while (!d->listening) {
        pthread_cond_wait(&d->cond, &d->lock);
    }
    pthread_mutex_unlock(&d->lock);

    RfParams *p = params ? params : rf_params_new();
    assert_non_null(p);
    if (!params) {
        assert_true(rf_params_set(p, "multifd-channels", "3", NULL));
    }
    RfMigrateOptions none = {0};
    mo = mo ? mo : &none;
    mo->verify = true;
    mo->timeout_ms = 20000;
    r->ok = rf_migrate(d->uri, src, p, mo, &r->rep, &r->err);
    pthread_join(d->thread, NULL);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->cond);
    if (!params) {
        rf_params_free(p);
    }
}

static void run_expect_ok(const Run *r)
{
    if (!r->ok || !r->d.ok) {
        fail_msg("migration failed: source: %s; destination: %s",
                 r->ok ? "ok" : rf_error_msg(r->err),
                 r->d.ok ? "ok" : rf_error_msg(r->d.err));
    }
    assert_true(r->rep.verified);
}

static void run_free(Run *r)
{
    rf_error_free(r->err);
    rf_error_free(r->d.err);
}

/* ---- region sink -------------------------------------------------------- */

#define RS_PAGES 640u /* 2.5 MiB */

/* One block into one guarded region; names differ, so the blocks match as
 * the only ones.  The region starts non-zero: zero pages must be written,
 * not assumed. */
static void test_region_sink_one(void **state)
{
    (void)state;
    size_t size = RS_PAGES * PAGE;
    uint8_t *a = guarded_map(size), *dst = guarded_map(size);
    fill(a, RS_PAGES, 1);
    memset(dst, 0xa5, size);
    RfRegion sreg = {"guest-ram", a, size}, dreg = {"ram", dst, size};
    RfRamSource *src = region_source(&sreg, 1);
    RfError *err = NULL;
    RfRamSink *sink = rf_region_sink_new(&dreg, 1, &err);
    if (!sink) {
        fail_msg("region sink: %s", rf_error_msg(err));
    }
    assert_null(rf_ram_sink_opaque(sink));
    assert_null(sink->ops->host(sink, 0)); /* nothing before prepare */

    Run r;
    run_migration(src, sink, NULL, NULL, &r);
    run_expect_ok(&r);
    assert_mem_equal(dst, a, size, "region 'ram'");
    /* Not pre-faulted by us: the destination says its memory was cold. */
    assert_false(r.d.rep.dest_memory_warm);
    assert_false(r.rep.dest_memory_warm);
    assert_ptr_equal(sink->ops->host(sink, 0), dst);
    run_free(&r);

    /* The same sink takes a second migration (after new contents). */
    fill(a, RS_PAGES, 99);
    run_migration(src, sink, NULL, NULL, &r);
    run_expect_ok(&r);
    assert_mem_equal(dst, a, size, "region 'ram', second migration");
    run_free(&r);

    rf_ram_sink_free(sink);
    rf_ram_source_free(src);
    dst[0] = 1; /* still the caller's, still mapped */
    guarded_unmap(a, size);
    guarded_unmap(dst, size);
}

/* Two blocks of different sizes into regions listed in the other order,
 * plus a third region the source does not have, which stays untouched. */
static void test_region_sink_by_name(void **state)
{
    (void)state;
    size_t ram = 512 * PAGE, vga = 96 * PAGE, rom = 16 * PAGE;
    uint8_t *sa = guarded_map(ram), *sb = guarded_map(vga);
    uint8_t *dram = guarded_map(ram), *dvga = guarded_map(vga);
    uint8_t *drom = guarded_map(rom);
    fill(sa, ram / PAGE, 3);
    fill(sb, vga / PAGE, 4);
    memset(dram, 0x11, ram);
    memset(dvga, 0x22, vga);
    memset(drom, 0x33, rom);
    RfRegion sregs[2] = {{"ram", sa, ram}, {"vga", sb, vga}};
    RfRegion dregs[3] = {{"rom", drom, rom}, {"vga", dvga, vga},
                         {"ram", dram, ram}};
    RfRamSource *src = region_source(sregs, 2);
    RfError *err = NULL;
    RfRamSink *sink = rf_region_sink_new(dregs, 3, &err);
    if (!sink) {
        fail_msg("region sink: %s", rf_error_msg(err));
    }
    Run r;
    run_migration(src, sink, NULL, NULL, &r);
    run_expect_ok(&r);
    assert_mem_equal(dram, sa, ram, "region 'ram'");
    assert_mem_equal(dvga, sb, vga, "region 'vga'");
    assert_all_bytes(drom, rom, 0x33, "region 'rom' (no such block)");
    assert_ptr_equal(sink->ops->host(sink, 0), dram);
    assert_ptr_equal(sink->ops->host(sink, 1), dvga);
    assert_null(sink->ops->host(sink, 2));
    run_free(&r);
    rf_ram_sink_free(sink);
    rf_ram_source_free(src);
    guarded_unmap(sa, ram);
    guarded_unmap(sb, vga);
    guarded_unmap(dram, ram);
    guarded_unmap(dvga, vga);
    guarded_unmap(drom, rom);
}

/* A block bigger than its region: both sides fail naming the block and
 * both sizes, and the region is not written. */
static void test_region_sink_size_mismatch(void **state)
{
    (void)state;
    size_t big = 64 * PAGE, small = 32 * PAGE;
    uint8_t *a = guarded_map(big), *dst = guarded_map(small);
    fill(a, 64, 5);
    memset(dst, 0x5c, small);
    RfRegion sreg = {"ram", a, big}, dreg = {"ram", dst, small};
    RfRamSource *src = region_source(&sreg, 1);
    RfRamSink *sink = rf_region_sink_new(&dreg, 1, NULL);
    assert_non_null(sink);
    Run r;
    run_migration(src, sink, NULL, NULL, &r);
    assert_false(r.d.ok);
    assert_false(r.ok);
    printf("  destination: %s\n  source: %s\n", rf_error_msg(r.d.err),
           rf_error_msg(r.err));
    const char *want = "block 'ram' is 262144 bytes at the source but "
                       "region 'ram' here is 131072 bytes";
    expect_error(r.d.err, RF_ERR_MISMATCH, want);
    expect_error(r.err, RF_ERR_MISMATCH, want);
    assert_all_bytes(dst, small, 0x5c, "refused region");
    assert_null(sink->ops->host(sink, 0));
    run_free(&r);

    /* Smaller than the region is refused too (never partly filled). */
    RfRamBlock lay = {.name = "ram", .size = 16 * PAGE};
    RfError *err = NULL;
    assert_false(sink->ops->prepare(sink, &lay, 1, &err));
    expect_error(err, RF_ERR_MISMATCH, "65536 bytes at the source but "
                                       "region 'ram' here is 131072");
    rf_error_free(err);
    rf_ram_sink_free(sink);
    rf_ram_source_free(src);
    guarded_unmap(a, big);
    guarded_unmap(dst, small);
}

/* Layouts the region sink cannot take, called as the engine would. */
static void test_region_sink_unknown_block(void **state)
{
    (void)state;
    uint8_t *m = guarded_map(16 * PAGE);
    RfRegion dregs[2] = {{"ram", m, 8 * PAGE}, {"vga", m + 8 * PAGE,
                                                8 * PAGE}};
    RfRamSink *sink = rf_region_sink_new(dregs, 2, NULL);
    assert_non_null(sink);
    RfRamBlock lay[2] = {{.name = "ram", .size = 8 * PAGE},
                         {.name = "rom", .size = 8 * PAGE}};
    RfError *err = NULL;
    assert_false(sink->ops->prepare(sink, lay, 2, &err));
    printf("  %s\n", rf_error_msg(err));
    expect_error(err, RF_ERR_MISMATCH, "block 'rom' from the source has no "
                                       "region of that name here (blocks "
                                       "here: 'ram', 'vga')");
    rf_error_free(err);
    err = NULL;
    assert_null(sink->ops->host(sink, 0));
    /* One block, but two regions: the name must match. */
    assert_false(sink->ops->prepare(sink, &lay[1], 1, &err));
    expect_error(err, RF_ERR_MISMATCH, "block 'rom'");
    rf_error_free(err);
    err = NULL;
    /* A layout off the wire is checked before use. */
    RfRamBlock odd = {.name = "ram", .size = 5000};
    assert_false(sink->ops->prepare(sink, &odd, 1, &err));
    expect_error(err, RF_ERR_PROTOCOL, "5000");
    rf_error_free(err);
    err = NULL;
    assert_true(sink->ops->prepare(sink, lay, 1, &err));
    assert_ptr_equal(sink->ops->host(sink, 0), m);
    assert_false(sink->ops->wait_ready(sink));
    rf_ram_sink_free(sink);
    guarded_unmap(m, 16 * PAGE);
}

/* Bad regions are refused at creation with the region source's messages
 * (one shared check). */
static void test_region_sink_bad_regions(void **state)
{
    (void)state;
    uint8_t *m = guarded_map(16 * PAGE);
    struct {
        RfRegion regs[2];
        unsigned n;
        const char *want;
    } cases[] = {
        {{{"skewed", m + 8, PAGE}}, 1, "region 'skewed': address"},
        {{{"empty", m, 0}}, 1, "region 'empty': size 0"},
        {{{NULL, m, PAGE + 1}}, 1, "region 'region0': size 4097"},
        {{{"ram", m, 4 * PAGE}, {"ram", m + 8 * PAGE, PAGE}}, 2,
         "region 1: name 'ram' is already used by region 0"},
        {{{"low", m, 4 * PAGE}, {"high", m + 3 * PAGE, 4 * PAGE}}, 2,
         "overlaps region 'low'"},
        {{{"", m, PAGE}}, 1, "region 0: the name is empty"},
        {{{"ram", m, PAGE}}, 0, "got 0"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        RfError *err = NULL;
        RfError *serr = NULL;
        assert_null(rf_region_sink_new(cases[i].regs, cases[i].n, &err));
        expect_error(err, RF_ERR_PARAM, cases[i].want);
        assert_null(rf_region_source_open(cases[i].regs, cases[i].n,
                                          RF_REGION_NO_UFFD, &serr));
        assert_string_equal(rf_error_msg(err), rf_error_msg(serr));
        rf_error_free(err);
        rf_error_free(serr);
    }
    RfError *err = NULL;
    assert_null(rf_region_sink_new(NULL, 1, &err));
    expect_error(err, RF_ERR_PARAM, "NULL");
    rf_error_free(err);
    guarded_unmap(m, 16 * PAGE);
}

/* ---- file sink, reuse mode ---------------------------------------------- */

#define REUSE_PAGES 256u /* 1 MiB */

static RfRamSink *reuse_sink(const char *path)
{
    const char *specs[1] = {path};
    RfError *err = NULL;
    RfRamSink *sink = rf_file_sink_new(specs, 1, RF_FILE_SINK_REUSE, &err);
    if (!sink) {
        fail_msg("file sink: %s", rf_error_msg(err));
    }
    return sink;
}

static void assert_fd_content(int fd, const uint8_t *want, size_t len,
                              const char *what)
{
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, (off_t)len);
    uint8_t *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(p != MAP_FAILED);
    assert_mem_equal(p, want, len, what);
    munmap(p, len);
}

static int write_file(const char *path, size_t len, uint8_t v)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    uint8_t *buf = malloc(len);
    memset(buf, v, len);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    free(buf);
    return fd;
}

/* Migrates REUSE_PAGES of fresh contents into the file open as fd (at
 * path), which must keep its inode and end equal to the source; its pages
 * are mapped ahead (map-only pre-fault: no content written but the
 * migration's), so the destination reports its memory warm. */
static void reuse_into(int fd, const char *path, uint64_t seed)
{
    size_t size = REUSE_PAGES * PAGE;
    uint8_t *a = guarded_map(size);
    fill(a, REUSE_PAGES, seed);
    struct stat before, after;
    assert_int_equal(fstat(fd, &before), 0);
    RfRegion sreg = {"ram", a, size};
    RfRamSource *src = region_source(&sreg, 1);
    RfRamSink *sink = reuse_sink(path);
    Run r;
    run_migration(src, sink, NULL, NULL, &r);
    run_expect_ok(&r);
    assert_true(r.d.rep.dest_memory_warm);
    rf_ram_sink_free(sink);
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(after.st_ino, before.st_ino);
    assert_fd_content(fd, a, size, path);
    run_free(&r);
    rf_ram_source_free(src);
    guarded_unmap(a, size);
}

/* A memfd sealed against shrinking and growing, reached through
 * /proc/self/fd: a sink that truncated it (even to re-extend it) would
 * fail. */
static void test_reuse_sealed_memfd(void **state)
{
    (void)state;
    size_t size = REUSE_PAGES * PAGE;
    int fd = memfd_create("rf-reuse", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(fd >= 0);
    uint8_t *junk = malloc(size);
    memset(junk, 0xee, size);
    assert_int_equal(write(fd, junk, size), (ssize_t)size);
    free(junk);
    assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW),
                     0);
    assert_int_equal(ftruncate(fd, 0), -1); /* the seal holds */
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    reuse_into(fd, path, 7);
    close(fd);
}

/* An ordinary tmpfs file of non-zero bytes (the source's zero pages are
 * written over old bytes).  That nothing truncates is shown with the
 * sealed memfd above: a truncated tmpfs file looks the same afterwards. */
static void test_reuse_file(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s/reuse", shmdir);
    int fd = write_file(path, REUSE_PAGES * PAGE, 0x77);
    reuse_into(fd, path, 8);
    close(fd);
    unlink(path);
}

/* Wrong sizes are refused naming block, file and both sizes; the file is
 * left as it was.  A missing file is not created. */
static void test_reuse_refused(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s/short", shmdir);
    size_t have = 30 * PAGE;
    int fd = write_file(path, have, 0x66);
    struct stat before;
    assert_int_equal(fstat(fd, &before), 0);

    /* Through a migration: the source hears why. */
    uint8_t *a = guarded_map(32 * PAGE);
    fill(a, 32, 9);
    RfRegion sreg = {"ram", a, 32 * PAGE};
    RfRamSource *src = region_source(&sreg, 1);
    RfRamSink *sink = reuse_sink(path);
    Run r;
    run_migration(src, sink, NULL, NULL, &r);
    assert_false(r.ok);
    assert_false(r.d.ok);
    printf("  %s\n", rf_error_msg(r.err));
    char want[256];
    snprintf(want, sizeof(want), "block 'ram' is 131072 bytes at the "
             "source but file '%s' here is 122880 bytes", path);
    expect_error(r.d.err, RF_ERR_MISMATCH, want);
    expect_error(r.err, RF_ERR_MISMATCH, want);
    run_free(&r);
    rf_ram_sink_free(sink);

    /* Larger than the block: refused as well. */
    sink = reuse_sink(path);
    RfRamBlock lay = {.name = "ram", .size = 16 * PAGE};
    RfError *err = NULL;
    assert_false(sink->ops->prepare(sink, &lay, 1, &err));
    expect_error(err, RF_ERR_MISMATCH, "65536 bytes at the source");
    expect_error(err, RF_ERR_MISMATCH, "122880 bytes");
    rf_error_free(err);
    rf_ram_sink_free(sink);

    struct stat after;
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(after.st_ino, before.st_ino);
    uint8_t *want_bytes = malloc(have);
    memset(want_bytes, 0x66, have);
    assert_fd_content(fd, want_bytes, have, "refused file");
    free(want_bytes);
    close(fd);
    unlink(path);

    /* Nothing is opened at creation; prepare does not create. */
    snprintf(path, sizeof(path), "%s/absent", shmdir);
    sink = reuse_sink(path);
    err = NULL;
    assert_false(sink->ops->prepare(sink, &lay, 1, &err));
    expect_error(err, RF_ERR_IO, "cannot open");
    rf_error_free(err);
    rf_ram_sink_free(sink);
    errno = 0;
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(errno, ENOENT);
    rf_ram_source_free(src);
    guarded_unmap(a, 32 * PAGE);
}

/* ---- file sink: temporary file, rename, checks before touching ---------- */

/* Resident pages of this process. */
static unsigned long long resident_pages(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long vsz = 0, rss = 0;
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%llu %llu", &vsz, &rss), 2);
    fclose(f);
    return rss;
}

/* The names in dir, sorted, one per line, into out. */
static void dir_listing(const char *dir, char *out, size_t cap)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "ls -A1 '%s'", dir);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    pclose(f);
}

/* How many names in dir contain ".ramflow-" (temporary files). */
static unsigned temp_files(const char *dir)
{
    char list[4096];
    dir_listing(dir, list, sizeof(list));
    unsigned n = 0;
    for (const char *p = list; (p = strstr(p, ".ramflow-")); p++) {
        n++;
    }
    return n;
}

/* A file of `pages` pages of a seeded pattern at dir/name; its bytes in
 * *want (malloc'd). */
static void make_target(const char *path, size_t pages, uint64_t seed,
                        mode_t mode, uint8_t **want)
{
    *want = malloc(pages * PAGE);
    assert_non_null(*want);
    fill(*want, pages, seed);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, *want, pages * PAGE), (ssize_t)(pages * PAGE));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

/* The file at path holds exactly len bytes equal to want. */
static void assert_file_is(const char *path, const uint8_t *want,
                           size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fail_msg("%s: %s", path, strerror(errno));
    }
    assert_fd_content(fd, want, len, path);
    close(fd);
}

static RfRamSink *file_sink(const char *spec, unsigned flags)
{
    const char *specs[1] = {spec};
    RfError *err = NULL;
    RfRamSink *sink = rf_file_sink_new(specs, 1, flags, &err);
    if (!sink) {
        fail_msg("file sink: %s", rf_error_msg(err));
    }
    return sink;
}

static void prepare_ok(RfRamSink *sink, const RfRamBlock *lay, unsigned n)
{
    RfError *err = NULL;
    if (!sink->ops->prepare(sink, lay, n, &err)) {
        fail_msg("prepare: %s", rf_error_msg(err));
    }
}

static void expect_prepare_error(RfRamSink *sink, const RfRamBlock *lay,
                                 unsigned n, RfErrorKind kind,
                                 const char *want)
{
    RfError *err = NULL;
    assert_false(sink->ops->prepare(sink, lay, n, &err));
    print_message("  %s\n", rf_error_msg(err));
    expect_error(err, kind, want);
    rf_error_free(err);
}

/* Success: the target keeps its old contents during the migration, a
 * temporary file beside it takes the data, and finish(true) renames it
 * over the target (mode kept); no temporary file is left. */
static void test_file_sink_rename_on_success(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s/target", shmdir);
    uint8_t *old, *want = malloc(8 * PAGE);
    make_target(path, 16, 1, 0640, &old);
    RfRamSink *sink = file_sink(path, 0);
    RfRamBlock lay = {.name = "ram", .size = 8 * PAGE};
    prepare_ok(sink, &lay, 1);
    assert_int_equal(temp_files(shmdir), 1);
    assert_file_is(path, old, 16 * PAGE); /* untouched so far */
    fill(want, 8, 2);
    memcpy(sink->ops->host(sink, 0), want, 8 * PAGE);
    sink->ops->wait_ready(sink);
    sink->ops->finish(sink, true);
    assert_file_is(path, want, 8 * PAGE);
    rf_ram_sink_free(sink);
    assert_file_is(path, want, 8 * PAGE);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_int_equal(temp_files(shmdir), 0);
    unlink(path);
    free(old);
    free(want);
}

/* Failure, by finish(false) or by free() without finish: the target is
 * byte-identical, no temporary file remains, and a target that did not
 * exist is not created. */
static void test_file_sink_failure_keeps_target(void **state)
{
    (void)state;
    char path[128], absent[128], listing[4096], after[4096];
    snprintf(path, sizeof(path), "%s/kept", shmdir);
    snprintf(absent, sizeof(absent), "%s/absent", shmdir);
    uint8_t *old;
    make_target(path, 16, 3, 0600, &old);
    dir_listing(shmdir, listing, sizeof(listing));
    for (int how = 0; how < 2; how++) {
        const char *targets[2] = {path, absent};
        for (int t = 0; t < 2; t++) {
            RfRamSink *sink = file_sink(targets[t], 0);
            RfRamBlock lay = {.name = "ram", .size = 8 * PAGE};
            prepare_ok(sink, &lay, 1);
            assert_int_equal(temp_files(shmdir), 1);
            memset(sink->ops->host(sink, 0), 0xab, 8 * PAGE);
            if (how == 0) {
                sink->ops->finish(sink, false);
                assert_int_equal(temp_files(shmdir), 0);
            }
            rf_ram_sink_free(sink);
            assert_int_equal(temp_files(shmdir), 0);
            errno = 0;
            assert_int_equal(access(absent, F_OK), -1);
            assert_int_equal(errno, ENOENT);
            assert_file_is(path, old, 16 * PAGE);
            dir_listing(shmdir, after, sizeof(after));
            assert_string_equal(after, listing);
        }
    }
    unlink(path);
    free(old);
}

/* A target that exists and is not a regular file is refused before
 * anything is created. */
static void test_file_sink_non_regular_refused(void **state)
{
    (void)state;
    char dir[128], listing[4096], after[4096];
    snprintf(dir, sizeof(dir), "%s/subdir", shmdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    dir_listing(shmdir, listing, sizeof(listing));
    RfRamBlock lay = {.name = "ram", .size = 8 * PAGE};
    RfRamSink *sink = file_sink(dir, 0);
    expect_prepare_error(sink, &lay, 1, RF_ERR_IO,
                         "is a directory, not a regular file");
    rf_ram_sink_free(sink);
    sink = file_sink("/dev/null", 0);
    expect_prepare_error(sink, &lay, 1, RF_ERR_IO,
                         "'/dev/null' is a device, not a regular file");
    rf_ram_sink_free(sink);
    sink = file_sink("/dev/null", RF_FILE_SINK_REUSE);
    expect_prepare_error(sink, &lay, 1, RF_ERR_IO, "is a device");
    rf_ram_sink_free(sink);
    dir_listing(shmdir, after, sizeof(after));
    assert_string_equal(after, listing);
    rmdir(dir);
}

/* "PATH:SIZE": the announced size must equal SIZE, checked for every
 * block before any file is created or changed. */
static void test_file_sink_expected_size(void **state)
{
    (void)state;
    char pa[128], pb[128], sa[160], sb[160], listing[4096], after[4096];
    snprintf(pa, sizeof(pa), "%s/a", shmdir);
    snprintf(pb, sizeof(pb), "%s/b", shmdir);
    snprintf(sa, sizeof(sa), "ram=%s:64K", pa);
    snprintf(sb, sizeof(sb), "vga=%s:8k", pb);
    uint8_t *old;
    make_target(pb, 4, 4, 0600, &old); /* b exists, a does not */
    dir_listing(shmdir, listing, sizeof(listing));
    const char *specs[2] = {sa, sb};
    RfError *err = NULL;
    RfRamSink *sink = rf_file_sink_new(specs, 2, 0, &err);
    assert_non_null(sink);
    /* Block 'ram' matches; 'vga' does not: nothing is created for 'ram'
     * either. */
    RfRamBlock lay[2] = {{.name = "ram", .size = 16 * PAGE},
                         {.name = "vga", .size = 4 * PAGE}};
    char want[256];
    snprintf(want, sizeof(want), "block 'vga' is 16384 bytes at the source "
             "but --memory '%s' expects 8192 bytes", pb);
    expect_prepare_error(sink, lay, 2, RF_ERR_MISMATCH, want);
    dir_listing(shmdir, after, sizeof(after));
    assert_string_equal(after, listing);
    assert_file_is(pb, old, 4 * PAGE);
    /* The sink stays usable: the right layout passes. */
    lay[1].size = 2 * PAGE;
    prepare_ok(sink, lay, 2);
    sink->ops->finish(sink, true);
    rf_ram_sink_free(sink);
    struct stat st;
    assert_int_equal(stat(pa, &st), 0);
    assert_int_equal(st.st_size, 16 * PAGE);
    assert_int_equal(stat(pb, &st), 0);
    assert_int_equal(st.st_size, 2 * PAGE);
    unlink(pa);
    unlink(pb);
    free(old);

    /* A ':' that is not a size stays in the path; a size that is not a
     * multiple of the page size is refused at once. */
    char colon[128], spec[160];
    snprintf(colon, sizeof(colon), "%s/x:y", shmdir);
    sink = file_sink(colon, 0);
    RfRamBlock one = {.name = "x", .size = PAGE};
    prepare_ok(sink, &one, 1);
    sink->ops->finish(sink, true);
    rf_ram_sink_free(sink);
    assert_int_equal(access(colon, F_OK), 0);
    unlink(colon);
    snprintf(spec, sizeof(spec), "%s/z:5000", shmdir);
    const char *bad[1] = {spec};
    assert_null(rf_file_sink_new(bad, 1, 0, &err));
    expect_error(err, RF_ERR_PARAM, "not a non-zero multiple of 4096");
    rf_error_free(err);

    /* With REUSE, the file's size and ":SIZE" must both match. */
    snprintf(pa, sizeof(pa), "%s/r", shmdir);
    make_target(pa, 4, 5, 0600, &old);
    snprintf(spec, sizeof(spec), "%s:32K", pa);
    sink = file_sink(spec, RF_FILE_SINK_REUSE);
    RfRamBlock four = {.name = "r", .size = 4 * PAGE};
    expect_prepare_error(sink, &four, 1, RF_ERR_MISMATCH, "expects 32768");
    rf_ram_sink_free(sink);
    assert_file_is(pa, old, 4 * PAGE);
    unlink(pa);
    free(old);
}

/* A 16 TiB layout (or 64 blocks of 1 TiB) is refused without creating a
 * file or allocating memory. */
static void test_file_sink_absurd_layout(void **state)
{
    (void)state;
    char path[128], listing[4096], after[4096];
    snprintf(path, sizeof(path), "%s/huge", shmdir);
    dir_listing(shmdir, listing, sizeof(listing));
    unsigned long long rss0 = resident_pages();
    RfRamSink *sink = file_sink(path, 0);
    RfRamBlock lay = {.name = "ram", .size = 16ull << 40};
    expect_prepare_error(sink, &lay, 1, RF_ERR_IO,
                         "block 'ram' (17592186044416 bytes)");
    rf_ram_sink_free(sink);
    const char *specs[RF_MAX_BLOCKS];
    char names[RF_MAX_BLOCKS][160];
    RfRamBlock many[RF_MAX_BLOCKS];
    for (unsigned i = 0; i < RF_MAX_BLOCKS; i++) {
        snprintf(names[i], sizeof(names[i]), "b%u=%s/b%u", i, shmdir, i);
        specs[i] = names[i];
        memset(&many[i], 0, sizeof(many[i]));
        snprintf(many[i].name, sizeof(many[i].name), "b%u", i);
        many[i].size = 1ull << 40;
    }
    RfError *err = NULL;
    sink = rf_file_sink_new(specs, RF_MAX_BLOCKS, 0, &err);
    assert_non_null(sink);
    expect_prepare_error(sink, many, RF_MAX_BLOCKS, RF_ERR_IO, "are free");
    rf_ram_sink_free(sink);
    assert_true(resident_pages() < rss0 + 2048); /* < 8 MiB more */
    dir_listing(shmdir, after, sizeof(after));
    assert_string_equal(after, listing);
}

/* ---- a sink written through its file descriptor ----------------------- */

#define FD_PAGES 64u
#define FD_SKIP 3u /* pages of the memfd before the block (fd offset) */

/* Block memory is a memfd from page FD_SKIP on; host() gives a read-only
 * mapping of it, so a single write through the mapping kills the test:
 * every page must arrive with pwrite on the fd. */
typedef struct FdSink {
    int fd;
    uint8_t *ro;
    bool zeroed;
    unsigned fd_calls;
} FdSink;

typedef struct FdRounds {
    RfRamSource *src;
    uint8_t *mem;
} FdRounds;

static bool fds_prepare(RfRamSink *s, const RfRamBlock *layout, unsigned n,
                        RfError **errp)
{
    (void)s;
    if (n != 1 || layout[0].size != FD_PAGES * PAGE) {
        rf_error_set(errp, RF_ERR_MISMATCH, "fd sink: one block of %u "
                     "pages wanted", FD_PAGES);
        return false;
    }
    return true;
}

static uint8_t *fds_host(RfRamSink *s, unsigned i)
{
    return i == 0 ? ((FdSink *)rf_ram_sink_opaque(s))->ro : NULL;
}

static int fds_fd(RfRamSink *s, unsigned i, uint64_t *offset)
{
    FdSink *f = rf_ram_sink_opaque(s);
    f->fd_calls++;
    *offset = FD_SKIP * PAGE;
    return i == 0 ? f->fd : -1;
}

static bool fds_zeroed(RfRamSink *s, unsigned i)
{
    return i == 0 && ((FdSink *)rf_ram_sink_opaque(s))->zeroed;
}

/* A custom sink over f (its fd, read-only mapping and zeroed flag). */
static RfRamSink *fd_sink_new(FdSink *f)
{
    RfRamSinkOps ops = {.size = sizeof(ops), .name = "fd",
                        .prepare = fds_prepare, .host = fds_host,
                        .fd = fds_fd, .zeroed = fds_zeroed};
    RfRamSink *sink = rf_ram_sink_new(&ops, f, NULL);
    assert_non_null(sink);
    return sink;
}

/* Round 2: page 5 (data in round 1) becomes zero, page 10 (zero in round
 * 1) gets data: a zero page after a write must still be written. */
static void fd_round_start(unsigned round, void *opaque)
{
    FdRounds *fr = opaque;
    if (round != 2) {
        return;
    }
    memset(fr->mem + 5 * PAGE, 0, PAGE);
    memset(fr->mem + 10 * PAGE, 0x33, PAGE);
    rf_ram_source_mark_dirty(fr->src, 0, 5 * PAGE, PAGE);
    rf_ram_source_mark_dirty(fr->src, 0, 10 * PAGE, PAGE);
}

/* Migrates into a memfd through its fd, the memfd fresh (zeroed: zero
 * pages need no work until written) or full of old bytes (zero pages are
 * read back and cleared): the block ends equal to the source, the pages
 * before it are untouched, and nothing wrote through the mapping. */
static void test_sink_writes_through_fd(void **state)
{
    (void)state;
    for (int zeroed = 0; zeroed < 2; zeroed++) {
        size_t size = FD_PAGES * PAGE, whole = size + FD_SKIP * PAGE;
        int fd = memfd_create("rf-fd-sink", 0);
        assert_true(fd >= 0);
        uint8_t *old = malloc(whole);
        memset(old, 0xEE, FD_SKIP * PAGE);
        memset(old + FD_SKIP * PAGE, zeroed ? 0 : 0x5A, size);
        assert_int_equal(write(fd, old, whole), (ssize_t)whole);
        FdSink f = {.fd = fd, .zeroed = zeroed};
        f.ro = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, FD_SKIP * PAGE);
        assert_true(f.ro != MAP_FAILED);
        RfRamSink *sink = fd_sink_new(&f);

        uint8_t *a = guarded_map(size);
        fill(a, FD_PAGES, 11); /* every 5th page zero: page 10 too */
        memset(a + 5 * PAGE, 0x44, PAGE);
        RfRegion sreg = {"ram", a, size};
        FdRounds fr = {.src = region_source(&sreg, 1), .mem = a};
        RfParams *p = rf_params_new();
        assert_true(rf_params_set(p, "downtime-limit", "0", NULL));
        assert_true(rf_params_set(p, "max-rounds", "2", NULL));
        assert_true(rf_params_set(p, "multifd-channels", "2", NULL));
        RfMigrateOptions mo = {.round_start = fd_round_start,
                               .opaque = &fr};
        Run r;
        run_migration(fr.src, sink, p, &mo, &r);
        run_expect_ok(&r);
        assert_true(r.rep.rounds >= 2);
        assert_true(f.fd_calls > 0);
        assert_int_equal(a[5 * PAGE], 0);
        assert_int_equal(a[10 * PAGE], 0x33);
        uint8_t *got = malloc(whole);
        assert_int_equal(pread(fd, got, whole, 0), (ssize_t)whole);
        assert_mem_equal(got, old, FD_SKIP * PAGE, "pages before the block");
        assert_mem_equal(got + FD_SKIP * PAGE, a, size, "the block");
        free(got);
        run_free(&r);
        rf_params_free(p);
        rf_ram_sink_free(sink);
        rf_ram_source_free(fr.src);
        guarded_unmap(a, size);
        munmap(f.ro, size);
        free(old);
        close(fd);
    }
}

/* An fd the kernel refuses writes on (read-only): the migration fails at
 * once, on both sides, with the destination naming the failed write and
 * the reason (no reconnect wait: the file, not the link, failed). */
static void test_sink_fd_write_fails(void **state)
{
    (void)state;
    size_t size = FD_PAGES * PAGE, whole = size + FD_SKIP * PAGE;
    int wfd = memfd_create("rf-fd-sink-ro", 0);
    assert_true(wfd >= 0);
    assert_int_equal(ftruncate(wfd, (off_t)whole), 0);
    char self[64];
    snprintf(self, sizeof(self), "/proc/self/fd/%d", wfd);
    FdSink f = {.fd = open(self, O_RDONLY), .zeroed = true};
    assert_true(f.fd >= 0);
    f.ro = mmap(NULL, size, PROT_READ, MAP_SHARED, f.fd, FD_SKIP * PAGE);
    assert_true(f.ro != MAP_FAILED);
    RfRamSink *sink = fd_sink_new(&f);
    uint8_t *a = guarded_map(size);
    fill(a, FD_PAGES, 4);
    RfRegion sreg = {"ram", a, size};
    RfRamSource *src = region_source(&sreg, 1);
    Run r;
    run_migration(src, sink, NULL, NULL, &r);
    assert_false(r.ok);
    assert_false(r.d.ok);
    printf("  destination: %s\n", rf_error_msg(r.d.err));
    assert_non_null(strstr(rf_error_msg(r.d.err), "destination's file"));
    assert_non_null(strstr(rf_error_msg(r.d.err), strerror(EBADF)));
    run_free(&r);
    rf_ram_sink_free(sink);
    rf_ram_source_free(src);
    guarded_unmap(a, size);
    munmap(f.ro, size);
    close(f.fd);
    close(wfd);
}

/* ---- a source read through its file descriptor ------------------------ */

/* One block: a memfd from page FD_SKIP on, mapped for block(); fd() gives
 * the memfd, or (bad_fd) a descriptor that cannot be read. */
typedef struct FdSrc {
    RfRamBlock blk;
    int fd;
    unsigned fd_calls;
} FdSrc;

static unsigned fsrc_count(RfRamSource *s)
{
    (void)s;
    return 1;
}

static const RfRamBlock *fsrc_block(RfRamSource *s, unsigned i)
{
    return i == 0 ? &((FdSrc *)rf_ram_source_opaque(s))->blk : NULL;
}

static bool fsrc_sync(RfRamSource *s, unsigned block, uint64_t *bitmap,
                      RfError **errp)
{
    (void)s;
    (void)block;
    (void)bitmap;
    (void)errp;
    return true; /* nothing is written after round 1 */
}

static int fsrc_fd(RfRamSource *s, unsigned i, uint64_t *offset)
{
    FdSrc *f = rf_ram_source_opaque(s);
    f->fd_calls++;
    *offset = FD_SKIP * PAGE;
    return i == 0 ? f->fd : -1;
}

/* The channels read a source that gives a file descriptor with pread at
 * its offset: the destination ends equal to the block (and to the mapping
 * the verify digests read); a descriptor that cannot be read fails the
 * migration with a message naming the source's file. */
static void test_source_reads_through_fd(void **state)
{
    (void)state;
    size_t size = FD_PAGES * PAGE, whole = size + FD_SKIP * PAGE;
    int mfd = memfd_create("rf-fd-src", 0);
    assert_true(mfd >= 0);
    uint8_t *img = malloc(whole);
    memset(img, 0xEE, FD_SKIP * PAGE); /* never part of the block */
    fill(img + FD_SKIP * PAGE, FD_PAGES, 21);
    assert_int_equal(write(mfd, img, whole), (ssize_t)whole);
    uint8_t *map = mmap(NULL, size, PROT_READ, MAP_SHARED, mfd,
                        FD_SKIP * PAGE);
    assert_true(map != MAP_FAILED);
    RfRamSourceOps ops = {.size = sizeof(ops), .name = "fd",
                          .block_count = fsrc_count, .block = fsrc_block,
                          .dirty_sync = fsrc_sync, .fd = fsrc_fd};
    for (int bad = 0; bad < 2; bad++) {
        FdSrc f = {.blk = {.name = "ram", .size = size, .host = map},
                   .fd = mfd};
        char self[64];
        snprintf(self, sizeof(self), "/proc/self/fd/%d", mfd);
        if (bad) {
            f.fd = open(self, O_WRONLY);
            assert_true(f.fd >= 0);
        }
        RfRamSource *src = rf_ram_source_new(&ops, &f, NULL);
        assert_non_null(src);
        uint8_t *dst = guarded_map(size);
        memset(dst, 0xa5, size);
        RfRegion dreg = {"ram", dst, size};
        RfRamSink *sink = rf_region_sink_new(&dreg, 1, NULL);
        assert_non_null(sink);
        Run r;
        run_migration(src, sink, NULL, NULL, &r);
        assert_true(f.fd_calls > 0);
        if (!bad) {
            run_expect_ok(&r);
            assert_mem_equal(dst, img + FD_SKIP * PAGE, size, "block");
        } else {
            assert_false(r.ok);
            printf("  source: %s\n", rf_error_msg(r.err));
            assert_non_null(strstr(rf_error_msg(r.err), "source's file"));
            assert_non_null(strstr(rf_error_msg(r.err), strerror(EBADF)));
            close(f.fd);
        }
        run_free(&r);
        rf_ram_sink_free(sink);
        rf_ram_source_free(src);
        guarded_unmap(dst, size);
    }
    munmap(map, size);
    close(mfd);
    free(img);
}

/* ---- custom source with a dirty-log provider ---------------------------- */

#define CS_A_PAGES 300u
#define CS_B_PAGES 100u /* the last bitmap word is partly used */
#define CS_REWRITE 7u   /* pages each block rewrites per round */
#define CS_MAX_ROUNDS 4u
#define CS_MAX_ROUND_SEEN 16u

typedef struct CustomSrc {
    RfRamBlock blk[2];
    RfRamSource *src;
    unsigned own_start, own_sync, own_stop, frees;
    /* the provider */
    unsigned log_start, log_stop, log_sync;
    unsigned syncs[CS_MAX_ROUND_SEEN][2]; /* per round, per block */
    unsigned paused_syncs[2];
    bool paused;
    uint64_t pending[2][(CS_A_PAGES + 63) / 64];
    unsigned round;
    uint64_t reported;    /* pages the provider handed over */
    bool set_refused;     /* set_dirty_log refused while running */
    char set_msg[256];
} CustomSrc;

static CustomSrc *cs_of(RfRamSource *s)
{
    return rf_ram_source_opaque(s);
}

static unsigned cs_block_count(RfRamSource *s)
{
    (void)s;
    return 2;
}

static const RfRamBlock *cs_block(RfRamSource *s, unsigned i)
{
    return i < 2 ? &cs_of(s)->blk[i] : NULL;
}

static bool cs_dirty_start(RfRamSource *s, RfError **errp)
{
    (void)errp;
    cs_of(s)->own_start++;
    return true;
}

static bool cs_dirty_sync(RfRamSource *s, unsigned block, uint64_t *bitmap,
                          RfError **errp)
{
    (void)block;
    (void)bitmap;
    (void)errp;
    cs_of(s)->own_sync++;
    return true;
}

static void cs_dirty_stop(RfRamSource *s)
{
    cs_of(s)->own_stop++;
}

static void cs_free(RfRamSource *s)
{
    cs_of(s)->frees++;
}

static bool log_start(void *opaque, RfError **errp)
{
    (void)errp;
    ((CustomSrc *)opaque)->log_start++;
    return true;
}

static bool log_sync(void *opaque, unsigned block, uint64_t *bitmap,
                     RfError **errp)
{
    CustomSrc *cs = opaque;
    if (block >= 2) {
        rf_error_set(errp, RF_ERR_GENERIC, "no block %u", block);
        return false;
    }
    cs->log_sync++;
    if (cs->round < CS_MAX_ROUND_SEEN) {
        cs->syncs[cs->round][block]++;
    }
    cs->paused_syncs[block] += cs->paused;
    uint64_t pages = cs->blk[block].size / PAGE;
    for (uint64_t w = 0; w < (pages + 63) / 64; w++) {
        cs->reported += (uint64_t)__builtin_popcountll(cs->pending[block][w]);
        bitmap[w] |= cs->pending[block][w];
        cs->pending[block][w] = 0;
    }
    /* Past the block's end, in its last word: not a page, never sent. */
    if (block == 1) {
        bitmap[CS_B_PAGES / 64] |= 1ull << 63;
    }
    return true;
}

static void log_stop(void *opaque)
{
    ((CustomSrc *)opaque)->log_stop++;
}

static const RfDirtyLog test_log_template = {
    .size = sizeof(RfDirtyLog),
    .start = log_start,
    .sync = log_sync,
    .stop = log_stop,
};

/* Before each round's sync: rewrite CS_REWRITE pages of each block with
 * the round's number, report them to the provider only, and one more
 * page through rf_ram_source_mark_dirty. */
static void cs_round_start(unsigned round, void *opaque)
{
    CustomSrc *cs = opaque;
    cs->round = round;
    if (round < 2) {
        return;
    }
    for (unsigned b = 0; b < 2; b++) {
        uint64_t pages = cs->blk[b].size / PAGE;
        for (unsigned k = 0; k < CS_REWRITE; k++) {
            uint64_t pg = (round * 13 + k * 11) % (pages - 1);
            memset(cs->blk[b].host + pg * PAGE, (int)(round * 16 + k + b),
                   PAGE);
            cs->pending[b][pg / 64] |= 1ull << (pg % 64);
        }
    }
    /* The last page of block 0 is never in the provider's set. */
    uint64_t last = CS_A_PAGES - 1;
    cs->blk[0].host[last * PAGE + round] = (uint8_t)round;
    rf_ram_source_mark_dirty(cs->src, 0, last * PAGE + round, 1);
    if (round == 2) {
        RfDirtyLog other = test_log_template;
        other.opaque = cs;
        RfError *err = NULL;
        bool ok1 = rf_ram_source_set_dirty_log(cs->src, &other, &err);
        if (err) {
            snprintf(cs->set_msg, sizeof(cs->set_msg), "%s",
                     rf_error_msg(err));
        }
        bool kind_ok = err && rf_error_kind(err) == RF_ERR_PARAM;
        rf_error_free(err);
        bool ok2 = rf_ram_source_set_dirty_log(cs->src, NULL, NULL);
        cs->set_refused = !ok1 && !ok2 && kind_ok;
    }
}

static void cs_pause(void *opaque)
{
    ((CustomSrc *)opaque)->paused = true;
}

static void cs_resume(void *opaque)
{
    ((CustomSrc *)opaque)->paused = false;
}

static const RfRamSourceOps custom_source_ops = {
    .size = sizeof(RfRamSourceOps),
    .name = "test-vmm",
    .block_count = cs_block_count,
    .block = cs_block,
    .dirty_start = cs_dirty_start,
    .dirty_sync = cs_dirty_sync,
    .dirty_stop = cs_dirty_stop,
    .free = cs_free,
};

static void test_custom_source_dirty_log(void **state)
{
    (void)state;
    CustomSrc cs = {0};
    size_t sa = CS_A_PAGES * PAGE, sb = CS_B_PAGES * PAGE;
    snprintf(cs.blk[0].name, sizeof(cs.blk[0].name), "ram");
    snprintf(cs.blk[1].name, sizeof(cs.blk[1].name), "vga");
    cs.blk[0].size = sa;
    cs.blk[1].size = sb;
    cs.blk[0].host = guarded_map(sa);
    cs.blk[1].host = guarded_map(sb);
    fill(cs.blk[0].host, CS_A_PAGES, 21);
    fill(cs.blk[1].host, CS_B_PAGES, 22);
    RfError *err = NULL;
    cs.src = rf_ram_source_new(&custom_source_ops, &cs, &err);
    if (!cs.src) {
        fail_msg("custom source: %s", rf_error_msg(err));
    }
    assert_ptr_equal(rf_ram_source_opaque(cs.src), &cs);
    assert_string_equal(rf_ram_source_describe(cs.src), "explicit marks");
    RfDirtyLog log = test_log_template;
    log.opaque = &cs;
    assert_true(rf_ram_source_set_dirty_log(cs.src, &log, &err));
    assert_string_equal(rf_ram_source_describe(cs.src),
                        "dirty-log provider");
    /* Marked before the migration: round 1 sends it anyway, so it must
     * not be sent a second time. */
    rf_ram_source_mark_dirty(cs.src, 1, 0, PAGE);

    uint8_t *dst_a = guarded_map(sa), *dst_b = guarded_map(sb);
    RfRegion dregs[2] = {{"ram", dst_a, sa}, {"vga", dst_b, sb}};
    RfRamSink *sink = rf_region_sink_new(dregs, 2, &err);
    assert_non_null(sink);
    RfParams *p = rf_params_new();
    /* Never converges by estimate: CS_MAX_ROUNDS live rounds, then the
     * final one. */
    char rounds[16];
    snprintf(rounds, sizeof(rounds), "%u", CS_MAX_ROUNDS);
    assert_true(rf_params_set(p, "downtime-limit", "0", NULL));
    assert_true(rf_params_set(p, "max-rounds", rounds, NULL));
    assert_true(rf_params_set(p, "multifd-channels", "2", NULL));
    RfMigrateOptions mo = {.round_start = cs_round_start,
                           .pause = cs_pause, .resume = cs_resume,
                           .opaque = &cs};
    Run r;
    run_migration(cs.src, sink, p, &mo, &r);
    run_expect_ok(&r);
    unsigned rounds_run = r.rep.rounds;
    printf("  %u rounds, %llu pages sent, provider: %u syncs, %llu pages\n",
           rounds_run, (unsigned long long)r.rep.pages_sent, cs.log_sync,
           (unsigned long long)cs.reported);
    assert_int_equal(rounds_run, CS_MAX_ROUNDS + 1);

    /* The last contents arrived, including the provider's pages. */
    assert_mem_equal(dst_a, cs.blk[0].host, sa, "block 'ram'");
    assert_mem_equal(dst_b, cs.blk[1].host, sb, "block 'vga'");
    /* The provider replaced the source's tracker, once started and
     * stopped; it was asked for every block at every round after the
     * first, and again once the writers were paused. */
    assert_int_equal(cs.log_start, 1);
    assert_int_equal(cs.log_stop, 1);
    assert_int_equal(cs.own_start + cs.own_sync + cs.own_stop, 0);
    for (unsigned b = 0; b < 2; b++) {
        assert_int_equal(cs.syncs[1][b], 0);
        for (unsigned rd = 2; rd <= rounds_run; rd++) {
            if (cs.syncs[rd][b] < 1) {
                fail_msg("round %u: block %u never synced", rd, b);
            }
        }
        assert_true(cs.paused_syncs[b] >= 1);
    }
    /* Exactly the reported pages went again, plus one mark a round. */
    uint64_t total = CS_A_PAGES + CS_B_PAGES;
    assert_int_equal(cs.reported, (rounds_run - 1) * 2 * CS_REWRITE);
    assert_int_equal(r.rep.pages_sent,
                     total + cs.reported + (rounds_run - 1));
    /* Setting or clearing the provider mid-migration was refused. */
    printf("  while running: %s\n", cs.set_msg);
    assert_true(cs.set_refused);
    assert_non_null(strstr(cs.set_msg, "while a migration runs"));
    /* Not running any more: allowed again. */
    assert_true(rf_ram_source_set_dirty_log(cs.src, NULL, NULL));
    assert_string_equal(rf_ram_source_describe(cs.src), "explicit marks");
    run_free(&r);
    rf_params_free(p);
    rf_ram_sink_free(sink);
    rf_ram_source_free(cs.src);
    assert_int_equal(cs.frees, 1);
    guarded_unmap(cs.blk[0].host, sa);
    guarded_unmap(cs.blk[1].host, sb);
    guarded_unmap(dst_a, sa);
    guarded_unmap(dst_b, sb);
}

/* ---- custom sink -------------------------------------------------------- */

typedef struct CustomSink {
    unsigned prepares, hosts, waits, finishes, frees;
    bool finish_ok;
    unsigned n;
    RfRamBlock layout[RF_MAX_BLOCKS];
    uint8_t *mem[RF_MAX_BLOCKS];
} CustomSink;

static bool ck_prepare(RfRamSink *s, const RfRamBlock *layout, unsigned n,
                       RfError **errp)
{
    CustomSink *ck = rf_ram_sink_opaque(s);
    ck->prepares++;
    if (n > RF_MAX_BLOCKS) {
        rf_error_set(errp, RF_ERR_PARAM, "too many blocks");
        return false;
    }
    ck->n = n;
    for (unsigned i = 0; i < n; i++) {
        ck->layout[i] = layout[i];
        ck->mem[i] = guarded_map(layout[i].size);
    }
    return true;
}

static uint8_t *ck_host(RfRamSink *s, unsigned i)
{
    CustomSink *ck = rf_ram_sink_opaque(s);
    ck->hosts++;
    return i < ck->n ? ck->mem[i] : NULL;
}

static bool ck_wait_ready(RfRamSink *s)
{
    ((CustomSink *)rf_ram_sink_opaque(s))->waits++;
    return false;
}

static void ck_finish(RfRamSink *s, bool ok)
{
    CustomSink *ck = rf_ram_sink_opaque(s);
    ck->finishes++;
    ck->finish_ok = ok;
}

static void ck_free(RfRamSink *s)
{
    CustomSink *ck = rf_ram_sink_opaque(s);
    ck->frees++;
    for (unsigned i = 0; i < ck->n; i++) {
        guarded_unmap(ck->mem[i], ck->layout[i].size);
    }
}

static void test_custom_sink(void **state)
{
    (void)state;
    size_t sa = 200 * PAGE, sb = 40 * PAGE;
    uint8_t *a = guarded_map(sa), *b = guarded_map(sb);
    fill(a, 200, 31);
    fill(b, 40, 32);
    RfRegion sregs[2] = {{"ram", a, sa}, {"vga", b, sb}};
    RfRamSource *src = region_source(sregs, 2);
    CustomSink ck = {0};
    RfRamSinkOps ops = {
        .size = sizeof(ops), .name = "test-sink", .prepare = ck_prepare,
        .host = ck_host, .wait_ready = ck_wait_ready, .finish = ck_finish,
        .free = ck_free,
    };
    RfError *err = NULL;
    RfRamSink *sink = rf_ram_sink_new(&ops, &ck, &err);
    if (!sink) {
        fail_msg("custom sink: %s", rf_error_msg(err));
    }
    memset(&ops, 0, sizeof(ops)); /* copied: ours may go */
    assert_ptr_equal(rf_ram_sink_opaque(sink), &ck);
    Run r;
    run_migration(src, sink, NULL, NULL, &r);
    run_expect_ok(&r);
    assert_int_equal(ck.prepares, 1);
    assert_int_equal(ck.n, 2);
    assert_string_equal(ck.layout[0].name, "ram");
    assert_int_equal(ck.layout[0].size, sa);
    assert_string_equal(ck.layout[1].name, "vga");
    assert_int_equal(ck.layout[1].size, sb);
    assert_true(ck.hosts >= 2);
    assert_true(ck.waits >= 1);
    assert_int_equal(ck.finishes, 1);
    assert_true(ck.finish_ok);
    assert_false(r.d.rep.dest_memory_warm);
    assert_mem_equal(ck.mem[0], a, sa, "custom sink block 'ram'");
    assert_mem_equal(ck.mem[1], b, sb, "custom sink block 'vga'");
    assert_int_equal(ck.frees, 0);
    rf_ram_sink_free(sink);
    assert_int_equal(ck.frees, 1);
    run_free(&r);
    rf_ram_source_free(src);
    guarded_unmap(a, sa);
    guarded_unmap(b, sb);
}

/* ---- refusals ----------------------------------------------------------- */

static void expect_source_refused(const RfRamSourceOps *ops,
                                  const char *want)
{
    RfError *err = NULL;
    assert_null(rf_ram_source_new(ops, NULL, &err));
    expect_error(err, RF_ERR_PARAM, want);
    rf_error_free(err);
}

static void expect_sink_refused(const RfRamSinkOps *ops, const char *want)
{
    RfError *err = NULL;
    assert_null(rf_ram_sink_new(ops, NULL, &err));
    expect_error(err, RF_ERR_PARAM, want);
    rf_error_free(err);
}

static void test_new_refuses(void **state)
{
    (void)state;
    RfRamSourceOps so = custom_source_ops;
    expect_source_refused(NULL, "missing");
    so.size = 0;
    expect_source_refused(&so, "'size' not set");
    const char *req = "block_count, block and dirty_sync are required";
    so = custom_source_ops;
    so.block_count = NULL;
    expect_source_refused(&so, req);
    so = custom_source_ops;
    so.block = NULL;
    expect_source_refused(&so, req);
    so = custom_source_ops;
    so.dirty_sync = NULL;
    expect_source_refused(&so, req);
    /* An older caller's shorter table: what it lacks is NULL here. */
    so = custom_source_ops;
    so.size = offsetof(RfRamSourceOps, dirty_stop);
    RfRamSource *s = rf_ram_source_new(&so, NULL, NULL);
    assert_non_null(s);
    assert_null(s->ops->dirty_stop);
    assert_null(s->ops->free);
    assert_int_equal(s->ops->size, sizeof(RfRamSourceOps));

    /* Dirty logs: size and sync required; the source keeps its own. */
    RfDirtyLog log = test_log_template;
    RfError *err = NULL;
    log.size = 0;
    assert_false(rf_ram_source_set_dirty_log(s, &log, &err));
    expect_error(err, RF_ERR_PARAM, "'size' not set");
    rf_error_free(err);
    err = NULL;
    log = test_log_template;
    log.sync = NULL;
    assert_false(rf_ram_source_set_dirty_log(s, &log, &err));
    expect_error(err, RF_ERR_PARAM, "'sync' is required");
    rf_error_free(err);
    err = NULL;
    assert_string_equal(rf_ram_source_describe(s), "explicit marks");
    rf_ram_source_free(s);

    RfRamSinkOps ko = {.size = sizeof(ko), .prepare = ck_prepare,
                       .host = ck_host};
    expect_sink_refused(NULL, "missing");
    ko.size = 0;
    expect_sink_refused(&ko, "'size' not set");
    ko.size = sizeof(ko);
    ko.prepare = NULL;
    expect_sink_refused(&ko, "prepare and host are required");
    ko.prepare = ck_prepare;
    ko.host = NULL;
    expect_sink_refused(&ko, "prepare and host are required");
    ko.host = ck_host;
    RfRamSink *k = rf_ram_sink_new(&ko, NULL, NULL);
    assert_non_null(k);
    rf_ram_sink_free(k); /* no free op: fine */
}

/* A custom source's blocks are checked before anything connects. */
typedef struct BadSrc {
    RfRamBlock blk;
    bool null_block;
} BadSrc;

static unsigned bad_count(RfRamSource *s)
{
    (void)s;
    return 1;
}

static const RfRamBlock *bad_block(RfRamSource *s, unsigned i)
{
    BadSrc *b = rf_ram_source_opaque(s);
    return i == 0 && !b->null_block ? &b->blk : NULL;
}

static bool bad_sync(RfRamSource *s, unsigned block, uint64_t *bitmap,
                     RfError **errp)
{
    (void)s;
    (void)block;
    (void)bitmap;
    (void)errp;
    return true;
}

static void expect_migrate_refused(BadSrc *b, const char *want)
{
    RfRamSourceOps ops = {.size = sizeof(ops), .block_count = bad_count,
                          .block = bad_block, .dirty_sync = bad_sync};
    RfRamSource *s = rf_ram_source_new(&ops, b, NULL);
    assert_non_null(s);
    RfParams *p = rf_params_new();
    char uri[128];
    snprintf(uri, sizeof(uri), "unix:%s/nobody-listens", shmdir);
    RfError *err = NULL;
    assert_false(rf_migrate(uri, s, p, NULL, NULL, &err));
    printf("  %s\n", rf_error_msg(err));
    expect_error(err, RF_ERR_PARAM, want);
    rf_error_free(err);
    rf_params_free(p);
    rf_ram_source_free(s);
}

static void test_custom_source_bad_blocks(void **state)
{
    (void)state;
    uint8_t *m = guarded_map(4 * PAGE);
    BadSrc b = {.blk = {.name = "ram", .size = 0, .host = m}};
    expect_migrate_refused(&b, "block 'ram' has size 0 bytes");
    b.blk.size = PAGE + 1;
    expect_migrate_refused(&b, "block 'ram' has size 4097 bytes");
    b.blk.size = PAGE;
    b.blk.host = m + 1;
    expect_migrate_refused(&b, "block 0's address");
    b.blk.host = m;
    b.blk.name[0] = '\0';
    expect_migrate_refused(&b, "block 0 has an empty or unterminated name");
    b.null_block = true;
    expect_migrate_refused(&b, "block 0 of 1 is missing");
    guarded_unmap(m, 4 * PAGE);
}

/* ---- main --------------------------------------------------------------- */

static int setup_dir(void **state)
{
    (void)state;
    snprintf(shmdir, sizeof(shmdir), "/dev/shm/rf-sinks-XXXXXX");
    return mkdtemp(shmdir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    return rmdir(shmdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_region_sink_one),
        cmocka_unit_test(test_region_sink_by_name),
        cmocka_unit_test(test_region_sink_size_mismatch),
        cmocka_unit_test(test_region_sink_unknown_block),
        cmocka_unit_test(test_region_sink_bad_regions),
        cmocka_unit_test(test_reuse_sealed_memfd),
        cmocka_unit_test(test_reuse_file),
        cmocka_unit_test(test_reuse_refused),
        cmocka_unit_test(test_file_sink_rename_on_success),
        cmocka_unit_test(test_file_sink_failure_keeps_target),
        cmocka_unit_test(test_file_sink_non_regular_refused),
        cmocka_unit_test(test_file_sink_expected_size),
        cmocka_unit_test(test_file_sink_absurd_layout),
        cmocka_unit_test(test_sink_writes_through_fd),
        cmocka_unit_test(test_sink_fd_write_fails),
        cmocka_unit_test(test_source_reads_through_fd),
        cmocka_unit_test(test_custom_source_dirty_log),
        cmocka_unit_test(test_custom_sink),
        cmocka_unit_test(test_new_refuses),
        cmocka_unit_test(test_custom_source_bad_blocks),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
