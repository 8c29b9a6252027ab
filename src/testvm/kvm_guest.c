/*
 * ramflow - the test VM's KVM back end (guest_backend.h).
 *
 * One KVM VM, no in-kernel irqchip, guest RAM as memslot 0 at guest
 * physical 0 with KVM_MEM_LOG_DIRTY_PAGES.  Each vCPU starts directly in
 * 32-bit protected mode (flat segments set with KVM_SET_SREGS, CR0.PE,
 * no paging) at the program of guest/pattern32.S, and has one host thread
 * that runs KVM_RUN and handles its exits:
 *   port 0xf4 (out, 4 bytes): a pass finished, the value is the count;
 *   port 0xf5 (out, 1 byte):  `chunk` more pages written: the thread
 *                             sleeps as needed for the dirty-rate limit
 *                             and for throttling;
 *   hlt:                      an idle vCPU: wait for pause or quit.
 *
 * Reserved guest pages (RF_GUEST_RESERVED_PAGES):
 *   0x0000  GDT: null, flat 32-bit code (0x08), flat data (0x10)
 *   0x1000  the program (copied from .rodata)
 *   0x4000  per-vCPU parameter blocks, PARAM_SIZE bytes each
 *
 * Pausing: a pause flag, then immediate_exit = 1 in each kvm_run and a
 * no-op signal to each vCPU thread: a thread inside KVM_RUN returns with
 * EINTR, a thread about to enter returns at once (it clears
 * immediate_exit under the lock only while the flag is off), and parks on
 * the condition variable.  pause() waits until all are parked.
 *
 * Host writes into guest RAM (the parameter block's chunk field) are not
 * seen by KVM's dirty log, so the back end reports the parameter page
 * dirty itself at the next sync after such a write.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "testvm/guest_backend.h"

#if defined(__linux__) && defined(__x86_64__)

#include <linux/kvm.h>

#include "testvm/kvm_dirty.h"
#include "util/bitmap.h"

/* From guest/pattern32.S. */
extern const uint8_t rf_guest_pattern32_start[];
extern const uint8_t rf_guest_pattern32_end[];

#define GDT_GPA 0x0000u
#define CODE_GPA 0x1000u
#define CODE_MAX 0x3000u
#define PARAM_GPA 0x4000u
#define PARAM_SIZE 32u
#define PORT_PASS 0xf4
#define PORT_CHUNK 0xf5
#define CHUNK_NEVER 0xffffffffu
#define MAX_MSRS 4096u
#define MAX_CPUID 512u
#define MAX_32BIT_RAM (1ull << 32)
#define THROTTLE_MAX_SLEEP 0.1

/* Record tags (guest_backend.h: kvm uses 0x01xx). */
enum {
    TAG_REGS = 0x0101,
    TAG_SREGS = 0x0102,
    TAG_XSAVE = 0x0103,
    TAG_FPU = 0x0104,
    TAG_XCRS = 0x0105,
    TAG_MSRS = 0x0106,
    TAG_EVENTS = 0x0107,
    TAG_DEBUGREGS = 0x0108,
    TAG_MP_STATE = 0x0109,
    TAG_CPUID = 0x010a,
    TAG_LAPIC = 0x010b,
    TAG_VM_CLOCK = 0x0180,
    TAG_VM_IRQCHIP = 0x0181,
};

/* The parameter block the guest program reads (pattern32.S). */
typedef struct GuestParams {
    uint32_t mode;   /* 0 = pattern, 1 = idle */
    uint32_t first;  /* guest-physical address of the first page */
    uint32_t last;   /* address of the last page (inclusive) */
    uint32_t chunk;  /* pages between port-0xf5 exits */
    uint32_t passes;
} GuestParams;

typedef struct KvmGuest KvmGuest;

typedef struct KvmVcpu {
    KvmGuest *vm;
    unsigned index;
    int fd;
    bool has_fd;
    struct kvm_run *run;
    pthread_t thread;
    bool thread_started;
    RfGuestVcpuPlan plan;
    volatile GuestParams *params;  /* in guest RAM */
    _Atomic uint64_t passes;
    uint32_t last_out;             /* last value written to port 0xf4 */
    /* Under vm->lock: */
    bool parked;
    bool dead;
    /* vCPU thread only: */
    uint32_t chunk;                /* value last written to params */
    double credit_t;               /* rate limit: time the pages so far
                                      may have been written by */
    double entered_t;              /* last KVM_RUN entry */
    double run_acc;                /* time in KVM_RUN since the last
                                      chunk exit (throttle) */
    bool sample_ok;                /* the last chunk exit ran a full
                                      chunk of the current size */
    double page_rate;              /* measured pages/s while running */
} KvmVcpu;

struct KvmGuest {
    RfGuestMem mem;
    int kvm_fd;
    int vm_fd;
    size_t run_size;
    struct kvm_cpuid2 *cpuid;      /* KVM_GET_SUPPORTED_CPUID */
    uint32_t *msr_index;           /* KVM_GET_MSR_INDEX_LIST */
    unsigned nmsr_index;
    int xsave_size;                /* 0 = no XSAVE: use the FPU ioctls */
    bool have_xcrs, have_debugregs;
    bool manual_cap;               /* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 */
    RfKvmDirty *dirty;
    _Atomic bool params_dirty;     /* host wrote the parameter page */

    pthread_mutex_t lock;
    pthread_cond_t cond;           /* CLOCK_MONOTONIC */
    bool paused;
    bool quit;
    unsigned wake_gen;             /* bumped to end the vCPUs' sleeps */
    unsigned nthreads;             /* vCPU threads running their loop */
    unsigned nparked;              /* of which parked or dead */
    _Atomic unsigned throttle_pct;
    uint64_t dirty_rate;
    unsigned active;               /* non-idle vCPUs */

    unsigned n;
    KvmVcpu vcpu[RF_GUEST_MAX_VCPUS];
    char detail[512];
    char failure[256];             /* first vCPU failure, if any */
    unsigned msr_skipped;          /* MSRs KVM_SET_MSRS refused at load */
    uint32_t msr_first_skipped;
};

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

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Waits on vm->cond until `until` (monotonic seconds) or a state change;
 * vm->lock held.  @return true if the sleep ran to its end. */
static bool sleep_until_locked(KvmGuest *vm, double until)
{
    struct timespec ts;
    ts.tv_sec = (time_t)until;
    ts.tv_nsec = (long)((until - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) == ETIMEDOUT;
}

/* Sleeps until `until` unless a pause, quit or throttle change comes
 * first. */
static void vcpu_sleep(KvmVcpu *v, double until)
{
    KvmGuest *vm = v->vm;
    pthread_mutex_lock(&vm->lock);
    unsigned gen = vm->wake_gen;
    while (!vm->paused && !vm->quit && gen == vm->wake_gen &&
           now_s() < until) {
        if (sleep_until_locked(vm, until)) {
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

static void set_chunk(KvmVcpu *v)
{
    uint32_t c = wanted_chunk(v);
    if (c != v->chunk) {
        v->chunk = c;
        v->sample_ok = false;
        v->params->chunk = c;
        atomic_store(&v->vm->params_dirty, true);
    }
}

/* A port-0xf5 exit: `pages` more pages written.  Keeps the rate limit
 * (credit_t runs ahead of the clock by the time the pages were allowed
 * to take) and the throttle (sleep pct/(100-pct) of the time run). */
static void on_chunk(KvmVcpu *v, uint32_t pages)
{
    KvmGuest *vm = v->vm;
    double t = now_s();
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
    v->credit_t = now_s(); /* no burst at the start */

    pthread_mutex_lock(&vm->lock);
    for (;;) {
        if (!park_while_paused(v) || v->dead) {
            break;
        }
        v->run->immediate_exit = 0;
        pthread_mutex_unlock(&vm->lock);

        set_chunk(v);
        v->entered_t = now_s();
        int r = ioctl(v->fd, KVM_RUN, 0);
        int err = errno;
        v->run_acc += now_s() - v->entered_t;
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
static void kick_all_locked(KvmGuest *vm)
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

static void kvm_pause(void *be)
{
    KvmGuest *vm = be;
    pthread_mutex_lock(&vm->lock);
    vm->paused = true;
    kick_all_locked(vm);
    while (vm->nparked < vm->nthreads) {
        pthread_cond_wait(&vm->cond, &vm->lock);
    }
    pthread_mutex_unlock(&vm->lock);
}

static void kvm_resume(void *be)
{
    KvmGuest *vm = be;
    pthread_mutex_lock(&vm->lock);
    vm->paused = false;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
}

static void kvm_throttle(void *be, unsigned pct)
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
    kick_all_locked(vm);
    pthread_mutex_unlock(&vm->lock);
}

static uint64_t kvm_passes(void *be)
{
    KvmGuest *vm = be;
    uint64_t sum = 0;
    for (unsigned i = 0; i < vm->n; i++) {
        sum += atomic_load(&vm->vcpu[i].passes);
    }
    return sum;
}

static uint64_t kvm_vcpu_passes(void *be, unsigned i)
{
    KvmGuest *vm = be;
    return i < vm->n ? atomic_load(&vm->vcpu[i].passes) : 0;
}

/* ---- VM creation ---------------------------------------------------- */

/* Reads the host's CPUID and MSR lists once per VM. */
static bool probe_host(KvmGuest *vm, RfError **errp)
{
    for (unsigned nent = 64; nent <= MAX_CPUID; nent *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) +
                                      nent * sizeof(c->entries[0]));
        if (!c) {
            rf_error_set(errp, RF_ERR_GENERIC, "KVM: out of memory");
            return false;
        }
        c->nent = nent;
        if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            vm->cpuid = c;
            break;
        }
        int err = errno;
        free(c);
        if (err != E2BIG) {
            rf_error_set(errp, RF_ERR_IO, "KVM_GET_SUPPORTED_CPUID: %s",
                         strerror(err));
            return false;
        }
    }
    if (!vm->cpuid) {
        rf_error_set(errp, RF_ERR_IO, "KVM_GET_SUPPORTED_CPUID: more than "
                     "%u entries", MAX_CPUID);
        return false;
    }
    struct kvm_msr_list probe = { .nmsrs = 0 };
    if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 &&
        errno != E2BIG) {
        rf_error_set(errp, RF_ERR_IO, "KVM_GET_MSR_INDEX_LIST: %s",
                     strerror(errno));
        return false;
    }
    if (probe.nmsrs > MAX_MSRS) {
        rf_error_set(errp, RF_ERR_IO, "KVM_GET_MSR_INDEX_LIST: %u MSRs, "
                     "at most %u handled", probe.nmsrs, MAX_MSRS);
        return false;
    }
    struct kvm_msr_list *l = calloc(1, sizeof(*l) +
                                    probe.nmsrs * sizeof(uint32_t));
    if (!l) {
        rf_error_set(errp, RF_ERR_GENERIC, "KVM: out of memory");
        return false;
    }
    l->nmsrs = probe.nmsrs;
    if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
        rf_error_set(errp, RF_ERR_IO, "KVM_GET_MSR_INDEX_LIST: %s",
                     strerror(errno));
        free(l);
        return false;
    }
    vm->nmsr_index = l->nmsrs;
    vm->msr_index = malloc((l->nmsrs ? l->nmsrs : 1) * sizeof(uint32_t));
    if (!vm->msr_index) {
        free(l);
        rf_error_set(errp, RF_ERR_GENERIC, "KVM: out of memory");
        return false;
    }
    memcpy(vm->msr_index, l->indices, l->nmsrs * sizeof(uint32_t));
    free(l);

    if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0) {
        vm->xsave_size = sizeof(struct kvm_xsave);
#ifdef KVM_CAP_XSAVE2
        int sz = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
        if (sz > vm->xsave_size) {
            vm->xsave_size = sz;
        }
#endif
    }
    vm->have_xcrs = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
    vm->have_debugregs =
        ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DEBUGREGS) > 0;
#ifdef KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2
    vm->manual_cap = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION,
                           KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) > 0;
#endif
    return true;
}

static void kvm_destroy(void *be);

static void *kvm_create(const RfGuestMem *mem, RfError **errp)
{
    if (mem->size > MAX_32BIT_RAM) {
        rf_error_set(errp, RF_ERR_PARAM, "KVM guest: memory size %llu MiB "
                     "is more than the 4096 MiB its 32-bit program can "
                     "reach", (unsigned long long)(mem->size >> 20));
        return NULL;
    }
    size_t code_len = (size_t)(rf_guest_pattern32_end -
                               rf_guest_pattern32_start);
    if (code_len > CODE_MAX) {
        rf_error_set(errp, RF_ERR_GENERIC, "KVM guest: program is %zu "
                     "bytes, %u allowed", code_len, CODE_MAX);
        return NULL;
    }
    KvmGuest *vm = calloc(1, sizeof(*vm));
    if (!vm) {
        rf_error_set(errp, RF_ERR_GENERIC, "KVM guest: out of memory");
        return NULL;
    }
    vm->mem = *mem;
    vm->kvm_fd = vm->vm_fd = -1;
    pthread_mutex_init(&vm->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&vm->cond, &ca);
    pthread_condattr_destroy(&ca);

    vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm_fd < 0) {
        rf_error_set(errp, RF_ERR_IO, "/dev/kvm: %s", strerror(errno));
        goto fail;
    }
    int api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION) {
        rf_error_set(errp, RF_ERR_IO, "/dev/kvm: API version %d, expected "
                     "%d", api, KVM_API_VERSION);
        goto fail;
    }
    do {
        vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    } while (vm->vm_fd < 0 && errno == EINTR);
    if (vm->vm_fd < 0) {
        rf_error_set(errp, RF_ERR_IO, "KVM_CREATE_VM failed: %s",
                     strerror(errno));
        goto fail;
    }
    int rs = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (rs < (int)sizeof(struct kvm_run)) {
        rf_error_set(errp, RF_ERR_IO, "KVM_GET_VCPU_MMAP_SIZE: %s",
                     rs < 0 ? strerror(errno) : "too small");
        goto fail;
    }
    vm->run_size = (size_t)rs;
    if (!probe_host(vm, errp)) {
        goto fail;
    }
    /* Intel without unrestricted guest wants a TSS address; harmless
     * elsewhere.  QEMU's address, when RAM does not cover it. */
    if (mem->size <= 0xfffbd000ull) {
        (void)ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul);
    }
    struct kvm_userspace_memory_region region = {
        .slot = 0,
        .flags = KVM_MEM_LOG_DIRTY_PAGES,
        .guest_phys_addr = 0,
        .memory_size = mem->size,
        .userspace_addr = (uintptr_t)mem->host,
    };
    if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
        rf_error_set(errp, RF_ERR_IO, "KVM_SET_USER_MEMORY_REGION (slot 0, "
                     "%llu bytes): %s", (unsigned long long)mem->size,
                     strerror(errno));
        goto fail;
    }
    pthread_once(&kick_once, kick_install);
    return vm;

fail:
    kvm_destroy(vm);
    return NULL;
}

/* Writes the GDT and the program into the reserved pages. */
static void write_boot_pages(KvmGuest *vm)
{
    uint64_t gdt[3] = {
        0,
        0x00cf9b000000ffffull, /* code: base 0, limit 4G, 32-bit, RX */
        0x00cf93000000ffffull, /* data: base 0, limit 4G, 32-bit, RW */
    };
    memcpy(vm->mem.host + GDT_GPA, gdt, sizeof(gdt));
    memcpy(vm->mem.host + CODE_GPA, rf_guest_pattern32_start,
           (size_t)(rf_guest_pattern32_end - rf_guest_pattern32_start));
}

static void flat_seg(struct kvm_segment *s, uint16_t sel, uint8_t type)
{
    memset(s, 0, sizeof(*s));
    s->base = 0;
    s->limit = 0xffffffff;
    s->selector = sel;
    s->type = type;
    s->present = 1;
    s->dpl = 0;
    s->db = 1;
    s->s = 1;
    s->l = 0;
    s->g = 1;
}

/* Creates vCPU i's fd and kvm_run mapping and sets its CPUID. */
static bool vcpu_create(KvmGuest *vm, unsigned i, RfError **errp)
{
    KvmVcpu *v = &vm->vcpu[i];
    v->vm = vm;
    v->index = i;
    v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
    if (v->fd < 0) {
        rf_error_set(errp, RF_ERR_IO, "KVM_CREATE_VCPU %u: %s", i,
                     strerror(errno));
        return false;
    }
    v->has_fd = true;
    void *p = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   v->fd, 0);
    if (p == MAP_FAILED) {
        rf_error_set(errp, RF_ERR_IO, "vCPU %u: mmap of kvm_run: %s", i,
                     strerror(errno));
        return false;
    }
    v->run = p;
    v->chunk = 0; /* not a valid chunk: the first set_chunk writes it */
    return true;
}

static bool set_cpuid(KvmVcpu *v, struct kvm_cpuid2 *c, RfError **errp)
{
    if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0) {
        rf_error_set(errp, RF_ERR_IO, "vCPU %u: KVM_SET_CPUID2 (%u "
                     "entries): %s", v->index, c->nent, strerror(errno));
        return false;
    }
    return true;
}

/* Fills vCPU i's parameter block from its plan. */
static void write_params(KvmVcpu *v)
{
    volatile GuestParams *gp = (volatile GuestParams *)
        (v->vm->mem.host + PARAM_GPA + v->index * PARAM_SIZE);
    v->params = gp;
    gp->mode = v->plan.idle ? 1 : 0;
    gp->first = (uint32_t)(v->plan.first_page * RF_PAGE_SIZE);
    gp->last = v->plan.idle ? gp->first
                            : (uint32_t)((v->plan.end_page - 1) *
                                         RF_PAGE_SIZE);
    gp->chunk = CHUNK_NEVER;
    v->chunk = CHUNK_NEVER;
    atomic_store(&v->vm->params_dirty, true);
}

/* Starts vCPU threads for vm->n vCPUs (they park if vm->paused). */
static bool start_threads(KvmGuest *vm, RfError **errp)
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

static void count_active(KvmGuest *vm, uint64_t dirty_rate)
{
    vm->dirty_rate = dirty_rate;
    vm->active = 0;
    for (unsigned i = 0; i < vm->n; i++) {
        vm->active += !vm->vcpu[i].plan.idle;
    }
}

static bool kvm_start(void *be, const RfGuestVcpuPlan *plan, unsigned n,
                      uint64_t dirty_rate, RfError **errp)
{
    KvmGuest *vm = be;
    if (n < 1 || n > RF_GUEST_MAX_VCPUS || n * PARAM_SIZE > 0x4000) {
        rf_error_set(errp, RF_ERR_PARAM, "KVM guest: %u vCPUs, 1-%u "
                     "allowed", n, RF_GUEST_MAX_VCPUS);
        return false;
    }
    write_boot_pages(vm);
    vm->n = n;
    for (unsigned i = 0; i < n; i++) {
        vm->vcpu[i].plan = plan[i];
        atomic_store(&vm->vcpu[i].passes, 0);
    }
    count_active(vm, dirty_rate);
    for (unsigned i = 0; i < n; i++) {
        KvmVcpu *v = &vm->vcpu[i];
        if (!vcpu_create(vm, i, errp) || !set_cpuid(v, vm->cpuid, errp)) {
            return false;
        }
        write_params(v);
        v->params->passes = 0;
        v->last_out = 0;

        struct kvm_sregs sregs;
        if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0) {
            rf_error_set(errp, RF_ERR_IO, "vCPU %u: KVM_GET_SREGS: %s", i,
                         strerror(errno));
            return false;
        }
        flat_seg(&sregs.cs, 0x08, 0xb);
        flat_seg(&sregs.ds, 0x10, 0x3);
        sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
        sregs.gdt.base = GDT_GPA;
        sregs.gdt.limit = 3 * 8 - 1;
        sregs.cr0 = 0x11; /* PE | ET, no paging */
        sregs.cr4 = 0;
        sregs.efer = 0;
        if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0) {
            rf_error_set(errp, RF_ERR_IO, "vCPU %u: KVM_SET_SREGS: %s", i,
                         strerror(errno));
            return false;
        }
        struct kvm_regs regs;
        memset(&regs, 0, sizeof(regs));
        regs.rip = CODE_GPA;
        regs.rflags = 0x2;
        regs.rbx = PARAM_GPA + i * PARAM_SIZE;
        if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0) {
            rf_error_set(errp, RF_ERR_IO, "vCPU %u: KVM_SET_REGS: %s", i,
                         strerror(errno));
            return false;
        }
    }
    vm->paused = false;
    return start_threads(vm, errp);
}

/* ---- dirty tracking ------------------------------------------------- */

static bool kvm_dirty_start(void *be, RfError **errp)
{
    KvmGuest *vm = be;
    atomic_store(&vm->params_dirty, false);
    if (vm->dirty) {
        return rf_kvm_dirty_reset(vm->dirty, errp);
    }
    vm->dirty = rf_kvm_dirty_new(vm->vm_fd, 0, vm->mem.size, errp);
    return vm->dirty != NULL;
}

static bool kvm_dirty_sync(void *be, uint64_t *bitmap, RfError **errp)
{
    KvmGuest *vm = be;
    if (!vm->dirty) {
        rf_error_set(errp, RF_ERR_GENERIC, "KVM guest: dirty sync before "
                     "dirty tracking started");
        return false;
    }
    if (atomic_exchange(&vm->params_dirty, false)) {
        rf_bitmap_set(bitmap, PARAM_GPA / RF_PAGE_SIZE);
    }
    return rf_kvm_dirty_sync(vm->dirty, bitmap, NULL, errp);
}

static void kvm_dirty_stop(void *be)
{
    KvmGuest *vm = be;
    rf_kvm_dirty_free(vm->dirty);
    vm->dirty = NULL;
}

/* ---- state ---------------------------------------------------------- */

/* One vCPU ioctl that fills a record of fixed size. */
static bool save_simple(KvmVcpu *v, RfGuestStateOut *out, uint32_t tag,
                        unsigned long req, const char *what, void *buf,
                        size_t len, RfError **errp)
{
    if (ioctl(v->fd, req, buf) < 0) {
        rf_error_set(errp, RF_ERR_IO, "vCPU %u: %s: %s", v->index, what,
                     strerror(errno));
        return false;
    }
    return rf_guest_state_put(out, tag, buf, len, errp);
}

/* Reads every MSR of KVM_GET_MSR_INDEX_LIST; KVM_GET_MSRS stops at the
 * first one it cannot read, which is skipped. */
static bool save_msrs(KvmVcpu *v, RfGuestStateOut *out, RfError **errp)
{
    KvmGuest *vm = v->vm;
    unsigned n = vm->nmsr_index;
    struct kvm_msrs *m = calloc(1, sizeof(*m) +
                                (n ? n : 1) * sizeof(m->entries[0]));
    struct kvm_msrs *q = calloc(1, sizeof(*q) +
                                (n ? n : 1) * sizeof(q->entries[0]));
    bool ok = false;
    if (!m || !q) {
        rf_error_set(errp, RF_ERR_GENERIC, "vCPU %u: out of memory for "
                     "MSRs", v->index);
        goto out;
    }
    unsigned got = 0;
    for (unsigned from = 0; from < n;) {
        q->nmsrs = n - from;
        for (unsigned k = 0; k < q->nmsrs; k++) {
            memset(&q->entries[k], 0, sizeof(q->entries[k]));
            q->entries[k].index = vm->msr_index[from + k];
        }
        int r = ioctl(v->fd, KVM_GET_MSRS, q);
        if (r < 0) {
            rf_error_set(errp, RF_ERR_IO, "vCPU %u: KVM_GET_MSRS: %s",
                         v->index, strerror(errno));
            goto out;
        }
        memcpy(&m->entries[got], q->entries,
               (size_t)r * sizeof(q->entries[0]));
        got += (unsigned)r;
        from += (unsigned)r + 1; /* skip the one that failed */
    }
    m->nmsrs = got;
    ok = rf_guest_state_put(out, TAG_MSRS, m, sizeof(*m) +
                            got * sizeof(m->entries[0]), errp);
out:
    free(m);
    free(q);
    return ok;
}


static bool kvm_save_vcpu(void *be, unsigned i, RfGuestStateOut *out,
                          RfError **errp)
{
    KvmGuest *vm = be;
    if (i >= vm->n) {
        rf_error_set(errp, RF_ERR_PARAM, "KVM guest: no vCPU %u", i);
        return false;
    }
    KvmVcpu *v = &vm->vcpu[i];
    size_t big = sizeof(struct kvm_cpuid2) +
                 MAX_CPUID * sizeof(struct kvm_cpuid_entry2);
    if ((size_t)vm->xsave_size > big) {
        big = (size_t)vm->xsave_size;
    }
    uint8_t *buf = calloc(1, big);
    if (!buf) {
        rf_error_set(errp, RF_ERR_GENERIC, "vCPU %u: out of memory", i);
        return false;
    }
    bool ok = false;

    /* In load order: CPUID first, sregs before regs. */
    struct kvm_cpuid2 *c = (struct kvm_cpuid2 *)buf;
    c->nent = MAX_CPUID;
    if (ioctl(v->fd, KVM_GET_CPUID2, c) < 0) {
        rf_error_set(errp, RF_ERR_IO, "vCPU %u: KVM_GET_CPUID2: %s", i,
                     strerror(errno));
        goto out;
    }
    if (!rf_guest_state_put(out, TAG_CPUID, c, sizeof(*c) + c->nent *
                            sizeof(c->entries[0]), errp)) {
        goto out;
    }
    struct kvm_sregs sregs;
    struct kvm_regs regs;
    if (!save_simple(v, out, TAG_SREGS, KVM_GET_SREGS, "KVM_GET_SREGS",
                     &sregs, sizeof(sregs), errp) ||
        !save_simple(v, out, TAG_REGS, KVM_GET_REGS, "KVM_GET_REGS", &regs,
                     sizeof(regs), errp)) {
        goto out;
    }
    if (vm->xsave_size) {
        memset(buf, 0, (size_t)vm->xsave_size);
        unsigned long req = KVM_GET_XSAVE;
#ifdef KVM_GET_XSAVE2
        if (vm->xsave_size > (int)sizeof(struct kvm_xsave)) {
            req = KVM_GET_XSAVE2;
        }
#endif
        if (!save_simple(v, out, TAG_XSAVE, req, "KVM_GET_XSAVE", buf,
                         (size_t)vm->xsave_size, errp)) {
            goto out;
        }
    } else {
        struct kvm_fpu fpu;
        if (!save_simple(v, out, TAG_FPU, KVM_GET_FPU, "KVM_GET_FPU", &fpu,
                         sizeof(fpu), errp)) {
            goto out;
        }
    }
    if (vm->have_xcrs) {
        struct kvm_xcrs xcrs;
        if (!save_simple(v, out, TAG_XCRS, KVM_GET_XCRS, "KVM_GET_XCRS",
                         &xcrs, sizeof(xcrs), errp)) {
            goto out;
        }
    }
    if (!save_msrs(v, out, errp)) {
        goto out;
    }
    struct kvm_mp_state mp;
    struct kvm_vcpu_events ev;
    if (!save_simple(v, out, TAG_MP_STATE, KVM_GET_MP_STATE,
                     "KVM_GET_MP_STATE", &mp, sizeof(mp), errp) ||
        !save_simple(v, out, TAG_EVENTS, KVM_GET_VCPU_EVENTS,
                     "KVM_GET_VCPU_EVENTS", &ev, sizeof(ev), errp)) {
        goto out;
    }
    if (vm->have_debugregs) {
        struct kvm_debugregs dr;
        if (!save_simple(v, out, TAG_DEBUGREGS, KVM_GET_DEBUGREGS,
                         "KVM_GET_DEBUGREGS", &dr, sizeof(dr), errp)) {
            goto out;
        }
    }
    /* No in-kernel irqchip, hence no LAPIC record (see save_vm). */
    ok = true;
out:
    free(buf);
    return ok;
}

static bool kvm_save_vm(void *be, RfGuestStateOut *out, RfError **errp)
{
    KvmGuest *vm = be;
    struct kvm_clock_data clock;
    memset(&clock, 0, sizeof(clock));
    if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0) {
        rf_error_set(errp, RF_ERR_IO, "KVM_GET_CLOCK: %s", strerror(errno));
        return false;
    }
    uint32_t irqchip = 0; /* none: the guest takes no interrupts */
    return rf_guest_state_put(out, TAG_VM_CLOCK, &clock, sizeof(clock),
                              errp) &&
           rf_guest_state_put(out, TAG_VM_IRQCHIP, &irqchip,
                              sizeof(irqchip), errp);
}

/* @return the record `tag` of exactly `len` bytes (len 0: any length),
 * NULL (no error) if absent and optional, or NULL with an error. */
static const RfGuestRecord *need(const RfGuestVcpuRecords *r, uint32_t tag,
                                 const char *what, size_t len, bool required,
                                 unsigned vcpu, RfError **errp)
{
    const RfGuestRecord *rec = rf_guest_state_find(r, tag);
    if (!rec) {
        if (required) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "KVM state of vCPU %u: no "
                         "%s record (tag 0x%04x)", vcpu, what, tag);
        }
        return NULL;
    }
    if (len && rec->len != len) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "KVM state of vCPU %u: %s "
                     "record is %u bytes, expected %zu", vcpu, what,
                     rec->len, len);
        return NULL;
    }
    return rec;
}

/* Rejects unknown or repeated tags: a blob from another version or a
 * corrupted one must not be half-applied. */
static bool check_tags(const RfGuestVcpuRecords *r, const uint32_t *known,
                       unsigned nknown, const char *who, RfError **errp)
{
    for (unsigned i = 0; i < r->n; i++) {
        bool ok = false;
        for (unsigned k = 0; k < nknown && !ok; k++) {
            ok = r->rec[i].tag == known[k];
        }
        if (!ok) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "KVM state of %s: unknown "
                         "record tag 0x%04x (record %u)", who,
                         r->rec[i].tag, i);
            return false;
        }
        for (unsigned k = 0; k < i; k++) {
            if (r->rec[k].tag == r->rec[i].tag) {
                rf_error_set(errp, RF_ERR_PROTOCOL, "KVM state of %s: "
                             "record tag 0x%04x appears twice", who,
                             r->rec[i].tag);
                return false;
            }
        }
    }
    return true;
}

/* One vCPU ioctl that takes a fixed-size record. */
static bool load_simple(KvmVcpu *v, const RfGuestVcpuRecords *r,
                        uint32_t tag, unsigned long req, const char *what,
                        size_t len, bool required, RfError **errp)
{
    const RfGuestRecord *rec = need(r, tag, what, len, required, v->index,
                                    errp);
    if (!rec) {
        return !required && !rf_guest_state_find(r, tag);
    }
    uint8_t tmp[4096];
    if (len > sizeof(tmp)) {
        rf_error_set(errp, RF_ERR_GENERIC, "vCPU %u: %s record too big",
                     v->index, what);
        return false;
    }
    memcpy(tmp, rec->data, len);
    if (ioctl(v->fd, req, tmp) < 0) {
        rf_error_set(errp, RF_ERR_IO, "vCPU %u: %s (%s from the state): %s",
                     v->index, what, what, strerror(errno));
        return false;
    }
    return true;
}

/* An MSR KVM refuses to write (e.g. the async-PF interrupt MSRs without
 * an in-kernel LAPIC) is still restored if it already holds the value. */
static bool msr_already(KvmVcpu *v, const struct kvm_msr_entry *e)
{
    /* struct kvm_msrs ends in a flexible array: one entry after it. */
    _Alignas(struct kvm_msr_entry) uint8_t
        buf[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
    memset(buf, 0, sizeof(buf));
    struct kvm_msrs *q = (struct kvm_msrs *)buf;
    q->nmsrs = 1;
    q->entries[0].index = e->index;
    return ioctl(v->fd, KVM_GET_MSRS, q) == 1 &&
           q->entries[0].data == e->data;
}

/* Writes the MSRs; an MSR KVM refuses is skipped and counted (as
 * KVM_GET_MSRS, KVM_SET_MSRS stops at the first failure). */
static bool load_msrs(KvmVcpu *v, const RfGuestVcpuRecords *r,
                      unsigned *skipped, uint32_t *first_skipped,
                      RfError **errp)
{
    const RfGuestRecord *rec = need(r, TAG_MSRS, "MSRs", 0, true, v->index,
                                    errp);
    if (!rec) {
        return false;
    }
    uint32_t n;
    if (rec->len < sizeof(struct kvm_msrs)) {
        goto bad;
    }
    memcpy(&n, rec->data, 4);
    if (n > MAX_MSRS ||
        rec->len != sizeof(struct kvm_msrs) +
                    n * sizeof(struct kvm_msr_entry)) {
        goto bad;
    }
    struct kvm_msrs *all = malloc(rec->len);
    struct kvm_msrs *q = malloc(rec->len);
    if (!all || !q) {
        free(all);
        free(q);
        rf_error_set(errp, RF_ERR_GENERIC, "vCPU %u: out of memory",
                     v->index);
        return false;
    }
    memcpy(all, rec->data, rec->len);
    for (unsigned from = 0; from < n;) {
        memset(q, 0, sizeof(*q));
        q->nmsrs = n - from;
        memcpy(q->entries, all->entries + from,
               (n - from) * sizeof(q->entries[0]));
        int got = ioctl(v->fd, KVM_SET_MSRS, q);
        if (got < 0) {
            rf_error_set(errp, RF_ERR_IO, "vCPU %u: KVM_SET_MSRS: %s",
                         v->index, strerror(errno));
            free(all);
            free(q);
            return false;
        }
        from += (unsigned)got;
        if (from < n) {
            if (!msr_already(v, &all->entries[from])) {
                if (!*skipped) {
                    *first_skipped = all->entries[from].index;
                }
                (*skipped)++;
            }
            from++;
        }
    }
    free(all);
    free(q);
    return true;
bad:
    rf_error_set(errp, RF_ERR_PROTOCOL, "KVM state of vCPU %u: MSR record "
                 "of %u bytes is not a count and that many entries (at "
                 "most %u)", v->index, rec->len, MAX_MSRS);
    return false;
}

/* Sets the CPUID record: first, since what the other records may hold
 * (XSAVE features, MSRs) depends on it. */
static bool load_cpuid(KvmVcpu *v, const RfGuestVcpuRecords *r,
                       RfError **errp)
{
    const RfGuestRecord *rec = need(r, TAG_CPUID, "CPUID", 0, true,
                                    v->index, errp);
    if (!rec) {
        return false;
    }
    uint32_t nent;
    if (rec->len < sizeof(struct kvm_cpuid2)) {
        nent = UINT32_MAX;
    } else {
        memcpy(&nent, rec->data, 4);
    }
    if (nent > MAX_CPUID ||
        rec->len != sizeof(struct kvm_cpuid2) +
                    nent * sizeof(struct kvm_cpuid_entry2)) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "KVM state of vCPU %u: CPUID "
                     "record of %u bytes is not a count and that many "
                     "entries (at most %u)", v->index, rec->len, MAX_CPUID);
        return false;
    }
    struct kvm_cpuid2 *c = malloc(rec->len);
    if (!c) {
        rf_error_set(errp, RF_ERR_GENERIC, "vCPU %u: out of memory",
                     v->index);
        return false;
    }
    memcpy(c, rec->data, rec->len);
    bool ok = set_cpuid(v, c, errp);
    free(c);
    return ok;
}

static bool load_xsave(KvmVcpu *v, const RfGuestVcpuRecords *r,
                       RfError **errp)
{
    KvmGuest *vm = v->vm;
    const RfGuestRecord *rec = rf_guest_state_find(r, TAG_XSAVE);
    if (!rec) {
        return load_simple(v, r, TAG_FPU, KVM_SET_FPU, "KVM_SET_FPU",
                           sizeof(struct kvm_fpu), true, errp);
    }
    if (!vm->xsave_size) {
        rf_error_set(errp, RF_ERR_MISMATCH, "KVM state of vCPU %u: has "
                     "XSAVE state but this host's KVM has no XSAVE",
                     v->index);
        return false;
    }
    if (rec->len < sizeof(struct kvm_xsave) ||
        rec->len > (uint32_t)vm->xsave_size) {
        rf_error_set(errp, RF_ERR_MISMATCH, "KVM state of vCPU %u: XSAVE "
                     "record is %u bytes; this host takes %zu-%d",
                     v->index, rec->len, sizeof(struct kvm_xsave),
                     vm->xsave_size);
        return false;
    }
    uint8_t *buf = calloc(1, (size_t)vm->xsave_size);
    if (!buf) {
        rf_error_set(errp, RF_ERR_GENERIC, "vCPU %u: out of memory",
                     v->index);
        return false;
    }
    memcpy(buf, rec->data, rec->len);
    int rc = ioctl(v->fd, KVM_SET_XSAVE, buf);
    int err = errno;
    free(buf);
    if (rc < 0) {
        rf_error_set(errp, RF_ERR_IO, "vCPU %u: KVM_SET_XSAVE: %s",
                     v->index, strerror(err));
        return false;
    }
    return true;
}

/* Applies one vCPU's records in the order QEMU does: CPUID, sregs, regs,
 * XSAVE/FPU, XCRs, MSRs, MP state, events, debug registers. */
static bool load_vcpu(KvmVcpu *v, const RfGuestVcpuRecords *r,
                      RfError **errp)
{
    KvmGuest *vm = v->vm;
    static const uint32_t known[] = {
        TAG_REGS, TAG_SREGS, TAG_XSAVE, TAG_FPU, TAG_XCRS, TAG_MSRS,
        TAG_EVENTS, TAG_DEBUGREGS, TAG_MP_STATE, TAG_CPUID, TAG_LAPIC,
    };
    char who[32];
    snprintf(who, sizeof(who), "vCPU %u", v->index);
    if (!check_tags(r, known, sizeof(known) / sizeof(known[0]), who,
                    errp)) {
        return false;
    }
    if (rf_guest_state_find(r, TAG_LAPIC)) {
        rf_error_set(errp, RF_ERR_MISMATCH, "KVM state of vCPU %u: has a "
                     "LAPIC record but this VM has no in-kernel irqchip",
                     v->index);
        return false;
    }
    if (rf_guest_state_find(r, TAG_XSAVE) &&
        rf_guest_state_find(r, TAG_FPU)) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "KVM state of vCPU %u: has "
                     "both XSAVE and FPU records", v->index);
        return false;
    }
    if (!load_cpuid(v, r, errp) ||
        !load_simple(v, r, TAG_SREGS, KVM_SET_SREGS, "KVM_SET_SREGS",
                     sizeof(struct kvm_sregs), true, errp) ||
        !load_simple(v, r, TAG_REGS, KVM_SET_REGS, "KVM_SET_REGS",
                     sizeof(struct kvm_regs), true, errp) ||
        !load_xsave(v, r, errp)) {
        return false;
    }
    if (rf_guest_state_find(r, TAG_XCRS) && !vm->have_xcrs) {
        rf_error_set(errp, RF_ERR_MISMATCH, "KVM state of vCPU %u: has "
                     "XCRs but this host's KVM has no KVM_CAP_XCRS",
                     v->index);
        return false;
    }
    if (!load_simple(v, r, TAG_XCRS, KVM_SET_XCRS, "KVM_SET_XCRS",
                     sizeof(struct kvm_xcrs), false, errp) ||
        !load_msrs(v, r, &vm->msr_skipped, &vm->msr_first_skipped, errp) ||
        !load_simple(v, r, TAG_MP_STATE, KVM_SET_MP_STATE,
                     "KVM_SET_MP_STATE", sizeof(struct kvm_mp_state), false,
                     errp) ||
        !load_simple(v, r, TAG_EVENTS, KVM_SET_VCPU_EVENTS,
                     "KVM_SET_VCPU_EVENTS", sizeof(struct kvm_vcpu_events),
                     true, errp) ||
        !load_simple(v, r, TAG_DEBUGREGS, KVM_SET_DEBUGREGS,
                     "KVM_SET_DEBUGREGS", sizeof(struct kvm_debugregs),
                     false, errp)) {
        return false;
    }
    return true;
}

static bool load_vm(KvmGuest *vm, const RfGuestVcpuRecords *r,
                    RfError **errp)
{
    static const uint32_t known[] = { TAG_VM_CLOCK, TAG_VM_IRQCHIP };
    if (!check_tags(r, known, 2, "the VM", errp)) {
        return false;
    }
    const RfGuestRecord *irq = rf_guest_state_find(r, TAG_VM_IRQCHIP);
    uint32_t chip = 0;
    if (irq && irq->len != 4) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "KVM state of the VM: irqchip "
                     "record is %u bytes, expected 4", irq->len);
        return false;
    }
    if (irq) {
        memcpy(&chip, irq->data, 4);
    }
    if (chip != 0) {
        rf_error_set(errp, RF_ERR_MISMATCH, "KVM state of the VM: irqchip "
                     "mode %u, but this back end supports only 0 (none)",
                     chip);
        return false;
    }
    const RfGuestRecord *clk = rf_guest_state_find(r, TAG_VM_CLOCK);
    if (clk) {
        struct kvm_clock_data cd;
        if (clk->len != sizeof(cd)) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "KVM state of the VM: clock "
                         "record is %u bytes, expected %zu", clk->len,
                         sizeof(cd));
            return false;
        }
        memcpy(&cd, clk->data, sizeof(cd));
        struct kvm_clock_data set;
        memset(&set, 0, sizeof(set));
        set.clock = cd.clock; /* no KVM_CLOCK_REALTIME: hosts may differ */
        if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &set) < 0) {
            rf_error_set(errp, RF_ERR_IO, "KVM_SET_CLOCK: %s",
                         strerror(errno));
            return false;
        }
    }
    return true;
}

/* Checks that the parameter block that came with RAM matches the plan in
 * the state: if not, RAM and state are from different guests. */
static bool check_params(KvmVcpu *v, RfError **errp)
{
    volatile GuestParams *gp = (volatile GuestParams *)
        (v->vm->mem.host + PARAM_GPA + v->index * PARAM_SIZE);
    uint32_t first = (uint32_t)(v->plan.first_page * RF_PAGE_SIZE);
    uint32_t last = v->plan.idle ? first
                                 : (uint32_t)((v->plan.end_page - 1) *
                                              RF_PAGE_SIZE);
    if (gp->mode != (v->plan.idle ? 1u : 0u) || gp->first != first ||
        gp->last != last) {
        rf_error_set(errp, RF_ERR_MISMATCH, "KVM guest: vCPU %u's parameter "
                     "block in guest RAM (mode %u, pages 0x%x-0x%x) does not "
                     "match the state (mode %u, pages 0x%x-0x%x): RAM and "
                     "state come from different guests", v->index,
                     (unsigned)gp->mode, (unsigned)gp->first,
                     (unsigned)gp->last, v->plan.idle ? 1u : 0u, first,
                     last);
        return false;
    }
    v->params = gp;
    v->chunk = gp->chunk;
    return true;
}

static bool kvm_load(void *be, const RfGuestVcpuRecords *vm_recs,
                     const RfGuestVcpuPlan *plan,
                     const RfGuestVcpuRecords *recs, unsigned n,
                     uint64_t dirty_rate, RfError **errp)
{
    KvmGuest *vm = be;
    if (vm->n) {
        rf_error_set(errp, RF_ERR_GENERIC, "KVM guest: vCPUs exist "
                     "already; load the state only once");
        return false;
    }
    if (n < 1 || n > RF_GUEST_MAX_VCPUS) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "KVM guest: %u vCPUs in the "
                     "state, 1-%u allowed", n, RF_GUEST_MAX_VCPUS);
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        if (plan[i].end_page * RF_PAGE_SIZE > MAX_32BIT_RAM) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "KVM guest: vCPU %u's range "
                         "ends past 4 GiB", i);
            return false;
        }
        vm->vcpu[i].plan = plan[i];
        vm->vcpu[i].index = i;
        vm->vcpu[i].vm = vm;
        if (!check_params(&vm->vcpu[i], errp)) {
            return false;
        }
    }
    if (!load_vm(vm, vm_recs, errp)) {
        return false;
    }
    vm->n = n;
    count_active(vm, dirty_rate);
    for (unsigned i = 0; i < n; i++) {
        KvmVcpu *v = &vm->vcpu[i];
        if (!vcpu_create(vm, i, errp) || !load_vcpu(v, &recs[i], errp)) {
            return false;
        }
        v->params = (volatile GuestParams *)
            (vm->mem.host + PARAM_GPA + i * PARAM_SIZE);
        v->chunk = v->params->chunk;
        atomic_store(&v->passes, plan[i].passes);
        v->last_out = (uint32_t)plan[i].passes;
    }
    vm->paused = true;
    return start_threads(vm, errp);
}

static const char *kvm_describe(void *be)
{
    KvmGuest *vm = be;
    const char *trk = vm->dirty ? rf_kvm_dirty_describe(vm->dirty)
                      : vm->manual_cap ? "dirty log with manual protect"
                                       : "dirty log";
    int len = snprintf(vm->detail, sizeof(vm->detail), "%s", trk);
    pthread_mutex_lock(&vm->lock);
    if (vm->failure[0] && len >= 0 && (size_t)len < sizeof(vm->detail)) {
        len += snprintf(vm->detail + len, sizeof(vm->detail) - (size_t)len,
                        "; %s", vm->failure);
    }
    pthread_mutex_unlock(&vm->lock);
    if (vm->msr_skipped && len >= 0 && (size_t)len < sizeof(vm->detail)) {
        snprintf(vm->detail + len, sizeof(vm->detail) - (size_t)len,
                 "; %u MSRs not restorable (first 0x%x)", vm->msr_skipped,
                 vm->msr_first_skipped);
    }
    return vm->detail;
}

static void kvm_destroy(void *be)
{
    KvmGuest *vm = be;
    if (!vm) {
        return;
    }
    pthread_mutex_lock(&vm->lock);
    vm->quit = true;
    kick_all_locked(vm);
    pthread_mutex_unlock(&vm->lock);
    for (unsigned i = 0; i < RF_GUEST_MAX_VCPUS; i++) {
        KvmVcpu *v = &vm->vcpu[i];
        if (v->thread_started) {
            pthread_join(v->thread, NULL);
        }
        if (v->run) {
            munmap(v->run, vm->run_size);
        }
        if (v->has_fd) {
            close(v->fd);
        }
    }
    rf_kvm_dirty_free(vm->dirty);
    if (vm->vm_fd >= 0) {
        close(vm->vm_fd);
    }
    if (vm->kvm_fd >= 0) {
        close(vm->kvm_fd);
    }
    free(vm->cpuid);
    free(vm->msr_index);
    pthread_cond_destroy(&vm->cond);
    pthread_mutex_destroy(&vm->lock);
    free(vm);
}

const RfGuestBackendOps rf_guest_kvm_ops = {
    .name = "kvm",
    .kind = RF_GUEST_KVM,
    .create = kvm_create,
    .start = kvm_start,
    .load = kvm_load,
    .pause = kvm_pause,
    .resume = kvm_resume,
    .throttle = kvm_throttle,
    .passes = kvm_passes,
    .vcpu_passes = kvm_vcpu_passes,
    .dirty_start = kvm_dirty_start,
    .dirty_sync = kvm_dirty_sync,
    .dirty_stop = kvm_dirty_stop,
    .save_vm = kvm_save_vm,
    .save_vcpu = kvm_save_vcpu,
    .describe = kvm_describe,
    .destroy = kvm_destroy,
};

#else /* not x86-64 Linux */

static void *kvm_create(const RfGuestMem *mem, RfError **errp)
{
    (void)mem;
    rf_error_set(errp, RF_ERR_PARAM, "the KVM guest is built only for "
                 "x86-64 Linux");
    return NULL;
}

/* Never reached: create always fails. */
const RfGuestBackendOps rf_guest_kvm_ops = {
    .name = "kvm",
    .kind = RF_GUEST_KVM,
    .create = kvm_create,
};

#endif
