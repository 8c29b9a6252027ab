/*
 * ramflow - the 'auto' model: predicted rate of each candidate.
 *
 * A candidate moves page data at the lowest of three rates:
 *   source CPU   min(channels, src_cores) cores / (page + compress +
 *                ratio * send) ns per raw byte: one thread per channel,
 *                so no more cores than channels
 *   destination  min(dst_channels, dst_cores) / dst_ns per raw byte
 *   link         link_Bps / ratio, when the link was seen limiting
 *   shared host  shared_cores / (source ns + destination ns) per raw
 *                byte, when both sides run on the same host's CPUs
 * Everything is in raw (page) bytes per second, so candidates that
 * shrink the data differently compare directly.
 */
#include "channel/autosel.h"

#include <math.h>

static double min_d(double a, double b)
{
    return a < b ? a : b;
}

double rf_auto_predict(const RfAutoInputs *in, unsigned c,
                       RfAutoBound *bound)
{
    if (bound) {
        *bound = RF_AUTO_BOUND_NONE;
    }
    if (c >= in->ncands || !in->cost[c].known) {
        return 0;
    }
    const RfAutoCost *k = &in->cost[c];
    double src_ns = in->src_page_ns + k->comp_ns + k->ratio * in->src_wire_ns;
    double src_cores = min_d(in->channels, in->src_cores);
    double dst_cores = min_d(in->dst_channels ? in->dst_channels
                                              : in->channels,
                             in->dst_cores);
    double src = src_ns > 0 ? src_cores / src_ns * 1e9 : INFINITY;
    double dst = k->dst_ns > 0 && dst_cores > 0
                     ? dst_cores / k->dst_ns * 1e9 : INFINITY;
    double link = in->link_Bps > 0 && k->ratio > 0 ? in->link_Bps / k->ratio
                                                   : INFINITY;
    double host = in->shared_cores > 0 && src_ns + k->dst_ns > 0
                      ? in->shared_cores / (src_ns + k->dst_ns) * 1e9
                      : INFINITY;
    double r = min_d(min_d(src, host), min_d(dst, link));
    if (bound) {
        *bound = r == link ? RF_AUTO_BOUND_LINK
                 : r == host ? RF_AUTO_BOUND_HOST
                 : r == dst ? RF_AUTO_BOUND_DEST : RF_AUTO_BOUND_SOURCE;
    }
    return isfinite(r) ? r : 1e12;
}

/* CPU per raw byte that a candidate takes from the guest: the source's,
 * and on a shared host the destination's too, since the guest runs on
 * those cores as well (qatzip-1 costs a source less than zstd-1 but its
 * destination more: on one host zstd-1 is the cheaper).  Among
 * candidates that move data equally fast, the cheaper one is better. */
static double cpu_cost(const RfAutoInputs *in, unsigned c)
{
    double ns = in->cost[c].comp_ns + in->cost[c].ratio * in->src_wire_ns;
    if (in->shared_cores > 0) {
        ns += in->cost[c].dst_ns;
    }
    return ns;
}

#define TIE 0.02 /* rates this close count as equal */
#define COST_MARGIN 0.05 /* a cheaper choice must save this much */

unsigned rf_auto_decide(const RfAutoInputs *in, unsigned cur,
                        double hysteresis, double *rates)
{
    double r[RF_AUTO_MAX_CANDS] = {0};
    double top = 0;
    for (unsigned c = 0; c < in->ncands; c++) {
        r[c] = rf_auto_predict(in, c, NULL);
        top = r[c] > top ? r[c] : top;
        if (rates) {
            rates[c] = r[c];
        }
    }
    if (top <= 0) {
        return cur;
    }
    unsigned best = cur;
    for (unsigned c = 0; c < in->ncands; c++) {
        if (r[c] >= top * (1 - TIE) &&
            (best == cur || r[best] < top * (1 - TIE) ||
             cpu_cost(in, c) < cpu_cost(in, best))) {
            best = c;
        }
    }
    /* The current choice stays while it is within the hysteresis of the
     * best, unless the best is also cheaper. */
    bool cur_ok = cur < in->ncands && in->cost[cur].known;
    /* best is (within TIE) the fastest: clearly cheaper too, it wins
     * anyway.  Costs within COST_MARGIN keep the current choice: two
     * compressors measured that close swap places from window to window
     * (a 1 Gbit/s run went between zstd-1 and qatzip-1 2-6 times). */
    bool dominated =
        cpu_cost(in, best) < cpu_cost(in, cur) * (1 - COST_MARGIN);
    if (cur_ok && r[cur] * (1 + hysteresis) >= r[best] && !dominated) {
        return cur;
    }
    return best;
}

#define PROBE_GAIN 1.2  /* a probe needs this much to win */
#define HELD_BACK 1.5   /* wire rate over the link that shows it itself */

unsigned rf_auto_probe(const RfAutoInputs *in, unsigned cur,
                       double hysteresis, double *rate)
{
    if (in->link_Bps <= 0 || cur >= in->ncands) {
        return cur;
    }
    RfAutoInputs fast = *in;
    fast.link_Bps = 0;
    unsigned p = rf_auto_decide(&fast, cur, hysteresis, NULL);
    double prate = rf_auto_predict(&fast, p, NULL);
    double cur_wire = rf_auto_predict(&fast, cur, NULL) * in->cost[cur].ratio;
    if (p == cur || !(prate > PROBE_GAIN * rf_auto_predict(in, cur, NULL)) ||
        cur_wire >= HELD_BACK * in->link_Bps) {
        return cur;
    }
    if (rate) {
        *rate = prate;
    }
    return p;
}

const char *rf_auto_bound_name(RfAutoBound b)
{
    switch (b) {
    case RF_AUTO_BOUND_SOURCE: return "source CPU";
    case RF_AUTO_BOUND_DEST: return "destination CPU";
    case RF_AUTO_BOUND_LINK: return "link";
    case RF_AUTO_BOUND_HOST: return "shared host CPU";
    default: return "unknown";
    }
}
