/* ramflow - wall and CPU clocks. */
#include "util/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static double ts_to_s(const struct timespec *ts)
{
    return (double)ts->tv_sec + (double)ts->tv_nsec * 1e-9;
}

double rf_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts_to_s(&ts);
}

double rf_process_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts_to_s(&ts);
}

double rf_thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts_to_s(&ts);
}

/* The run delay (second field of a schedstat file: nanoseconds spent
 * runnable on a run queue) read from fd at offset 0; -1 on failure. */
static double delay_from_fd(int fd)
{
    char buf[96];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0) {
        return -1;
    }
    buf[n] = '\0';
    uint64_t run = 0, delay = 0;
    if (sscanf(buf, "%" SCNu64 " %" SCNu64, &run, &delay) != 2) {
        return -1;
    }
    return (double)delay * 1e-9;
}

double rf_thread_delay_self(int *fd)
{
    if (*fd < 0) {
        *fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
        if (*fd < 0) {
            *fd = -2; /* not there: do not try again */
        }
    }
    double d = *fd >= 0 ? delay_from_fd(*fd) : -1;
    return d > 0 ? d : 0;
}

void rf_thread_delay_close(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
    }
    *fd = -1;
}

void rf_thread_cpu_start(RfThreadCpu *c)
{
    atomic_store(&c->tid, (int)gettid());
}

double rf_thread_delay_read(RfThreadCpu *c)
{
    if (atomic_load(&c->exited)) {
        return (double)atomic_load(&c->exit_delay_ns) * 1e-9;
    }
    int tid = atomic_load(&c->tid);
    if (tid <= 0) {
        return 0;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        /* ended as we looked, or no schedstat */
        return atomic_load(&c->exited)
                   ? (double)atomic_load(&c->exit_delay_ns) * 1e-9 : 0;
    }
    double d = delay_from_fd(fd);
    close(fd);
    return d > 0 ? d : 0;
}

void rf_thread_cpu_exit(RfThreadCpu *c)
{
    int fd = -1;
    atomic_store(&c->exit_delay_ns,
                 (uint64_t)(rf_thread_delay_self(&fd) * 1e9));
    rf_thread_delay_close(&fd);
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    atomic_store(&c->exit_ns,
                 (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
    atomic_store(&c->exited, true);
}

double rf_thread_cpu_read(pthread_t t, RfThreadCpu *c)
{
    clockid_t id;
    struct timespec ts;
    if (!atomic_load(&c->exited) && pthread_getcpuclockid(t, &id) == 0 &&
        clock_gettime(id, &ts) == 0) {
        return ts_to_s(&ts);
    }
    /* Ended, or ending as we looked: its own last reading counts. */
    return atomic_load(&c->exited) ? (double)atomic_load(&c->exit_ns) / 1e9
                                   : 0;
}

void rf_sleep(double s)
{
    if (s <= 0) {
        return;
    }
    struct timespec ts = {.tv_sec = (time_t)s,
                          .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void rf_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *m, unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cv, m, &ts);
}
