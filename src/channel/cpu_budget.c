/*
 * ramflow - CPU budget.  Every thread that does a migration's heavy work
 * (the channel threads) paces itself after each packet against one
 * process-wide token bucket, so the process as a whole, as /proc shows
 * it, stays within max-cpu cores: threads the budget does not pace (the
 * engine, dirty tracking) are counted too, since the bucket is charged
 * with the process's CPU clock.
 */
#include "channel/cpu_budget.h"

#include <pthread.h>
#include <stdlib.h>

#include "util/clock.h"

#define BURST_S 0.05 /* CPU seconds a quiet stretch may save up */

struct RfCpuBudget {
    double cores;
    pthread_mutex_t lock;
    double last_wall, last_cpu; /* the bucket was settled at these */
    double tokens;              /* CPU seconds that may still be used */
};

RfCpuBudget *rf_cpu_budget_new(double cores)
{
    if (!(cores > 0)) {
        return NULL;
    }
    RfCpuBudget *b = calloc(1, sizeof(*b));
    if (!b) {
        return NULL;
    }
    b->cores = cores;
    pthread_mutex_init(&b->lock, NULL);
    b->last_wall = rf_now();
    b->last_cpu = rf_process_cpu();
    b->tokens = BURST_S;
    return b;
}

/* Refills by the wall time passed, charges the CPU used: @return how
 * long the caller must sleep for the bucket to be back at zero. */
static double settle(RfCpuBudget *b)
{
    pthread_mutex_lock(&b->lock);
    double wall = rf_now(), cpu = rf_process_cpu();
    b->tokens += (wall - b->last_wall) * b->cores - (cpu - b->last_cpu);
    if (b->tokens > BURST_S) {
        b->tokens = BURST_S;
    }
    b->last_wall = wall;
    b->last_cpu = cpu;
    double owe = b->tokens < 0 ? -b->tokens / b->cores : 0;
    pthread_mutex_unlock(&b->lock);
    return owe;
}

bool rf_cpu_budget_pace(RfCpuBudget *b, atomic_bool *stop)
{
    if (!b) {
        return true;
    }
    for (double owe = settle(b); owe > 0; owe = settle(b)) {
        if (stop && atomic_load(stop)) {
            return false;
        }
        /* In slices, so a stop is seen within 20 ms. */
        rf_sleep(owe > 0.02 ? 0.02 : owe);
    }
    return true;
}

double rf_cpu_budget_cores(const RfCpuBudget *b)
{
    return b ? b->cores : 0;
}

void rf_cpu_budget_free(RfCpuBudget *b)
{
    if (b) {
        pthread_mutex_destroy(&b->lock);
        free(b);
    }
}
