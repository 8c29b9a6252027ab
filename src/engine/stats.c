/* ramflow - turning channel counters into a report. */
#include "engine/stats.h"

static double pct_of(double cpu_s, double total_s)
{
    return total_s > 0 ? cpu_s / total_s * 100 : 0;
}

double rf_stats_fill_cpu(RfReport *rep, double total_s,
                         const RfCpuFigures *c)
{
    rep->cpu_migration_pct = pct_of(c->migration_s, total_s);
    rep->cpu_channels_pct = pct_of(c->channels_s, total_s);
    rep->cpu_prefault_pct = pct_of(c->prefault_s, total_s);
    rep->process_cpu_pct = pct_of(c->process_s, total_s);
    return pct_of(c->migration_s + c->channels_s + c->prefault_s, total_s);
}

void rf_stats_fill_report(RfReport *rep, const RfChanStats *st,
                          uint64_t extra_wire, double total_s)
{
    rep->total_time_s = total_s;
    rep->normal_pages = st->normal_pages;
    rep->zero_pages = st->zero_pages;
    rep->pages_sent = st->normal_pages + st->zero_pages;
    rep->packets = st->packets;
    rep->raw_packets = st->raw_packets;
    rep->reconnects = (unsigned)st->reconnects;
    rep->payload_bytes = st->payload_bytes;
    rep->wire_bytes = st->wire_bytes + extra_wire;
    if (total_s > 0) {
        rep->throughput_mbps = (double)rep->wire_bytes * 8 / 1e6 / total_s;
        rep->pages_per_s = (double)rep->pages_sent / total_s;
    }
    rep->compression_ratio =
        st->payload_bytes
            ? (double)st->normal_pages * RF_PAGE_SIZE /
                  (double)st->payload_bytes
            : 1.0;
}
