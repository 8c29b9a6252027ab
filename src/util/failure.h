/*
 * ramflow - the first error of a group of threads.
 *
 * Channel threads fail independently; the first error wins (later ones are
 * usually consequences, e.g. the shutdown the first one caused) and is
 * taken once by the thread that reports to the caller.
 */
#ifndef RF_UTIL_FAILURE_H
#define RF_UTIL_FAILURE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "ramflow/error.h"

typedef struct RfFailure {
    pthread_mutex_t lock;
    RfError *first;
    atomic_bool failed;
} RfFailure;

void rf_failure_init(RfFailure *f);
void rf_failure_destroy(RfFailure *f);
/* Records err (taking ownership) if it is the first; frees it otherwise.
 * @return true if it was the first. */
bool rf_failure_set(RfFailure *f, RfError *err);
static inline bool rf_failure_failed(RfFailure *f)
{
    return atomic_load_explicit(&f->failed, memory_order_acquire);
}
/* Moves the recorded error into *errp (first error wins there too). */
void rf_failure_take(RfFailure *f, RfError **errp);

#endif
