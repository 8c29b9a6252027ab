/* Unit tests: file RAM source and sink, dirty tracking, pre-faulting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "ram/file_ram.h"
#include "ram/ram.h"
#include "resident.h"

static char tmpdir[64];

/* Creates tmpdir/name with `size` bytes, byte i = (i + seed) & 0xff. */
static char *make_file(const char *name, size_t size, unsigned seed)
{
    static char paths[16][160];
    static unsigned next;
    char *path = paths[next++ % 16];
    snprintf(path, 160, "%s/%s", tmpdir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    uint8_t *buf = malloc(size ? size : 1);
    for (size_t i = 0; i < size; i++) {
        buf[i] = (uint8_t)(i + seed);
    }
    assert_int_equal(write(fd, buf, size), (ssize_t)size);
    free(buf);
    close(fd);
    return path;
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* Opens specs expecting failure; checks kind and that msg has `want`. */
static void expect_open_error(const char *const *specs, unsigned n,
                              RfErrorKind kind, const char *want)
{
    RfError *err = NULL;
    assert_null(rf_file_source_open(specs, n, &err));
    assert_non_null(err);
    if (rf_error_kind(err) != kind || !strstr(rf_error_msg(err), want)) {
        fail_msg("want kind %d with '%s', got %d: %s", kind, want,
                 rf_error_kind(err), rf_error_msg(err));
    }
    rf_error_free(err);
}

/* --- source -------------------------------------------------------------- */

static void test_source_one_file(void **state)
{
    (void)state;
    char *path = make_file("guest.ram", 16 * 4096, 3);
    const char *specs[] = { path };
    RfError *err = NULL;
    RfRamSource *s = rf_file_source_open(specs, 1, &err);
    assert_non_null(s);
    assert_int_equal(rf_ram_source_block_count(s), 1);
    const char *name;
    uint64_t size;
    uint8_t *host;
    assert_true(rf_ram_source_block(s, 0, &name, &size, &host));
    assert_string_equal(name, "guest.ram");
    assert_int_equal(size, 16 * 4096);
    assert_int_equal(host[5000], (uint8_t)(5000 + 3));
    assert_false(rf_ram_source_block(s, 1, &name, &size, &host));
    /* The mapping is shared: a write through it reaches the file. */
    host[4096] = 0xAB;
    int fd = open(path, O_RDONLY);
    uint8_t b = 0;
    assert_int_equal(pread(fd, &b, 1, 4096), 1);
    close(fd);
    assert_int_equal(b, 0xAB);
    rf_ram_source_free(s);
    rf_ram_source_free(NULL);
    unlink(path);
}

/* @return the permissions ("r--s", "rw-s") of the mapping holding addr,
 * from /proc/self/maps. */
static void mapping_perms(const void *addr, char perms[5])
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[512];
    perms[0] = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        char p[5];
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, p) == 3
            && (uintptr_t)addr >= lo && (uintptr_t)addr < hi) {
            memcpy(perms, p, 5);
            break;
        }
    }
    fclose(f);
    assert_int_not_equal(perms[0], 0);
}

/* RF_FILE_SOURCE_READ_ONLY maps a file this process could write without
 * write permission (a migration cannot change the source); without the
 * flag the same file is mapped writable; unknown flags are refused. */
static void test_source_read_only(void **state)
{
    (void)state;
    char *path = make_file("ro.ram", 8 * 4096, 7);
    const char *specs[] = { path };
    RfError *err = NULL;
    char perms[5];
    uint8_t *host;
    RfRamSource *s = rf_file_source_new(specs, 1, RF_FILE_SOURCE_READ_ONLY,
                                        &err);
    assert_non_null(s);
    assert_true(rf_ram_source_block(s, 0, NULL, NULL, &host));
    assert_int_equal(host[4096 + 9], (uint8_t)(4096 + 9 + 7));
    mapping_perms(host, perms);
    assert_string_equal(perms, "r--s");
    rf_ram_source_free(s);

    s = rf_file_source_new(specs, 1, 0, &err);
    assert_non_null(s);
    assert_true(rf_ram_source_block(s, 0, NULL, NULL, &host));
    mapping_perms(host, perms);
    assert_string_equal(perms, "rw-s");
    rf_ram_source_free(s);

    assert_null(rf_file_source_new(specs, 1, 0x80, &err));
    assert_non_null(err);
    assert_non_null(strstr(rf_error_msg(err), "unknown file source flags"));
    rf_error_free(err);
    unlink(path);
}

static void test_source_several_named(void **state)
{
    (void)state;
    char *a = make_file("a.bin", 4096, 0);
    char *b = make_file("b.bin", 3 * 4096, 1);
    char *c = make_file("c=weird", 2 * 4096, 2);
    char spec_a[200], spec_b[200];
    snprintf(spec_a, sizeof(spec_a), "pc.ram=%s", a);
    snprintf(spec_b, sizeof(spec_b), "vga=%s", b);
    /* '=' after the first '/' belongs to the path: name is the basename. */
    const char *specs[] = { spec_a, spec_b, c };
    RfError *err = NULL;
    RfRamSource *s = rf_file_source_open(specs, 3, &err);
    if (!s) {
        fail_msg("%s", rf_error_msg(err));
    }
    assert_int_equal(rf_ram_source_block_count(s), 3);
    static const char *const names[] = { "pc.ram", "vga", "c=weird" };
    static const uint64_t sizes[] = { 4096, 3 * 4096, 2 * 4096 };
    for (unsigned i = 0; i < 3; i++) {
        const char *name;
        uint64_t size;
        assert_true(rf_ram_source_block(s, i, &name, &size, NULL));
        assert_string_equal(name, names[i]);
        assert_int_equal(size, sizes[i]);
    }
    rf_ram_source_free(s);
    unlink(a);
    unlink(b);
    unlink(c);
}

static void test_source_bad_files(void **state)
{
    (void)state;
    char *empty = make_file("empty", 0, 0);
    char *odd = make_file("odd", 5000, 0);
    char *ok = make_file("ok", 4096, 0);
    const char *s1[] = { empty };
    expect_open_error(s1, 1, RF_ERR_PARAM, "has size 0 bytes");
    expect_open_error(s1, 1, RF_ERR_PARAM, empty);
    const char *s2[] = { ok, odd };
    expect_open_error(s2, 2, RF_ERR_PARAM, "has size 5000 bytes");
    expect_open_error(s2, 2, RF_ERR_PARAM, odd);
    char missing[200];
    snprintf(missing, sizeof(missing), "%s/missing", tmpdir);
    const char *s3[] = { missing };
    expect_open_error(s3, 1, RF_ERR_IO, missing);
    const char *s4[] = { tmpdir };
    expect_open_error(s4, 1, RF_ERR_IO, tmpdir);
    char fifo[200];
    snprintf(fifo, sizeof(fifo), "%s/fifo", tmpdir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    const char *s6[] = { fifo };
    expect_open_error(s6, 1, RF_ERR_PARAM, "not a regular file");
    unlink(fifo);
    const char *s5[] = { "x=" };
    expect_open_error(s5, 1, RF_ERR_PARAM, "path is empty");
    expect_open_error(s1, 0, RF_ERR_PARAM, "got 0 files");
    const char *many[RF_MAX_BLOCKS + 1];
    for (unsigned i = 0; i <= RF_MAX_BLOCKS; i++) {
        many[i] = ok;
    }
    expect_open_error(many, RF_MAX_BLOCKS + 1, RF_ERR_PARAM, "1-64");
    unlink(empty);
    unlink(odd);
    unlink(ok);
}

static void test_source_names(void **state)
{
    (void)state;
    char *a = make_file("same", 4096, 0);
    char sub[160];
    snprintf(sub, sizeof(sub), "%s/sub", tmpdir);
    mkdir(sub, 0700);
    char *b = make_file("sub/same", 4096, 0);
    /* Two basenames alike: refused, and told to use NAME=PATH. */
    const char *s1[] = { a, b };
    expect_open_error(s1, 2, RF_ERR_PARAM, "already used");
    char na[200], nb[200];
    snprintf(na, sizeof(na), "x=%s", a);
    snprintf(nb, sizeof(nb), "x=%s", b);
    const char *s2[] = { na, nb };
    expect_open_error(s2, 2, RF_ERR_PARAM, "'x' is already used");
    snprintf(nb, sizeof(nb), "y=%s", b);
    const char *s3[] = { na, nb };
    RfError *err = NULL;
    RfRamSource *s = rf_file_source_open(s3, 2, &err);
    assert_non_null(s);
    rf_ram_source_free(s);
    /* 255-byte names are fine, 256 are not; empty names are not. */
    char longspec[600];
    memset(longspec, 'n', 255);
    snprintf(longspec + 255, sizeof(longspec) - 255, "=%s", a);
    const char *s4[] = { longspec };
    s = rf_file_source_open(s4, 1, &err);
    assert_non_null(s);
    rf_ram_source_free(s);
    memset(longspec, 'n', 256);
    snprintf(longspec + 256, sizeof(longspec) - 256, "=%s", a);
    expect_open_error(s4, 1, RF_ERR_PARAM, "too long");
    snprintf(longspec, sizeof(longspec), "=%s", a);
    expect_open_error(s4, 1, RF_ERR_PARAM, "name is empty");
    unlink(a);
    unlink(b);
    rmdir(sub);
}

/* --- dirty tracking ------------------------------------------------------ */

#define NPAGES 200 /* 4 bitmap words, the last one partial */

static RfRamSource *open_pages(const char **pathp)
{
    char *path = make_file("dirty", NPAGES * 4096, 0);
    const char *specs[] = { path };
    RfError *err = NULL;
    RfRamSource *s = rf_file_source_open(specs, 1, &err);
    assert_non_null(s);
    *pathp = path;
    return s;
}

static unsigned popcount_bm(const uint64_t *bm, unsigned words)
{
    unsigned n = 0;
    for (unsigned i = 0; i < words; i++) {
        n += (unsigned)__builtin_popcountll(bm[i]);
    }
    return n;
}

static bool bit(const uint64_t *bm, unsigned i)
{
    return bm[i / 64] >> (i % 64) & 1;
}

static void test_dirty_semantics(void **state)
{
    (void)state;
    const char *path;
    RfRamSource *s = open_pages(&path);
    RfError *err = NULL;
    uint64_t bm[4] = { 0 };

    rf_ram_source_mark_dirty(s, 0, 0, 4096); /* before start: dropped */
    assert_true(s->ops->dirty_start(s, &err));
    assert_true(s->ops->dirty_sync(s, 0, bm, &err));
    assert_int_equal(popcount_bm(bm, 4), 0);

    rf_ram_source_mark_dirty(s, 0, 0, 1);            /* page 0 */
    rf_ram_source_mark_dirty(s, 0, 4095, 2);         /* pages 0, 1 */
    rf_ram_source_mark_dirty(s, 0, 10 * 4096, 4096); /* page 10 only */
    rf_ram_source_mark_dirty(s, 0, 60 * 4096, 8 * 4096); /* 60-67 */
    rf_ram_source_mark_dirty(s, 0, NPAGES * 4096 - 1, 1 << 20); /* last */
    rf_ram_source_mark_dirty(s, 0, NPAGES * 4096, 4096);  /* past end */
    rf_ram_source_mark_dirty(s, 0, 100 * 4096, 0);        /* empty */
    rf_ram_source_mark_dirty(s, 1, 0, 4096);              /* no block 1 */
    rf_ram_source_mark_dirty(s, 0, UINT64_MAX - 5, 100);  /* overflow */
    rf_ram_source_mark_dirty(NULL, 0, 0, 4096);

    bm[3] = 1ull << 50; /* sync ORs: bits already set stay */
    assert_true(s->ops->dirty_sync(s, 0, bm, &err));
    assert_int_equal(popcount_bm(bm, 4), 2 + 1 + 8 + 1 + 1);
    assert_true(bit(bm, 0) && bit(bm, 1) && bit(bm, 10));
    for (unsigned p = 60; p < 68; p++) {
        assert_true(bit(bm, p));
    }
    assert_true(bit(bm, NPAGES - 1) && bit(bm, 192 + 50));
    assert_false(bit(bm, 2) || bit(bm, 68));

    /* A sync takes the bits: the next one sees nothing new. */
    memset(bm, 0, sizeof(bm));
    assert_true(s->ops->dirty_sync(s, 0, bm, &err));
    assert_int_equal(popcount_bm(bm, 4), 0);

    /* A whole-block mark sets exactly NPAGES bits. */
    rf_ram_source_mark_dirty(s, 0, 0, NPAGES * 4096);
    assert_true(s->ops->dirty_sync(s, 0, bm, &err));
    assert_int_equal(popcount_bm(bm, 4), NPAGES);

    /* dirty_start forgets earlier marks. */
    rf_ram_source_mark_dirty(s, 0, 0, 4096);
    assert_true(s->ops->dirty_start(s, &err));
    memset(bm, 0, sizeof(bm));
    assert_true(s->ops->dirty_sync(s, 0, bm, &err));
    assert_int_equal(popcount_bm(bm, 4), 0);

    assert_false(s->ops->dirty_sync(s, 1, bm, &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_PARAM);
    rf_error_free(err);
    s->ops->dirty_stop(s);
    rf_ram_source_free(s);
    unlink(path);
}

#define MARKERS 4
#define BIG_PAGES (1u << 16)

typedef struct Marker {
    RfRamSource *s;
    unsigned id;
} Marker;

/* Marks every page p with p % MARKERS == id once, in a scrambled order,
 * so neighbouring bits of one word are set by different threads. */
static void *marker_thread(void *opaque)
{
    Marker *m = opaque;
    for (unsigned k = 0; k < BIG_PAGES / MARKERS; k++) {
        unsigned p = ((k * 2654435761u) % (BIG_PAGES / MARKERS)) * MARKERS
                     + m->id;
        rf_ram_source_mark_dirty(m->s, 0, (uint64_t)p * 4096, 1);
    }
    return NULL;
}

static void test_dirty_concurrent(void **state)
{
    (void)state;
    char *path = make_file("conc", 0, 0);
    assert_int_equal(truncate(path, (off_t)BIG_PAGES * 4096), 0);
    const char *specs[] = { path };
    RfError *err = NULL;
    RfRamSource *s = rf_file_source_open(specs, 1, &err);
    assert_non_null(s);
    assert_true(s->ops->dirty_start(s, &err));
    static uint64_t acc[BIG_PAGES / 64];
    memset(acc, 0, sizeof(acc));
    unsigned syncs = 0;
    for (int round = 0; round < 3; round++) {
        Marker m[MARKERS];
        pthread_t th[MARKERS];
        for (unsigned t = 0; t < MARKERS; t++) {
            m[t] = (Marker){ .s = s, .id = t };
            pthread_create(&th[t], NULL, marker_thread, &m[t]);
        }
        /* Syncing while they mark must not lose a bit. */
        for (int i = 0; i < 50; i++) {
            assert_true(s->ops->dirty_sync(s, 0, acc, &err));
            syncs++;
        }
        for (unsigned t = 0; t < MARKERS; t++) {
            pthread_join(th[t], NULL);
        }
        assert_true(s->ops->dirty_sync(s, 0, acc, &err));
        assert_int_equal(popcount_bm(acc, BIG_PAGES / 64), BIG_PAGES);
        memset(acc, 0, sizeof(acc));
        assert_true(s->ops->dirty_sync(s, 0, acc, &err));
        assert_int_equal(popcount_bm(acc, BIG_PAGES / 64), 0);
    }
    assert_true(syncs >= 150);
    rf_ram_source_free(s);
    unlink(path);
}

/* --- sink ---------------------------------------------------------------- */

static RfRamBlock layout_block(const char *name, uint64_t size)
{
    RfRamBlock b = { .size = size };
    snprintf(b.name, sizeof(b.name), "%s", name);
    return b;
}

static void test_sink_single_any_name(void **state)
{
    (void)state;
    /* An existing larger file with data: replaced by fresh zeros at
     * finish(true), untouched until then. */
    char *path = make_file("dest", 64 * 4096, 9);
    const char *specs[] = { path };
    RfError *err = NULL;
    RfRamSink *k = rf_file_sink_new(specs, 1, 0, &err);
    assert_non_null(k);
    RfRamBlock lay = layout_block("pc.ram", 8 * 4096);
    assert_true(k->ops->prepare(k, &lay, 1, &err));
    assert_int_equal(file_size(path), 64 * 4096);
    uint8_t *h = k->ops->host(k, 0);
    assert_non_null(h);
    assert_null(k->ops->host(k, 1));
    /* A fresh file: not warm, all zero, and open for pwrite at offset 0
     * as the very memory host() maps. */
    assert_false(k->ops->wait_ready(k));
    assert_true(k->ops->zeroed(k, 0));
    uint64_t off = 99;
    int kfd = k->ops->fd(k, 0, &off);
    assert_true(kfd >= 0);
    assert_int_equal(off, 0);
    uint8_t one = 0x17;
    assert_int_equal(pwrite(kfd, &one, 1, 4096 * 5), 1);
    assert_int_equal(h[4096 * 5], 0x17);
    one = 0;
    assert_int_equal(pwrite(kfd, &one, 1, 4096 * 5), 1);
    assert_int_equal(k->ops->fd(k, 1, &off), -1);
    for (size_t i = 0; i < 8 * 4096; i++) {
        if (h[i]) {
            fail_msg("byte %zu is %u after truncation", i, h[i]);
        }
    }
    h[4096 * 3 + 7] = 0x42;
    k->ops->finish(k, true);
    assert_int_equal(file_size(path), 8 * 4096);
    rf_ram_sink_free(k);
    rf_ram_sink_free(NULL);
    int fd = open(path, O_RDONLY);
    uint8_t b = 0;
    assert_int_equal(pread(fd, &b, 1, 4096 * 3 + 7), 1);
    close(fd);
    assert_int_equal(b, 0x42);
    unlink(path);
}

static void test_sink_match_by_name(void **state)
{
    (void)state;
    char pa[160], pb[160], sa[200], sb[200];
    snprintf(pa, sizeof(pa), "%s/sink-a", tmpdir);
    snprintf(pb, sizeof(pb), "%s/sink-b", tmpdir);
    snprintf(sa, sizeof(sa), "ram=%s", pa);
    snprintf(sb, sizeof(sb), "vga=%s", pb);
    const char *specs[] = { sb, sa }; /* order differs from the layout */
    RfError *err = NULL;
    RfRamSink *k = rf_file_sink_new(specs, 2, 0, &err);
    assert_non_null(k);
    RfRamBlock lay[2] = { layout_block("ram", 32 * 4096),
                          layout_block("vga", 4096) };
    assert_true(k->ops->prepare(k, lay, 2, &err));
    k->ops->host(k, 0)[0] = 1;
    k->ops->host(k, 1)[0] = 2;
    assert_false(k->ops->wait_ready(k)); /* fresh files */
    assert_false(k->ops->wait_ready(k)); /* idempotent */
    /* A second prepare is refused. */
    assert_false(k->ops->prepare(k, lay, 2, &err));
    rf_error_free(err);
    err = NULL;
    k->ops->finish(k, true); /* the files take their names */
    assert_int_equal(file_size(pa), 32 * 4096);
    assert_int_equal(file_size(pb), 4096);
    rf_ram_sink_free(k);
    int fd = open(pa, O_RDONLY);
    uint8_t b = 0;
    assert_int_equal(pread(fd, &b, 1, 0), 1);
    close(fd);
    assert_int_equal(b, 1);
    unlink(pa);
    unlink(pb);

    /* One block with an unknown name among several specs: refused. */
    k = rf_file_sink_new(specs, 2, 0, &err);
    assert_non_null(k);
    RfRamBlock other = layout_block("rom", 4096);
    assert_false(k->ops->prepare(k, &other, 1, &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_MISMATCH);
    assert_non_null(strstr(rf_error_msg(err), "block 'rom' from the source "
                                              "has no --memory NAME=PATH "
                                              "here"));
    rf_error_free(err);
    err = NULL;
    rf_ram_sink_free(k);

    /* One spec, two source blocks: the name must match too. */
    const char *one[] = { sa };
    k = rf_file_sink_new(one, 1, 0, &err);
    assert_false(k->ops->prepare(k, lay, 2, &err));
    assert_non_null(strstr(rf_error_msg(err), "block 'vga'"));
    rf_error_free(err);
    rf_ram_sink_free(k);
    unlink(pa);
}

static void test_sink_bad_input(void **state)
{
    (void)state;
    RfError *err = NULL;
    const char *dup[] = { "a=/tmp/x1", "a=/tmp/x2" };
    assert_null(rf_file_sink_new(dup, 2, 0, &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_PARAM);
    assert_non_null(strstr(rf_error_msg(err), "block name already used"));
    rf_error_free(err);
    err = NULL;
    const char *dup_path[] = { "a=/tmp/x1", "b=/tmp/x1" };
    assert_null(rf_file_sink_new(dup_path, 2, 0, &err));
    assert_non_null(strstr(rf_error_msg(err), "path already used"));
    rf_error_free(err);
    err = NULL;
    assert_null(rf_file_sink_new(dup, 0, 0, &err));
    rf_error_free(err);
    err = NULL;

    char path[160];
    snprintf(path, sizeof(path), "%s/never", tmpdir);
    const char *specs[] = { path };
    RfRamSink *k = rf_file_sink_new(specs, 1, 0, &err);
    assert_non_null(k);
    /* Layouts off the wire are checked before any file is touched. */
    RfRamBlock bad[2] = { layout_block("x", 5000), layout_block("x", 4096) };
    assert_false(k->ops->prepare(k, bad, 1, &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_PROTOCOL);
    assert_non_null(strstr(rf_error_msg(err), "5000"));
    rf_error_free(err);
    err = NULL;
    bad[0].size = 4096;
    assert_false(k->ops->prepare(k, bad, 2, &err));
    assert_non_null(strstr(rf_error_msg(err), "appears twice"));
    rf_error_free(err);
    err = NULL;
    memset(bad[0].name, 'z', sizeof(bad[0].name)); /* no NUL */
    assert_false(k->ops->prepare(k, bad, 1, &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_PROTOCOL);
    rf_error_free(err);
    err = NULL;
    /* Bigger than the file system: refused up front, not SIGBUS later. */
    struct statvfs sv;
    assert_int_equal(statvfs(tmpdir, &sv), 0);
    uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    RfRamBlock huge = layout_block("x", (avail + (1ull << 30)) & ~4095ull);
    assert_false(k->ops->prepare(k, &huge, 1, &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_IO);
    assert_non_null(strstr(rf_error_msg(err), "are free"));
    rf_error_free(err);
    rf_ram_sink_free(k);
    unlink(path);

    /* A directory where the file should go. */
    const char *dir[] = { tmpdir };
    k = rf_file_sink_new(dir, 1, 0, &err);
    RfRamBlock one = layout_block("x", 4096);
    err = NULL;
    assert_false(k->ops->prepare(k, &one, 1, &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_IO);
    assert_non_null(strstr(rf_error_msg(err), tmpdir));
    rf_error_free(err);
    rf_ram_sink_free(k);
}

/* --- pre-faulting -------------------------------------------------------- */

static void test_prefault(void **state)
{
    (void)state;
    size_t len = 64u << 20;
    uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    assert_int_equal(resident_pages(p, len), 0);
    p[12345] = 7; /* existing contents survive */
    RfPrefaultRange whole = { p, len };
    rf_prefault_finish(rf_prefault_start(&whole, 1, 3, false, NULL), false);
    assert_int_equal(resident_pages(p, len), len / 4096);
    assert_int_equal(p[12345], 7);
    assert_int_equal(p[len - 1], 0);
    munmap(p, len);

    /* Several ranges through the job API, one thread. */
    uint8_t *a = mmap(NULL, len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    RfPrefaultRange r[2] = { { a, 4096 * 3 }, { a + (40u << 20), 20u << 20 } };
    RfPrefaultJob *j = rf_prefault_start(r, 2, 1, false, NULL);
    assert_non_null(j);
    assert_true(rf_prefault_finish(j, false));
    assert_int_equal(resident_pages(a, len), 3 + (20u << 20) / 4096);
    munmap(a, len);
    assert_false(rf_prefault_finish(NULL, false));
}

static void test_prefault_cancel(void **state)
{
    (void)state;
    size_t len = 1u << 30;
    uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    assert_true(p != MAP_FAILED);
    RfPrefaultRange r = { p, len };
    RfPrefaultJob *j = rf_prefault_start(&r, 1, 2, false, NULL);
    assert_non_null(j);
    /* Cancelled right away: it stops early and says it did not finish. */
    assert_false(rf_prefault_finish(j, true));
    assert_true(resident_pages(p, len) < len / 4096);
    munmap(p, len);
}

static void *spin(void *arg)
{
    atomic_bool *stop = arg;
    while (!atomic_load(stop)) {
    }
    return NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* Pages a one-thread pre-fault job of 1 GiB faults in from 100 to 300 ms
 * after its start, on one CPU where another thread spins. */
static uint64_t growth_beside_spinner(bool idle)
{
    cpu_set_t old, one;
    assert_int_equal(sched_getaffinity(0, sizeof(old), &old), 0);
    int cpu = sched_getcpu();
    CPU_ZERO(&one);
    CPU_SET(cpu >= 0 ? cpu : 0, &one);
    assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
    size_t len = 1u << 30;
    uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    assert_true(p != MAP_FAILED);
    atomic_bool stop = false;
    pthread_t spinner;
    assert_int_equal(pthread_create(&spinner, NULL, spin, &stop), 0);
    RfPrefaultRange r = { p, len };
    RfPrefaultJob *j = rf_prefault_start(&r, 1, 1, idle, NULL);
    assert_non_null(j);
    sleep_ms(100); /* a new thread's first slice is not its share */
    uint64_t from = resident_pages(p, len);
    sleep_ms(200);
    uint64_t to = resident_pages(p, len);
    atomic_store(&stop, true);
    pthread_join(spinner, NULL);
    rf_prefault_finish(j, true);
    munmap(p, len);
    assert_int_equal(sched_setaffinity(0, sizeof(old), &old), 0);
    return to - from;
}

/* An idle job takes only CPU nobody else wants: beside a spinning
 * thread it gets a sliver of the CPU (SCHED_IDLE's weight is 3 against
 * 1024), at normal priority half of it. */
static void test_prefault_idle(void **state)
{
    (void)state;
    uint64_t idle = growth_beside_spinner(true);
    uint64_t normal = growth_beside_spinner(false);
    print_message("pre-fault beside a spinning thread, 200 ms: idle %llu "
                  "KiB, normal %llu KiB\n", (unsigned long long)idle * 4,
                  (unsigned long long)normal * 4);
    assert_true(normal > 0);
    assert_true(idle * 4 < normal);
}

static int setup_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/rf-ram-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_source_one_file),
        cmocka_unit_test(test_source_read_only),
        cmocka_unit_test(test_source_several_named),
        cmocka_unit_test(test_source_bad_files),
        cmocka_unit_test(test_source_names),
        cmocka_unit_test(test_dirty_semantics),
        cmocka_unit_test(test_dirty_concurrent),
        cmocka_unit_test(test_sink_single_any_name),
        cmocka_unit_test(test_sink_match_by_name),
        cmocka_unit_test(test_sink_bad_input),
        cmocka_unit_test(test_prefault),
        cmocka_unit_test(test_prefault_cancel),
        cmocka_unit_test(test_prefault_idle),
    };
    return cmocka_run_group_tests(tests, setup_tmpdir, remove_tmpdir);
}
