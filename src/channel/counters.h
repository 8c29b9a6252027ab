/* ramflow - per-channel counters, written by the channel's thread and
 * summed by the engine (relaxed atomics: exact totals, no ordering). */
#ifndef RF_CHANNEL_COUNTERS_H
#define RF_CHANNEL_COUNTERS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "channel/channel.h"

typedef struct RfChanCounters {
    _Atomic uint64_t normal_pages, zero_pages, payload_bytes, packets,
        raw_packets, reconnects;
} RfChanCounters;

/* Counts one page packet. */
static inline void rf_chan_count_packet(RfChanCounters *c, uint32_t normal,
                                        uint32_t zero, uint32_t payload,
                                        bool raw)
{
    atomic_fetch_add_explicit(&c->normal_pages, normal, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->zero_pages, zero, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->payload_bytes, payload,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&c->packets, 1, memory_order_relaxed);
    if (raw) {
        atomic_fetch_add_explicit(&c->raw_packets, 1, memory_order_relaxed);
    }
}

/* Adds c's counts and conn_bytes to out. */
static inline void rf_chan_counters_sum(RfChanStats *out, RfChanCounters *c,
                                        uint64_t conn_bytes)
{
    out->normal_pages += atomic_load(&c->normal_pages);
    out->zero_pages += atomic_load(&c->zero_pages);
    out->payload_bytes += atomic_load(&c->payload_bytes);
    out->packets += atomic_load(&c->packets);
    out->raw_packets += atomic_load(&c->raw_packets);
    out->reconnects += atomic_load(&c->reconnects);
    out->wire_bytes += conn_bytes;
}

#endif
