/*
 * ramflow - the test VM's KVM back end (guest_backend.h): its ops table
 * and its description.
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
 * One file per job, sharing kvm_internal.h:
 *   kvm_vm.c          /dev/kvm, the VM, guest RAM as memslot 0, its dirty
 *                     log, teardown
 *   kvm_boot.c        vCPUs created and started at the guest program
 *   kvm_vcpu_run.c    vCPU threads: the KVM_RUN loop and its exits, pause,
 *                     throttle, the dirty-rate limit
 *   kvm_vcpu_state.c  vCPU and VM state saved to and loaded from the blob
 */
#include <pthread.h>
#include <stdio.h>

#include "testvm/kvm_internal.h"

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
