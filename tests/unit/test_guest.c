/* Unit tests: the KVM test VM (guest.c, kvm_guest.c) and KVM's dirty log
 * (kvm_dirty.c).  Skipped, with a message, only where KVM cannot run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <xxhash.h>

#include "ram/ram.h"
#include "testvm/guest.h"
#include "testvm/kvm_dirty.h"
#include "util/bitmap.h"
#include "resident.h"

#define MiB (1ull << 20)

static bool kvm_ok;
static char kvm_why[256];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_s(double s)
{
    struct timespec ts = { (time_t)s, (long)((s - (time_t)s) * 1e9) };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* KVM is usable if /dev/kvm opens and a VM can be created. */
static int probe_kvm(void **state)
{
    (void)state;
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(kvm_why, sizeof(kvm_why), "/dev/kvm: %s", strerror(errno));
        return 0;
    }
    int vm = ioctl(fd, KVM_CREATE_VM, 0);
    if (vm < 0) {
        snprintf(kvm_why, sizeof(kvm_why), "KVM_CREATE_VM: %s",
                 strerror(errno));
    } else {
        kvm_ok = true;
        close(vm);
    }
    close(fd);
    return 0;
}

#define NEED_KVM()                                                       \
    do {                                                                 \
        if (!kvm_ok) {                                                   \
            print_message("SKIPPED: KVM unavailable (%s)\n", kvm_why);   \
            skip();                                                      \
        }                                                                \
    } while (0)

static RfGuest *start_kvm(uint64_t mem, unsigned vcpus, uint64_t rate,
                          bool idle)
{
    RfGuestConfig cfg = {
        .mem_size = mem,
        .vcpus = vcpus,
        .kind = RF_GUEST_KVM,
        .idle = idle,
        .dirty_rate = rate,
        .seed = 7,
    };
    RfError *err = NULL;
    RfGuest *g = rf_guest_start(&cfg, &err);
    if (!g) {
        fail_msg("rf_guest_start: %s", rf_error_msg(err));
    }
    assert_non_null(strstr(rf_guest_describe(g), "KVM guest"));
    return g;
}

/* Waits up to 5 s for the pass count to reach `target`. */
static void wait_passes(RfGuest *g, uint64_t target)
{
    double end = now_s() + 5;
    while (rf_guest_passes(g) < target) {
        if (now_s() > end) {
            fail_msg("passes stuck at %llu (want %llu): %s",
                     (unsigned long long)rf_guest_passes(g),
                     (unsigned long long)target, rf_guest_describe(g));
        }
        sleep_s(0.005);
    }
}

static void check_pattern_ok(RfGuest *g)
{
    char summary[256];
    RfError *err = NULL;
    if (!rf_guest_check_pattern(g, summary, sizeof(summary), &err)) {
        fail_msg("pattern: %s", rf_error_msg(err));
    }
    assert_non_null(strstr(summary, "pattern ok"));
}

static uint8_t *guest_ram(RfGuest *g, uint64_t *size)
{
    uint8_t *host = NULL;
    assert_true(rf_ram_source_block(rf_guest_ram_source(g), 0, NULL, size,
                                    &host));
    return host;
}

/* One dirty sync of the guest's source into a fresh bitmap. */
static uint64_t *sync_bitmap(RfGuest *g, uint64_t pages)
{
    RfRamSource *s = rf_guest_ram_source(g);
    uint64_t *bm = calloc(rf_bitmap_words(pages), sizeof(uint64_t));
    assert_non_null(bm);
    RfError *err = NULL;
    if (!s->ops->dirty_sync(s, 0, bm, &err)) {
        fail_msg("dirty_sync: %s", rf_error_msg(err));
    }
    return bm;
}

static void test_runs_and_counts_passes(void **state)
{
    (void)state;
    NEED_KVM();
    RfGuest *g = start_kvm(16 * MiB, 2, 0, false);
    const char *d = rf_guest_describe(g);
    print_message("%s\n", d);
    assert_non_null(strstr(d, "2 vCPUs, 16 MiB"));
    double t0 = now_s();
    uint64_t p0 = rf_guest_passes(g);
    wait_passes(g, p0 + 6);
    double dt = now_s() - t0;
    uint64_t p1 = rf_guest_passes(g);
    uint64_t pages = 16 * MiB / 4096 - 16;
    print_message("KVM guest, 2 vCPUs, 16 MiB, no tracking: %.0f pages/s\n",
                  (double)(p1 - p0) * (double)pages / 2 / dt);
    /* Each vCPU's pages carry its pass count (mod 256). */
    check_pattern_ok(g);
    rf_guest_free(g);
}

static void test_dirty_log(void **state)
{
    (void)state;
    NEED_KVM();
    RfGuest *g = start_kvm(16 * MiB, 1, 0, false);
    RfRamSource *s = rf_guest_ram_source(g);
    uint64_t size;
    guest_ram(g, &size);
    uint64_t pages = size / 4096;
    RfError *err = NULL;
    assert_true(s->ops->dirty_start(s, &err));

    uint64_t p0 = rf_guest_passes(g);
    wait_passes(g, p0 + 2); /* a full pass after dirty_start */
    uint64_t *bm = sync_bitmap(g, pages);
    uint64_t n = rf_bitmap_count(bm, pages);
    print_message("dirty log after a full pass: %llu of %llu pages\n",
                  (unsigned long long)n, (unsigned long long)pages);
    for (uint64_t p = 16; p < pages; p++) {
        if (!rf_bitmap_test(bm, p)) {
            fail_msg("pattern page %llu not reported dirty",
                     (unsigned long long)p);
        }
    }
    /* Of the reserved pages only the parameter page (pass counter). */
    for (uint64_t p = 0; p < 16; p++) {
        assert_int_equal(rf_bitmap_test(bm, p), p == 4);
    }
    free(bm);

    /* Explicit marks are reported too. */
    rf_ram_source_mark_dirty(s, 0, 2 * 4096 + 10, 1);
    rf_guest_pause(g);
    bm = sync_bitmap(g, pages);
    assert_true(rf_bitmap_test(bm, 2));
    free(bm);
    /* Paused: nothing is written, nothing is reported. */
    sleep_s(0.05);
    bm = sync_bitmap(g, pages);
    assert_int_equal(rf_bitmap_count(bm, pages), 0);
    free(bm);
    /* Running again: the writes come back (two pass ends: one full pass
     * at least). */
    rf_guest_resume(g);
    wait_passes(g, rf_guest_passes(g) + 2);
    bm = sync_bitmap(g, pages);
    assert_true(rf_bitmap_count(bm, pages) >= pages - 16);
    free(bm);
    s->ops->dirty_stop(s);
    rf_guest_free(g);
}

static void test_pause_freezes_memory(void **state)
{
    (void)state;
    NEED_KVM();
    RfGuest *g = start_kvm(8 * MiB, 2, 0, false);
    uint64_t size;
    uint8_t *ram = guest_ram(g, &size);
    wait_passes(g, 2);
    uint8_t *copy = malloc(size);
    assert_non_null(copy);
    for (int round = 0; round < 3; round++) {
        rf_guest_pause(g);
        memcpy(copy, ram, size);
        uint64_t p = rf_guest_passes(g);
        sleep_s(0.1);
        assert_int_equal(rf_guest_passes(g), p);
        assert_memory_equal(copy, ram, size);
        rf_guest_pause(g); /* idempotent */
        rf_guest_resume(g);
        wait_passes(g, p + 1);
        assert_true(memcmp(copy, ram, size) != 0);
    }
    check_pattern_ok(g);
    free(copy);
    rf_guest_free(g);
}

/* The layout of a guest of `size` bytes of RAM. */
static RfRamBlock guest_layout(uint64_t size)
{
    RfRamBlock layout;
    memset(&layout, 0, sizeof(layout));
    strcpy(layout.name, RF_GUEST_BLOCK_NAME);
    layout.size = size;
    return layout;
}

/* A destination guest of `kind` whose RAM is a copy of src's. */
static RfGuest *copy_to_incoming_kind(RfGuest *src, RfGuestKind kind)
{
    RfError *err = NULL;
    RfGuest *dst = rf_guest_new_incoming(kind, &err);
    assert_non_null(dst);
    RfRamSink *sink = rf_guest_ram_sink(dst);
    uint64_t size;
    uint8_t *ram = guest_ram(src, &size);
    RfRamBlock layout = guest_layout(size);
    if (!sink->ops->prepare(sink, &layout, 1, &err)) {
        fail_msg("prepare: %s", rf_error_msg(err));
    }
    memcpy(sink->ops->host(sink, 0), ram, size);
    assert_true(sink->ops->wait_ready(sink));
    sink->ops->finish(sink, true);
    return dst;
}

static RfGuest *copy_to_incoming(RfGuest *src)
{
    return copy_to_incoming_kind(src, RF_GUEST_KVM);
}

static void save(RfGuest *g, uint8_t **buf, size_t *len)
{
    RfError *err = NULL;
    if (!rf_guest_save_state(g, buf, len, &err)) {
        fail_msg("save: %s", rf_error_msg(err));
    }
}

static void load_ok(RfGuest *g, const uint8_t *buf, size_t len)
{
    RfError *err = NULL;
    if (!rf_guest_load_state(g, buf, len, &err)) {
        fail_msg("load: %s", rf_error_msg(err));
    }
}

static void test_save_load_resumes(void **state)
{
    (void)state;
    NEED_KVM();
    RfGuest *src = start_kvm(16 * MiB, 2, 0, false);
    wait_passes(src, 3);
    sleep_s(0.013); /* stop somewhere mid-pass */
    rf_guest_pause(src);
    uint64_t p_src = rf_guest_passes(src);
    uint8_t *blob;
    size_t len;
    save(src, &blob, &len);
    print_message("state of 2 vCPUs: %zu bytes\n", len);

    RfGuest *dst = copy_to_incoming(src);
    load_ok(dst, blob, len);
    assert_int_equal(rf_guest_passes(dst), p_src);
    const char *d = rf_guest_describe(dst);
    print_message("destination: %s\n", d);
    assert_non_null(strstr(d, "KVM guest, 2 vCPUs, 16 MiB"));
    assert_null(strstr(d, "stopped"));
    rf_guest_resume(dst);
    wait_passes(dst, p_src + 4);
    /* Continued mid-pass from the source's registers: a restart at the
     * start of a range would leave two discontinuities. */
    check_pattern_ok(dst);
    uint64_t size;
    uint8_t *src_ram = guest_ram(src, &size);
    assert_true(memcmp(src_ram, guest_ram(dst, &size), size) != 0);
    /* The source is untouched by the save and can go on too. */
    rf_guest_resume(src);
    wait_passes(src, p_src + 2);
    check_pattern_ok(src);
    /* Loading twice is refused. */
    RfError *err = NULL;
    assert_false(rf_guest_load_state(dst, blob, len, &err));
    assert_non_null(strstr(rf_error_msg(err), "exist"));
    rf_error_free(err);
    free(blob);
    rf_guest_free(dst);
    rf_guest_free(src);
}

/* Fixes the trailing checksum after a deliberate edit. */
static void reseal(uint8_t *b, size_t len)
{
    uint64_t h = XXH64(b, len - 8, 0);
    for (int i = 0; i < 8; i++) {
        b[len - 8 + i] = (uint8_t)(h >> (8 * i));
    }
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Offset of vCPU 0's header: after the header and the VM records. */
static size_t vcpu0_at(const uint8_t *b)
{
    size_t pos = 64;
    for (uint32_t k = get32(b + 44); k; k--) {
        pos += 8 + ((get32(b + pos + 4) + 7) & ~7u);
    }
    return pos;
}

/* Offset of vCPU 0's record `tag`. */
static size_t record_at(const uint8_t *b, uint32_t tag)
{
    size_t pos = vcpu0_at(b);
    uint32_t n = get32(b + pos + 36);
    pos += 40;
    for (uint32_t k = 0; k < n; k++) {
        if (get32(b + pos) == tag) {
            return pos;
        }
        pos += 8 + ((get32(b + pos + 4) + 7) & ~7u);
    }
    fail_msg("no record 0x%x", tag);
    return 0;
}

static void expect_reject(RfGuest *g, const uint8_t *b, size_t len,
                          const char *want)
{
    RfError *err = NULL;
    assert_false(rf_guest_load_state(g, b, len, &err));
    assert_non_null(err);
    if (!strstr(rf_error_msg(err), want)) {
        fail_msg("want '%s' in: %s", want, rf_error_msg(err));
    }
    rf_error_free(err);
    assert_int_equal(rf_guest_passes(g), 0);
}

/* The real state loads into dst after rejected ones (nothing of them was
 * applied: the pass count is the source's) and the guest runs on; frees
 * both guests, the blob and the scratch copy. */
static void load_runs_and_free(RfGuest *src, RfGuest *dst, uint8_t *blob,
                               size_t len, uint8_t *scratch)
{
    load_ok(dst, blob, len);
    assert_int_equal(rf_guest_passes(dst), rf_guest_passes(src));
    rf_guest_resume(dst);
    wait_passes(dst, rf_guest_passes(src) + 2);
    check_pattern_ok(dst);
    free(scratch);
    free(blob);
    rf_guest_free(dst);
    rf_guest_free(src);
}

static void test_corrupt_state_rejected(void **state)
{
    (void)state;
    NEED_KVM();
    RfGuest *src = start_kvm(8 * MiB, 1, 0, false);
    wait_passes(src, 2);
    uint8_t *blob;
    size_t len;
    save(src, &blob, &len);
    RfGuest *dst = copy_to_incoming(src);
    uint8_t *b = malloc(len);
    assert_non_null(b);
    RfError *err = NULL;

    expect_reject(dst, blob, 10, "bytes, at least");
    expect_reject(dst, blob, len - 1, "header says");
    memcpy(b, blob, len);
    b[len / 2] ^= 0x40;
    expect_reject(dst, b, len, "checksum");
    memcpy(b, blob, len);
    b[0] = 'X';
    expect_reject(dst, b, len, "magic");

    struct {
        size_t at;
        uint32_t val;
        const char *want;
    } edits[] = {
        { 8, 2, "version 2" },                 /* version */
        { 16, 0x6b6b6b6b, "back end 'kkkk" },   /* back end name */
        { 32, 4096, "RAM size 4096" },         /* mem size (low word) */
        { 40, 0, "0 vCPUs" },                  /* vCPU count */
        { 40, 2, "runs past the end" },        /* more vCPUs than there */
        { 44, 1000, "1000 records" },          /* VM record count */
    };
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        memcpy(b, blob, len);
        put32(b + edits[i].at, edits[i].val);
        reseal(b, len);
        expect_reject(dst, b, len, edits[i].want);
    }
    size_t v0 = vcpu0_at(blob);
    struct {
        size_t at;
        uint32_t val;
        const char *want;
    } vedits[] = {
        { 0, 0x11223344, "header at offset" },     /* vCPU magic */
        { 8, 3, "is invalid" },                    /* first page reserved */
        { 16, 0xffffff, "is invalid" },            /* end page past RAM */
        { 32, 1, "is invalid" },                   /* idle, non-empty */
        { 36, 65, "65 records" },                  /* record count */
        { 36, 3, "stray bytes" },                  /* fewer records */
    };
    for (size_t i = 0; i < sizeof(vedits) / sizeof(vedits[0]); i++) {
        memcpy(b, blob, len);
        put32(b + v0 + vedits[i].at, vedits[i].val);
        reseal(b, len);
        expect_reject(dst, b, len, vedits[i].want);
    }
    /* Records: length past the end, a wrong fixed size, an unknown tag,
     * a bad MSR count. */
    size_t regs = record_at(blob, 0x0101);
    memcpy(b, blob, len);
    put32(b + regs + 4, 0x7fffffff);
    reseal(b, len);
    expect_reject(dst, b, len, "claims");
    size_t mp = record_at(blob, 0x0109);
    memcpy(b, blob, len);
    put32(b + mp + 4, 8); /* kvm_mp_state is 4 bytes (padded to 8) */
    reseal(b, len);
    expect_reject(dst, b, len, "record is 8 bytes, expected 4");
    memcpy(b, blob, len);
    put32(b + regs, 0x0199);
    reseal(b, len);
    expect_reject(dst, b, len, "unknown record tag 0x0199");
    size_t msrs = record_at(blob, 0x0106);
    memcpy(b, blob, len);
    put32(b + msrs + 8, get32(blob + msrs + 8) + 1);
    reseal(b, len);
    expect_reject(dst, b, len, "MSR record");
    /* RAM and state of different guests: the parameter block differs. */
    memcpy(b, blob, len);
    put32(b + v0 + 16, get32(blob + v0 + 16) - 1);
    reseal(b, len);
    expect_reject(dst, b, len, "different guests");

    /* Random damage to the framing (headers, record tags and lengths),
     * checksum fixed: refused with an error or loaded, never a crash. */
    size_t spots[64];
    unsigned nspots = 0;
    for (size_t o = 0; o < 64; o += 4) {
        spots[nspots++] = o;
    }
    for (size_t o = v0; o < v0 + 40; o += 4) {
        spots[nspots++] = o;
    }
    size_t pos = v0 + 40;
    for (uint32_t k = get32(blob + v0 + 36); k && nspots < 62; k--) {
        spots[nspots++] = pos;
        spots[nspots++] = pos + 4;
        pos += 8 + ((get32(blob + pos + 4) + 7) & ~7u);
    }
    srand(12345);
    unsigned loaded = 0;
    for (int it = 0; it < 300; it++) {
        memcpy(b, blob, len);
        for (int m = 1 + rand() % 3; m; m--) {
            b[spots[rand() % nspots] + (size_t)(rand() % 4)] ^=
                (uint8_t)(1u << (rand() % 8));
        }
        reseal(b, len);
        if (rf_guest_load_state(dst, b, len, &err)) {
            loaded++; /* a harmless edit (e.g. the pass count) */
            rf_guest_free(dst);
            dst = copy_to_incoming(src);
        } else {
            assert_non_null(err);
            assert_true(strlen(rf_error_msg(err)) > 10);
            rf_error_free(err);
            err = NULL;
        }
    }
    print_message("300 damaged states: %u loaded (harmless), the rest "
                  "refused\n", loaded);

    /* After all that, the real state still loads and runs. */
    load_runs_and_free(src, dst, blob, len, b);
}

/* Pages per second the guest dirties, from the dirty log over `secs`. */
static double dirty_rate(RfGuest *g, double secs)
{
    uint64_t size;
    guest_ram(g, &size);
    uint64_t pages = size / 4096;
    free(sync_bitmap(g, pages));
    double t0 = now_s();
    uint64_t total = 0;
    while (now_s() - t0 < secs) {
        sleep_s(0.05);
        uint64_t *bm = sync_bitmap(g, pages);
        total += rf_bitmap_count(bm, pages);
        free(bm);
    }
    return (double)total / (now_s() - t0);
}

static void test_dirty_rate_limit_and_throttle(void **state)
{
    (void)state;
    NEED_KVM();
    RfGuest *g = start_kvm(64 * MiB, 1, 20000, false);
    RfRamSource *s = rf_guest_ram_source(g);
    RfError *err = NULL;
    assert_true(s->ops->dirty_start(s, &err));
    double limited = dirty_rate(g, 0.6);
    print_message("dirty rate limit 20000 pages/s: measured %.0f\n",
                  limited);
    assert_true(limited > 14000 && limited < 26000);
    s->ops->dirty_stop(s);
    rf_guest_free(g);

    g = start_kvm(64 * MiB, 1, 0, false);
    s = rf_guest_ram_source(g);
    assert_true(s->ops->dirty_start(s, &err));
    /* A busy host only ever slows the guest down: compare the best of
     * several windows unthrottled with the best throttled. */
    double full = 0, slow = 0, back = 0;
    for (int i = 0; i < 3; i++) {
        double r = dirty_rate(g, 0.2);
        full = r > full ? r : full;
    }
    rf_guest_throttle(g, 90);
    dirty_rate(g, 0.1); /* settle */
    for (int i = 0; i < 2; i++) {
        double r = dirty_rate(g, 0.2);
        slow = r > slow ? r : slow;
    }
    rf_guest_throttle(g, 0);
    for (int i = 0; i < 10 && back <= slow * 2; i++) {
        double r = dirty_rate(g, 0.2);
        back = r > back ? r : back;
    }
    print_message("dirty rate unlimited (tracked, 64 MiB): %.0f pages/s; "
                  "throttled 90%%: %.0f; unthrottled again: %.0f\n", full,
                  slow, back);
    /* 10x slower in theory; the margins allow for a busy host. */
    assert_true(slow < full * 0.4);
    assert_true(back > slow * 2);
    s->ops->dirty_stop(s);
    check_pattern_ok(g);
    rf_guest_free(g);
}

static void test_idle_guest(void **state)
{
    (void)state;
    NEED_KVM();
    RfGuest *g = start_kvm(4 * MiB, 2, 0, true);
    assert_non_null(strstr(rf_guest_describe(g), "(idle)"));
    uint64_t size;
    uint8_t *ram = guest_ram(g, &size);
    uint8_t *copy = malloc(size);
    assert_non_null(copy);
    memcpy(copy, ram + 16 * 4096, size - 16 * 4096);
    sleep_s(0.2);
    assert_int_equal(rf_guest_passes(g), 0);
    assert_memory_equal(copy, ram + 16 * 4096, size - 16 * 4096);
    assert_null(strstr(rf_guest_describe(g), "stopped"));
    /* Halted vCPUs save, load and halt again on the destination. */
    uint8_t *blob;
    size_t len;
    save(g, &blob, &len);
    RfGuest *dst = copy_to_incoming(g);
    load_ok(dst, blob, len);
    rf_guest_resume(dst);
    sleep_s(0.1);
    assert_memory_equal(copy, guest_ram(dst, &size) + 16 * 4096,
                        size - 16 * 4096);
    assert_null(strstr(rf_guest_describe(dst), "stopped"));
    free(blob);
    free(copy);
    rf_guest_free(dst);
    rf_guest_free(g);
}

static void test_fill_from_files(void **state)
{
    (void)state;
    NEED_KVM();
    char dir[] = "/tmp/rf-guest-fill-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char a[64], b[64];
    snprintf(a, sizeof(a), "%s/a", dir);
    snprintf(b, sizeof(b), "%s/b", dir);
    uint8_t data[7000];
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)(i * 7 + 3);
    }
    FILE *f = fopen(b, "wb");
    assert_non_null(f);
    fwrite(data + 3000, 1, 4000, f);
    fclose(f);
    f = fopen(a, "wb");
    assert_non_null(f);
    fwrite(data, 1, 3000, f);
    fclose(f);

    RfGuestConfig cfg = {
        .mem_size = 2 * MiB, .vcpus = 1, .kind = RF_GUEST_KVM,
        .idle = true, .fill_path = dir,
    };
    RfError *err = NULL;
    RfGuest *g = rf_guest_start(&cfg, &err);
    if (!g) {
        fail_msg("start: %s", rf_error_msg(err));
    }
    uint64_t size;
    uint8_t *ram = guest_ram(g, &size);
    /* a then b (name order), repeated; byte 0 of each page is the
     * pattern's, reserved pages are cleared. */
    for (uint64_t off = 16 * 4096; off < size; off++) {
        uint8_t want = off % 4096 ? data[off % sizeof(data)] : 0;
        if (ram[off] != want) {
            fail_msg("offset %llu: %u, want %u", (unsigned long long)off,
                     ram[off], want);
        }
    }
    rf_guest_free(g);

    cfg.fill_path = "/nonexistent/ramflow-fill";
    assert_null(rf_guest_start(&cfg, &err));
    assert_non_null(strstr(rf_error_msg(err), "/nonexistent/ramflow-fill"));
    rf_error_free(err);
    unlink(a);
    unlink(b);
    rmdir(dir);
}

static void test_bad_config_and_layout(void **state)
{
    (void)state;
    RfGuestConfig cfg = { .mem_size = 4096 * 100, .vcpus = 1 };
    RfError *err = NULL;
    assert_null(rf_guest_start(&cfg, &err));
    assert_non_null(strstr(rf_error_msg(err), "at least 1 MiB"));
    rf_error_free(err);
    err = NULL;
    cfg.mem_size = MiB;
    cfg.vcpus = 65;
    assert_null(rf_guest_start(&cfg, &err));
    assert_non_null(strstr(rf_error_msg(err), "vCPUs 65"));
    rf_error_free(err);
    err = NULL;

    RfGuest *g = rf_guest_new_incoming(RF_GUEST_AUTO, &err);
    assert_non_null(g);
    RfRamSink *sink = rf_guest_ram_sink(g);
    RfRamBlock l[2];
    memset(l, 0, sizeof(l));
    strcpy(l[0].name, "other");
    l[0].size = MiB;
    l[1] = l[0];
    assert_false(sink->ops->prepare(sink, l, 2, &err));
    assert_non_null(strstr(rf_error_msg(err), "2 RAM blocks"));
    rf_error_free(err);
    err = NULL;
    assert_false(sink->ops->prepare(sink, l, 1, &err));
    assert_non_null(strstr(rf_error_msg(err), "'other'"));
    rf_error_free(err);
    err = NULL;
    /* State before the layout: refused, not a crash. */
    uint8_t junk[100] = { 0 };
    assert_false(rf_guest_load_state(g, junk, sizeof(junk), &err));
    assert_non_null(strstr(rf_error_msg(err), "no RAM yet"));
    rf_error_free(err);
    err = NULL;
    char summary[64];
    assert_false(rf_guest_check_pattern(g, summary, sizeof(summary), &err));
    rf_error_free(err);
    rf_guest_free(g);
}

/* A running thread guest of 4 MiB and 2 vCPUs. */
static RfGuest *start_thread(uint64_t seed)
{
    RfGuestConfig cfg = {
        .mem_size = 4 * MiB, .vcpus = 2, .kind = RF_GUEST_THREAD,
        .seed = seed,
    };
    RfError *err = NULL;
    RfGuest *src = rf_guest_start(&cfg, &err);
    if (!src) {
        fail_msg("thread guest: %s", rf_error_msg(err));
    }
    return src;
}

/* guest.c's AUTO logic: a thread guest's state makes an AUTO destination
 * switch to the thread back end; a KVM-only destination refuses it. */
static void test_auto_destination_follows_source(void **state)
{
    (void)state;
    RfError *err = NULL;
    RfGuest *src = start_thread(3);
    print_message("source: %s\n", rf_guest_describe(src));
    assert_non_null(strstr(rf_guest_describe(src), "thread guest"));
    wait_passes(src, 3);
    rf_guest_pause(src);
    uint8_t *blob;
    size_t len;
    save(src, &blob, &len);

    if (kvm_ok) {
        RfGuest *kvm = copy_to_incoming(src); /* RF_GUEST_KVM */
        assert_false(rf_guest_load_state(kvm, blob, len, &err));
        assert_non_null(strstr(rf_error_msg(err), "from a thread guest"));
        rf_error_free(err);
        err = NULL;
        rf_guest_free(kvm);
    }
    RfGuest *dst = copy_to_incoming_kind(src, RF_GUEST_AUTO);
    load_ok(dst, blob, len);
    print_message("AUTO destination: %s\n", rf_guest_describe(dst));
    assert_non_null(strstr(rf_guest_describe(dst), "thread guest"));
    uint64_t p = rf_guest_passes(dst);
    rf_guest_resume(dst);
    wait_passes(dst, p + 3);
    check_pattern_ok(dst);
    free(blob);
    rf_guest_free(dst);
    rf_guest_free(src);
}

/* A failed migration tears the destination's VM down; the source side is
 * the engine's (it resumes the guest). */
static void test_sink_finish_failed_tears_down(void **state)
{
    (void)state;
    NEED_KVM();
    RfGuest *src = start_kvm(4 * MiB, 1, 0, false);
    wait_passes(src, 1);
    rf_guest_pause(src);
    uint8_t *blob;
    size_t len;
    save(src, &blob, &len);
    RfError *err = NULL;
    RfGuest *dst = rf_guest_new_incoming(RF_GUEST_KVM, &err);
    RfRamSink *sink = rf_guest_ram_sink(dst);
    RfRamBlock layout;
    memset(&layout, 0, sizeof(layout));
    strcpy(layout.name, RF_GUEST_BLOCK_NAME);
    layout.size = 4 * MiB;
    assert_true(sink->ops->prepare(sink, &layout, 1, &err));
    sink->ops->finish(sink, false);
    assert_non_null(strstr(rf_guest_describe(dst), "no guest"));
    assert_false(rf_guest_load_state(dst, blob, len, &err));
    assert_non_null(strstr(rf_error_msg(err), "no VM yet"));
    rf_error_free(err);
    rf_guest_pause(dst);  /* harmless on a torn-down guest */
    rf_guest_resume(dst);
    assert_int_equal(rf_guest_passes(dst), 0);
    free(blob);
    rf_guest_free(dst);
    rf_guest_free(src);
}

/* ---- destination safety: RAM caps and the thread guest's state ------- */

/* MemAvailable of /proc/meminfo, bytes (0 if unknown). */
static uint64_t meminfo_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    unsigned long long kib = 0;
    while (f && fgets(line, sizeof(line), f) &&
           sscanf(line, "MemAvailable: %llu kB", &kib) != 1) {
    }
    if (f) {
        fclose(f);
    }
    return (uint64_t)kib * 1024;
}

/* Resident bytes of this process. */
static uint64_t resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, rss = 0;
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%llu %llu", &size, &rss), 2);
    fclose(f);
    return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void expect_prepare_refused(RfRamSink *sink, uint64_t size,
                                   const char *want)
{
    RfRamBlock layout = guest_layout(size);
    RfError *err = NULL;
    assert_false(sink->ops->prepare(sink, &layout, 1, &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_MISMATCH);
    if (!strstr(rf_error_msg(err), want)) {
        fail_msg("want '%s' in: %s", want, rf_error_msg(err));
    }
    print_message("%s\n", rf_error_msg(err));
    rf_error_free(err);
    assert_null(sink->ops->host(sink, 0)); /* no RAM was made */
}

/* A layout over MemAvailable, or over the guest's own limit, is refused
 * before any RAM is created or faulted in; a fitting one still works. */
static void test_sink_ram_caps(void **state)
{
    (void)state;
    uint64_t avail = meminfo_available();
    assert_true(avail > 0);
    RfError *err = NULL;
    RfGuest *g = rf_guest_new_incoming(RF_GUEST_THREAD, &err);
    assert_non_null(g);
    RfRamSink *sink = rf_guest_ram_sink(g);
    uint64_t rss = resident_bytes();
    uint64_t over = (avail + (1ull << 30)) & ~(uint64_t)4095;
    char want[96];
    snprintf(want, sizeof(want), "announces %llu bytes",
             (unsigned long long)over);
    expect_prepare_refused(sink, over, want);
    expect_prepare_refused(sink, over, "MemAvailable");
    expect_prepare_refused(sink, 16ull << 40, "MemAvailable"); /* 16 TiB */
    rf_guest_set_max_ram(g, 4 * MiB);
    expect_prepare_refused(sink, 8 * MiB, "the limit here is 4194304");
    assert_true(resident_bytes() < rss + 8 * MiB);
    RfRamBlock layout = guest_layout(4 * MiB);
    if (!sink->ops->prepare(sink, &layout, 1, &err)) {
        fail_msg("prepare: %s", rf_error_msg(err));
    }
    assert_non_null(sink->ops->host(sink, 0));
    sink->ops->finish(sink, true);
    rf_guest_free(g);
}

/* wait_ready comes once every page has landed: it stops the sink's
 * pre-fault instead of waiting for the rest of it (the destination's
 * downtime would), and still says a pre-fault ran.  512 MiB take the
 * pre-fault 0.1-1.2 s; wait_ready here follows prepare at once. */
static void test_sink_ready_stops_prefault(void **state)
{
    (void)state;
    const uint64_t size = 512 * MiB;
    if (meminfo_available() < 4 * size) {
        skip();
    }
    RfError *err = NULL;
    RfGuest *g = rf_guest_new_incoming(RF_GUEST_THREAD, &err);
    assert_non_null(g);
    RfRamSink *sink = rf_guest_ram_sink(g);
    RfRamBlock layout = guest_layout(size);
    if (!sink->ops->prepare(sink, &layout, 1, &err)) {
        fail_msg("prepare: %s", rf_error_msg(err));
    }
    assert_true(sink->ops->wait_ready(sink));
    uint64_t in = resident_pages(sink->ops->host(sink, 0), size);
    print_message("resident after wait_ready: %llu of %llu pages\n",
                  (unsigned long long)in,
                  (unsigned long long)(size / 4096));
    assert_true(in < size / 4096 / 2);
    assert_true(sink->ops->wait_ready(sink)); /* again: nothing to stop */
    sink->ops->finish(sink, true);
    rf_guest_free(g);
}

/* A thread guest of 2 vCPUs, paused, its state in *blob, and an incoming
 * thread guest holding a copy of its RAM. */
static RfGuest *thread_pair(RfGuest **dst, uint8_t **blob, size_t *len)
{
    RfGuest *src = start_thread(5);
    wait_passes(src, 2);
    rf_guest_pause(src);
    save(src, blob, len);
    *dst = copy_to_incoming_kind(src, RF_GUEST_THREAD);
    return src;
}

/* Offset of vCPU i's header in a thread guest's blob (no VM records, one
 * record per vCPU). */
static size_t thread_vcpu_at(const uint8_t *b, unsigned i)
{
    size_t pos = vcpu0_at(b);
    for (; i; i--) {
        pos += 40 + 8 + ((get32(b + pos + 40 + 4) + 7) & ~7u);
    }
    return pos;
}

/* Bad thread-guest states are refused naming the field, with nothing
 * applied: the same guest then loads the real state and runs on. */
static void test_thread_state_rejected(void **state)
{
    (void)state;
    RfGuest *dst;
    uint8_t *blob;
    size_t len;
    RfGuest *src = thread_pair(&dst, &blob, &len);
    uint8_t *b = malloc(len);
    assert_non_null(b);

    expect_reject(dst, blob, 10, "bytes, at least");       /* truncated */
    expect_reject(dst, blob, len - 8, "header says");      /* truncated */
    struct {
        size_t at;
        uint32_t val;
        const char *want;
    } edits[] = {
        { 8, 2, "version 2" },                  /* wrong version */
        { 12, 1u << 20, "1048576-byte header" }, /* absurd header size */
        { 40, 1000, "1000 vCPUs" },             /* absurd vCPU count */
        { 40, 3, "runs past the end" },         /* more vCPUs than sent */
        { 44, 0x10000, "65536 records" },       /* absurd record count */
        { 28, 0x41, "not NUL-padded" },         /* junk after the name */
    };
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        memcpy(b, blob, len);
        put32(b + edits[i].at, edits[i].val);
        reseal(b, len);
        expect_reject(dst, b, len, edits[i].want);
    }
    /* Absurd record length, then a bad value in the LAST vCPU's record:
     * refused before vCPU 0 is set up. */
    size_t v1 = thread_vcpu_at(blob, 1);
    memcpy(b, blob, len);
    put32(b + v1 + 40 + 4, 0xfffffff0u);
    reseal(b, len);
    expect_reject(dst, b, len, "claims");
    memcpy(b, blob, len);
    put32(b + v1 + 40 + 8 + 16, 0xffffff); /* next page past its range */
    reseal(b, len);
    expect_reject(dst, b, len, "vCPU 1: next page 16777215");
    memcpy(b, blob, len);
    put32(b + v1 + 40, 0x0299); /* unknown tag */
    reseal(b, len);
    expect_reject(dst, b, len, "unknown record tag 0x0299");

    load_runs_and_free(src, dst, blob, len, b);
}

/* The tracker on its own: a slot without KVM_MEM_LOG_DIRTY_PAGES is
 * refused with KVM's answer, one with it reports host-invisible guest
 * writes only (covered above); here the error path. */
static void test_kvm_dirty_needs_logging_slot(void **state)
{
    (void)state;
    NEED_KVM();
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    assert_true(kvm >= 0);
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    assert_true(vm >= 0);
    size_t size = MiB;
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    struct kvm_userspace_memory_region r = {
        .slot = 3, .memory_size = size, .userspace_addr = (uintptr_t)mem,
    };
    assert_int_equal(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
    RfError *err = NULL;
    assert_null(rf_kvm_dirty_new(vm, 3, size, &err));
    assert_non_null(strstr(rf_error_msg(err), "KVM_GET_DIRTY_LOG on slot 3"));
    rf_error_free(err);
    err = NULL;
    r.flags = KVM_MEM_LOG_DIRTY_PAGES;
    assert_int_equal(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
    RfKvmDirty *d = rf_kvm_dirty_new(vm, 3, size, &err);
    assert_non_null(d);
    uint64_t bm[4] = { 0 };
    uint64_t n = 99;
    assert_true(rf_kvm_dirty_sync(d, bm, &n, &err));
    assert_int_equal(n, 0); /* no vCPU ever ran */
    print_message("KVM tracker: %s\n", rf_kvm_dirty_describe(d));
    rf_kvm_dirty_free(d);
    assert_null(rf_kvm_dirty_new(vm, 3, 1000, &err));
    rf_error_free(err);
    munmap(mem, size);
    close(vm);
    close(kvm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs_and_counts_passes),
        cmocka_unit_test(test_dirty_log),
        cmocka_unit_test(test_pause_freezes_memory),
        cmocka_unit_test(test_save_load_resumes),
        cmocka_unit_test(test_corrupt_state_rejected),
        cmocka_unit_test(test_dirty_rate_limit_and_throttle),
        cmocka_unit_test(test_idle_guest),
        cmocka_unit_test(test_fill_from_files),
        cmocka_unit_test(test_bad_config_and_layout),
        cmocka_unit_test(test_auto_destination_follows_source),
        cmocka_unit_test(test_sink_finish_failed_tears_down),
        cmocka_unit_test(test_kvm_dirty_needs_logging_slot),
        cmocka_unit_test(test_sink_ram_caps),
        cmocka_unit_test(test_sink_ready_stops_prefault),
        cmocka_unit_test(test_thread_state_rejected),
    };
    return cmocka_run_group_tests(tests, probe_kvm, NULL);
}
