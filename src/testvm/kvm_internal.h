/*
 * ramflow - what the files of the test VM's KVM back end share (private
 * to kvm_*.c): the guest memory layout, the VM and vCPU objects, and the
 * functions one file calls in another.  Built on x86-64 Linux only
 * (src/testvm/meson.build); elsewhere kvm_unsupported.c stands in.
 *
 * Reserved guest pages (RF_GUEST_RESERVED_PAGES):
 *   0x0000  GDT: null, flat 32-bit code (0x08), flat data (0x10)
 *   0x1000  the program (copied from .rodata)
 *   0x4000  per-vCPU parameter blocks, PARAM_SIZE bytes each
 */
#ifndef RF_TESTVM_KVM_INTERNAL_H
#define RF_TESTVM_KVM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "testvm/guest_backend.h"
#include "testvm/kvm_dirty.h"

/* From guest/pattern32.S. */
extern const uint8_t rf_guest_pattern32_start[];
extern const uint8_t rf_guest_pattern32_end[];

#define GDT_GPA 0x0000u
#define CODE_GPA 0x1000u
#define CODE_MAX 0x3000u
#define PARAM_GPA 0x4000u
#define PARAM_SIZE 32u
#define CHUNK_NEVER 0xffffffffu
#define MAX_MSRS 4096u
#define MAX_CPUID 512u
#define MAX_32BIT_RAM (1ull << 32)

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

/* ---- kvm_vm.c: the VM, its memory slot and its dirty log ------------ */

void *kvm_create(const RfGuestMem *mem, RfError **errp);
void kvm_destroy(void *be);
bool kvm_dirty_start(void *be, RfError **errp);
bool kvm_dirty_sync(void *be, uint64_t *bitmap, RfError **errp);
void kvm_dirty_stop(void *be);

/* ---- kvm_boot.c: vCPUs created, and started at the guest program ---- */

/* Creates vCPU i's fd and kvm_run mapping. */
bool kvm_vcpu_create(KvmGuest *vm, unsigned i, RfError **errp);
bool kvm_set_cpuid(KvmVcpu *v, struct kvm_cpuid2 *c, RfError **errp);
/* Sets the dirty-rate limit and counts the non-idle vCPUs of vm->n. */
void kvm_count_active(KvmGuest *vm, uint64_t dirty_rate);
bool kvm_start(void *be, const RfGuestVcpuPlan *plan, unsigned n,
               uint64_t dirty_rate, RfError **errp);

/* ---- kvm_vcpu_run.c: vCPU threads, run loop, pause and throttle ----- */

/* Installs the kick signal's handler, once per process. */
void kvm_kick_init(void);
/* Starts vCPU threads for vm->n vCPUs (they park if vm->paused). */
bool kvm_start_threads(KvmGuest *vm, RfError **errp);
/* Makes every vCPU thread leave KVM_RUN soon; vm->lock held. */
void kvm_kick_all_locked(KvmGuest *vm);
void kvm_pause(void *be);
void kvm_resume(void *be);
void kvm_throttle(void *be, unsigned pct);
uint64_t kvm_passes(void *be);
uint64_t kvm_vcpu_passes(void *be, unsigned i);

/* ---- kvm_vcpu_state.c: vCPU and VM state saved and loaded ----------- */

bool kvm_save_vcpu(void *be, unsigned i, RfGuestStateOut *out,
                   RfError **errp);
bool kvm_save_vm(void *be, RfGuestStateOut *out, RfError **errp);
bool kvm_load(void *be, const RfGuestVcpuRecords *vm_recs,
              const RfGuestVcpuPlan *plan, const RfGuestVcpuRecords *recs,
              unsigned n, uint64_t dirty_rate, RfError **errp);

#endif /* RF_TESTVM_KVM_INTERNAL_H */
