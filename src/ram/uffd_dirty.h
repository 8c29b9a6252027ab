/*
 * ramflow - dirty-page tracking of any memory region of this process with
 * userfaultfd write protection.
 *
 * Two modes, chosen at rf_uffd_track() time:
 *   - async (Linux 6.7+): the region is write-protected with
 *     UFFD_FEATURE_WP_ASYNC, so the kernel resolves each first write by
 *     itself (no thread, no event); a sync reads the written pages through
 *     the PAGEMAP_SCAN ioctl on /proc/self/pagemap, which write-protects
 *     them again in the same page-table walk;
 *   - sync (any kernel with userfaultfd WP, 5.7+ for anonymous memory,
 *     5.19+ for shmem/memfd): a handler thread reads the write-protect
 *     fault events, un-protects the page (which lets the writer go on) and
 *     marks it in a bitmap; a sync takes the bitmap and re-protects the
 *     pages it reports.
 * Either way, a page written before a sync returns is in that sync or a
 * later one, and its contents read after the sync returns include every
 * write reported so far: a migration may copy a page after the sync that
 * reported it.
 *
 * The region: page-aligned and mapped.  Async mode takes any memory
 * (anonymous, shared memory, hugetlbfs, even a regular file's mapping);
 * sync mode only anonymous, shared memory (memfd, shm,
 * MAP_SHARED|MAP_ANONYMOUS) and hugetlbfs.  One tracker per region at a
 * time.  The region stays mapped while tracked.  Where the process may
 * only open a userfaultfd for user-mode faults (non-root with
 * vm.unprivileged_userfaultfd=0), sync mode makes the kernel's own writes
 * to a protected page (read(2) into it...) fail with EFAULT.
 *
 * Forcing the fallback: force_sync, or the environment variable
 * RAMFLOW_UFFD_SYNC=1 (for tests and for comparing the modes; any other
 * value but empty and "0" counts as 1).
 */
#ifndef RF_RAM_UFFD_DIRTY_H
#define RF_RAM_UFFD_DIRTY_H

#include <stdbool.h>
#include <stdint.h>

#include "ramflow/error.h"

typedef struct RfUffdTracker RfUffdTracker;

/* Descriptions rf_uffd_describe() returns. */
#define RF_UFFD_DESC_ASYNC "userfaultfd async WP + PAGEMAP_SCAN"
#define RF_UFFD_DESC_SYNC "userfaultfd synchronous WP faults"

/* Flags of rf_uffd_track_flags(). */
#define RF_UFFD_FORCE_SYNC 1u         /* synchronous faults even if async
                                         works */
#define RF_UFFD_NO_WP_UNPOPULATED 2u  /* test hook: behave as on a kernel
                                         without UFFD_FEATURE_WP_UNPOPULATED
                                         (sync mode pre-populates the
                                         region instead) */

/* Starts tracking writes to [addr, addr + len) (both multiples of 4096,
 * len > 0).  Pages written from now on are reported by rf_uffd_sync().
 * @return NULL with an error saying what the kernel refused. */
RfUffdTracker *rf_uffd_track(void *addr, uint64_t len, bool force_sync,
                             RfError **errp);
/* As rf_uffd_track with RF_UFFD_* flags; the environment variable is read
 * here too. */
RfUffdTracker *rf_uffd_track_flags(void *addr, uint64_t len, unsigned flags,
                                   RfError **errp);

/* ORs the pages written since rf_uffd_track() or the previous sync into
 * bitmap (bit i of word i / 64 = page i of the region, len / 4096 bits)
 * and write-protects them again.  Not thread-safe against itself (one
 * migration thread syncs); writers may run concurrently.
 * @return false with an error if the kernel refused (the tracker is then
 * unusable: copy everything and stop it). */
bool rf_uffd_sync(RfUffdTracker *t, uint64_t *bitmap, RfError **errp);

/* RF_UFFD_DESC_ASYNC or RF_UFFD_DESC_SYNC. */
const char *rf_uffd_describe(RfUffdTracker *t);

/* Which mode rf_uffd_track() would use right now, without tracking
 * anything: RF_UFFD_DESC_ASYNC or RF_UFFD_DESC_SYNC, or NULL with an error
 * saying why userfaultfd write protection is unavailable.  (The region
 * itself may still be refused by rf_uffd_track.) */
const char *rf_uffd_probe(bool force_sync, RfError **errp);

/* Stops tracking: removes the write protection (writers blocked in a
 * fault go on), joins the handler thread and frees t.  NULL is allowed. */
void rf_uffd_stop(RfUffdTracker *t);

#endif /* RF_RAM_UFFD_DIRTY_H */
