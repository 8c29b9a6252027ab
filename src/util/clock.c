/* ramflow - wall and CPU clocks. */
#include "util/clock.h"

#include <errno.h>
#include <time.h>

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

void rf_thread_cpu_exit(RfThreadCpu *c)
{
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
