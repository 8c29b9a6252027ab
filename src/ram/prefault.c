/*
 * ramflow - pre-faulting destination memory before pages arrive.
 *
 * A destination starts from fresh memory, and on these machines the first
 * touch of memory the host took back is several times slower than a
 * write to warm memory.  Faulting everything in up front, with several
 * threads and in parallel with the handshake, takes that cost off the
 * receive path.  MADV_POPULATE_WRITE (Linux 5.14) faults a range in one
 * call without changing its contents; older kernels get one atomic
 * "add zero" per page instead, which also leaves contents unchanged even
 * if pages are being received concurrently.
 */
#include "ram/file_ram.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Work unit: small enough to balance threads and notice a cancel soon,
 * large enough that the madvise call overhead does not matter.  Each
 * MADV_POPULATE_WRITE holds the mmap lock for reading while it faults its
 * chunk in, and every mmap() of the process (thread stacks, decoder
 * buffers) waits for it: with 16 MiB chunks the receive group's set-up
 * took 25-90 ms instead of 2 (1 MiB: 10-50 ms, loopback, 256 MiB, 2
 * cores). */
#define PREFAULT_CHUNK (1ull << 20)
/* An idle job's thread may wait long for a CPU in the middle of a chunk,
 * holding the mmap lock: a smaller chunk bounds what an mmap() of the
 * process then waits for (256 KiB: 0.6 ms of CPU at 440 MB/s). */
#define PREFAULT_IDLE_CHUNK (256ull << 10)
#define PREFAULT_MAX_THREADS 16

struct RfPrefaultJob {
    RfPrefaultRange *ranges;
    unsigned n;
    bool idle; /* the threads run SCHED_IDLE */
    uint64_t total;
    _Atomic uint64_t cursor; /* next chunk to hand out */
    _Atomic uint64_t done;   /* bytes pre-faulted */
    atomic_bool stop;
    atomic_bool failed;
    _Atomic uint64_t cpu_ns; /* CPU time of the threads that ended */
    unsigned nthreads;
    pthread_t th[PREFAULT_MAX_THREADS];
};

/* Set once the kernel says it has no MADV_POPULATE_WRITE. */
static atomic_bool no_populate;

static void touch_pages(uint8_t *p, uint64_t len)
{
    for (uint64_t off = 0; off < len; off += RF_PAGE_SIZE) {
        __atomic_fetch_add(p + off, 0, __ATOMIC_RELAXED);
    }
}

/* Faults [p, p + len) in for writing.
 * @return false on a real failure (e.g. the file system behind the
 * mapping is full). */
static bool populate(uint8_t *p, uint64_t len)
{
    while (!atomic_load(&no_populate)) {
        if (madvise(p, len, MADV_POPULATE_WRITE) == 0) {
            return true;
        }
        if (errno == EINTR || errno == EAGAIN) {
            continue;
        }
        if (errno != EINVAL) {
            return false;
        }
        atomic_store(&no_populate, true);
    }
    touch_pages(p, len);
    return true;
}

static void prefault_work(RfPrefaultJob *j)
{
    for (;;) {
        uint64_t chunk = j->idle ? PREFAULT_IDLE_CHUNK : PREFAULT_CHUNK;
        uint64_t start = atomic_fetch_add(&j->cursor, chunk);
        if (start >= j->total || atomic_load(&j->stop)) {
            break;
        }
        uint64_t end = start + chunk < j->total ? start + chunk : j->total;
        /* Map [start, end) of the concatenated ranges onto the ranges. */
        uint64_t base = 0;
        for (unsigned i = 0; i < j->n && base < end; i++) {
            uint64_t rs = base, re = base + j->ranges[i].len;
            base = re;
            uint64_t s = start > rs ? start : rs, e = end < re ? end : re;
            if (s < e && !populate(j->ranges[i].addr + (s - rs), e - s)) {
                atomic_store(&j->failed, true);
                atomic_store(&j->stop, true);
                return;
            }
        }
        atomic_fetch_add(&j->done, end - start);
    }
}

/* Works, then adds the CPU time this thread used to the job's. */
static void *prefault_thread(void *opaque)
{
    RfPrefaultJob *j = opaque;
    if (j->idle) {
        /* Best effort: at normal priority it still works. */
        struct sched_param sp = {0};
        (void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
    }
    prefault_work(j);
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0) {
        atomic_fetch_add(&j->cpu_ns, (uint64_t)ts.tv_sec * 1000000000u +
                                         (uint64_t)ts.tv_nsec);
    }
    return NULL;
}

RfPrefaultJob *rf_prefault_start(const RfPrefaultRange *ranges, unsigned n,
                                 unsigned threads, bool idle, RfError **errp)
{
    RfPrefaultJob *j = calloc(1, sizeof(*j));
    if (!j || !(j->ranges = calloc(n ? n : 1, sizeof(*ranges)))) {
        free(j);
        rf_error_set(errp, RF_ERR_GENERIC, "pre-fault: out of memory");
        return NULL;
    }
    long psz = sysconf(_SC_PAGESIZE);
    uintptr_t pmask = (uintptr_t)(psz > 0 ? psz : 4096) - 1;
    for (unsigned i = 0; i < n; i++) {
        /* madvise wants page-aligned ranges: widen to whole pages. */
        uintptr_t a = (uintptr_t)ranges[i].addr;
        uintptr_t s = a & ~pmask;
        uintptr_t e = (a + ranges[i].len + pmask) & ~pmask;
        j->ranges[i].addr = (uint8_t *)s;
        j->ranges[i].len = ranges[i].len ? e - s : 0;
        j->total += j->ranges[i].len;
    }
    j->n = n;
    j->idle = idle;
    if (threads < 1) {
        threads = 1;
    }
    if (threads > PREFAULT_MAX_THREADS) {
        threads = PREFAULT_MAX_THREADS;
    }
    /* Workers must not take the process's signals (e.g. SIGINT). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int err = 0;
    for (unsigned t = 0; t < threads; t++) {
        err = pthread_create(&j->th[j->nthreads], NULL, prefault_thread, j);
        if (err) {
            break;
        }
        j->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (j->nthreads == 0) {
        rf_error_set(errp, RF_ERR_GENERIC, "pre-fault: cannot start a "
                     "thread: %s", strerror(err));
        free(j->ranges);
        free(j);
        return NULL;
    }
    return j;
}

bool rf_prefault_finish(RfPrefaultJob *j, bool cancel)
{
    return rf_prefault_finish_cpu(j, cancel, NULL);
}

bool rf_prefault_finish_cpu(RfPrefaultJob *j, bool cancel, double *cpu_s)
{
    if (cpu_s) {
        *cpu_s = 0;
    }
    if (!j) {
        return false;
    }
    if (cancel) {
        atomic_store(&j->stop, true);
    }
    for (unsigned t = 0; t < j->nthreads; t++) {
        pthread_join(j->th[t], NULL);
    }
    bool ok = !atomic_load(&j->failed) &&
              atomic_load(&j->done) == j->total;
    if (cpu_s) {
        *cpu_s = (double)atomic_load(&j->cpu_ns) / 1e9;
    }
    free(j->ranges);
    free(j);
    return ok;
}
