/* ramflow - how busy the host's CPUs are, from /proc/stat. */
#ifndef RF_UTIL_HOSTCPU_H
#define RF_UTIL_HOSTCPU_H

#include <stdbool.h>
#include <stdint.h>

/* Fills the host's idle CPU time (idle + iowait) and all CPU time since
 * boot, in nanoseconds summed over every CPU.  The difference of two
 * readings over a wall interval gives the idle cores during it.
 * @return false (both 0) if /proc/stat cannot be read. */
bool rf_host_cpu(uint64_t *idle_ns, uint64_t *total_ns);
/* @return the number of runnable threads on the host now (procs_running
 * of /proc/stat), 0 if unknown. */
unsigned rf_host_running(void);
/* The cores a process running `own` cores with `threads` busy threads
 * can count on: its own plus the idle ones, and never less than its
 * fair share of a busy host (the scheduler gives each runnable thread
 * about ncpus / running of a core).  idle_cores < 0: unknown. */
double rf_host_cores_available(double own, double idle_cores,
                               unsigned threads, unsigned running,
                               unsigned ncpus);
/* @return the number of online CPUs (at least 1). */
unsigned rf_host_ncpus(void);

#endif
