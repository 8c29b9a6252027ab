/*
 * ramflow - the test VM's KVM back end: vCPU and VM state.  Saves, while
 * paused, every register, MSR and event KVM exposes for each vCPU (and
 * the VM's clock) as records of the state blob (guest_backend.h), and on
 * the destination creates the vCPUs from those records, checking each
 * one's length and values first: the blob came off the network.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "testvm/kvm_internal.h"

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

/* ---- save (source, paused) ----------------------------------------- */

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


bool kvm_save_vcpu(void *be, unsigned i, RfGuestStateOut *out,
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

bool kvm_save_vm(void *be, RfGuestStateOut *out, RfError **errp)
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

/* ---- load (destination) --------------------------------------------- */

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

/* @return the count of a record that is a `head`-byte header starting
 * with a u32 count, then that many `entry`-byte entries (at most max); or
 * UINT32_MAX if its length says otherwise. */
static uint32_t counted(const RfGuestRecord *rec, size_t head, size_t entry,
                        uint32_t max)
{
    uint32_t n;
    if (rec->len < head) {
        return UINT32_MAX;
    }
    memcpy(&n, rec->data, 4);
    return n <= max && rec->len == head + (size_t)n * entry ? n : UINT32_MAX;
}

/* The fixed-size records of a vCPU. */
static const struct {
    uint32_t tag;
    const char *what;
    size_t len;
    bool required;
} fixed_recs[] = {
    {TAG_SREGS, "KVM_SET_SREGS", sizeof(struct kvm_sregs), true},
    {TAG_REGS, "KVM_SET_REGS", sizeof(struct kvm_regs), true},
    {TAG_XCRS, "KVM_SET_XCRS", sizeof(struct kvm_xcrs), false},
    {TAG_MP_STATE, "KVM_SET_MP_STATE", sizeof(struct kvm_mp_state), false},
    {TAG_EVENTS, "KVM_SET_VCPU_EVENTS", sizeof(struct kvm_vcpu_events),
     true},
    {TAG_DEBUGREGS, "KVM_SET_DEBUGREGS", sizeof(struct kvm_debugregs),
     false},
};

/* The variable-size records of vCPU i: CPUID and MSRs a count and that
 * many entries, XSAVE as big as this host takes, else FPU. */
static bool check_vcpu_sized(const KvmGuest *vm, unsigned i,
                             const RfGuestVcpuRecords *r, RfError **errp)
{
    const RfGuestRecord *rec = need(r, TAG_CPUID, "CPUID", 0, true, i, errp);
    if (!rec) {
        return false;
    }
    if (counted(rec, sizeof(struct kvm_cpuid2),
                sizeof(struct kvm_cpuid_entry2), MAX_CPUID) == UINT32_MAX) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "KVM state of vCPU %u: CPUID "
                     "record of %u bytes is not a count and that many "
                     "entries (at most %u)", i, rec->len, MAX_CPUID);
        return false;
    }
    if (!(rec = need(r, TAG_MSRS, "MSRs", 0, true, i, errp))) {
        return false;
    }
    if (counted(rec, sizeof(struct kvm_msrs), sizeof(struct kvm_msr_entry),
                MAX_MSRS) == UINT32_MAX) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "KVM state of vCPU %u: MSR "
                     "record of %u bytes is not a count and that many "
                     "entries (at most %u)", i, rec->len, MAX_MSRS);
        return false;
    }
    if (!(rec = rf_guest_state_find(r, TAG_XSAVE))) {
        return need(r, TAG_FPU, "KVM_SET_FPU", sizeof(struct kvm_fpu), true,
                    i, errp) != NULL;
    }
    if (!vm->xsave_size) {
        rf_error_set(errp, RF_ERR_MISMATCH, "KVM state of vCPU %u: has "
                     "XSAVE state but this host's KVM has no XSAVE", i);
        return false;
    }
    if (rec->len < sizeof(struct kvm_xsave) ||
        rec->len > (uint32_t)vm->xsave_size) {
        rf_error_set(errp, RF_ERR_MISMATCH, "KVM state of vCPU %u: XSAVE "
                     "record is %u bytes; this host takes %zu-%d", i,
                     rec->len, sizeof(struct kvm_xsave), vm->xsave_size);
        return false;
    }
    return true;
}

/* Checks all of vCPU i's records (tags, presence, lengths, counts,
 * values this host's KVM must support) without an ioctl: every vCPU is
 * checked before the first is created, so a bad record of the last one
 * cannot leave the others half-loaded. */
static bool check_vcpu(const KvmGuest *vm, unsigned i,
                       const RfGuestVcpuRecords *r, RfError **errp)
{
    static const uint32_t known[] = {
        TAG_REGS, TAG_SREGS, TAG_XSAVE, TAG_FPU, TAG_XCRS, TAG_MSRS,
        TAG_EVENTS, TAG_DEBUGREGS, TAG_MP_STATE, TAG_CPUID, TAG_LAPIC,
    };
    char who[32];
    snprintf(who, sizeof(who), "vCPU %u", i);
    if (!check_tags(r, known, sizeof(known) / sizeof(known[0]), who,
                    errp)) {
        return false;
    }
    if (rf_guest_state_find(r, TAG_LAPIC)) {
        rf_error_set(errp, RF_ERR_MISMATCH, "KVM state of vCPU %u: has a "
                     "LAPIC record but this VM has no in-kernel irqchip", i);
        return false;
    }
    if (rf_guest_state_find(r, TAG_XSAVE) &&
        rf_guest_state_find(r, TAG_FPU)) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "KVM state of vCPU %u: has "
                     "both XSAVE and FPU records", i);
        return false;
    }
    if (rf_guest_state_find(r, TAG_XCRS) && !vm->have_xcrs) {
        rf_error_set(errp, RF_ERR_MISMATCH, "KVM state of vCPU %u: has "
                     "XCRs but this host's KVM has no KVM_CAP_XCRS", i);
        return false;
    }
    for (size_t k = 0; k < sizeof(fixed_recs) / sizeof(fixed_recs[0]); k++) {
        if (!need(r, fixed_recs[k].tag, fixed_recs[k].what,
                  fixed_recs[k].len, fixed_recs[k].required, i, errp) &&
            (fixed_recs[k].required ||
             rf_guest_state_find(r, fixed_recs[k].tag))) {
            return false;
        }
    }
    const RfGuestRecord *mp = rf_guest_state_find(r, TAG_MP_STATE);
    uint32_t mp_state = 0;
    if (mp) {
        memcpy(&mp_state, mp->data, 4);
    }
    /* This guest has no in-kernel LAPIC: its vCPUs run or halt. */
    if (mp_state != KVM_MP_STATE_RUNNABLE && mp_state != KVM_MP_STATE_HALTED) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "KVM state of vCPU %u: MP state "
                     "%u, expected %u (runnable) or %u (halted)", i,
                     mp_state, KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_HALTED);
        return false;
    }
    return check_vcpu_sized(vm, i, r, errp);
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
    uint32_t n = counted(rec, sizeof(struct kvm_msrs),
                         sizeof(struct kvm_msr_entry), MAX_MSRS);
    if (n == UINT32_MAX) {
        return false; /* check_vcpu() said why */
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
    if (counted(rec, sizeof(struct kvm_cpuid2),
                sizeof(struct kvm_cpuid_entry2), MAX_CPUID) == UINT32_MAX) {
        return false; /* check_vcpu() said why */
    }
    struct kvm_cpuid2 *c = malloc(rec->len);
    if (!c) {
        rf_error_set(errp, RF_ERR_GENERIC, "vCPU %u: out of memory",
                     v->index);
        return false;
    }
    memcpy(c, rec->data, rec->len);
    bool ok = kvm_set_cpuid(v, c, errp);
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
    if (rec->len < sizeof(struct kvm_xsave) ||
        rec->len > (uint32_t)vm->xsave_size) {
        return false; /* check_vcpu() said why */
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

/* Applies one vCPU's records, checked by check_vcpu(), in the order QEMU
 * does: CPUID, sregs, regs, XSAVE/FPU, XCRs, MSRs, MP state, events, debug
 * registers. */
static bool load_vcpu(KvmVcpu *v, const RfGuestVcpuRecords *r,
                      RfError **errp)
{
    KvmGuest *vm = v->vm;
    if (!load_cpuid(v, r, errp) ||
        !load_simple(v, r, TAG_SREGS, KVM_SET_SREGS, "KVM_SET_SREGS",
                     sizeof(struct kvm_sregs), true, errp) ||
        !load_simple(v, r, TAG_REGS, KVM_SET_REGS, "KVM_SET_REGS",
                     sizeof(struct kvm_regs), true, errp) ||
        !load_xsave(v, r, errp)) {
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

/* Checks the VM's records: known tags, no irqchip, a whole clock. */
static bool check_vm(const RfGuestVcpuRecords *r, RfError **errp)
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
    if (clk && clk->len != sizeof(struct kvm_clock_data)) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "KVM state of the VM: clock "
                     "record is %u bytes, expected %zu", clk->len,
                     sizeof(struct kvm_clock_data));
        return false;
    }
    return true;
}

/* Applies the VM's records, checked by check_vm(): the clock. */
static bool load_vm(KvmGuest *vm, const RfGuestVcpuRecords *r,
                    RfError **errp)
{
    const RfGuestRecord *clk = rf_guest_state_find(r, TAG_VM_CLOCK);
    if (clk) {
        struct kvm_clock_data cd;
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

bool kvm_load(void *be, const RfGuestVcpuRecords *vm_recs,
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
    /* The whole state is checked before the first thing is applied. */
    if (!check_vm(vm_recs, errp)) {
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        if (!check_vcpu(vm, i, &recs[i], errp)) {
            return false;
        }
    }
    if (!load_vm(vm, vm_recs, errp)) {
        return false;
    }
    vm->n = n;
    kvm_count_active(vm, dirty_rate);
    for (unsigned i = 0; i < n; i++) {
        KvmVcpu *v = &vm->vcpu[i];
        if (!kvm_vcpu_create(vm, i, errp) || !load_vcpu(v, &recs[i], errp)) {
            return false;
        }
        v->params = (volatile GuestParams *)
            (vm->mem.host + PARAM_GPA + i * PARAM_SIZE);
        v->chunk = v->params->chunk;
        atomic_store(&v->passes, plan[i].passes);
        v->last_out = (uint32_t)plan[i].passes;
    }
    vm->paused = true;
    return kvm_start_threads(vm, errp);
}
