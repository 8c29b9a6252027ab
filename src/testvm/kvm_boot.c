/*
 * ramflow - the test VM's KVM back end: vCPUs created (fd, kvm_run
 * mapping, CPUID) and, on the source, started fresh: the GDT and the
 * program written into the reserved pages, each vCPU's parameter block
 * filled from its plan, and its registers set so that it starts directly
 * in 32-bit protected mode (flat segments, CR0.PE, no paging) at the
 * program of guest/pattern32.S.
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "testvm/kvm_internal.h"

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
bool kvm_vcpu_create(KvmGuest *vm, unsigned i, RfError **errp)
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

bool kvm_set_cpuid(KvmVcpu *v, struct kvm_cpuid2 *c, RfError **errp)
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

void kvm_count_active(KvmGuest *vm, uint64_t dirty_rate)
{
    vm->dirty_rate = dirty_rate;
    vm->active = 0;
    for (unsigned i = 0; i < vm->n; i++) {
        vm->active += !vm->vcpu[i].plan.idle;
    }
}

bool kvm_start(void *be, const RfGuestVcpuPlan *plan, unsigned n,
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
    kvm_count_active(vm, dirty_rate);
    for (unsigned i = 0; i < n; i++) {
        KvmVcpu *v = &vm->vcpu[i];
        if (!kvm_vcpu_create(vm, i, errp) ||
            !kvm_set_cpuid(v, vm->cpuid, errp)) {
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
    return kvm_start_threads(vm, errp);
}
