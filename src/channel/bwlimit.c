/*
 * ramflow - one bandwidth budget shared by all sending channels.
 *
 * A virtual clock: each send reserves its bytes at the rate, moving the
 * clock forward, and sleeps until the clock's position.  Bursts are
 * limited to 100 ms worth of data, so an idle spell does not allow a
 * later flood.
 */
#include <pthread.h>
#include <stdlib.h>

#include "channel/channel.h"
#include "util/clock.h"

struct RfBwLimit {
    pthread_mutex_t lock;
    double rate;      /* bytes per second */
    double clock;     /* time at which all reserved bytes are sent */
};

RfBwLimit *rf_bwlimit_new(uint64_t bytes_per_s)
{
    RfBwLimit *b = calloc(1, sizeof(*b));
    if (b) {
        pthread_mutex_init(&b->lock, NULL);
        b->rate = (double)bytes_per_s;
        b->clock = rf_now();
    }
    return b;
}

bool rf_bwlimit_consume(RfBwLimit *b, uint64_t bytes, atomic_bool *stop)
{
    pthread_mutex_lock(&b->lock);
    if (b->rate <= 0) { /* unlimited: max-bandwidth 0, maybe set live */
        pthread_mutex_unlock(&b->lock);
        return true;
    }
    double now = rf_now();
    if (b->clock < now - 0.1) {
        b->clock = now - 0.1;
    }
    b->clock += (double)bytes / b->rate;
    double until = b->clock;
    pthread_mutex_unlock(&b->lock);
    /* Sleep in slices so a stop request is noticed quickly. */
    for (;;) {
        if (stop && atomic_load(stop)) {
            return false;
        }
        double left = until - rf_now();
        if (left <= 0) {
            return true;
        }
        rf_sleep(left < 0.05 ? left : 0.05);
    }
}

/* A new rate applies from now on: bytes already reserved keep their
 * slot, so lowering the rate does not stall the senders retroactively. */
void rf_bwlimit_set_rate(RfBwLimit *b, uint64_t bytes_per_s)
{
    pthread_mutex_lock(&b->lock);
    double now = rf_now();
    if (b->clock > now && bytes_per_s > (uint64_t)b->rate) {
        b->clock = now; /* raised: stop waiting on the old, slower pace */
    }
    b->rate = (double)bytes_per_s;
    pthread_mutex_unlock(&b->lock);
}

void rf_bwlimit_free(RfBwLimit *b)
{
    if (b) {
        pthread_mutex_destroy(&b->lock);
        free(b);
    }
}
