/*
 * ramflow - what the files of the test VM's shared part share (private to
 * guest*.c): the guest object and the functions one file calls in
 * another.  The back ends see only guest_backend.h.
 */
#ifndef RF_TESTVM_GUEST_INTERNAL_H
#define RF_TESTVM_GUEST_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "ram/dirty_bitmap.h"
#include "ram/ram.h"
#include "testvm/guest.h"
#include "testvm/guest_backend.h"

typedef struct GuestSource {
    RfRamSource base; /* first: the ops table */
    RfGuest *g;
    RfDirtyBitmap marks; /* rf_ram_source_mark_dirty() */
    bool tracking;
} GuestSource;

typedef struct GuestSink {
    RfRamSink base; /* first: the ops table */
    RfGuest *g;
    struct RfPrefaultJob *prefault; /* running, else NULL */
    bool prefaulted;                /* a pre-fault ran from prepare on */
} GuestSink;

struct RfGuest {
    const RfGuestBackendOps *ops;
    void *be;
    RfGuestKind want;           /* incoming: the kind asked for */
    bool incoming;
    uint64_t max_ram;           /* incoming: the sink's limit, 0 = none */
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

/* ---- guest_mem.c: guest RAM ----------------------------------------- */

bool guest_mem_create(RfGuest *g, uint64_t size, RfError **errp);
void guest_mem_free(RfGuest *g);
void guest_pattern_reset(RfGuest *g);

/* ---- guest_ram.c: the RAM source and sink over guest RAM ------------ */

extern const RfRamSourceOps guest_source_ops;
extern const RfRamSinkOps guest_sink_ops;
/* Ends the sink's pre-fault, if one runs (see guest_ram.c).  @return
 * true if one ran from prepare on. */
bool guest_sink_wait_ready(RfRamSink *s);

/* ---- guest.c --------------------------------------------------------- */

/* Picks and creates the incoming back end (AUTO: kvm, else thread). */
bool guest_backend_create(RfGuest *g, RfGuestKind kind, RfError **errp);

#endif /* RF_TESTVM_GUEST_INTERNAL_H */
