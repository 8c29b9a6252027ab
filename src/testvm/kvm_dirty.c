/*
 * ramflow - dirty-page tracking over KVM's dirty log (kvm_dirty.h).
 *
 * With manual protect (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2),
 * KVM_GET_DIRTY_LOG only copies the slot's bitmap out; the pages stay
 * writable until KVM_CLEAR_DIRTY_LOG re-protects the ones we read.  A page
 * written after the GET but before the CLEAR had its bit set already (we
 * read it, it was dirty and writable), so clearing it loses nothing: the
 * caller sends the page after this sync returns, which includes that
 * write.  A page first written after the GET keeps its bit in KVM for the
 * next sync, since we clear only the bits we read.
 *
 * Without manual protect, KVM_GET_DIRTY_LOG itself clears and re-protects
 * atomically with the copy.
 *
 * No allocation per sync: the tracker keeps one bitmap buffer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "ramflow/ramflow.h"
#include "testvm/kvm_dirty.h"
#include "util/bitmap.h"

struct RfKvmDirty {
    int vm_fd;
    uint32_t slot;
    uint64_t pages;
    uint64_t nwords;
    bool manual;        /* manual protect is on: GET, then CLEAR */
    uint64_t *buf;      /* KVM's bitmap for the slot, nwords words */
};

/* Turns manual protect on if the kernel has it.  Without
 * KVM_DIRTY_LOG_INITIALLY_SET: the slot exists already, so its pages are
 * protected as usual and the first GET reports real writes. */
static bool enable_manual(int vm_fd)
{
#if defined(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) && defined(KVM_CLEAR_DIRTY_LOG)
    int r = ioctl(vm_fd, KVM_CHECK_EXTENSION,
                  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
    if (r <= 0 || !(r & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)) {
        return false;
    }
    struct kvm_enable_cap cap = {
        .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
        .args = { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE },
    };
    return ioctl(vm_fd, KVM_ENABLE_CAP, &cap) == 0;
#else
    (void)vm_fd;
    return false;
#endif
}

/* Copies KVM's bitmap of the slot into d->buf. */
static bool get_log(RfKvmDirty *d, RfError **errp)
{
    struct kvm_dirty_log log = { .slot = d->slot };
    log.dirty_bitmap = d->buf;
    if (ioctl(d->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) {
        rf_error_set(errp, RF_ERR_IO, "KVM_GET_DIRTY_LOG on slot %u: %s",
                     d->slot, strerror(errno));
        return false;
    }
    return true;
}

/* Re-protects the pages set in d->buf (manual protect only). */
static bool clear_log(RfKvmDirty *d, RfError **errp)
{
#ifdef KVM_CLEAR_DIRTY_LOG
    /* num_pages is 32 bits: go in steps that are a multiple of 64. */
    const uint64_t step = 1ull << 31;
    for (uint64_t first = 0; first < d->pages; first += step) {
        uint64_t n = d->pages - first < step ? d->pages - first : step;
        struct kvm_clear_dirty_log c = {
            .slot = d->slot,
            .num_pages = (uint32_t)n,
            .first_page = first,
        };
        c.dirty_bitmap = d->buf + first / 64;
        if (ioctl(d->vm_fd, KVM_CLEAR_DIRTY_LOG, &c) < 0) {
            rf_error_set(errp, RF_ERR_IO, "KVM_CLEAR_DIRTY_LOG on slot %u "
                         "(pages %llu-%llu): %s", d->slot,
                         (unsigned long long)first,
                         (unsigned long long)(first + n - 1),
                         strerror(errno));
            return false;
        }
    }
    return true;
#else
    (void)d;
    (void)errp;
    return true;
#endif
}

/* One GET (+ CLEAR): leaves the pages read in d->buf. */
static bool take(RfKvmDirty *d, RfError **errp)
{
    if (!get_log(d, errp)) {
        return false;
    }
    if (d->manual) {
        bool any = false;
        for (uint64_t i = 0; i < d->nwords && !any; i++) {
            any = d->buf[i] != 0;
        }
        if (any && !clear_log(d, errp)) {
            return false;
        }
    }
    return true;
}

RfKvmDirty *rf_kvm_dirty_new(int vm_fd, uint32_t slot, uint64_t size,
                             RfError **errp)
{
    if (size == 0 || size % RF_PAGE_SIZE) {
        rf_error_set(errp, RF_ERR_PARAM, "KVM dirty log: slot %u size %llu "
                     "bytes is not a non-zero multiple of %u", slot,
                     (unsigned long long)size, RF_PAGE_SIZE);
        return NULL;
    }
    RfKvmDirty *d = calloc(1, sizeof(*d));
    if (!d) {
        rf_error_set(errp, RF_ERR_GENERIC, "KVM dirty log: out of memory");
        return NULL;
    }
    d->vm_fd = vm_fd;
    d->slot = slot;
    d->pages = size / RF_PAGE_SIZE;
    d->nwords = rf_bitmap_words(d->pages);
    d->buf = calloc(d->nwords, sizeof(uint64_t));
    if (!d->buf) {
        rf_error_set(errp, RF_ERR_GENERIC, "KVM dirty log: out of memory "
                     "for a %llu-page bitmap",
                     (unsigned long long)d->pages);
        free(d);
        return NULL;
    }
    d->manual = enable_manual(vm_fd);
    /* Checks now that the slot logs at all, and starts from clean. */
    if (!take(d, errp)) {
        rf_kvm_dirty_free(d);
        return NULL;
    }
    return d;
}

bool rf_kvm_dirty_reset(RfKvmDirty *d, RfError **errp)
{
    return take(d, errp);
}

bool rf_kvm_dirty_sync(RfKvmDirty *d, uint64_t *bitmap, uint64_t *pages,
                       RfError **errp)
{
    if (!take(d, errp)) {
        return false;
    }
    uint64_t count = 0;
    for (uint64_t i = 0; i < d->nwords; i++) {
        uint64_t w = d->buf[i];
        if (w) {
            bitmap[i] |= w;
            count += (uint64_t)__builtin_popcountll(w);
        }
    }
    if (pages) {
        *pages = count;
    }
    return true;
}

const char *rf_kvm_dirty_describe(const RfKvmDirty *d)
{
    return d->manual ? "dirty log with manual protect" : "dirty log";
}

void rf_kvm_dirty_free(RfKvmDirty *d)
{
    if (d) {
        free(d->buf);
        free(d);
    }
}
