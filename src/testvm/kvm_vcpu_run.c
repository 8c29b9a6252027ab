/*
 * ramflow - the test VM's KVM back end: the vCPU threads.  Each vCPU has
 * one host thread that runs KVM_RUN and handles its exits:
 *   port 0xf4 (out, 4 bytes): a pass finished, the value is the count;
 *   port 0xf5 (out, 1 byte):  `chunk` more pages written: the thread
 *                             sleeps as needed for the dirty-rate limit
 *                             and for throttling;
 *   hlt:                      an idle vCPU: wait for pause or quit.
 *
 * Pausing: a pause flag, then immediate_exit = 1 in each kvm_run and a
 * no-op signal to each vCPU thread: a thread inside KVM_RUN returns with
 * EINTR, a thread about to enter returns at once (it clears
 * immediate_exit under the lock only while the flag is off), and parks on
 * the condition variable.  pause() waits until all are parked.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "testvm/kvm_internal.h"
#include "util/clock.h"
#include "util/guest_writes.h"

#define PORT_PASS 0xf4
#define PORT_CHUNK 0xf5
#define THROTTLE_MAX_SLEEP 0.1

static int kick_signal(void)
{
    return SIGRTMIN + 1;
}

static void kick_handler(int sig)
{
    (void)sig; /* only interrupts KVM_RUN (immediate_exit does the rest) */
}

static pthread_once_t kick_once = PTHREAD_ONCE_INIT;

/* Installs the no-op handler once per process: no SA_RESTART, so that a
 * kick makes KVM_RUN return EINTR. */
static void kick_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = kick_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(kick_signal(), &sa, NULL);
}

void kvm_kick_init(void)
{
    pthread_once(&kick_once, kick_install);
}

/* Sleeps until `until` unless a pause, quit or throttle change comes
 * first. */
static void vcpu_sleep(KvmVcpu *v, double until)
{
    KvmGuest *vm = v->vm;
    pthread_mutex_lock(&vm->lock);
    unsigned gen = vm->wake_gen;
    while (!vm->paused && !vm->quit && gen == vm->wake_gen &&
           rf_now() < until) {
        if (rf_guest_wait_until_locked(&vm->cond, &vm->lock, until)) {
            break;
        }
    }
    pthread_mutex_unlock(&vm->lock);
}

/* Records the first failure (shown by describe) and stops the vCPU. */
static void vcpu_fail(KvmVcpu *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void vcpu_fail(KvmVcpu *v, const char *fmt, ...)
{
    KvmGuest *vm = v->vm;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&vm->lock);
    if (!vm->failure[0]) {
        snprintf(vm->failure, sizeof(vm->failure), "vCPU %u stopped: %s",
                 v->index, msg);
    }
    v->dead = true;
    pthread_mutex_unlock(&vm->lock);
}

/* The chunk the guest should use now: none without rate limit or
 * throttle, else about 1000 exits/s for the rate limit and about 5 ms of
 * running per exit for throttling. */
static uint32_t wanted_chunk(KvmVcpu *v)
{
    KvmGuest *vm = v->vm;
    if (v->plan.idle) {
        return CHUNK_NEVER;
    }
    uint64_t chunk = CHUNK_NEVER;
    if (vm->dirty_rate) {
        uint64_t per = vm->dirty_rate / (vm->active ? vm->active : 1);
        chunk = per / 1000;
        chunk = chunk ? chunk : 1;
        chunk = chunk > CHUNK_NEVER ? CHUNK_NEVER : chunk;
    }
    if (atomic_load(&vm->throttle_pct)) {
        double c = v->page_rate > 0 ? v->page_rate * 0.005 : 1024;
        uint64_t tc = c < 16 ? 16 : c > 65536 ? 65536 : (uint64_t)c;
        chunk = tc < chunk ? tc : chunk;
    }
    return (uint32_t)chunk;
}

/* The store into the guest's parameter page: guest memory, which the
 * engine reads while it migrates (as it reads a vCPU's stores), so it
 * is kept out of TSan's sight as the simulated guests' stores are. */
static RF_GUEST_WRITES void store_param_chunk(volatile GuestParams *p,
                                              uint32_t c)
{
    p->chunk = c;
}

static void set_chunk(KvmVcpu *v)
{
    uint32_t c = wanted_chunk(v);
    if (c != v->chunk) {
        v->chunk = c;
        v->sample_ok = false;
        store_param_chunk(v->params, c);
        atomic_store(&v->vm->params_dirty, true);
    }
}

/* A port-0xf5 exit: `pages` more pages written.  Keeps the rate limit
 * (credit_t runs ahead of the clock by the time the pages were allowed
 * to take) and the throttle (sleep pct/(100-pct) of the time run). */
static void on_chunk(KvmVcpu *v, uint32_t pages)
{
    KvmGuest *vm = v->vm;
    double t = rf_now();
    double ran = v->run_acc;
    v->run_acc = 0;
    /* Right after a chunk change the guest may exit early (its counter
     * was past the new size): no rate sample from that one. */
    if (ran > 0 && v->sample_ok) {
        double r = pages / ran;
        v->page_rate = v->page_rate > 0 ? 0.7 * v->page_rate + 0.3 * r : r;
    }
    v->sample_ok = true;
    double until = t;
    if (vm->dirty_rate) {
        double per = (double)vm->dirty_rate / (vm->active ? vm->active : 1);
        if (v->credit_t < t - 0.05) {
            v->credit_t = t - 0.05; /* at most a 50 ms burst */
        }
        v->credit_t += pages / per;
        until = v->credit_t;
    }
    unsigned pct = atomic_load(&vm->throttle_pct);
    if (pct && ran > 0) {
        /* A run stretched by host preemption must not turn into seconds
         * of sleep: at most THROTTLE_MAX_SLEEP per exit. */
        double s = t + ran * pct / (100.0 - pct);
        s = s > t + THROTTLE_MAX_SLEEP ? t + THROTTLE_MAX_SLEEP : s;
        until = s > until ? s : until;
    }
    if (until > t) {
        vcpu_sleep(v, until);
    }
}

/* Handles one KVM_EXIT_IO.  @return false if the vCPU must stop. */
static bool on_io(KvmVcpu *v)
{
    struct kvm_run *run = v->run;
    const uint8_t *data = (const uint8_t *)run + run->io.data_offset;
    if (run->io.direction != KVM_EXIT_IO_OUT || run->io.count != 1) {
        vcpu_fail(v, "unexpected I/O %s port 0x%x",
                  run->io.direction == KVM_EXIT_IO_OUT ? "out to" : "in from",
                  run->io.port);
        return false;
    }
    if (run->io.port == PORT_PASS && run->io.size == 4) {
        uint32_t val;
        memcpy(&val, data, 4);
        atomic_fetch_add(&v->passes, (uint32_t)(val - v->last_out));
        v->last_out = val;
        return true;
    }
    if (run->io.port == PORT_CHUNK && run->io.size == 1) {
        on_chunk(v, v->chunk);
        return true;
    }
    vcpu_fail(v, "unexpected out to port 0x%x (%u bytes)", run->io.port,
              run->io.size);
    return false;
}

/* Parks while paused; vm->lock held.  @return false on quit. */
static bool park_while_paused(KvmVcpu *v)
{
    KvmGuest *vm = v->vm;
    while (vm->paused && !vm->quit) {
        if (!v->parked) {
            v->parked = true;
            vm->nparked++;
            pthread_cond_broadcast(&vm->cond);
        }
        pthread_cond_wait(&vm->cond, &vm->lock);
    }
    if (v->parked) {
        v->parked = false;
        vm->nparked--;
    }
    return !vm->quit;
}

static void *vcpu_thread(void *arg)
{
    KvmVcpu *v = arg;
    KvmGuest *vm = v->vm;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, kick_signal());
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    v->credit_t = rf_now(); /* no burst at the start */

    pthread_mutex_lock(&vm->lock);
    for (;;) {
        if (!park_while_paused(v) || v->dead) {
            break;
        }
        v->run->immediate_exit = 0;
        pthread_mutex_unlock(&vm->lock);

        set_chunk(v);
        v->entered_t = rf_now();
        int r = ioctl(v->fd, KVM_RUN, 0);
        int err = errno;
        v->run_acc += rf_now() - v->entered_t;
        bool ok = true;
        if (r < 0) {
            if (err != EINTR && err != EAGAIN) {
                vcpu_fail(v, "KVM_RUN: %s", strerror(err));
                ok = false;
            }
        } else {
            switch (v->run->exit_reason) {
            case KVM_EXIT_IO:
                ok = on_io(v);
                break;
            case KVM_EXIT_HLT:
                /* Idle: nothing wakes a halted vCPU but pause/quit. */
                pthread_mutex_lock(&vm->lock);
                while (!vm->paused && !vm->quit) {
                    pthread_cond_wait(&vm->cond, &vm->lock);
                }
                pthread_mutex_unlock(&vm->lock);
                break;
            case KVM_EXIT_INTR:
                break;
            case KVM_EXIT_MMIO:
                vcpu_fail(v, "access to unmapped guest address 0x%llx",
                          (unsigned long long)v->run->mmio.phys_addr);
                ok = false;
                break;
            case KVM_EXIT_SHUTDOWN:
                vcpu_fail(v, "triple fault (KVM_EXIT_SHUTDOWN)");
                ok = false;
                break;
            case KVM_EXIT_FAIL_ENTRY:
                vcpu_fail(v, "VM entry failed, hardware reason 0x%llx",
                          (unsigned long long)v->run->fail_entry
                              .hardware_entry_failure_reason);
                ok = false;
                break;
            case KVM_EXIT_INTERNAL_ERROR:
                vcpu_fail(v, "KVM internal error, suberror %u",
                          v->run->internal.suberror);
                ok = false;
                break;
            default:
                vcpu_fail(v, "unexpected exit reason %u",
                          v->run->exit_reason);
                ok = false;
                break;
            }
        }
        pthread_mutex_lock(&vm->lock);
        if (!ok) {
            break;
        }
    }
    /* Dead or quitting: counts as parked so pause() does not wait. */
    if (!v->parked) {
        v->parked = true;
        vm->nparked++;
    }
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    return NULL;
}

/* Makes every vCPU thread leave KVM_RUN soon; vm->lock held. */
void kvm_kick_all_locked(KvmGuest *vm)
{
    for (unsigned i = 0; i < vm->n; i++) {
        KvmVcpu *v = &vm->vcpu[i];
        if (v->run) {
            v->run->immediate_exit = 1;
        }
        if (v->thread_started) {
            pthread_kill(v->thread, kick_signal());
        }
    }
    pthread_cond_broadcast(&vm->cond);
}

/* Starts vCPU threads for vm->n vCPUs (they park if vm->paused). */
bool kvm_start_threads(KvmGuest *vm, RfError **errp)
{
    /* vCPU threads must not take the process's signals (e.g. SIGINT):
     * they start with all blocked and unblock only the kick signal. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    bool ok = true;
    for (unsigned i = 0; i < vm->n && ok; i++) {
        KvmVcpu *v = &vm->vcpu[i];
        pthread_mutex_lock(&vm->lock);
        vm->nthreads++;
        pthread_mutex_unlock(&vm->lock);
        int e = pthread_create(&v->thread, NULL, vcpu_thread, v);
        if (e) {
            pthread_mutex_lock(&vm->lock);
            vm->nthreads--;
            pthread_mutex_unlock(&vm->lock);
            rf_error_set(errp, RF_ERR_GENERIC, "vCPU %u: cannot start its "
                         "thread: %s", i, strerror(e));
            ok = false;
        } else {
            v->thread_started = true;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ok;
}

void kvm_pause(void *be)
{
    KvmGuest *vm = be;
    pthread_mutex_lock(&vm->lock);
    vm->paused = true;
    kvm_kick_all_locked(vm);
    while (vm->nparked < vm->nthreads) {
        pthread_cond_wait(&vm->cond, &vm->lock);
    }
    pthread_mutex_unlock(&vm->lock);
}

void kvm_resume(void *be)
{
    KvmGuest *vm = be;
    pthread_mutex_lock(&vm->lock);
    vm->paused = false;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
}

void kvm_throttle(void *be, unsigned pct)
{
    KvmGuest *vm = be;
    pct = pct > 99 ? 99 : pct;
    if (atomic_exchange(&vm->throttle_pct, pct) == pct) {
        return;
    }
    /* Make the vCPUs pick the new chunk size now, not at the next pass,
     * and end sleeps computed with the old percentage. */
    pthread_mutex_lock(&vm->lock);
    vm->wake_gen++;
    kvm_kick_all_locked(vm);
    pthread_mutex_unlock(&vm->lock);
}

uint64_t kvm_passes(void *be)
{
    KvmGuest *vm = be;
    uint64_t sum = 0;
    for (unsigned i = 0; i < vm->n; i++) {
        sum += atomic_load(&vm->vcpu[i].passes);
    }
    return sum;
}

uint64_t kvm_vcpu_passes(void *be, unsigned i)
{
    KvmGuest *vm = be;
    return i < vm->n ? atomic_load(&vm->vcpu[i].passes) : 0;
}
