/*
 * ramflow - dirty-page tracking over KVM's dirty log.
 *
 * Reads the dirty bitmap of one memory slot of a KVM VM (registered with
 * KVM_MEM_LOG_DIRTY_PAGES by the caller) with KVM_GET_DIRTY_LOG.  Where
 * the kernel offers KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, the tracker turns it
 * on for the VM (it is VM-wide) and re-protects exactly the pages it read
 * with KVM_CLEAR_DIRTY_LOG; otherwise KVM_GET_DIRTY_LOG clears and
 * re-protects by itself.  Knows nothing about the test VM: it takes a VM
 * file descriptor, a slot id and the slot's size.
 *
 * All calls from one thread (the migration thread); the vCPUs may run
 * meanwhile.
 *
 * Part of the test VM, not of libramflow: only the test VM's KVM back end
 * uses it.  A VMM that reads its own KVM dirty log hands the pages to the
 * engine itself, as the test VM does through its RAM source.
 */
#ifndef RF_TESTVM_KVM_DIRTY_H
#define RF_TESTVM_KVM_DIRTY_H

#include <stdbool.h>
#include <stdint.h>

#include "ramflow/error.h"

typedef struct RfKvmDirty RfKvmDirty;

/* Starts tracking slot `slot` (size bytes, a multiple of 4096) of the VM
 * vm_fd (not owned).  @return NULL with an error if KVM refuses the
 * slot's dirty log (e.g. the slot has no KVM_MEM_LOG_DIRTY_PAGES). */
RfKvmDirty *rf_kvm_dirty_new(int vm_fd, uint32_t slot, uint64_t size,
                             RfError **errp);

/* Forgets every page written so far: the next sync reports the writes
 * from now on. */
bool rf_kvm_dirty_reset(RfKvmDirty *d, RfError **errp);

/* ORs the pages written since the previous sync (or reset) into bitmap
 * (bit i of word i/64 = page i, size/4096 bits) and re-protects them.  A
 * page written during the sync is reported by this sync or the next.
 * @param pages if not NULL, set to the number of pages KVM reported. */
bool rf_kvm_dirty_sync(RfKvmDirty *d, uint64_t *bitmap, uint64_t *pages,
                       RfError **errp);

/* "dirty log with manual protect" or "dirty log". */
const char *rf_kvm_dirty_describe(const RfKvmDirty *d);

/* Frees the tracker (the slot keeps logging; that is the caller's). */
void rf_kvm_dirty_free(RfKvmDirty *d);

#endif /* RF_TESTVM_KVM_DIRTY_H */
