/* ramflow - turning channel counters into a report. */
#ifndef RF_ENGINE_STATS_H
#define RF_ENGINE_STATS_H

#include "channel/channel.h"
#include "ramflow/ramflow.h"

/* Fills the page, byte, ratio and rate fields of rep from the channel
 * counters plus `extra_wire` bytes of the main channel. */
void rf_stats_fill_report(RfReport *rep, const RfChanStats *st,
                          uint64_t extra_wire, double total_s);

/* CPU seconds of one side over a migration, by group. */
typedef struct RfCpuFigures {
    double migration_s;  /* the migration thread */
    double channels_s;   /* the channel threads */
    double prefault_s;   /* pre-fault threads (destination) */
    double process_s;    /* the whole process */
} RfCpuFigures;

/* Fills rep's CPU fields (per cent of one core over total_s).
 * @return ramflow's own threads' CPU%: the send/recv CPU%. */
double rf_stats_fill_cpu(RfReport *rep, double total_s,
                         const RfCpuFigures *c);

#endif
