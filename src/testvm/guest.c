/*
 * ramflow - the test VM (guest.h): the parts both back ends share.
 *
 * Guest RAM is one memfd mapped MAP_SHARED, filled here (imagegen or
 * files), then handed to a back end (guest_backend.h): kvm_guest.c or
 * thread_guest.c.  This file also holds the RAM source and sink over that
 * memory, the state blob's framing (docs/testvm.md) and the pattern
 * checker.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "ram/dirty_bitmap.h"
#include "ram/ram.h"
#include "testvm/guest.h"
#include "testvm/guest_backend.h"
#include "tools/imagegen.h"
#include "util/bitmap.h"
#include "wire/bytes.h"

#define STATE_MAGIC "RFGSTATE"
#define STATE_VERSION 1u
#define STATE_HEADER_SIZE 64u
#define STATE_VCPU_MAGIC 0x55504356u /* "VCPU" little-endian */
#define STATE_VCPU_HEADER_SIZE 40u
#define STATE_MAX_RECORDS 64u
#define STATE_MAX_RECORD (16u << 20)
#define STATE_NAME_LEN 16u

typedef struct GuestSource {
    RfRamSource base; /* first: the ops table */
    RfGuest *g;
    RfDirtyBitmap marks; /* rf_ram_source_mark_dirty() */
    bool tracking;
} GuestSource;

typedef struct GuestSink {
    RfRamSink base; /* first: the ops table */
    RfGuest *g;
    pthread_t prefault;
    bool prefaulting;
} GuestSink;

struct RfGuest {
    const RfGuestBackendOps *ops;
    void *be;
    RfGuestKind want;           /* incoming: the kind asked for */
    bool incoming;
    RfGuestMem mem;             /* fd -1 until created */
    RfRamBlock block;           /* "pc.ram" */
    unsigned n;                 /* vCPUs (0 until started / loaded) */
    RfGuestVcpuPlan plan[RF_GUEST_MAX_VCPUS];
    uint64_t dirty_rate;
    unsigned throttle;
    bool running;               /* vCPUs exist and are not paused */
    char fallback[320];         /* why AUTO did not use KVM */
    char desc[1024];
    GuestSource src;
    GuestSink sink;
};

/* ---- memory --------------------------------------------------------- */

static bool mem_create(RfGuest *g, uint64_t size, RfError **errp)
{
    int fd = memfd_create("ramflow-guest", MFD_CLOEXEC);
    if (fd < 0) {
        rf_error_set(errp, RF_ERR_IO, "guest RAM: memfd_create: %s",
                     strerror(errno));
        return false;
    }
    if (ftruncate(fd, (off_t)size) < 0) {
        rf_error_set(errp, RF_ERR_IO, "guest RAM: cannot size the memfd to "
                     "%llu bytes: %s", (unsigned long long)size,
                     strerror(errno));
        close(fd);
        return false;
    }
    void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   fd, 0);
    if (p == MAP_FAILED) {
        rf_error_set(errp, RF_ERR_IO, "guest RAM: mmap of %llu bytes: %s",
                     (unsigned long long)size, strerror(errno));
        close(fd);
        return false;
    }
    g->mem.fd = fd;
    g->mem.host = p;
    g->mem.size = size;
    snprintf(g->block.name, sizeof(g->block.name), "%s",
             RF_GUEST_BLOCK_NAME);
    g->block.size = size;
    g->block.host = p;
    if (!rf_dirty_bitmap_init(&g->src.marks, size / RF_PAGE_SIZE)) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest RAM: out of memory for "
                     "the dirty bitmap");
        return false;
    }
    return true;
}

static void mem_free(RfGuest *g)
{
    if (g->mem.host) {
        munmap(g->mem.host, (size_t)g->mem.size);
    }
    if (g->mem.fd >= 0) {
        close(g->mem.fd);
    }
    rf_dirty_bitmap_destroy(&g->src.marks);
    g->mem.host = NULL;
    g->mem.fd = -1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Fills RAM from a file, or from the regular files of a folder in name
 * order (hidden files skipped), repeated. */
static bool fill_from_path(RfGuest *g, const char *path, RfError **errp)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        rf_error_set(errp, RF_ERR_IO, "fill '%s': %s", path,
                     strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        const char *one = path;
        return rf_image_fill_from_files(g->mem.host, g->mem.size, &one, 1,
                                        errp);
    }
    DIR *d = opendir(path);
    if (!d) {
        rf_error_set(errp, RF_ERR_IO, "fill folder '%s': %s", path,
                     strerror(errno));
        return false;
    }
    char **names = NULL;
    unsigned n = 0, cap = 0;
    bool ok = false;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') {
            continue;
        }
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        char *full = malloc(len);
        if (!full) {
            goto oom;
        }
        snprintf(full, len, "%s/%s", path, e->d_name);
        if (stat(full, &st) < 0 || !S_ISREG(st.st_mode)) {
            free(full);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof(*names));
            if (!nn) {
                free(full);
                goto oom;
            }
            names = nn;
        }
        names[n++] = full;
    }
    if (n == 0) {
        rf_error_set(errp, RF_ERR_PARAM, "fill folder '%s' has no regular "
                     "files", path);
        goto out;
    }
    qsort(names, n, sizeof(*names), cmp_str);
    ok = rf_image_fill_from_files(g->mem.host, g->mem.size,
                                  (const char *const *)names, n, errp);
    goto out;
oom:
    rf_error_set(errp, RF_ERR_GENERIC, "fill folder '%s': out of memory",
                 path);
out:
    for (unsigned i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
    closedir(d);
    return ok;
}

/* Clears the reserved pages and byte 0 of every other page: the pattern
 * starts from 0 everywhere (the fill keeps the other 4095 bytes). */
static void pattern_reset(RfGuest *g)
{
    uint64_t pages = g->mem.size / RF_PAGE_SIZE;
    memset(g->mem.host, 0, (size_t)RF_GUEST_RESERVED_PAGES * RF_PAGE_SIZE);
    for (uint64_t p = RF_GUEST_RESERVED_PAGES; p < pages; p++) {
        g->mem.host[p * RF_PAGE_SIZE] = 0;
    }
}

static unsigned fill_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 8 ? 8 : (unsigned)n;
}

/* Splits the pages past the reserved ones evenly between the vCPUs. */
static void make_plan(RfGuest *g, unsigned n, bool idle)
{
    uint64_t first = RF_GUEST_RESERVED_PAGES;
    uint64_t avail = g->mem.size / RF_PAGE_SIZE - first;
    g->n = n;
    for (unsigned i = 0; i < n; i++) {
        uint64_t share = idle ? 0 : avail / n + (i < avail % n ? 1 : 0);
        g->plan[i].first_page = first;
        g->plan[i].end_page = first + share;
        g->plan[i].idle = idle;
        g->plan[i].passes = 0;
        first += share;
    }
}

/* ---- the RAM source ------------------------------------------------- */

static RfGuest *src_guest(RfRamSource *s)
{
    return ((GuestSource *)s)->g;
}

static unsigned src_block_count(RfRamSource *s)
{
    return src_guest(s)->mem.host ? 1 : 0;
}

static const RfRamBlock *src_block(RfRamSource *s, unsigned i)
{
    RfGuest *g = src_guest(s);
    return i == 0 && g->mem.host ? &g->block : NULL;
}

static bool src_dirty_start(RfRamSource *s, RfError **errp)
{
    RfGuest *g = src_guest(s);
    if (!g->be) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest: no VM to track");
        return false;
    }
    rf_dirty_bitmap_clear(&g->src.marks);
    if (!g->ops->dirty_start(g->be, errp)) {
        return false;
    }
    g->src.tracking = true;
    return true;
}

static bool src_dirty_sync(RfRamSource *s, unsigned block, uint64_t *bitmap,
                           RfError **errp)
{
    RfGuest *g = src_guest(s);
    if (block != 0 || !g->mem.host) {
        rf_error_set(errp, RF_ERR_PARAM, "dirty sync: block %u out of range "
                     "(the guest has 1)", block);
        return false;
    }
    if (!g->src.tracking) {
        rf_error_set(errp, RF_ERR_GENERIC, "dirty sync: tracking was not "
                     "started");
        return false;
    }
    rf_dirty_bitmap_take(&g->src.marks, bitmap);
    return g->ops->dirty_sync(g->be, bitmap, errp);
}

static void src_dirty_stop(RfRamSource *s)
{
    RfGuest *g = src_guest(s);
    if (g->src.tracking) {
        g->ops->dirty_stop(g->be);
        g->src.tracking = false;
    }
}

static void src_mark_dirty(RfRamSource *s, unsigned block, uint64_t offset,
                           uint64_t len)
{
    RfGuest *g = src_guest(s);
    if (block != 0 || len == 0 || offset >= g->mem.size) {
        return;
    }
    uint64_t end = g->mem.size - offset < len ? g->mem.size : offset + len;
    uint64_t first = offset / RF_PAGE_SIZE;
    rf_dirty_bitmap_mark(&g->src.marks, first,
                         (end - 1) / RF_PAGE_SIZE - first + 1);
}

static const char *src_describe(RfRamSource *s)
{
    RfGuest *g = src_guest(s);
    return g->be ? g->ops->describe(g->be) : "no VM";
}

static void src_free(RfRamSource *s)
{
    (void)s; /* owned by the guest: rf_guest_free releases it */
}

static const RfRamSourceOps guest_source_ops = {
    .name = "guest",
    .block_count = src_block_count,
    .block = src_block,
    .dirty_start = src_dirty_start,
    .dirty_sync = src_dirty_sync,
    .dirty_stop = src_dirty_stop,
    .mark_dirty = src_mark_dirty,
    .free = src_free,
    .describe = src_describe,
};

/* ---- the RAM sink --------------------------------------------------- */

static void *prefault_thread(void *arg)
{
    RfGuest *g = arg;
    rf_ram_prefault(g->mem.host, g->mem.size, 2);
    return NULL;
}

/* Starts the pre-faulting thread with every signal blocked: it must not
 * take the process's signals (e.g. SIGINT). */
static void prefault_start(RfGuest *g)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    g->sink.prefaulting = pthread_create(&g->sink.prefault, NULL,
                                         prefault_thread, g) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Picks and creates the incoming back end (AUTO: kvm, else thread). */
static bool backend_create(RfGuest *g, RfGuestKind kind, RfError **errp);

static bool sink_prepare(RfRamSink *s, const RfRamBlock *layout, unsigned n,
                         RfError **errp)
{
    RfGuest *g = ((GuestSink *)s)->g;
    if (g->mem.host) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest sink: prepare called "
                     "twice");
        return false;
    }
    if (n != 1) {
        rf_error_set(errp, RF_ERR_MISMATCH, "guest sink: the source has %u "
                     "RAM blocks, the test guest takes exactly 1 ('%s')", n,
                     RF_GUEST_BLOCK_NAME);
        return false;
    }
    if (!memchr(layout[0].name, '\0', sizeof(layout[0].name)) ||
        strcmp(layout[0].name, RF_GUEST_BLOCK_NAME) != 0) {
        rf_error_set(errp, RF_ERR_MISMATCH, "guest sink: the source's block "
                     "is '%.*s', the test guest takes '%s'",
                     (int)sizeof(layout[0].name), layout[0].name,
                     RF_GUEST_BLOCK_NAME);
        return false;
    }
    uint64_t size = layout[0].size;
    if (size < (1u << 20) || size % RF_PAGE_SIZE || size > (uint64_t)SIZE_MAX) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "guest sink: block '%s' has "
                     "size %llu bytes; must be a multiple of %u, at least "
                     "1 MiB", RF_GUEST_BLOCK_NAME, (unsigned long long)size,
                     RF_PAGE_SIZE);
        return false;
    }
    if (!mem_create(g, size, errp) || !backend_create(g, g->want, errp)) {
        mem_free(g);
        return false;
    }
    prefault_start(g);
    return true;
}

static uint8_t *sink_host(RfRamSink *s, unsigned i)
{
    RfGuest *g = ((GuestSink *)s)->g;
    return i == 0 ? g->mem.host : NULL;
}

static bool sink_wait_ready(RfRamSink *s)
{
    RfGuest *g = ((GuestSink *)s)->g;
    if (g->sink.prefaulting) {
        pthread_join(g->sink.prefault, NULL);
        g->sink.prefaulting = false;
        return true;
    }
    return false;
}

static void sink_finish(RfRamSink *s, bool ok)
{
    RfGuest *g = ((GuestSink *)s)->g;
    sink_wait_ready(s);
    if (!ok && g->be) {
        /* A failed migration: tear the VM down, keep the (dead) object. */
        g->ops->destroy(g->be);
        g->be = NULL;
        g->n = 0;
        g->running = false;
    }
}

static void sink_free(RfRamSink *s)
{
    sink_wait_ready(s); /* owned by the guest otherwise */
}

static const RfRamSinkOps guest_sink_ops = {
    .name = "guest",
    .prepare = sink_prepare,
    .host = sink_host,
    .wait_ready = sink_wait_ready,
    .finish = sink_finish,
    .free = sink_free,
};

/* ---- creation ------------------------------------------------------- */

static RfGuest *guest_alloc(void)
{
    RfGuest *g = calloc(1, sizeof(*g));
    if (!g) {
        return NULL;
    }
    g->mem.fd = -1;
    g->src.base.ops = &guest_source_ops;
    g->src.g = g;
    g->sink.base.ops = &guest_sink_ops;
    g->sink.g = g;
    return g;
}

static bool backend_create(RfGuest *g, RfGuestKind kind, RfError **errp)
{
    if (kind == RF_GUEST_KVM || kind == RF_GUEST_AUTO) {
        RfError *kerr = NULL;
        g->be = rf_guest_kvm_ops.create(&g->mem, &kerr);
        if (g->be) {
            g->ops = &rf_guest_kvm_ops;
            return true;
        }
        if (kind == RF_GUEST_KVM) {
            rf_error_propagate(errp, kerr);
            rf_error_prefix(errp, "KVM guest");
            return false;
        }
        snprintf(g->fallback, sizeof(g->fallback), "%s",
                 rf_error_msg(kerr));
        rf_error_free(kerr);
    }
    g->be = rf_guest_thread_ops.create(&g->mem, errp);
    if (!g->be) {
        rf_error_prefix(errp, "thread guest");
        return false;
    }
    g->ops = &rf_guest_thread_ops;
    return true;
}

static bool check_config(const RfGuestConfig *cfg, RfError **errp)
{
    if (cfg->mem_size < (1u << 20) || cfg->mem_size % RF_PAGE_SIZE ||
        cfg->mem_size > (uint64_t)SIZE_MAX) {
        rf_error_set(errp, RF_ERR_PARAM, "guest memory size %llu bytes: "
                     "must be a multiple of %u and at least 1 MiB",
                     (unsigned long long)cfg->mem_size, RF_PAGE_SIZE);
        return false;
    }
    if (cfg->vcpus < 1 || cfg->vcpus > RF_GUEST_MAX_VCPUS) {
        rf_error_set(errp, RF_ERR_PARAM, "guest vCPUs %u: 1-%u allowed",
                     cfg->vcpus, RF_GUEST_MAX_VCPUS);
        return false;
    }
    if (cfg->kind != RF_GUEST_AUTO && cfg->kind != RF_GUEST_KVM &&
        cfg->kind != RF_GUEST_THREAD) {
        rf_error_set(errp, RF_ERR_PARAM, "guest kind %d unknown",
                     (int)cfg->kind);
        return false;
    }
    return true;
}

/* Starts the vCPUs on the chosen back end; with AUTO, a KVM VM that was
 * created but cannot run its vCPUs falls back to threads too. */
static bool start_vcpus(RfGuest *g, RfGuestKind kind, RfError **errp)
{
    RfError *kerr = NULL;
    if (g->ops->start(g->be, g->plan, g->n, g->dirty_rate,
                      g->ops == &rf_guest_kvm_ops && kind == RF_GUEST_AUTO
                          ? &kerr : errp)) {
        return true;
    }
    if (!kerr) {
        return false;
    }
    g->ops->destroy(g->be);
    g->be = NULL;
    snprintf(g->fallback, sizeof(g->fallback), "KVM vCPUs: %s",
             rf_error_msg(kerr));
    rf_error_free(kerr);
    pattern_reset(g);
    g->be = rf_guest_thread_ops.create(&g->mem, errp);
    if (!g->be) {
        rf_error_prefix(errp, "thread guest");
        return false;
    }
    g->ops = &rf_guest_thread_ops;
    return g->ops->start(g->be, g->plan, g->n, g->dirty_rate, errp);
}

RfGuest *rf_guest_start(const RfGuestConfig *cfg, RfError **errp)
{
    if (!check_config(cfg, errp)) {
        return NULL;
    }
    RfGuest *g = guest_alloc();
    if (!g) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest: out of memory");
        return NULL;
    }
    g->dirty_rate = cfg->dirty_rate;
    if (!mem_create(g, cfg->mem_size, errp)) {
        goto fail;
    }
    if (cfg->fill_path) {
        if (!fill_from_path(g, cfg->fill_path, errp)) {
            goto fail;
        }
    } else if (!rf_image_generate(g->mem.host, g->mem.size, cfg->seed,
                                  fill_threads(), errp)) {
        goto fail;
    }
    pattern_reset(g);
    make_plan(g, cfg->vcpus, cfg->idle);
    if (!backend_create(g, cfg->kind, errp) ||
        !start_vcpus(g, cfg->kind, errp)) {
        goto fail;
    }
    g->running = true;
    return g;

fail:
    rf_guest_free(g);
    return NULL;
}

RfGuest *rf_guest_new_incoming(RfGuestKind kind, RfError **errp)
{
    if (kind != RF_GUEST_AUTO && kind != RF_GUEST_KVM &&
        kind != RF_GUEST_THREAD) {
        rf_error_set(errp, RF_ERR_PARAM, "guest kind %d unknown", (int)kind);
        return NULL;
    }
    RfGuest *g = guest_alloc();
    if (!g) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest: out of memory");
        return NULL;
    }
    g->incoming = true;
    g->want = kind;
    return g;
}

RfRamSource *rf_guest_ram_source(RfGuest *g)
{
    return &g->src.base;
}

RfRamSink *rf_guest_ram_sink(RfGuest *g)
{
    return &g->sink.base;
}

void rf_guest_pause(RfGuest *g)
{
    if (g->be && g->n) {
        g->ops->pause(g->be);
    }
    g->running = false;
}

void rf_guest_resume(RfGuest *g)
{
    if (g->be && g->n) {
        g->ops->resume(g->be);
        g->running = true;
    }
}

void rf_guest_throttle(RfGuest *g, unsigned pct)
{
    g->throttle = pct > 99 ? 99 : pct;
    if (g->be) {
        g->ops->throttle(g->be, g->throttle);
    }
}

uint64_t rf_guest_passes(RfGuest *g)
{
    return g->be && g->n ? g->ops->passes(g->be) : 0;
}

void rf_guest_hook_pause(void *opaque)
{
    rf_guest_pause(opaque);
}

void rf_guest_hook_resume(void *opaque)
{
    rf_guest_resume(opaque);
}

const char *rf_guest_describe(RfGuest *g)
{
    const char *detail = g->be ? g->ops->describe(g->be) : "no VM yet";
    char mem[64];
    if (g->mem.host) {
        snprintf(mem, sizeof(mem), "%llu MiB",
                 (unsigned long long)(g->mem.size >> 20));
    } else {
        snprintf(mem, sizeof(mem), "no RAM yet");
    }
    char why[360] = "";
    if (g->fallback[0]) {
        snprintf(why, sizeof(why), " (%s)", g->fallback);
    }
    snprintf(g->desc, sizeof(g->desc), "%s guest%s, %u vCPU%s%s, %s; %s",
             !g->be ? "no" : g->ops == &rf_guest_kvm_ops ? "KVM" : "thread",
             why, g->n, g->n == 1 ? "" : "s",
             g->n && g->plan[0].idle ? " (idle)" : "", mem, detail);
    return g->desc;
}

void rf_guest_free(RfGuest *g)
{
    if (!g) {
        return;
    }
    sink_wait_ready(&g->sink.base);
    if (g->be) {
        g->ops->destroy(g->be);
    }
    mem_free(g);
    free(g);
}

/* ---- pattern check -------------------------------------------------- */

bool rf_guest_check_pattern(RfGuest *g, char *summary, size_t cap,
                            RfError **errp)
{
    if (!g->mem.host || !g->n) {
        rf_error_set(errp, RF_ERR_GENERIC, "pattern check: the guest has "
                     "no %s", g->mem.host ? "vCPUs" : "RAM");
        return false;
    }
    rf_guest_pause(g);
    unsigned breaks_total = 0, checked = 0;
    for (unsigned i = 0; i < g->n; i++) {
        const RfGuestVcpuPlan *p = &g->plan[i];
        if (p->idle || p->end_page <= p->first_page) {
            continue;
        }
        checked++;
        const uint8_t *m = g->mem.host;
        unsigned breaks = 0;
        uint8_t prev = m[p->first_page * RF_PAGE_SIZE];
        for (uint64_t pg = p->first_page + 1; pg < p->end_page; pg++) {
            uint8_t b = m[pg * RF_PAGE_SIZE];
            if (b == prev) {
                continue;
            }
            if (b != (uint8_t)(prev - 1) || ++breaks > 1) {
                rf_error_set(errp, RF_ERR_VERIFY, "pattern check: vCPU %u, "
                             "page %llu (offset 0x%llx): byte %u after %u "
                             "%s", i, (unsigned long long)pg,
                             (unsigned long long)(pg * RF_PAGE_SIZE), b,
                             prev, b == (uint8_t)(prev - 1)
                                       ? "is a second discontinuity"
                                       : "(each page must equal the one "
                                         "before or be one less, once)");
                return false;
            }
            prev = b;
        }
        breaks_total += breaks;
    }
    if (summary && cap) {
        snprintf(summary, cap, "pattern ok: %u vCPU range%s checked, %u "
                 "mid-pass stop%s, %llu passes", checked,
                 checked == 1 ? "" : "s", breaks_total,
                 breaks_total == 1 ? "" : "s",
                 (unsigned long long)rf_guest_passes(g));
    }
    return true;
}

/* ---- state blob ----------------------------------------------------- */

struct RfGuestStateOut {
    uint8_t *buf;
    size_t len, cap;
    size_t count_at;  /* where the current record count goes */
    uint32_t count;
};

static bool out_reserve(RfGuestStateOut *o, size_t more, RfError **errp)
{
    if (o->cap - o->len >= more) {
        return true;
    }
    size_t cap = o->cap ? o->cap : 4096;
    while (cap - o->len < more) {
        cap *= 2;
    }
    uint8_t *b = realloc(o->buf, cap);
    if (!b) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest state: out of memory "
                     "(%zu bytes)", cap);
        return false;
    }
    o->buf = b;
    o->cap = cap;
    return true;
}

bool rf_guest_state_put(RfGuestStateOut *out, uint32_t tag,
                        const void *data, size_t len, RfError **errp)
{
    if (len > STATE_MAX_RECORD) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest state: record 0x%04x is "
                     "%zu bytes, at most %u allowed", tag, len,
                     STATE_MAX_RECORD);
        return false;
    }
    if (out->count >= STATE_MAX_RECORDS) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest state: more than %u "
                     "records", STATE_MAX_RECORDS);
        return false;
    }
    size_t padded = (len + 7) & ~(size_t)7;
    if (!out_reserve(out, 8 + padded, errp)) {
        return false;
    }
    uint8_t *p = out->buf + out->len;
    put_u32(p, tag);
    put_u32(p + 4, (uint32_t)len);
    if (len) {
        memcpy(p + 8, data, len);
    }
    memset(p + 8 + len, 0, padded - len);
    out->len += 8 + padded;
    out->count++;
    return true;
}

/* Patches the record count of the section that just ended. */
static void out_end_section(RfGuestStateOut *o)
{
    put_u32(o->buf + o->count_at, o->count);
    o->count = 0;
}

bool rf_guest_save_state(RfGuest *g, uint8_t **buf, size_t *len,
                         RfError **errp)
{
    if (!g->be || !g->n) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest state: no vCPUs to save");
        return false;
    }
    rf_guest_pause(g);
    RfGuestStateOut o = { 0 };
    if (!out_reserve(&o, STATE_HEADER_SIZE, errp)) {
        return false;
    }
    uint8_t *h = o.buf;
    memset(h, 0, STATE_HEADER_SIZE);
    memcpy(h, STATE_MAGIC, 8);
    put_u32(h + 8, STATE_VERSION);
    put_u32(h + 12, STATE_HEADER_SIZE);
    snprintf((char *)h + 16, STATE_NAME_LEN, "%s", g->ops->name);
    put_u64(h + 32, g->mem.size);
    put_u32(h + 40, g->n);
    put_u64(h + 48, g->dirty_rate);
    o.len = STATE_HEADER_SIZE;
    o.count_at = 44;
    if (g->ops->save_vm && !g->ops->save_vm(g->be, &o, errp)) {
        goto fail;
    }
    out_end_section(&o);
    for (unsigned i = 0; i < g->n; i++) {
        if (!out_reserve(&o, STATE_VCPU_HEADER_SIZE, errp)) {
            goto fail;
        }
        uint8_t *v = o.buf + o.len;
        memset(v, 0, STATE_VCPU_HEADER_SIZE);
        put_u32(v, STATE_VCPU_MAGIC);
        put_u32(v + 4, i);
        put_u64(v + 8, g->plan[i].first_page);
        put_u64(v + 16, g->plan[i].end_page);
        put_u64(v + 24, g->ops->vcpu_passes(g->be, i));
        put_u32(v + 32, g->plan[i].idle ? 1u : 0u);
        o.count_at = o.len + 36;
        o.len += STATE_VCPU_HEADER_SIZE;
        if (!g->ops->save_vcpu(g->be, i, &o, errp)) {
            rf_error_prefix(errp, "saving vCPU %u", i);
            goto fail;
        }
        out_end_section(&o);
    }
    if (!out_reserve(&o, 8, errp)) {
        goto fail;
    }
    put_u64(o.buf + 56, o.len + 8);
    put_u64(o.buf + o.len, XXH64(o.buf, o.len, 0));
    o.len += 8;
    *buf = o.buf;
    *len = o.len;
    return true;

fail:
    free(o.buf);
    return false;
}

/* Parses one section's records: `count` of them from *pos. */
static bool parse_records(const uint8_t *buf, size_t end, size_t *pos,
                          uint32_t count, RfGuestRecord *rec,
                          const char *who, RfError **errp)
{
    if (count > STATE_MAX_RECORDS) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "guest state, %s: %u records, "
                     "at most %u allowed", who, count, STATE_MAX_RECORDS);
        return false;
    }
    for (uint32_t k = 0; k < count; k++) {
        if (end - *pos < 8) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "guest state, %s: record %u "
                         "header runs past the end (offset %zu)", who, k,
                         *pos);
            return false;
        }
        rec[k].tag = get_u32(buf + *pos);
        rec[k].len = get_u32(buf + *pos + 4);
        size_t padded = ((size_t)rec[k].len + 7) & ~(size_t)7;
        if (rec[k].len > STATE_MAX_RECORD || end - *pos - 8 < padded) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "guest state, %s: record %u "
                         "(tag 0x%04x) claims %u bytes, only %zu left", who,
                         k, rec[k].tag, rec[k].len, end - *pos - 8);
            return false;
        }
        rec[k].data = buf + *pos + 8;
        for (size_t b = rec[k].len; b < padded; b++) {
            if (rec[k].data[b]) {
                rf_error_set(errp, RF_ERR_PROTOCOL, "guest state, %s: record "
                             "%u (tag 0x%04x) has non-zero padding", who, k,
                             rec[k].tag);
                return false;
            }
        }
        *pos += 8 + padded;
    }
    return true;
}

/* Which back end a blob names, NULL if none we know. */
static const RfGuestBackendOps *ops_named(const char *name)
{
    if (strcmp(name, rf_guest_kvm_ops.name) == 0) {
        return &rf_guest_kvm_ops;
    }
    if (strcmp(name, rf_guest_thread_ops.name) == 0) {
        return &rf_guest_thread_ops;
    }
    return NULL;
}

/* Checks the blob's vCPU ranges against RAM: inside it, past the reserved
 * pages, disjoint, empty exactly when idle. */
static bool check_plan(const RfGuest *g, const RfGuestVcpuPlan *plan,
                       unsigned n, RfError **errp)
{
    uint64_t pages = g->mem.size / RF_PAGE_SIZE;
    for (unsigned i = 0; i < n; i++) {
        const RfGuestVcpuPlan *p = &plan[i];
        if (p->first_page < RF_GUEST_RESERVED_PAGES ||
            p->end_page > pages || p->first_page > p->end_page ||
            (p->idle != (p->first_page == p->end_page))) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: vCPU %u's "
                         "range pages %llu-%llu (%s) is invalid for %llu "
                         "pages of RAM (%u reserved)", i,
                         (unsigned long long)p->first_page,
                         (unsigned long long)p->end_page,
                         p->idle ? "idle" : "writing",
                         (unsigned long long)pages, RF_GUEST_RESERVED_PAGES);
            return false;
        }
        for (unsigned k = 0; k < i; k++) {
            if (p->first_page < plan[k].end_page &&
                plan[k].first_page < p->end_page) {
                rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: vCPU %u's "
                             "range overlaps vCPU %u's", i, k);
                return false;
            }
        }
    }
    return true;
}

bool rf_guest_load_state(RfGuest *g, const uint8_t *buf, size_t len,
                         RfError **errp)
{
    if (!g->mem.host || !g->be) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest state: no %s yet (the "
                     "layout must arrive first)", g->mem.host ? "VM" : "RAM");
        return false;
    }
    if (g->n) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest state: vCPUs exist "
                     "already");
        return false;
    }
    if (len < STATE_HEADER_SIZE + 8) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: %zu bytes, at "
                     "least %u expected", len, STATE_HEADER_SIZE + 8);
        return false;
    }
    if (memcmp(buf, STATE_MAGIC, 8) != 0) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: bad magic (not a "
                     "ramflow guest state)");
        return false;
    }
    uint32_t version = get_u32(buf + 8), hsize = get_u32(buf + 12);
    if (version != STATE_VERSION || hsize != STATE_HEADER_SIZE) {
        rf_error_set(errp, RF_ERR_MISMATCH, "guest state: version %u with a "
                     "%u-byte header; this build reads version %u (%u "
                     "bytes)", version, hsize, STATE_VERSION,
                     STATE_HEADER_SIZE);
        return false;
    }
    uint64_t total = get_u64(buf + 56);
    if (total != len) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: header says %llu "
                     "bytes, got %zu", (unsigned long long)total, len);
        return false;
    }
    uint64_t sum = get_u64(buf + len - 8), want = XXH64(buf, len - 8, 0);
    if (sum != want) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: checksum "
                     "0x%016llx, computed 0x%016llx: the state is corrupt",
                     (unsigned long long)sum, (unsigned long long)want);
        return false;
    }
    char name[STATE_NAME_LEN + 1];
    memcpy(name, buf + 16, STATE_NAME_LEN);
    name[STATE_NAME_LEN] = '\0';
    const RfGuestBackendOps *ops = ops_named(name);
    if (!ops) {
        rf_error_set(errp, RF_ERR_MISMATCH, "guest state: back end '%s' "
                     "unknown (kvm or thread expected)", name);
        return false;
    }
    uint64_t mem_size = get_u64(buf + 32);
    if (mem_size != g->mem.size) {
        rf_error_set(errp, RF_ERR_MISMATCH, "guest state: RAM size %llu, "
                     "this guest has %llu", (unsigned long long)mem_size,
                     (unsigned long long)g->mem.size);
        return false;
    }
    uint32_t n = get_u32(buf + 40);
    if (n < 1 || n > RF_GUEST_MAX_VCPUS) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: %u vCPUs, 1-%u "
                     "allowed", n, RF_GUEST_MAX_VCPUS);
        return false;
    }
    uint64_t dirty_rate = get_u64(buf + 48);
    size_t end = len - 8, pos = STATE_HEADER_SIZE;

    bool ok = false;
    RfGuestRecord *rec = calloc((size_t)(n + 1) * STATE_MAX_RECORDS,
                                sizeof(*rec));
    RfGuestVcpuRecords *vr = calloc(n, sizeof(*vr));
    RfGuestVcpuPlan *plan = calloc(n, sizeof(*plan));
    if (!rec || !vr || !plan) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest state: out of memory");
        goto out;
    }
    RfGuestVcpuRecords vmr = { get_u32(buf + 44), rec };
    if (!parse_records(buf, end, &pos, vmr.n, rec, "VM", errp)) {
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        char who[24];
        snprintf(who, sizeof(who), "vCPU %u", i);
        if (end - pos < STATE_VCPU_HEADER_SIZE) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: %s header "
                         "runs past the end (offset %zu)", who, pos);
            goto out;
        }
        const uint8_t *v = buf + pos;
        uint32_t flags = get_u32(v + 32);
        if (get_u32(v) != STATE_VCPU_MAGIC || get_u32(v + 4) != i ||
            flags > 1) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: %s header at "
                         "offset %zu is bad (magic 0x%08x, index %u, flags "
                         "0x%x)", who, pos, get_u32(v), get_u32(v + 4),
                         flags);
            goto out;
        }
        plan[i].first_page = get_u64(v + 8);
        plan[i].end_page = get_u64(v + 16);
        plan[i].passes = get_u64(v + 24);
        plan[i].idle = flags & 1;
        vr[i].n = get_u32(v + 36);
        vr[i].rec = rec + (size_t)(i + 1) * STATE_MAX_RECORDS;
        pos += STATE_VCPU_HEADER_SIZE;
        if (!parse_records(buf, end, &pos, vr[i].n,
                           (RfGuestRecord *)vr[i].rec, who, errp)) {
            goto out;
        }
    }
    if (pos != end) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: %zu stray bytes "
                     "after the last vCPU", end - pos);
        goto out;
    }
    if (!check_plan(g, plan, n, errp)) {
        goto out;
    }
    if (ops != g->ops) {
        /* An AUTO destination follows the source's back end. */
        if (g->want != RF_GUEST_AUTO) {
            rf_error_set(errp, RF_ERR_MISMATCH, "guest state: from a %s "
                         "guest, this one is a %s guest", ops->name,
                         g->ops->name);
            goto out;
        }
        void *be = ops->create(&g->mem, errp);
        if (!be) {
            rf_error_prefix(errp, "guest state from a %s guest", ops->name);
            goto out;
        }
        g->ops->destroy(g->be);
        g->ops = ops;
        g->be = be;
        g->fallback[0] = '\0';
    }
    if (!g->ops->load(g->be, &vmr, plan, vr, n, dirty_rate, errp)) {
        /* The back end may hold half-made vCPUs: start from a fresh VM so
         * that a correct state can still be loaded. */
        g->ops->destroy(g->be);
        g->be = g->ops->create(&g->mem, NULL);
        goto out;
    }
    memcpy(g->plan, plan, n * sizeof(*plan));
    g->n = n;
    g->dirty_rate = dirty_rate;
    if (g->throttle) {
        g->ops->throttle(g->be, g->throttle);
    }
    ok = true;
out:
    free(rec);
    free(vr);
    free(plan);
    return ok;
}

const RfGuestRecord *rf_guest_state_find(const RfGuestVcpuRecords *v,
                                         uint32_t tag)
{
    for (unsigned i = 0; i < v->n; i++) {
        if (v->rec[i].tag == tag) {
            return &v->rec[i];
        }
    }
    return NULL;
}
