/*
 * ramflow - the timed wait both test VM back ends' vCPU threads sleep in
 * (dirty-rate limit, throttle): on their condition variable, which runs
 * on CLOCK_MONOTONIC, until a deadline in rf_now() seconds.
 */
#include <errno.h>
#include <time.h>

#include "testvm/guest_backend.h"

bool rf_guest_wait_until_locked(pthread_cond_t *cond, pthread_mutex_t *lock,
                                double until)
{
    struct timespec ts;
    ts.tv_sec = (time_t)until;
    ts.tv_nsec = (long)((until - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_cond_timedwait(cond, lock, &ts) == ETIMEDOUT;
}
