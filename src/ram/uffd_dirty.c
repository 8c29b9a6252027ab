/*
 * ramflow - userfaultfd write-protect dirty tracking (see uffd_dirty.h).
 *
 * Async mode: UFFD_FEATURE_WP_ASYNC makes the kernel resolve a write to a
 * protected page by clearing the page table entry's uffd-wp bit, with no
 * event.  PAGEMAP_SCAN with category PAGE_IS_WRITTEN (= uffd-wp clear)
 * lists those pages and, with PM_SCAN_WP_MATCHING, sets the bit again
 * under the same page-table lock, so a concurrent write either cleared the
 * bit before (reported now) or faults after (reported next time).
 *
 * Sync mode: every first write to a protected page stops the writer and
 * queues an event.  The handler sets the page's bit and only then
 * un-protects the page (which wakes the writer), so a write that has
 * completed always has its bit set: a sync after pausing the writers sees
 * every page they wrote.  A sync takes the bits and re-protects the pages
 * taken; the handler's mark + un-protect and the sync's take + re-protect
 * of the same pages are serialised by a mutex (taken per chunk of the
 * bitmap), else a sync could take the bit between the two steps of the
 * handler and leave the page writable with its bit clear.  Writes between
 * a sync's take and its re-protect are not recorded, but they happen
 * before the sync returns, so the caller's copy made afterwards contains
 * them.  A stale event (several writers faulted on one page) only makes
 * the page dirty twice.
 */
#include "ram/uffd_dirty.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ram/dirty_bitmap.h"

/* Constants of newer kernels than the build's headers (values from the
 * kernel's uapi: linux/userfaultfd.h, linux/fs.h). */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* PAGEMAP_SCAN (Linux 6.7): our own copies under other names, so that
 * newer headers defining the same structs do not clash. */
typedef struct RfPageRegion {
    uint64_t start, end, categories;
} RfPageRegion;

typedef struct RfPmScanArg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask;
    uint64_t return_mask;
} RfPmScanArg;

#define RF_PAGEMAP_SCAN _IOWR('f', 16, RfPmScanArg)
#define RF_PAGE_IS_WRITTEN (1u << 1)
#define RF_PM_SCAN_WP_MATCHING (1u << 0)
#define RF_PM_SCAN_CHECK_WPASYNC (1u << 1)

#define PAGE 4096u
#define SCAN_VEC_LEN 1024u  /* regions per PAGEMAP_SCAN call */
#define MSG_BATCH 64u       /* fault events read at once */
#define SYNC_CHUNK_WORDS 64u /* bitmap words per lock hold: 16 MiB */

struct RfUffdTracker {
    uint8_t *base;
    uint64_t len, pages;
    int uffd;
    bool async;
    bool registered;
    /* async */
    int pagemap;
    RfPageRegion *vec;
    /* sync */
    RfDirtyBitmap dirty;
    pthread_mutex_t lock;       /* mark + un-protect vs take + protect */
    int stop_fd;                /* eventfd that ends the handler */
    bool thread_started;
    pthread_t thread;
    _Atomic int handler_errno;  /* first ioctl failure in the handler */
};

/* Opens a userfaultfd, trying in turn the full syscall (also catches the
 * kernel's own writes, e.g. read(2) into the region), /dev/userfaultfd
 * (same, where the syscall is restricted to privileged users), and the
 * syscall limited to user-mode faults (what vm.unprivileged_userfaultfd=0
 * still allows; in sync mode a kernel write to a protected page then
 * fails with EFAULT). */
static int uffd_open(RfError **errp)
{
    int e_sys = ENOSYS, e_dev, e_user = ENOSYS;
#ifdef SYS_userfaultfd
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0) {
        return fd;
    }
    e_sys = errno;
#endif
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    e_dev = errno;
    if (dev >= 0) {
        int ufd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        e_dev = errno;
        close(dev);
        if (ufd >= 0) {
            return ufd;
        }
    }
#ifdef SYS_userfaultfd
    fd = (int)syscall(SYS_userfaultfd,
                      O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (fd >= 0) {
        return fd;
    }
    e_user = errno;
#endif
    rf_error_set(errp, RF_ERR_GENERIC, "userfaultfd unavailable: "
                 "userfaultfd(2): %s; /dev/userfaultfd: %s; "
                 "userfaultfd(UFFD_USER_MODE_ONLY): %s", strerror(e_sys),
                 strerror(e_dev), strerror(e_user));
    return -1;
}

/* The features this kernel's userfaultfd offers (a throw-away fd: the
 * features of an fd are fixed by its one UFFDIO_API call). */
static bool uffd_features(uint64_t *features, RfError **errp)
{
    int fd = uffd_open(errp);
    if (fd < 0) {
        return false;
    }
    struct uffdio_api api = { .api = UFFD_API, .features = 0 };
    int rc = ioctl(fd, UFFDIO_API, &api);
    int err = errno;
    close(fd);
    if (rc < 0) {
        rf_error_set(errp, RF_ERR_GENERIC, "userfaultfd: UFFDIO_API: %s",
                     strerror(err));
        return false;
    }
    if (!(api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP)) {
        rf_error_set(errp, RF_ERR_GENERIC, "userfaultfd: this kernel has "
                     "no write protection (features 0x%llx, "
                     "UFFD_FEATURE_PAGEFAULT_FLAG_WP missing)",
                     (unsigned long long)api.features);
        return false;
    }
    *features = api.features;
    return true;
}

/* Does /proc/self/pagemap take PAGEMAP_SCAN?  An empty range costs
 * nothing; kernels before 6.7 answer ENOTTY. */
static bool pagemap_scan_works(int pagemap)
{
    static char probe[PAGE] __attribute__((aligned(PAGE)));
    RfPmScanArg arg = {
        .size = sizeof(arg),
        .start = (uintptr_t)probe,
        .end = (uintptr_t)probe,
        .category_mask = RF_PAGE_IS_WRITTEN,
        .return_mask = RF_PAGE_IS_WRITTEN,
    };
    return ioctl(pagemap, RF_PAGEMAP_SCAN, &arg) >= 0;
}

/* Forced sync mode from the environment (RAMFLOW_UFFD_SYNC). */
static bool env_forces_sync(void)
{
    const char *e = getenv("RAMFLOW_UFFD_SYNC");
    return e && *e && strcmp(e, "0") != 0;
}

/* The mode rf_uffd_track would pick; *features_out gets what to request
 * with UFFDIO_API. */
static bool choose_mode(unsigned flags, bool *async, uint64_t *features_out,
                        RfError **errp)
{
    uint64_t have;
    if (!uffd_features(&have, errp)) {
        return false;
    }
    if (env_forces_sync()) {
        flags |= RF_UFFD_FORCE_SYNC;
    }
    if (flags & RF_UFFD_NO_WP_UNPOPULATED) {
        have &= ~(uint64_t)(UFFD_FEATURE_WP_UNPOPULATED |
                            UFFD_FEATURE_WP_ASYNC);
    }
    *async = false;
    if (!(flags & RF_UFFD_FORCE_SYNC) && (have & UFFD_FEATURE_WP_ASYNC)) {
        int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (pm >= 0) {
            *async = pagemap_scan_works(pm);
            close(pm);
        }
    }
    uint64_t want = UFFD_FEATURE_PAGEFAULT_FLAG_WP |
                    UFFD_FEATURE_WP_HUGETLBFS_SHMEM |
                    UFFD_FEATURE_WP_UNPOPULATED;
    if (*async) {
        want |= UFFD_FEATURE_WP_ASYNC;
    }
    *features_out = have & want;
    return true;
}

const char *rf_uffd_probe(bool force_sync, RfError **errp)
{
    bool async;
    uint64_t features;
    if (!choose_mode(force_sync ? RF_UFFD_FORCE_SYNC : 0, &async, &features,
                     errp)) {
        return NULL;
    }
    return async ? RF_UFFD_DESC_ASYNC : RF_UFFD_DESC_SYNC;
}

/* UFFDIO_WRITEPROTECT of [addr, addr + len), retried while the kernel
 * says the address space is changing (EAGAIN).  @return 0 or errno. */
static int wp_range(int uffd, uint8_t *addr, uint64_t len, bool protect)
{
    struct uffdio_writeprotect wp = {
        .range = { .start = (uintptr_t)addr, .len = len },
        .mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
    };
    while (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            return errno;
        }
    }
    return 0;
}

/* Makes every page of the region present and writable, for sync mode on
 * kernels without UFFD_FEATURE_WP_UNPOPULATED: there, a first write to a
 * page with no page-table entry raises no write-protect fault.  The
 * fallback touch is an atomic add of 0, which cannot undo a concurrent
 * write. */
static void populate(uint8_t *base, uint64_t len)
{
    if (madvise(base, len, MADV_POPULATE_WRITE) == 0) {
        return;
    }
    for (uint64_t off = 0; off < len; off += PAGE) {
        __atomic_fetch_add(base + off, 0, __ATOMIC_RELAXED);
    }
}

/* Sets bits [first, first + count) of a caller's (non-atomic) bitmap. */
static void set_bits(uint64_t *bm, uint64_t first, uint64_t count)
{
    while (count) {
        uint64_t bit = first % 64;
        uint64_t n = 64 - bit < count ? 64 - bit : count;
        uint64_t mask = (n == 64 ? ~0ull : ((1ull << n) - 1)) << bit;
        bm[first / 64] |= mask;
        first += n;
        count -= n;
    }
}

/* After a fault at addr: marks the page, then un-protects it.  Hugetlbfs
 * pages refuse a 4 KiB range (EINVAL): retry with 2 MiB and 1 GiB (marking
 * more than written is harmless).  If nothing works, un-protect everything
 * (a writer must never hang) and record the error for the next sync. */
static void handle_fault(RfUffdTracker *t, uint64_t addr)
{
    static const uint64_t sizes[] = { PAGE, 2u << 20, 1u << 30 };
    uint64_t base = (uintptr_t)t->base;
    if (addr < base || addr - base >= t->len) {
        return;
    }
    int err = 0;
    pthread_mutex_lock(&t->lock);
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t start = addr & ~(sizes[i] - 1);
        /* Clip to the region: a huge page may stick out of it. */
        uint64_t s = start < base ? 0 : start - base;
        uint64_t e = start + sizes[i] - base;
        e = e > t->len ? t->len : e;
        rf_dirty_bitmap_mark(&t->dirty, s / PAGE, (e - s) / PAGE);
        err = wp_range(t->uffd, (uint8_t *)(uintptr_t)start, sizes[i],
                       false);
        if (err != EINVAL) {
            break;
        }
    }
    if (err) {
        int zero = 0;
        atomic_compare_exchange_strong(&t->handler_errno, &zero, err);
        rf_dirty_bitmap_mark(&t->dirty, 0, t->pages);
        wp_range(t->uffd, t->base, t->len, false);
    }
    pthread_mutex_unlock(&t->lock);
}

/* The sync-mode handler thread: reads fault events until stop_fd. */
static void *handler_main(void *arg)
{
    RfUffdTracker *t = arg;
    struct uffd_msg msgs[MSG_BATCH];
    for (;;) {
        struct pollfd p[2] = {
            { .fd = t->uffd, .events = POLLIN },
            { .fd = t->stop_fd, .events = POLLIN },
        };
        if (poll(p, 2, -1) < 0) {
            continue; /* EINTR */
        }
        if (p[1].revents) {
            return NULL;
        }
        ssize_t n = read(t->uffd, msgs, sizeof(msgs));
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                continue;
            }
            int zero = 0;
            atomic_compare_exchange_strong(&t->handler_errno, &zero, errno);
            pthread_mutex_lock(&t->lock);
            rf_dirty_bitmap_mark(&t->dirty, 0, t->pages);
            wp_range(t->uffd, t->base, t->len, false);
            pthread_mutex_unlock(&t->lock);
            return NULL;
        }
        for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
            if (msgs[i].event == UFFD_EVENT_PAGEFAULT &&
                (msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)) {
                handle_fault(t, msgs[i].arg.pagefault.address);
            }
        }
    }
}

/* Undoes what track_setup did so far. */
static void teardown(RfUffdTracker *t)
{
    if (t->uffd >= 0 && t->registered) {
        /* Writers blocked in a fault are woken by the un-protect. */
        wp_range(t->uffd, t->base, t->len, false);
        struct uffdio_range r = { .start = (uintptr_t)t->base,
                                  .len = t->len };
        ioctl(t->uffd, UFFDIO_UNREGISTER, &r);
        t->registered = false;
    }
    if (t->thread_started) {
        uint64_t one = 1;
        while (write(t->stop_fd, &one, sizeof(one)) < 0 && errno == EINTR) {
        }
        pthread_join(t->thread, NULL);
        t->thread_started = false;
    }
    if (t->stop_fd >= 0) {
        close(t->stop_fd);
        t->stop_fd = -1;
    }
    if (t->uffd >= 0) {
        close(t->uffd);
        t->uffd = -1;
    }
    if (t->pagemap >= 0) {
        close(t->pagemap);
        t->pagemap = -1;
    }
    free(t->vec);
    t->vec = NULL;
    rf_dirty_bitmap_destroy(&t->dirty);
}

/* Undoes everything and frees t. */
static void tracker_free(RfUffdTracker *t)
{
    teardown(t);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* Explains a failed UFFDIO_REGISTER in terms of the region. */
static void register_error(RfUffdTracker *t, int err, RfError **errp)
{
    const char *why =
        err == EINVAL ? "it is not all anonymous, shared-memory (memfd, "
                        "shm) or hugetlbfs memory; regular files cannot "
                        "be write-protected" :
        err == EBUSY ? "another userfaultfd already tracks it" :
        err == ENOMEM ? "part of it is not mapped" :
        err == EPERM ? "not allowed for this mapping" : "refused";
    rf_error_set(errp, RF_ERR_PARAM, "userfaultfd: cannot track %p+%llu: "
                 "%s (UFFDIO_REGISTER: %s)", (void *)t->base,
                 (unsigned long long)t->len, why, strerror(err));
}

/* Sets t up in the chosen mode: uffd, registration, protection, and the
 * pagemap scan vector (async) or the bitmap and handler (sync). */
static bool track_setup(RfUffdTracker *t, bool async, uint64_t features,
                        RfError **errp)
{
    t->async = async;
    t->uffd = uffd_open(errp);
    if (t->uffd < 0) {
        return false;
    }
    struct uffdio_api api = { .api = UFFD_API, .features = features };
    if (ioctl(t->uffd, UFFDIO_API, &api) < 0) {
        rf_error_set(errp, RF_ERR_GENERIC, "userfaultfd: UFFDIO_API with "
                     "features 0x%llx: %s", (unsigned long long)features,
                     strerror(errno));
        return false;
    }
    if (async) {
        t->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        t->vec = calloc(SCAN_VEC_LEN, sizeof(*t->vec));
        if (t->pagemap < 0 || !t->vec) {
            rf_error_set(errp, RF_ERR_GENERIC, "userfaultfd: /proc/self/"
                         "pagemap: %s", t->vec ? strerror(errno)
                                               : "out of memory");
            return false;
        }
    } else {
        if (!rf_dirty_bitmap_init(&t->dirty, t->pages)) {
            rf_error_set(errp, RF_ERR_GENERIC, "userfaultfd: out of memory "
                         "for a bitmap of %llu pages",
                         (unsigned long long)t->pages);
            return false;
        }
    }
    struct uffdio_register reg = {
        .range = { .start = (uintptr_t)t->base, .len = t->len },
        .mode = UFFDIO_REGISTER_MODE_WP,
    };
    if (ioctl(t->uffd, UFFDIO_REGISTER, &reg) < 0) {
        register_error(t, errno, errp);
        return false;
    }
    t->registered = true;
    if (!(reg.ioctls & (1ull << _UFFDIO_WRITEPROTECT))) {
        rf_error_set(errp, RF_ERR_PARAM, "userfaultfd: cannot track %p+"
                     "%llu: the kernel offers no UFFDIO_WRITEPROTECT for "
                     "this kind of memory", (void *)t->base,
                     (unsigned long long)t->len);
        return false;
    }
    if (!async && !(features & UFFD_FEATURE_WP_UNPOPULATED)) {
        populate(t->base, t->len);
    }
    if (!async) {
        /* The handler must run before anything is protected. */
        t->stop_fd = eventfd(0, EFD_CLOEXEC);
        /* Every signal blocked: the handler must not take the process's
         * signals (SIGINT...), and must never stop handling faults. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int rc = t->stop_fd < 0 ? EMFILE
                                : pthread_create(&t->thread, NULL,
                                                 handler_main, t);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) {
            rf_error_set(errp, RF_ERR_GENERIC, "userfaultfd: cannot start "
                         "the fault handler thread: %s", strerror(rc));
            return false;
        }
        t->thread_started = true;
    }
    int err = wp_range(t->uffd, t->base, t->len, true);
    if (err) {
        rf_error_set(errp, RF_ERR_GENERIC, "userfaultfd: "
                     "UFFDIO_WRITEPROTECT of %p+%llu: %s", (void *)t->base,
                     (unsigned long long)t->len, strerror(err));
        return false;
    }
    if (async) {
        /* A scan of one page without WP_MATCHING consumes nothing and
         * proves the VMA is in async mode (else EPERM). */
        RfPmScanArg arg = {
            .size = sizeof(arg),
            .flags = RF_PM_SCAN_CHECK_WPASYNC,
            .start = (uintptr_t)t->base,
            .end = (uintptr_t)t->base + PAGE,
            .vec = (uintptr_t)t->vec,
            .vec_len = SCAN_VEC_LEN,
            .category_mask = RF_PAGE_IS_WRITTEN,
            .return_mask = RF_PAGE_IS_WRITTEN,
        };
        if (ioctl(t->pagemap, RF_PAGEMAP_SCAN, &arg) < 0) {
            rf_error_set(errp, RF_ERR_GENERIC, "userfaultfd: PAGEMAP_SCAN "
                         "of the protected region: %s", strerror(errno));
            return false;
        }
    }
    return true;
}

RfUffdTracker *rf_uffd_track_flags(void *addr, uint64_t len, unsigned flags,
                                   RfError **errp)
{
    uintptr_t a = (uintptr_t)addr;
    if (!addr || a % PAGE || len == 0 || len % PAGE ||
        len > UINTPTR_MAX - a) {
        rf_error_set(errp, RF_ERR_PARAM, "userfaultfd: region %p+%llu: "
                     "address and length must be non-zero multiples of %u",
                     addr, (unsigned long long)len, PAGE);
        return NULL;
    }
    bool async;
    uint64_t features;
    if (!choose_mode(flags, &async, &features, errp)) {
        return NULL;
    }
    RfUffdTracker *t = calloc(1, sizeof(*t));
    if (!t) {
        rf_error_set(errp, RF_ERR_GENERIC, "userfaultfd: out of memory");
        return NULL;
    }
    t->base = addr;
    t->len = len;
    t->pages = len / PAGE;
    t->uffd = t->pagemap = t->stop_fd = -1;
    pthread_mutex_init(&t->lock, NULL);
    RfError *async_err = NULL;
    if (async && track_setup(t, true, features, &async_err)) {
        return t;
    }
    if (async) {
        /* The region itself is refused (kind RF_ERR_PARAM): sync mode
         * would refuse it too (it accepts fewer memory types).  Anything
         * else: try the synchronous faults. */
        teardown(t);
        if (rf_error_kind(async_err) == RF_ERR_PARAM) {
            rf_error_propagate(errp, async_err);
            tracker_free(t);
            return NULL;
        }
        rf_error_free(async_err);
        features &= ~(uint64_t)UFFD_FEATURE_WP_ASYNC;
    }
    if (!track_setup(t, false, features, errp)) {
        tracker_free(t);
        return NULL;
    }
    return t;
}

RfUffdTracker *rf_uffd_track(void *addr, uint64_t len, bool force_sync,
                             RfError **errp)
{
    return rf_uffd_track_flags(addr, len,
                               force_sync ? RF_UFFD_FORCE_SYNC : 0, errp);
}

/* Async sync: PAGEMAP_SCAN over the region in as many calls as the output
 * vector needs, each going on from where the previous one stopped. */
static bool sync_async(RfUffdTracker *t, uint64_t *bitmap, RfError **errp)
{
    uint64_t base = (uintptr_t)t->base, end = base + t->len, cur = base;
    while (cur < end) {
        RfPmScanArg arg = {
            .size = sizeof(arg),
            .flags = RF_PM_SCAN_WP_MATCHING | RF_PM_SCAN_CHECK_WPASYNC,
            .start = cur,
            .end = end,
            .vec = (uintptr_t)t->vec,
            .vec_len = SCAN_VEC_LEN,
            .category_mask = RF_PAGE_IS_WRITTEN,
            .return_mask = RF_PAGE_IS_WRITTEN,
        };
        int n = ioctl(t->pagemap, RF_PAGEMAP_SCAN, &arg);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            rf_error_set(errp, RF_ERR_GENERIC, "userfaultfd dirty sync: "
                         "PAGEMAP_SCAN of %#llx-%#llx: %s",
                         (unsigned long long)cur, (unsigned long long)end,
                         strerror(errno));
            return false;
        }
        for (int i = 0; i < n; i++) {
            uint64_t s = t->vec[i].start, e = t->vec[i].end;
            s = s < base ? base : s;
            e = e > end ? end : e;
            if (e > s) {
                set_bits(bitmap, (s - base) / PAGE, (e - s + PAGE - 1) / PAGE);
            }
        }
        if (arg.walk_end <= cur || arg.walk_end > end) {
            rf_error_set(errp, RF_ERR_GENERIC, "userfaultfd dirty sync: "
                         "PAGEMAP_SCAN from %#llx stopped at %#llx (range "
                         "ends at %#llx)", (unsigned long long)cur,
                         (unsigned long long)arg.walk_end,
                         (unsigned long long)end);
            return false;
        }
        cur = arg.walk_end;
    }
    return true;
}

/* Re-protects pages [first, first + count) taken by a sync. */
static bool reprotect(RfUffdTracker *t, uint64_t first, uint64_t count,
                      RfError **errp)
{
    int err = wp_range(t->uffd, t->base + first * PAGE, count * PAGE, true);
    if (err) {
        rf_error_set(errp, RF_ERR_GENERIC, "userfaultfd dirty sync: "
                     "re-protecting pages %llu-%llu: %s",
                     (unsigned long long)first,
                     (unsigned long long)(first + count - 1), strerror(err));
        return false;
    }
    return true;
}

/* Sync-mode sync: takes the handler's bits and re-protects each run of
 * taken pages with one ioctl, holding the lock one chunk of
 * SYNC_CHUNK_WORDS words at a time so that faulting writers wait little. */
static bool sync_sync(RfUffdTracker *t, uint64_t *bitmap, RfError **errp)
{
    int herr = atomic_load(&t->handler_errno);
    if (herr) {
        rf_error_set(errp, RF_ERR_GENERIC, "userfaultfd dirty sync: the "
                     "fault handler failed: %s", strerror(herr));
        return false;
    }
    bool ok = true;
    for (size_t c = 0; ok && c < t->dirty.nwords; c += SYNC_CHUNK_WORDS) {
        size_t cend = c + SYNC_CHUNK_WORDS < t->dirty.nwords
                          ? c + SYNC_CHUNK_WORDS : t->dirty.nwords;
        bool any = false;
        for (size_t w = c; !any && w < cend; w++) {
            any = atomic_load_explicit(&t->dirty.words[w],
                                       memory_order_relaxed) != 0;
        }
        if (!any) {
            continue; /* clean chunk: no lock needed */
        }
        uint64_t run_start = 0, run_len = 0;
        pthread_mutex_lock(&t->lock);
        for (size_t w = c; ok && w < cend; w++) {
            uint64_t bits = atomic_exchange_explicit(&t->dirty.words[w], 0,
                                                     memory_order_acquire);
            bitmap[w] |= bits;
            while (ok && bits) {
                unsigned b = (unsigned)__builtin_ctzll(bits);
                uint64_t p = (uint64_t)w * 64 + b;
                /* The length of the run of ones starting at bit b. */
                uint64_t rest = bits >> b;
                unsigned n = rest == ~0ull ? 64 - b
                                           : (unsigned)__builtin_ctzll(~rest);
                if (run_len && run_start + run_len == p) {
                    run_len += n;
                } else {
                    ok = !run_len || reprotect(t, run_start, run_len, errp);
                    run_start = p;
                    run_len = n;
                }
                bits = b + n >= 64 ? 0 : bits & (~0ull << (b + n));
            }
        }
        ok = ok && (!run_len || reprotect(t, run_start, run_len, errp));
        pthread_mutex_unlock(&t->lock);
    }
    return ok;
}

bool rf_uffd_sync(RfUffdTracker *t, uint64_t *bitmap, RfError **errp)
{
    return t->async ? sync_async(t, bitmap, errp)
                    : sync_sync(t, bitmap, errp);
}

const char *rf_uffd_describe(RfUffdTracker *t)
{
    return t->async ? RF_UFFD_DESC_ASYNC : RF_UFFD_DESC_SYNC;
}

void rf_uffd_stop(RfUffdTracker *t)
{
    if (!t) {
        return;
    }
    tracker_free(t);
}
