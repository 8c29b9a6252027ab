/* ramflow - wall and CPU clocks. */
#ifndef RF_UTIL_CLOCK_H
#define RF_UTIL_CLOCK_H

/* Monotonic wall clock in seconds. */
double rf_now(void);
/* CPU time (user + system) of the whole process, in seconds. */
double rf_process_cpu(void);
/* CPU time of the calling thread, in seconds. */
double rf_thread_cpu(void);
/* A worker thread's CPU time, readable by another thread while the
 * worker runs and after it ended (the kernel forgets an ended thread's
 * clock, so the worker records its own on the way out). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
typedef struct RfThreadCpu {
    _Atomic uint64_t exit_ns;
    atomic_bool exited;
    atomic_int tid;                 /* 0 until rf_thread_cpu_start */
    _Atomic uint64_t exit_delay_ns; /* run delay at exit */
} RfThreadCpu;
/* Called by the worker as its first act (for rf_thread_delay_read). */
void rf_thread_cpu_start(RfThreadCpu *c);
/* Called by the worker as its last act. */
void rf_thread_cpu_exit(RfThreadCpu *c);
/* The CPU seconds of worker t so far (t started, maybe ended). */
double rf_thread_cpu_read(pthread_t t, RfThreadCpu *c);
/* The seconds worker c spent runnable but waiting for a CPU (the run
 * delay of /proc/.../schedstat) so far; 0 where the kernel does not
 * say.  Off-CPU time less this is time asleep: waiting for data or for
 * socket space rather than for a CPU that other threads held. */
double rf_thread_delay_read(RfThreadCpu *c);
/* The calling thread's run delay in seconds; *fd caches its schedstat
 * file (initialise to -1; closed by rf_thread_delay_close).  0 where the
 * kernel does not say. */
double rf_thread_delay_self(int *fd);
void rf_thread_delay_close(int *fd);
/* Sleeps for s seconds (no-op for s <= 0). */
void rf_sleep(double s);
/* pthread_cond_timedwait for at most ms milliseconds (mutex m held): for
 * waits that must look at a flag (cancel, a deadline) now and then. */
void rf_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *m, unsigned ms);

#endif
