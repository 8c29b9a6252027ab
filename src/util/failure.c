/* ramflow - the first error of a group of threads. */
#include "util/failure.h"

void rf_failure_init(RfFailure *f)
{
    pthread_mutex_init(&f->lock, NULL);
    f->first = NULL;
    atomic_init(&f->failed, false);
}

void rf_failure_destroy(RfFailure *f)
{
    rf_error_free(f->first);
    f->first = NULL;
    pthread_mutex_destroy(&f->lock);
}

bool rf_failure_set(RfFailure *f, RfError *err)
{
    bool first = false;
    pthread_mutex_lock(&f->lock);
    if (!f->first && !atomic_load(&f->failed)) {
        f->first = err;
        first = true;
    } else {
        rf_error_free(err);
    }
    atomic_store_explicit(&f->failed, true, memory_order_release);
    pthread_mutex_unlock(&f->lock);
    return first;
}

void rf_failure_take(RfFailure *f, RfError **errp)
{
    pthread_mutex_lock(&f->lock);
    RfError *e = f->first;
    f->first = NULL;
    pthread_mutex_unlock(&f->lock);
    rf_error_propagate(errp, e);
}
