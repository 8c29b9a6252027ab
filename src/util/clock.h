/* ramflow - wall and CPU clocks. */
#ifndef RF_UTIL_CLOCK_H
#define RF_UTIL_CLOCK_H

/* Monotonic wall clock in seconds. */
double rf_now(void);
/* CPU time (user + system) of the whole process, in seconds. */
double rf_process_cpu(void);
/* Sleeps for s seconds (no-op for s <= 0). */
void rf_sleep(double s);

#endif
