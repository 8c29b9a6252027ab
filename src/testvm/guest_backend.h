/*
 * ramflow - the test VM's back-end interface (private to src/testvm).
 *
 * guest.c is the dispatcher behind guest.h ("guest.c" below stands for it
 * and the files it lists: guest_mem.c, guest_ram.c, guest_state.c,
 * guest_check.c).  It owns everything the two back ends share:
 *   - guest RAM: a memfd of cfg->mem_size bytes mapped MAP_SHARED once
 *     (RfGuestMem), filled with imagegen or the fill files, then byte 0 of
 *     every pattern page set to 0 and the reserved pages zeroed
 *     (guest_mem.c);
 *   - the split of pages between vCPUs (RfGuestVcpuPlan);
 *   - the RAM source / sink objects over that memory (one block "pc.ram");
 *     the source's mark_dirty bitmap (host-side writes) is kept and ORed in
 *     by guest.c, the guest's own writes come from the back end's
 *     dirty_sync (guest_ram.c);
 *   - the state blob framing (header, per-vCPU header, record list) and
 *     its strict parsing: a back end only writes and reads its own records
 *     (guest_state.c);
 *   - the pattern checker (it calls pause first; guest_check.c), the
 *     description string, the AUTO fallback (kvm -> thread) and its
 *     reason.
 * A back end only does: the VM object around the memory, vCPUs, pausing,
 * throttling, the dirty-rate limit, dirty tracking and vCPU state.
 *
 * How guest.c drives a back end (all calls from one thread, the caller of
 * the rf_guest_* functions, except passes() which may come from any
 * thread):
 *
 *   source:       be = ops->create(&mem, errp)
 *                 ops->start(be, plan, n, dirty_rate, errp)    vCPUs run
 *                 ops->dirty_start / dirty_sync... / dirty_stop
 *                 ops->pause(be) ... ops->save_vm(be, out, errp),
 *                 then ops->save_vcpu(be, i, out, errp) for each vCPU
 *                 ops->resume(be)   (after a failed migration)
 *                 ops->destroy(be)
 *   destination:  be = ops->create(&mem, errp)    at sink prepare()
 *                 ops->load(be, vm_recs, plan, recs, n, dirty_rate,
 *                           errp)
 *                                                  vCPUs exist, paused
 *                 ops->resume(be)                  vCPUs run
 *                 ops->destroy(be)
 *
 * Rules for a back end:
 *   - create() must not write guest RAM outside the reserved pages
 *     [0, RF_GUEST_RESERVED_PAGES * 4096); the back end may keep anything
 *     it likes there (the KVM back end: code, GDT, per-vCPU parameters).
 *     The reserved pages are migrated like all RAM but not checked.
 *   - vCPU i writes only byte 0 of pages [plan[i].first_page,
 *     plan[i].end_page), in increasing order, wrapping to first_page after
 *     end_page - 1; after each full pass it adds 1 to its pass count.
 *     plan[i].idle: it writes nothing.  A pass interrupted by pause and
 *     continued after resume (or after load on the destination) must go on
 *     at the page where it stopped, so the checker sees at most one
 *     discontinuity per vCPU.
 *   - pause() returns only once no vCPU can write guest RAM any more (the
 *     writes are visible in mem->host when it returns); resume() undoes it.
 *     Both are idempotent.  start() and load() are told about nothing
 *     else: start() leaves the vCPUs running, load() leaves them paused.
 *   - throttle(pct): the vCPUs sleep pct percent (0-99) of their time; the
 *     dirty rate (pages/s over all vCPUs, 0 = unlimited) is a separate cap
 *     kept by the back end for the life of the guest.
 *   - dirty_sync(bitmap): OR the pages of "pc.ram" the vCPUs wrote since
 *     dirty_start or the previous sync into bitmap (bit i of word i/64 =
 *     page i, mem->size / 4096 bits) and clear them from the tracker.  A
 *     page written during the sync lands in this sync or the next.
 *   - save_vcpu(i, out): called while paused, once per vCPU in order;
 *     append the vCPU's records with rf_guest_state_put().  Tags are the
 *     back end's own (kvm: 0x01xx, thread: 0x02xx); guest.c stores them in
 *     order and gives them back to load() unchanged (length-checked only
 *     against the blob).  The back end must check each record's length
 *     and values itself and fail with a clear error (never crash) on bad
 *     input: the blob came off the network.
 *   - save_vm(out): VM-wide records (kvm: clock, "no irqchip"), written
 *     before the vCPUs' records; may be NULL (no VM records).
 *   - load(vm_recs, plan, recs, n): vm_recs are the records save_vm
 *     wrote (n = 0 if none); plan[i].passes is the pass count the source
 *     had; recs[i] are the records save_vcpu(i) wrote on the source.
 *     guest.c has already checked that the blob names this back end, that
 *     its RAM size matches and that the plan is valid (ranges inside RAM,
 *     past the reserved pages, not overlapping).
 *   - passes(be): total finished passes over all vCPUs (including the
 *     counts load() started from); vcpu_passes(be, i): vCPU i's alone
 *     (guest.c writes it into the blob as plan[i].passes).  Thread-safe,
 *     cheap.
 *   - describe(be): a short static-lifetime-while-be-lives string about
 *     the tracker, e.g. "dirty log with manual protect" or "userfaultfd
 *     async WP + PAGEMAP_SCAN".
 *   - errors: rf_error_set(errp, kind, ...) naming what failed, as
 *     elsewhere; never print.
 *
 * Each back end exports one table; guest.c refers to both (the thread back
 * end is always built, the KVM back end on x86-64 Linux only).
 */
#ifndef RF_TESTVM_GUEST_BACKEND_H
#define RF_TESTVM_GUEST_BACKEND_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ramflow/error.h"
#include "testvm/guest.h"

/* Guest RAM, created and owned by guest.c; valid until destroy(). */
typedef struct RfGuestMem {
    int fd;          /* the memfd (the back end may mmap it again) */
    uint8_t *host;   /* MAP_SHARED mapping of all of it, RW */
    uint64_t size;   /* bytes, multiple of 4096 */
} RfGuestMem;

/* What one vCPU does.  first_page == end_page when idle. */
typedef struct RfGuestVcpuPlan {
    uint64_t first_page;  /* page index in "pc.ram", >= reserved pages */
    uint64_t end_page;    /* one past its last page */
    bool idle;            /* halts instead of writing */
    uint64_t passes;      /* load(): the source's count; start(): 0 */
} RfGuestVcpuPlan;

/* The growing blob save_vcpu() appends to (guest.c owns it). */
typedef struct RfGuestStateOut RfGuestStateOut;

/* Appends one record (tag, len bytes of data) for the current vCPU.
 * @return false with an error if out of memory or len > 16 MiB. */
bool rf_guest_state_put(RfGuestStateOut *out, uint32_t tag,
                        const void *data, size_t len, RfError **errp);

/* One record as parsed from a blob; data points into the caller's blob
 * and is not aligned. */
typedef struct RfGuestRecord {
    uint32_t tag;
    uint32_t len;
    const uint8_t *data;
} RfGuestRecord;

/* The records of one vCPU (or of the VM), in the order save_vcpu()
 * (save_vm()) wrote them. */
typedef struct RfGuestVcpuRecords {
    unsigned n;
    const RfGuestRecord *rec;
} RfGuestVcpuRecords;

/* @return the first record with `tag`, or NULL. */
const RfGuestRecord *rf_guest_state_find(const RfGuestVcpuRecords *v,
                                         uint32_t tag);

typedef struct RfGuestBackendOps {
    const char *name;   /* "kvm" / "thread": written into the blob */
    RfGuestKind kind;
    void *(*create)(const RfGuestMem *mem, RfError **errp);
    bool (*start)(void *be, const RfGuestVcpuPlan *plan, unsigned n,
                  uint64_t dirty_rate, RfError **errp);
    bool (*load)(void *be, const RfGuestVcpuRecords *vm_recs,
                 const RfGuestVcpuPlan *plan,
                 const RfGuestVcpuRecords *recs, unsigned n,
                 uint64_t dirty_rate, RfError **errp);
    void (*pause)(void *be);
    void (*resume)(void *be);
    void (*throttle)(void *be, unsigned pct);
    uint64_t (*passes)(void *be);
    uint64_t (*vcpu_passes)(void *be, unsigned i);
    bool (*dirty_start)(void *be, RfError **errp);
    bool (*dirty_sync)(void *be, uint64_t *bitmap, RfError **errp);
    void (*dirty_stop)(void *be);
    bool (*save_vm)(void *be, RfGuestStateOut *out, RfError **errp);
    bool (*save_vcpu)(void *be, unsigned i, RfGuestStateOut *out,
                      RfError **errp);
    const char *(*describe)(void *be);
    void (*destroy)(void *be);
} RfGuestBackendOps;

/* For the back ends' vCPU threads (vcpu_wait.c): waits on cond, which
 * must use CLOCK_MONOTONIC, with lock held, until `until` (rf_now()
 * seconds) or a wake-up.  @return true if the wait ran to its end. */
bool rf_guest_wait_until_locked(pthread_cond_t *cond, pthread_mutex_t *lock,
                                double until);

extern const RfGuestBackendOps rf_guest_thread_ops;  /* thread_guest.c */
extern const RfGuestBackendOps rf_guest_kvm_ops;     /* kvm_guest.c, or
                                                        kvm_unsupported.c
                                                        off x86-64 Linux */

#endif /* RF_TESTVM_GUEST_BACKEND_H */
