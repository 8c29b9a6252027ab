/* ramflow - turning channel counters into a report. */
#ifndef RF_ENGINE_STATS_H
#define RF_ENGINE_STATS_H

#include "channel/channel.h"
#include "ramflow/ramflow.h"

/* Fills the page, byte, ratio and rate fields of rep from the channel
 * counters plus `extra_wire` bytes of the main channel.
 * @return the process CPU% over the run (100 = one core). */
double rf_stats_fill_report(RfReport *rep, const RfChanStats *st,
                            uint64_t extra_wire, double total_s,
                            double cpu_s);

#endif
