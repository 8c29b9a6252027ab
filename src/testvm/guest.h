/*
 * ramflow - the test VM: a tiny guest that keeps writing its memory.
 *
 * Two back ends behind one interface:
 *   - kvm:    a real KVM VM (guest RAM in a memfd registered with
 *             KVM_MEM_LOG_DIRTY_PAGES), vCPUs started in protected mode
 *             running src/testvm/guest/pattern32.S; dirty pages from
 *             KVM's dirty log (src/testvm/kvm_dirty.c);
 *   - thread: host threads writing the same pattern into ordinary shared
 *             memory, dirty pages tracked with userfaultfd write-protection
 *             (src/ram/uffd_dirty.c).  Used where /dev/kvm is missing or
 *             KVM_CREATE_VM fails, or when forced.
 *
 * The guest program: each vCPU owns a range of pages [first, last); it
 * loops forever over its range incrementing the first byte of every page
 * (QEMU's migration-test pattern), and after each full pass writes the pass
 * count to I/O port 0xf4 (thread back end: a counter).  After a migration
 * the checker requires, per vCPU, that the bytes across its range are equal
 * except for at most one place where a byte is exactly one less (mod 256)
 * than the one before (where the vCPU was stopped mid-pass).
 *
 * Memory layout of guest RAM (one block named "pc.ram"):
 *   page 0..15     : guest code, GDT, per-vCPU parameters (never written by
 *                    the pattern loop; excluded from the check)
 *   the rest       : split evenly between the vCPUs for the pattern, unless
 *                    idle.  A fill file (if any) is copied in first; the
 *                    pattern only changes byte 0 of each page.
 */
#ifndef RF_TESTVM_GUEST_H
#define RF_TESTVM_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ramflow/ramflow.h"

#define RF_GUEST_BLOCK_NAME "pc.ram"
#define RF_GUEST_RESERVED_PAGES 16u
#define RF_GUEST_MAX_VCPUS 64u

typedef enum {
    RF_GUEST_AUTO = 0,   /* kvm if it works, else thread */
    RF_GUEST_KVM,
    RF_GUEST_THREAD,
} RfGuestKind;

typedef struct RfGuestConfig {
    uint64_t mem_size;       /* bytes, multiple of 4096, >= 1 MiB */
    unsigned vcpus;          /* 1..RF_GUEST_MAX_VCPUS */
    RfGuestKind kind;
    bool idle;               /* vCPUs halt instead of writing */
    uint64_t dirty_rate;     /* pages/s over all vCPUs, 0 = unlimited */
    const char *fill_path;   /* file or folder of files repeated; NULL =
                                generated realistic mix (imagegen) */
    uint64_t seed;
} RfGuestConfig;

typedef struct RfGuest RfGuest;

/* Source side: creates the VM, fills its RAM, starts the vCPUs.  With
 * RF_GUEST_AUTO, falls back to the thread back end (and says why in
 * rf_guest_describe) if KVM is unavailable. */
RfGuest *rf_guest_start(const RfGuestConfig *cfg, RfError **errp);

/* Destination side: a guest whose RAM is created when the source's layout
 * arrives (through the sink), and whose vCPUs are created by
 * rf_guest_load_state.  kind: which back end to build (AUTO = kvm if it
 * works). */
RfGuest *rf_guest_new_incoming(RfGuestKind kind, RfError **errp);

/* Destination: the most guest RAM (bytes) the sink accepts from a
 * source's layout; 0 (the default) = no limit of its own.  Whatever the
 * limit, a layout bigger than MemAvailable (/proc/meminfo) less a reserve
 * is refused too, before any RAM is created.  Call before the migration
 * starts. */
void rf_guest_set_max_ram(RfGuest *g, uint64_t max_bytes);

/* The RAM source (source side) / sink (destination side) of this guest;
 * owned by the guest, valid until rf_guest_free. */
RfRamSource *rf_guest_ram_source(RfGuest *g);
RfRamSink *rf_guest_ram_sink(RfGuest *g);

/* Stops all vCPUs (returns once none runs guest code) / lets them go. */
void rf_guest_pause(RfGuest *g);
void rf_guest_resume(RfGuest *g);
/* Auto-converge: vCPUs spend `pct` percent (0-99) of their time asleep. */
void rf_guest_throttle(RfGuest *g, unsigned pct);

/* vCPU state while paused (source): a self-describing blob (see
 * docs/testvm.md) holding, per vCPU, everything KVM exposes.  The buffer is
 * malloc'd; the caller frees it. */
bool rf_guest_save_state(RfGuest *g, uint8_t **buf, size_t *len,
                         RfError **errp);
/* Destination: creates the vCPUs from the blob (paused). */
bool rf_guest_load_state(RfGuest *g, const uint8_t *buf, size_t len,
                         RfError **errp);

/* Pauses the guest and checks the pattern (at most one discontinuity per
 * vCPU, each exactly -1 mod 256).  Fills `summary` with a one-line result.
 * @return true if the pattern holds. */
bool rf_guest_check_pattern(RfGuest *g, char *summary, size_t cap,
                            RfError **errp);

/* Finished passes over all vCPUs (from the port writes / counters). */
uint64_t rf_guest_passes(RfGuest *g);
/* e.g. "KVM guest, 2 vCPUs, 1024 MiB; dirty log with manual protect" or
 * "thread guest (KVM_CREATE_VM failed: ...); userfaultfd async WP +
 * PAGEMAP_SCAN". */
const char *rf_guest_describe(RfGuest *g);
void rf_guest_free(RfGuest *g);

/* Hook adapters for RfMigrateOptions (opaque = the guest). */
void rf_guest_hook_pause(void *opaque);
void rf_guest_hook_resume(void *opaque);

#endif
