/*
 * ramflow - a simulated guest: a thread that keeps writing pages of a RAM
 * source and marks them dirty, as a running VM would.  Used by the demo and
 * the tests until (and besides) the KVM guest.
 */
#ifndef RF_TESTVM_WRITER_H
#define RF_TESTVM_WRITER_H

#include <stdbool.h>
#include <stdint.h>

#include "ramflow/ramflow.h"

typedef struct RfWriter RfWriter;

/* Starts writing `pages_per_s` random pages per second (0 = as fast as it
 * can) across all blocks of src: each write bumps a counter in the page's
 * first 8 bytes and scribbles a few bytes elsewhere in it. */
RfWriter *rf_writer_start(RfRamSource *src, uint64_t pages_per_s,
                          uint64_t seed, RfError **errp);
/* Stops writing until rf_writer_resume (returns once no write is in
 * flight).  Matches RfMigrateOptions.pause / resume via rf_writer_hook_*. */
void rf_writer_pause(RfWriter *w);
void rf_writer_resume(RfWriter *w);
/* Pages written so far. */
uint64_t rf_writer_pages(RfWriter *w);
void rf_writer_stop(RfWriter *w);

/* Adapters with the RfMigrateOptions hook signature (opaque = writer). */
void rf_writer_hook_pause(void *opaque);
void rf_writer_hook_resume(void *opaque);

#endif
