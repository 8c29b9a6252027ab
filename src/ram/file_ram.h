/*
 * ramflow - private helpers shared by the file source, the file sink and
 * the pre-faulter.  Nothing outside src/ram includes this file.
 */
#ifndef RF_RAM_FILE_RAM_H
#define RF_RAM_FILE_RAM_H

#include <stdbool.h>
#include <stdint.h>

#include "ram/ram.h"

/* Splits a "PATH" or "NAME=PATH" spec: a '=' before the first '/' ends
 * the name; otherwise the name is the path's basename.  *path points into
 * spec.  @return false with an RF_ERR_PARAM error naming the spec. */
bool rf_ram_spec_parse(const char *spec, char name[RF_BLOCK_NAME_MAX + 1],
                       const char **path, RfError **errp);

/* One memory range to pre-fault. */
typedef struct RfPrefaultRange {
    uint8_t *addr;
    uint64_t len;
} RfPrefaultRange;

typedef struct RfPrefaultJob RfPrefaultJob;

/* Starts `threads` threads (at least one) that pre-fault the ranges for
 * writing, in chunks taken from a shared cursor.  The ranges array is
 * copied.  With `idle` the threads run SCHED_IDLE: they take only CPU
 * that no other thread of the host wants (a pre-fault for later users of
 * the memory, which must not slow the receivers on a host short of
 * CPU).  @return NULL with an error if no thread could start. */
RfPrefaultJob *rf_prefault_start(const RfPrefaultRange *ranges, unsigned n,
                                 unsigned threads, bool idle, RfError **errp);

/* Joins the threads (asking them to stop early if `cancel`) and frees the
 * job.  @return true if every byte was pre-faulted. */
bool rf_prefault_finish(RfPrefaultJob *job, bool cancel);

/* As rf_prefault_finish(), and sets *cpu_s to the CPU seconds the job's
 * threads used (summed as each one ended; 0 for a NULL job). */
bool rf_prefault_finish_cpu(RfPrefaultJob *job, bool cancel, double *cpu_s);


#endif /* RF_RAM_FILE_RAM_H */
