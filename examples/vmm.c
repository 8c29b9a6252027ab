/*
 * vmm.c - a minimal "VMM" that embeds libramflow (docs/api.md).
 *
 * It maps guest-like memory, keeps writing to it from a "vCPU" thread,
 * keeps its own dirty log of those writes (as a VMM reads KVM's), and
 * live-migrates the memory to a second instance that receives into its own
 * mapped memory with the region sink.  Both print a digest of the memory at
 * the end, so a script can compare them.  Built against the installed
 * library only:
 *
 *   cc vmm.c $(pkg-config --cflags --libs ramflow) -lpthread -o vmm
 *   ./vmm incoming tcp:127.0.0.1:4444 64M        # destination
 *   ./vmm migrate  tcp:127.0.0.1:4444 64M        # source
 *
 * Ctrl-C cancels the migration (the source keeps running, memory intact).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ramflow/ramflow.h>

#define PAGE RF_PAGE_SIZE

typedef struct Vmm {
    uint8_t *mem;
    uint64_t size, pages;
    /* the vCPU */
    pthread_t vcpu;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool paused, quit;
    uint64_t writes;
    /* the VMM's own dirty log: one bit per page, under lock */
    uint64_t *dirty;
} Vmm;

static RfMigration *_Atomic current;

static void on_sigint(int sig)
{
    (void)sig;
    RfMigration *m = atomic_load(&current);
    if (m) {
        rf_migration_cancel(m); /* async-signal-safe */
    }
}

/* A guest's store.  The migration reads guest pages while the vCPU writes
 * them, by design (the dirty log catches up, and the final round runs
 * with the vCPU paused): like a real vCPU's stores, which no sanitizer
 * sees, this one is hidden from ThreadSanitizer. */
#if defined(__has_attribute)
#  if __has_attribute(no_sanitize)
__attribute__((no_sanitize("thread")))
#  endif
#endif
static void guest_store(uint8_t *p, uint8_t v)
{
    *(volatile uint8_t *)p = v;
}

/* The "vCPU": writes a counter into pseudo-random pages, logging each. */
static void *vcpu_main(void *opaque)
{
    Vmm *v = opaque;
    uint64_t x = 88172645463325252ull;
    for (;;) {
        pthread_mutex_lock(&v->lock);
        while (v->paused && !v->quit) {
            pthread_cond_wait(&v->cond, &v->lock);
        }
        if (v->quit) {
            pthread_mutex_unlock(&v->lock);
            return NULL;
        }
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t page = x % v->pages;
        guest_store(&v->mem[page * PAGE + (x >> 32) % PAGE],
                    (uint8_t)++v->writes);
        v->dirty[page / 64] |= 1ull << (page % 64);
        pthread_mutex_unlock(&v->lock);
        if (v->writes % 64 == 0) {
            usleep(100); /* about 100k writes/s: a busy but finite guest */
        }
    }
}

static void vcpu_pause(void *opaque)
{
    Vmm *v = opaque;
    pthread_mutex_lock(&v->lock);
    v->paused = true;
    pthread_mutex_unlock(&v->lock);
}

static void vcpu_resume(void *opaque)
{
    Vmm *v = opaque;
    pthread_mutex_lock(&v->lock);
    v->paused = false;
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->lock);
}

/* The dirty-log provider: hands over (and clears) the VMM's own log, as
 * KVM_GET_DIRTY_LOG would. */
static bool log_sync(void *opaque, unsigned block, uint64_t *bitmap,
                     RfError **errp)
{
    Vmm *v = opaque;
    (void)block;
    (void)errp;
    pthread_mutex_lock(&v->lock);
    for (uint64_t w = 0; w < (v->pages + 63) / 64; w++) {
        bitmap[w] |= v->dirty[w];
        v->dirty[w] = 0;
    }
    pthread_mutex_unlock(&v->lock);
    return true;
}

static void on_status(RfMigration *m, RfStatus st, void *opaque)
{
    (void)m;
    (void)opaque;
    fprintf(stderr, "\nvmm: status %s\n", rf_status_name(st));
}

static void on_progress(RfMigration *m, const RfProgress *p, void *opaque)
{
    (void)opaque;
    RfMigrationInfo info = RF_MIGRATION_INFO_INIT;
    rf_migration_query(m, &info);
    fprintf(stderr, "\rvmm: round %u, %.1f MiB on the wire, %.0f Mbit/s   ",
            p->round, (double)info.ram_transferred / (1 << 20),
            info.ram_mbps);
}

static void on_listening(RfMigration *m, const char *uri, void *opaque)
{
    (void)m;
    (void)opaque;
    printf("listening %s\n", uri);
    fflush(stdout);
}

/* FNV-1a over the memory: the same on both sides after a migration. */
static uint64_t digest(const uint8_t *p, uint64_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (uint64_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 1099511628211ull;
    }
    return h;
}

static uint64_t parse_size(const char *s)
{
    char *end;
    uint64_t v = strtoull(s, &end, 10);
    if (*end == 'M') {
        v <<= 20;
    } else if (*end == 'G') {
        v <<= 30;
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "migrate") && strcmp(argv[1],
                                                             "incoming"))) {
        fprintf(stderr, "usage: vmm migrate|incoming URI SIZE\n");
        return 2;
    }
    bool source = strcmp(argv[1], "migrate") == 0;
    fprintf(stderr, "vmm: libramflow %s (header %s)\n", rf_version_string(),
            RAMFLOW_VERSION_STRING);
    Vmm v = {.size = parse_size(argv[3])};
    v.pages = v.size / PAGE;
    v.mem = mmap(NULL, v.size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    v.dirty = calloc((v.pages + 63) / 64, sizeof(uint64_t));
    if (!v.pages || v.size % PAGE || v.mem == MAP_FAILED || !v.dirty) {
        fprintf(stderr, "vmm: bad size or out of memory\n");
        return 1;
    }
    pthread_mutex_init(&v.lock, NULL);
    pthread_cond_init(&v.cond, NULL);
    signal(SIGINT, on_sigint);
    signal(SIGPIPE, SIG_IGN);

    RfError *err = NULL;
    RfParams *p = rf_params_new();
    RfMigration *m = NULL;
    RfRamSource *src = NULL;
    RfRamSink *sink = NULL;
    RfRegion region = {.name = "ram", .addr = v.mem, .size = v.size};
    bool vcpu_started = false;
    RfCallbacks cb = RF_CALLBACKS_INIT;
    cb.status = on_status;
    cb.progress = on_progress;
    cb.opaque = &v;
    bool ok = p && rf_params_set(p, "multifd-channels", "4", &err) &&
              rf_params_set(p, "multifd-compression", "zstd", &err);
    if (ok && source) {
        for (uint64_t i = 0; i < v.size; i += 64) {
            v.mem[i] = (uint8_t)(i / PAGE); /* some non-zero content */
        }
        RfDirtyLog log = {.size = sizeof(log), .sync = log_sync,
                          .opaque = &v};
        src = rf_region_source_open(&region, 1, RF_REGION_NO_UFFD, &err);
        ok = src && rf_ram_source_set_dirty_log(src, &log, &err) &&
             (vcpu_started = pthread_create(&v.vcpu, NULL, vcpu_main,
                                            &v) == 0);
        cb.pause = vcpu_pause;
        cb.resume = vcpu_resume;
    } else if (ok) {
        sink = rf_region_sink_new(&region, 1, &err);
        ok = sink != NULL;
        cb.listening = on_listening;
    }
    ok = ok && (m = rf_migration_new(p, &err)) &&
         rf_migration_set_callbacks(m, &cb, &err);
    if (ok) {
        atomic_store(&current, m);
        ok = source ? rf_migration_start_outgoing(m, src, argv[2], 0, &err)
                    : rf_migration_start_incoming(m, sink, argv[2], 0, &err);
        ok = ok && rf_migration_wait(m, &err);
        atomic_store(&current, NULL);
    }
    if (ok) {
        RfReport r = RF_REPORT_INIT;
        rf_migration_report(m, &r);
        fprintf(stderr, "vmm: completed in %.2f s, %u rounds, downtime "
                "%.1f ms, ramflow threads %.0f%% of a core (process %.0f%%)"
                "\n", r.total_time_s, r.rounds,
                source ? r.downtime_ms : r.dest_downtime_ms,
                source ? r.send_cpu_pct : r.recv_cpu_pct, r.process_cpu_pct);
        /* The source stays paused after completion: its memory is what
         * the destination has. */
        printf("digest %016llx\n",
               (unsigned long long)digest(v.mem, v.size));
    } else {
        fprintf(stderr, "vmm: migration failed: %s\n",
                err ? rf_error_msg(err) : "unknown error");
    }
    if (vcpu_started) {
        pthread_mutex_lock(&v.lock);
        v.quit = true;
        pthread_cond_broadcast(&v.cond);
        pthread_mutex_unlock(&v.lock);
        pthread_join(v.vcpu, NULL);
    }
    rf_migration_free(m);
    rf_ram_source_free(src);
    rf_ram_sink_free(sink);
    rf_params_free(p);
    rf_error_free(err);
    munmap(v.mem, v.size);
    free(v.dirty);
    return ok ? 0 : 1;
}
