/*
 * ramflow bench - the raw TCP throughput of a path, as a bound for the
 * `none` rows and the link rows: `streams` connections from this
 * namespace to a listener in the destination's namespace, each with a
 * sender and a receiver thread, like iperf3 -P but in-process (nothing
 * beyond iproute2 is needed).  Unlike iperf3, which sends one small
 * buffer over and over from the cache, the senders read from and the
 * receivers write to 128 MiB regions, as a migration reads guest RAM and
 * writes the destination's: the figure is what TCP can move between
 * memory and memory, not between caches.  The regions are touched
 * beforehand (no first-touch cost: that is the destination's own).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/bench_common.h"
#include "control/cli.h"
#include "util/clock.h"

#define REGION (128u << 20)
#define CHUNK (256u << 10)

/* The regions, made for each measurement and given back after it (the
 * migrations need the memory). */
static uint8_t *region_src, *region_dst;

static bool regions_ready(void)
{
    if (region_src) {
        return true;
    }
    uint8_t *a = mmap(NULL, 2 * (size_t)REGION, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) {
        return false;
    }
    for (size_t i = 0; i < 2 * (size_t)REGION; i += 4096) {
        a[i] = (uint8_t)(i >> 12 | 1); /* touched, not a zero page */
    }
    region_src = a;
    region_dst = a + REGION;
    return true;
}

typedef struct Blast {
    struct sockaddr_in addr;
    atomic_bool stop;
    atomic_ullong received;
    const char *netns;
    int listen_fd;
    int err;
} Blast;

/* Creates the listening socket from inside the namespace: a socket
 * belongs to the namespace of the thread that created it, so this
 * thread joins the namespace and hands the socket back. */
static void *listen_thread(void *arg)
{
    Blast *bl = arg;
    if (bl->netns && bl->netns[0]) {
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "/run/netns/%s", bl->netns);
        int nfd = open(p, O_RDONLY | O_CLOEXEC);
        if (nfd < 0 || setns(nfd, CLONE_NEWNET) < 0) {
            bl->err = errno;
            if (nfd >= 0) {
                close(nfd);
            }
            return NULL;
        }
        close(nfd);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    socklen_t len = sizeof(bl->addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&bl->addr, len) < 0 ||
        listen(fd, 256) < 0 ||
        getsockname(fd, (struct sockaddr *)&bl->addr, &len) < 0) {
        bl->err = errno;
        if (fd >= 0) {
            close(fd);
        }
        return NULL;
    }
    bl->listen_fd = fd;
    return NULL;
}

typedef struct Worker {
    Blast *bl;
    int fd;
    bool sender;
    size_t off;      /* where in its region this worker starts */
} Worker;

/* A sender writes 256 KiB chunks walking through the source region until
 * told to stop; a receiver reads into the destination region until end
 * of stream, counting what arrived. */
static void *worker(void *arg)
{
    Worker *w = arg;
    size_t off = w->off;
    if (w->sender) {
        while (!atomic_load(&w->bl->stop)) {
            ssize_t n = send(w->fd, region_src + off, CHUNK, MSG_NOSIGNAL);
            if (n < 0 && errno != EINTR) {
                break;
            }
            off = (off + (n > 0 ? (size_t)n : 0)) % (REGION - CHUNK);
        }
        shutdown(w->fd, SHUT_WR);
    } else {
        for (;;) {
            ssize_t n = recv(w->fd, region_dst + off, CHUNK, 0);
            if (n == 0 || (n < 0 && errno != EINTR)) {
                break;
            }
            if (n > 0) {
                atomic_fetch_add(&w->bl->received, (unsigned long long)n);
                off = (off + (size_t)n) % (REGION - CHUNK);
            }
        }
    }
    return NULL;
}

bool rf_bench_tcp_blast(const RfBenchPath *path, unsigned streams,
                        double seconds, double *mbps, RfError **errp)
{
    if (!regions_ready()) {
        rf_error_set(errp, RF_ERR_GENERIC, "tcp blast: out of memory for "
                     "its %u MiB regions", 2 * (REGION >> 20));
        return false;
    }
    Blast bl = {.netns = path->netns, .listen_fd = -1};
    bl.addr.sin_family = AF_INET;
    if (inet_pton(AF_INET, path->listen_host, &bl.addr.sin_addr) != 1) {
        rf_error_set(errp, RF_ERR_PARAM, "tcp blast: bad address '%s'",
                     path->listen_host);
        return false;
    }
    pthread_t lt;
    if (pthread_create(&lt, NULL, listen_thread, &bl) != 0) {
        rf_error_set(errp, RF_ERR_GENERIC, "tcp blast: no thread");
        return false;
    }
    pthread_join(lt, NULL);
    if (bl.listen_fd < 0) {
        rf_error_set(errp, RF_ERR_IO, "tcp blast: cannot listen on %s%s%s: "
                     "%s", path->listen_host, path->netns[0] ? " in " : "",
                     path->netns, strerror(bl.err));
        return false;
    }
    Worker w[2 * RF_BENCH_MAX_CHANNELS * 16];
    pthread_t th[2 * RF_BENCH_MAX_CHANNELS * 16];
    unsigned nw = 0, started = 0;
    bool ok = true;
    streams = streams > RF_BENCH_MAX_CHANNELS * 16
                  ? RF_BENCH_MAX_CHANNELS * 16 : streams;
    for (unsigned i = 0; i < streams && ok; i++) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&bl.addr,
                             sizeof(bl.addr)) < 0) {
            rf_error_set(errp, RF_ERR_IO, "tcp blast: connect to %s: %s",
                         path->listen_host, strerror(errno));
            if (c >= 0) {
                close(c);
            }
            ok = false;
            break;
        }
        int a = accept4(bl.listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (a < 0) {
            rf_error_set(errp, RF_ERR_IO, "tcp blast: accept: %s",
                         strerror(errno));
            close(c);
            ok = false;
            break;
        }
        /* Spread the streams over the regions. */
        size_t off = (size_t)i * (REGION / streams) / CHUNK * CHUNK;
        w[nw++] = (Worker){&bl, a, false, off};
        w[nw++] = (Worker){&bl, c, true, off};
    }
    close(bl.listen_fd);
    for (unsigned i = 0; ok && i < nw; i++) {
        if (pthread_create(&th[i], NULL, worker, &w[i]) != 0) {
            rf_error_set(errp, RF_ERR_GENERIC, "tcp blast: no thread");
            ok = false;
            break;
        }
        started++;
    }
    double t0 = 0, t1 = 0;
    unsigned long long b0 = 0, b1 = 0;
    if (ok) {
        /* A tenth of the time to ramp up, then measure. */
        rf_sleep(seconds / 10);
        t0 = rf_now();
        b0 = atomic_load(&bl.received);
        while (rf_now() - t0 < seconds && !rf_cli_cancel) {
            rf_sleep(0.05);
        }
        t1 = rf_now();
        b1 = atomic_load(&bl.received);
    }
    atomic_store(&bl.stop, true);
    for (unsigned i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
    }
    for (unsigned i = 0; i < nw; i++) {
        close(w[i].fd);
    }
    munmap(region_src, 2 * (size_t)REGION);
    region_src = region_dst = NULL;
    if (ok) {
        *mbps = t1 > t0 ? (double)(b1 - b0) * 8 / 1e6 / (t1 - t0) : 0;
    }
    return ok;
}
