/* ramflow - keeping a process within a CPU budget (max-cpu). */
#ifndef RF_CHANNEL_CPU_BUDGET_H
#define RF_CHANNEL_CPU_BUDGET_H

#include <stdatomic.h>
#include <stdbool.h>

typedef struct RfCpuBudget RfCpuBudget;

/* A budget of `cores` (e.g. 0.5) for the whole process; NULL for
 * cores <= 0 (no budget) or out of memory. */
RfCpuBudget *rf_cpu_budget_new(double cores);
/* Called by a channel thread after each packet: sleeps as long as the
 * process has used more CPU than the budget allowed since it was made
 * (a token bucket refilled at `cores` per second, holding at most
 * 50 ms of CPU, so an idle stretch is not saved up for a burst).
 * Returns early (false) once *stop is set.  NULL budget: no-op. */
bool rf_cpu_budget_pace(RfCpuBudget *b, atomic_bool *stop);
/* @return the budget in cores, 0 for NULL. */
double rf_cpu_budget_cores(const RfCpuBudget *b);
void rf_cpu_budget_free(RfCpuBudget *b);

#endif
