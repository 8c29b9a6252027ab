/*
 * ramflow - the test VM's KVM back end: the VM itself.  Opens /dev/kvm,
 * reads the host's CPUID, MSR list and capabilities, creates the VM with
 * guest RAM as memslot 0 at guest physical 0 (KVM_MEM_LOG_DIRTY_PAGES),
 * reads that slot's dirty log (kvm_dirty.c) for the dirty hooks, and tears
 * it all down.
 *
 * Host writes into guest RAM (the parameter block's chunk field) are not
 * seen by KVM's dirty log, so the back end reports the parameter page
 * dirty itself at the next sync after such a write.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "testvm/kvm_internal.h"
#include "util/bitmap.h"

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

void *kvm_create(const RfGuestMem *mem, RfError **errp)
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
    kvm_kick_init();
    return vm;

fail:
    kvm_destroy(vm);
    return NULL;
}

void kvm_destroy(void *be)
{
    KvmGuest *vm = be;
    if (!vm) {
        return;
    }
    pthread_mutex_lock(&vm->lock);
    vm->quit = true;
    kvm_kick_all_locked(vm);
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

/* ---- dirty tracking ------------------------------------------------- */

bool kvm_dirty_start(void *be, RfError **errp)
{
    KvmGuest *vm = be;
    atomic_store(&vm->params_dirty, false);
    if (vm->dirty) {
        return rf_kvm_dirty_reset(vm->dirty, errp);
    }
    vm->dirty = rf_kvm_dirty_new(vm->vm_fd, 0, vm->mem.size, errp);
    return vm->dirty != NULL;
}

bool kvm_dirty_sync(void *be, uint64_t *bitmap, RfError **errp)
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

void kvm_dirty_stop(void *be)
{
    KvmGuest *vm = be;
    rf_kvm_dirty_free(vm->dirty);
    vm->dirty = NULL;
}
