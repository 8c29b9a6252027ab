/*
 * ramflow - the test VM's thread back end (guest_backend.h).
 *
 * Each writing vCPU is a host thread running the guest program's loop in
 * C: increment byte 0 of every page of its range in increasing order,
 * wrap, count a pass.  Idle vCPUs have no thread.  The thread writes a
 * chunk of pages at a time and between chunks:
 *   - parks if a pause is asked for (pause() waits until every thread is
 *     parked, so no write is in flight when it returns);
 *   - sleeps for the dirty-rate limit and the throttle, with the KVM back
 *     end's rules: about 1000 chunks/s under a rate limit, at most a 50 ms
 *     burst of credit, and pct / (100 - pct) of the time run asleep, in
 *     chunks of about 5 ms of running when throttled.
 *
 * Dirty tracking: the userfaultfd tracker (src/ram/uffd_dirty.h) over all
 * of guest RAM, through the one mapping the threads write (mem->host).
 * RAMFLOW_UFFD_SYNC=1 forces its synchronous-fault fallback.
 *
 * State: per vCPU one record, THREAD_POS (tag 0x0201): first_page,
 * end_page and next_page (the page the thread writes next) as
 * little-endian u64.  The pass count travels in the plan (vcpu_passes).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ram/uffd_dirty.h"
#include "util/guest_writes.h"
#include "testvm/guest_backend.h"
#include "util/clock.h"
#include "wire/bytes.h"

#define PAGE 4096u
#define TAG_THREAD_POS 0x0201u
#define POS_LEN 24u
#define CHUNK_FREE 1024u  /* pages between pause checks, no limits */

typedef struct ThreadGuest ThreadGuest;

typedef struct ThreadVcpu {
    ThreadGuest *g;
    unsigned index;
    RfGuestVcpuPlan plan;
    _Atomic uint64_t passes;
    _Atomic uint64_t next_page;    /* stored by the thread after a chunk */
    pthread_t thread;
    bool thread_started;
    bool parked;                   /* under g->lock */
    /* vCPU thread only: */
    double credit_t;               /* rate limit (as kvm_vcpu_run.c) */
    double page_rate;              /* measured pages/s while running */
} ThreadVcpu;

struct ThreadGuest {
    RfGuestMem mem;
    RfUffdTracker *tracker;

    pthread_mutex_t lock;
    pthread_cond_t cond;           /* CLOCK_MONOTONIC */
    _Atomic bool paused;           /* written under lock, read lock-free */
    _Atomic bool quit;             /* likewise */
    unsigned nthreads;             /* vCPU threads started */
    unsigned nparked;              /* of which parked or gone */
    _Atomic unsigned throttle_pct;
    uint64_t dirty_rate;
    unsigned active;               /* non-idle vCPUs */

    unsigned n;
    ThreadVcpu vcpu[RF_GUEST_MAX_VCPUS];
    char probe[200];               /* tracker to be, before dirty_start */
};

/* Sleeps until `until` (monotonic seconds) unless a pause or quit comes
 * first. */
static void vcpu_sleep(ThreadGuest *g, double until)
{
    pthread_mutex_lock(&g->lock);
    while (!atomic_load(&g->paused) && !g->quit && rf_now() < until) {
        if (rf_guest_wait_until_locked(&g->cond, &g->lock, until)) {
            break;
        }
    }
    pthread_mutex_unlock(&g->lock);
}

/* Parks while paused; g->lock held.  @return false on quit. */
static bool park_while_paused(ThreadVcpu *v)
{
    ThreadGuest *g = v->g;
    while (atomic_load(&g->paused) && !g->quit) {
        if (!v->parked) {
            v->parked = true;
            g->nparked++;
            pthread_cond_broadcast(&g->cond);
        }
        pthread_cond_wait(&g->cond, &g->lock);
    }
    if (v->parked) {
        v->parked = false;
        g->nparked--;
    }
    return !g->quit;
}

/* Pages to write before looking at pause, rate and throttle again. */
static uint64_t wanted_chunk(ThreadVcpu *v)
{
    ThreadGuest *g = v->g;
    uint64_t chunk = CHUNK_FREE;
    if (g->dirty_rate) {
        uint64_t per = g->dirty_rate / (g->active ? g->active : 1);
        chunk = per / 1000;
        chunk = chunk ? chunk : 1;
        chunk = chunk < CHUNK_FREE ? chunk : CHUNK_FREE;
    }
    if (atomic_load(&g->throttle_pct)) {
        double c = v->page_rate > 0 ? v->page_rate * 0.005 : 1024;
        uint64_t tc = c < 16 ? 16 : c > 65536 ? 65536 : (uint64_t)c;
        chunk = tc < chunk ? tc : chunk;
    }
    return chunk;
}

/* After a chunk of `pages` pages that took `ran` seconds: sleeps for the
 * rate limit (credit_t runs ahead of the clock by the time the pages were
 * allowed to take) and the throttle. */
static void after_chunk(ThreadVcpu *v, uint64_t pages, double t, double ran)
{
    ThreadGuest *g = v->g;
    if (ran > 0) {
        double r = (double)pages / ran;
        v->page_rate = v->page_rate > 0 ? 0.8 * v->page_rate + 0.2 * r : r;
    }
    double until = t;
    if (g->dirty_rate) {
        double per = (double)g->dirty_rate / (g->active ? g->active : 1);
        if (v->credit_t < t - 0.05) {
            v->credit_t = t - 0.05; /* at most a 50 ms burst */
        }
        v->credit_t += (double)pages / per;
        until = v->credit_t;
    }
    unsigned pct = atomic_load(&g->throttle_pct);
    if (pct && ran > 0) {
        double s = t + ran * pct / (100.0 - pct);
        until = s > until ? s : until;
    }
    if (until > t) {
        vcpu_sleep(g, until);
    }
}

/* The guest program's stores: increments the first byte of `chunk`
 * pages from *page on, wrapping from end to first.  @return the number
 * of wraps (passes completed). */
static RF_GUEST_WRITES uint64_t guest_run(uint8_t *host, uint64_t first,
                                          uint64_t end, uint64_t *page,
                                          uint64_t chunk)
{
    uint64_t passes = 0;
    uint64_t pg = *page;
    for (uint64_t k = 0; k < chunk; k++) {
        volatile uint8_t *b = host + pg * PAGE;
        *b = (uint8_t)(*b + 1);
        if (++pg == end) {
            pg = first;
            passes++;
        }
    }
    *page = pg;
    return passes;
}

/* The guest program of one vCPU. */
static void *vcpu_thread(void *arg)
{
    ThreadVcpu *v = arg;
    ThreadGuest *g = v->g;
    const uint64_t first = v->plan.first_page, end = v->plan.end_page;
    uint64_t page = atomic_load(&v->next_page);
    for (;;) {
        if (atomic_load_explicit(&g->paused, memory_order_acquire)) {
            pthread_mutex_lock(&g->lock);
            bool go_on = park_while_paused(v);
            pthread_mutex_unlock(&g->lock);
            if (!go_on) {
                break;
            }
            /* Do not make up for the time paused. */
            v->credit_t = 0;
        }
        if (atomic_load(&g->quit)) {
            break;
        }
        uint64_t chunk = wanted_chunk(v);
        double t0 = rf_now();
        uint64_t passes = guest_run(g->mem.host, first, end, &page, chunk);
        if (passes) {
            atomic_fetch_add_explicit(&v->passes, passes,
                                      memory_order_relaxed);
        }
        atomic_store_explicit(&v->next_page, page, memory_order_relaxed);
        double t1 = rf_now();
        after_chunk(v, chunk, t1, t1 - t0);
    }
    pthread_mutex_lock(&g->lock);
    /* Gone: counts as parked so pause() does not wait. */
    if (!v->parked) {
        v->parked = true;
        g->nparked++;
    }
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

static void *thread_create(const RfGuestMem *mem, RfError **errp)
{
    ThreadGuest *g = calloc(1, sizeof(*g));
    if (!g) {
        rf_error_set(errp, RF_ERR_GENERIC, "thread guest: out of memory");
        return NULL;
    }
    g->mem = *mem;
    pthread_mutex_init(&g->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cond, &ca);
    pthread_condattr_destroy(&ca);
    /* Say now which tracker dirty_start will use (or why none). */
    RfError *err = NULL;
    const char *mode = rf_uffd_probe(false, &err);
    snprintf(g->probe, sizeof(g->probe), "%s%s", mode ? mode :
             "no dirty tracking: ", mode ? "" : rf_error_msg(err));
    rf_error_free(err);
    return g;
}

/* Checks the plan and records it; shared by start and load. */
static bool set_plan(ThreadGuest *g, const RfGuestVcpuPlan *plan, unsigned n,
                     uint64_t dirty_rate, RfError **errp)
{
    if (g->n) {
        rf_error_set(errp, RF_ERR_GENERIC, "thread guest: the vCPUs exist "
                     "already (start or load only once)");
        return false;
    }
    if (n < 1 || n > RF_GUEST_MAX_VCPUS) {
        rf_error_set(errp, RF_ERR_PARAM, "thread guest: %u vCPUs, 1-%u "
                     "allowed", n, RF_GUEST_MAX_VCPUS);
        return false;
    }
    uint64_t pages = g->mem.size / PAGE;
    for (unsigned i = 0; i < n; i++) {
        const RfGuestVcpuPlan *p = &plan[i];
        bool idle = p->idle || p->first_page == p->end_page;
        if (!idle && (p->first_page < RF_GUEST_RESERVED_PAGES ||
                      p->first_page > p->end_page || p->end_page > pages)) {
            rf_error_set(errp, RF_ERR_PARAM, "thread guest: vCPU %u's "
                         "pages %llu-%llu are not inside pages %u-%llu of "
                         "guest RAM", i, (unsigned long long)p->first_page,
                         (unsigned long long)p->end_page,
                         RF_GUEST_RESERVED_PAGES,
                         (unsigned long long)pages);
            return false;
        }
    }
    g->dirty_rate = dirty_rate;
    g->active = 0;
    for (unsigned i = 0; i < n; i++) {
        ThreadVcpu *v = &g->vcpu[i];
        v->g = g;
        v->index = i;
        v->plan = plan[i];
        v->plan.idle = plan[i].idle || plan[i].first_page == plan[i].end_page;
        atomic_store(&v->passes, plan[i].passes);
        atomic_store(&v->next_page, plan[i].first_page);
        g->active += !v->plan.idle;
    }
    g->n = n;
    return true;
}

/* Starts a thread per writing vCPU (the `paused` flag decides whether
 * they write at once or park first). */
static bool start_threads(ThreadGuest *g, RfError **errp)
{
    for (unsigned i = 0; i < g->n; i++) {
        ThreadVcpu *v = &g->vcpu[i];
        if (v->plan.idle) {
            continue;
        }
        /* Every signal blocked: a vCPU must not take the process's
         * signals (SIGINT...). */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        pthread_mutex_lock(&g->lock);
        int rc = pthread_create(&v->thread, NULL, vcpu_thread, v);
        if (rc == 0) {
            v->thread_started = true;
            g->nthreads++;
        }
        pthread_mutex_unlock(&g->lock);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) {
            rf_error_set(errp, RF_ERR_GENERIC, "thread guest: cannot start "
                         "the thread of vCPU %u: %s", i, strerror(rc));
            return false;
        }
    }
    return true;
}

static bool thread_start(void *be, const RfGuestVcpuPlan *plan, unsigned n,
                         uint64_t dirty_rate, RfError **errp)
{
    ThreadGuest *g = be;
    if (!set_plan(g, plan, n, dirty_rate, errp)) {
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        atomic_store(&g->vcpu[i].passes, 0);
    }
    atomic_store(&g->paused, false);
    return start_threads(g, errp);
}

/* Reads vCPU i's THREAD_POS record into *next, checking it against the
 * plan (guest_state.c checked it: idle exactly when empty): the blob came
 * off the network. */
static bool load_pos(unsigned i, const RfGuestVcpuPlan *p,
                     const RfGuestVcpuRecords *r, uint64_t *next,
                     RfError **errp)
{
    for (unsigned k = 0; k < r->n; k++) {
        if (r->rec[k].tag != TAG_THREAD_POS) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "thread guest state of "
                         "vCPU %u: unknown record tag 0x%04x (record %u; "
                         "only 0x%04x THREAD_POS is known)", i,
                         r->rec[k].tag, k, TAG_THREAD_POS);
            return false;
        }
    }
    if (r->n != 1) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "thread guest state of vCPU "
                     "%u: %u THREAD_POS records, expected 1", i, r->n);
        return false;
    }
    const RfGuestRecord *rec = &r->rec[0];
    if (rec->len != POS_LEN) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "thread guest state of vCPU "
                     "%u: THREAD_POS record is %u bytes, expected %u", i,
                     rec->len, POS_LEN);
        return false;
    }
    uint64_t first = get_u64(rec->data), end = get_u64(rec->data + 8);
    *next = get_u64(rec->data + 16);
    uint64_t pend = p->idle ? p->first_page : p->end_page;
    if (first != p->first_page || end != pend) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "thread guest state of vCPU "
                     "%u: its range is pages %llu-%llu, the plan says "
                     "%llu-%llu", i, (unsigned long long)first,
                     (unsigned long long)end,
                     (unsigned long long)p->first_page,
                     (unsigned long long)pend);
        return false;
    }
    bool ok = p->idle ? *next == first : *next >= first && *next < end;
    if (!ok) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "thread guest state of vCPU "
                     "%u: next page %llu is outside its range %llu-%llu",
                     i, (unsigned long long)*next,
                     (unsigned long long)first, (unsigned long long)end);
        return false;
    }
    return true;
}

static bool thread_load(void *be, const RfGuestVcpuRecords *vm_recs,
                        const RfGuestVcpuPlan *plan,
                        const RfGuestVcpuRecords *recs, unsigned n,
                        uint64_t dirty_rate, RfError **errp)
{
    ThreadGuest *g = be;
    if (vm_recs && vm_recs->n) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "thread guest state: %u VM "
                     "records (tag 0x%04x first), the thread guest has "
                     "none", vm_recs->n, vm_recs->rec[0].tag);
        return false;
    }
    /* Every vCPU's record is checked before the first is applied. */
    uint64_t next[RF_GUEST_MAX_VCPUS];
    for (unsigned i = 0; i < n && i < RF_GUEST_MAX_VCPUS; i++) {
        if (!load_pos(i, &plan[i], &recs[i], &next[i], errp)) {
            return false;
        }
    }
    if (!set_plan(g, plan, n, dirty_rate, errp)) {
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        atomic_store(&g->vcpu[i].next_page, next[i]);
    }
    atomic_store(&g->paused, true);
    return start_threads(g, errp);
}

static void thread_pause(void *be)
{
    ThreadGuest *g = be;
    pthread_mutex_lock(&g->lock);
    atomic_store(&g->paused, true);
    pthread_cond_broadcast(&g->cond); /* ends rate/throttle sleeps */
    while (g->nparked < g->nthreads) {
        pthread_cond_wait(&g->cond, &g->lock);
    }
    pthread_mutex_unlock(&g->lock);
}

static void thread_resume(void *be)
{
    ThreadGuest *g = be;
    pthread_mutex_lock(&g->lock);
    atomic_store(&g->paused, false);
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static void thread_throttle(void *be, unsigned pct)
{
    ThreadGuest *g = be;
    atomic_store(&g->throttle_pct, pct > 99 ? 99 : pct);
}

static uint64_t thread_passes(void *be)
{
    ThreadGuest *g = be;
    uint64_t sum = 0;
    for (unsigned i = 0; i < g->n; i++) {
        sum += atomic_load(&g->vcpu[i].passes);
    }
    return sum;
}

static uint64_t thread_vcpu_passes(void *be, unsigned i)
{
    ThreadGuest *g = be;
    return i < g->n ? atomic_load(&g->vcpu[i].passes) : 0;
}

/* Tracks all of guest RAM; a second call starts over (everything clean
 * from now on). */
static bool thread_dirty_start(void *be, RfError **errp)
{
    ThreadGuest *g = be;
    rf_uffd_stop(g->tracker);
    g->tracker = rf_uffd_track(g->mem.host, g->mem.size, false, errp);
    if (!g->tracker) {
        rf_error_prefix(errp, "thread guest");
    }
    return g->tracker != NULL;
}

static bool thread_dirty_sync(void *be, uint64_t *bitmap, RfError **errp)
{
    ThreadGuest *g = be;
    if (!g->tracker) {
        rf_error_set(errp, RF_ERR_GENERIC, "thread guest: dirty sync before "
                     "dirty tracking started");
        return false;
    }
    return rf_uffd_sync(g->tracker, bitmap, errp);
}

static void thread_dirty_stop(void *be)
{
    ThreadGuest *g = be;
    rf_uffd_stop(g->tracker);
    g->tracker = NULL;
}

static bool thread_save_vcpu(void *be, unsigned i, RfGuestStateOut *out,
                             RfError **errp)
{
    ThreadGuest *g = be;
    if (i >= g->n) {
        rf_error_set(errp, RF_ERR_PARAM, "thread guest: no vCPU %u (it has "
                     "%u)", i, g->n);
        return false;
    }
    const ThreadVcpu *v = &g->vcpu[i];
    uint8_t rec[POS_LEN];
    put_u64(rec, v->plan.first_page);
    put_u64(rec + 8, v->plan.idle ? v->plan.first_page : v->plan.end_page);
    put_u64(rec + 16, atomic_load(&v->next_page));
    return rf_guest_state_put(out, TAG_THREAD_POS, rec, sizeof(rec), errp);
}

static const char *thread_describe(void *be)
{
    ThreadGuest *g = be;
    return g->tracker ? rf_uffd_describe(g->tracker) : g->probe;
}

static void thread_destroy(void *be)
{
    ThreadGuest *g = be;
    if (!g) {
        return;
    }
    pthread_mutex_lock(&g->lock);
    atomic_store(&g->quit, true);
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    for (unsigned i = 0; i < RF_GUEST_MAX_VCPUS; i++) {
        if (g->vcpu[i].thread_started) {
            pthread_join(g->vcpu[i].thread, NULL);
        }
    }
    /* After the threads: in sync mode a writer may wait on the tracker's
     * fault handler. */
    rf_uffd_stop(g->tracker);
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

const RfGuestBackendOps rf_guest_thread_ops = {
    .name = "thread",
    .kind = RF_GUEST_THREAD,
    .create = thread_create,
    .start = thread_start,
    .load = thread_load,
    .pause = thread_pause,
    .resume = thread_resume,
    .throttle = thread_throttle,
    .passes = thread_passes,
    .vcpu_passes = thread_vcpu_passes,
    .dirty_start = thread_dirty_start,
    .dirty_sync = thread_dirty_sync,
    .dirty_stop = thread_dirty_stop,
    .save_vm = NULL,
    .save_vcpu = thread_save_vcpu,
    .describe = thread_describe,
    .destroy = thread_destroy,
};
