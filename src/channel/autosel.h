/*
 * ramflow - 'auto': the source chooses method, level and how many
 * channels carry data, while it migrates (docs/methods.md, "auto").
 *
 * Two parts.  The model (autosel_model.c) is pure: from what the last
 * window measured it predicts, for each candidate, the rate at which
 * page data would move (raw bytes/s), bounded by the source's CPU, the
 * destination's CPU and the link, and picks the fastest with hysteresis.
 * The selector (autosel.c) feeds it: each sending channel counts, per
 * packet, what it compressed with which candidate and what sending cost
 * (CPU and time blocked); now and then a channel also compresses a
 * few pages of a packet it has just sent with every candidate and
 * decodes the results (a sweep, never sent), within a small share of its
 * CPU, so that candidates are compared on the same data; the
 * destination's STATS bring its CPU, its decode cost and the time its
 * channels waited for data.  The engine calls rf_autosel_tick between
 * batches; the channels read the current choice with one atomic load.
 */
#ifndef RF_CHANNEL_AUTOSEL_H
#define RF_CHANNEL_AUTOSEL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compress/method.h"
#include "wire/wire.h"

#define RF_AUTO_MAX_CANDS 8

typedef struct RfAutoCand {
    const RfMethodOps *method;
    int level;     /* the method's level (0 for none) */
    char name[24]; /* "none", "zstd-1", "qatzip-1" */
} RfAutoCand;

typedef struct RfAutoConfig {
    RfAutoCand cands[RF_AUTO_MAX_CANDS];
    unsigned ncands;    /* 1..RF_AUTO_MAX_CANDS; "none" among them */
    unsigned channels;  /* connected data channels */
    double max_cpu;     /* the source's budget in cores, 0 = none */
    /* Reads the host's idle and total CPU time (rf_host_cpu when NULL);
     * tests give a fake host whose load they set. */
    bool (*host_cpu)(uint64_t *idle_ns, uint64_t *total_ns);
} RfAutoConfig;

/* ---- the model (autosel_model.c) -------------------------------------- */

/* What is known of one candidate; costs in CPU nanoseconds per byte of
 * normal (non-zero) page data. */
typedef struct RfAutoCost {
    bool known;
    double ratio;      /* wire bytes / raw bytes, <= 1 (raw fallback) */
    double comp_ns;    /* source: compressing */
    double dst_ns;     /* destination: reading and decoding, per raw byte */
} RfAutoCost;

typedef struct RfAutoInputs {
    unsigned ncands;
    RfAutoCost cost[RF_AUTO_MAX_CANDS];
    double src_wire_ns;   /* source CPU per wire byte sent */
    double src_page_ns;   /* source CPU per raw byte besides compressing
                           * and sending (zero test, packet building) */
    double src_cores;     /* cores the source may use */
    double dst_cores;     /* cores the destination may use */
    unsigned channels;    /* channels that may carry data */
    unsigned dst_channels;
    double link_Bps;      /* wire bytes/s the link carries; 0 = unknown
                           * (not seen limiting) */
    double shared_cores;  /* > 0: both sides share one host's CPUs, this
                           * many for the two together */
} RfAutoInputs;

typedef enum {
    RF_AUTO_BOUND_NONE = 0,
    RF_AUTO_BOUND_SOURCE, /* source CPU */
    RF_AUTO_BOUND_DEST,   /* destination CPU */
    RF_AUTO_BOUND_LINK,
    RF_AUTO_BOUND_HOST,   /* both sides' CPU on one host */
} RfAutoBound;

/* @return the predicted raw bytes/s of candidate c (0 if its costs are
 * unknown) and, in *bound (may be NULL), what limits it. */
double rf_auto_predict(const RfAutoInputs *in, unsigned c,
                       RfAutoBound *bound);
/* @return the candidate to use next: the fastest predicted (of those
 * within 2% of the fastest, the one that takes the guest's CPU least),
 * unless the current one (cur) is predicted within `hysteresis` (0.1 =
 * 10%) of it and costs no more than 5% more CPU, in which case cur
 * stays.  rates (may be NULL) receives every prediction. */
unsigned rf_auto_decide(const RfAutoInputs *in, unsigned cur,
                        double hysteresis, double *rates);
/* @return the candidate to probe with (one window, to learn whether the
 * link got faster): the one that would win with no link limit, if it is
 * predicted 20% faster there than cur is now; cur if no probe is worth
 * it: no link limit known, or cur itself could put 1.5 times the link
 * on the wire (held back by the link, cur shows a faster one in every
 * window: a probe would only spend a window on a worse candidate).
 * *rate (may be NULL) receives the probe's predicted raw bytes/s. */
unsigned rf_auto_probe(const RfAutoInputs *in, unsigned cur,
                       double hysteresis, double *rate);
/* @return "source CPU", "destination CPU", "link" or "unknown". */
const char *rf_auto_bound_name(RfAutoBound b);

/* ---- the selector (autosel.c) ----------------------------------------- */

typedef struct RfAutoSel RfAutoSel;

RfAutoSel *rf_autosel_new(const RfAutoConfig *cfg);
void rf_autosel_free(RfAutoSel *s);
const RfAutoConfig *rf_autosel_config(const RfAutoSel *s);

/* The candidate the channels use now (index into the config). */
unsigned rf_autosel_choice(RfAutoSel *s);
/* How many channels carry data now (1..channels); the others idle. */
unsigned rf_autosel_active(RfAutoSel *s);

/* A channel's accounting of one page packet it sent with candidate
 * cand: normal-page bytes, payload bytes, CPU ns compressing, CPU ns
 * sending, wall ns sending, and its other CPU ns. */
void rf_autosel_packet(RfAutoSel *s, unsigned ch, unsigned cand,
                       uint32_t raw, uint32_t wire, uint64_t comp_ns,
                       uint64_t send_cpu_ns, uint64_t send_wall_ns,
                       uint64_t other_ns);
/* @return true if channel ch should sweep the packet it just sent:
 * compress a few of its pages with every candidate but none and decode
 * them again, so that all candidates are priced on the same data.
 * About 3% of its CPU goes to sweeps (10% in the first second, to learn
 * fast), plus 2% of a core in time; 1% plus 0.2% once the choice leads
 * the runner-up by half again.  In the first second only channel 0
 * sweeps, and only once a window saw the link limit, or its socket holds
 * 256 KiB unacknowledged (rf_autosel_queued) while the host has half a
 * core idle (/proc/stat over 20 ms or more). */
bool rf_autosel_sweep_due(RfAutoSel *s, unsigned ch);
/* The result of one candidate in a sweep: raw bytes in, payload bytes
 * out, CPU ns to compress and to decode it again. */
void rf_autosel_sampled(RfAutoSel *s, unsigned ch, unsigned cand,
                        uint32_t raw, uint32_t wire, uint64_t comp_ns,
                        uint64_t dec_ns);
/* Channel ch swept a packet in ns of its time, set-up included (the
 * report's "sweeps" and "sweep_s"). */
void rf_autosel_swept(RfAutoSel *s, unsigned ch, uint64_t ns);
/* Channel ch's socket holds `bytes` written but not yet acknowledged by
 * the peer (rf_conn_unsent, after a packet; after the first second at
 * most every 5 ms): how far its writes ran
 * ahead of the path.  In the first second it starts the sweeps
 * (rf_autosel_sweep_due): a queue says a compressor could help; and the
 * bytes written less those queued are what the path delivered, the
 * young migration's link figure. */
void rf_autosel_queued(RfAutoSel *s, unsigned ch, uint64_t bytes);
/* @return true while channel ch's queue level is read after every packet
 * (the first second: the start's pacing, the young sweeps and the young
 * link figure use it); later, reads a few ms apart are enough for the
 * receive-window time (rf_autosel_rwnd), which is cumulative. */
bool rf_autosel_queue_wanted(RfAutoSel *s, unsigned ch);
/* Channel ch's connection has been limited by the peer's receive window
 * for us microseconds in all (rf_conn_rwnd_limited_us), read with its
 * queue: time the reader at the other end did not read fast enough, the
 * destination or a relay in between (rf_autosel_tick tells which from
 * the destination's waits). */
void rf_autosel_rwnd(RfAutoSel *s, unsigned ch, uint64_t us);
/* @return true until a decision had every candidate priced, or one with
 * the destination's figures saw no link limit (at most the first
 * second): the channels then keep at most rf_autosel_start_queue()
 * bytes unacknowledged in their sockets.  What the socket buffers take
 * before the link is known goes as the start chose it, raw: 4 MiB and
 * more per channel, 0.13 s of a 1 Gbit/s link and over a second of a
 * 100 Mbit/s one. */
bool rf_autosel_starting(RfAutoSel *s);
/* The socket queue channel ch keeps to while rf_autosel_starting: 5 ms
 * of what the path delivered to it since its first packet, at least
 * 64 KiB, at most 512 KiB (a fast link is never held back; a slow one
 * takes few raw pages before the first decision).  A young channel's
 * sweeps start at 256 KiB queued, or at this queue where it is lower. */
uint64_t rf_autosel_start_queue(RfAutoSel *s, unsigned ch);
/* The candidate a channel held back by its path sends with until the
 * first decision: the first compressor (the one the prior prices), or
 * the choice once a decision came.  A channel whose socket drained
 * slower than a fast link would (see send_channel.c start_pace) knows
 * its path is slow before the first window is over: with none, what it
 * wrote meanwhile went raw (at 100 Mbit/s the first decision comes after
 * 0.06-0.2 s, 2-3 MB of raw pages). */
unsigned rf_autosel_start_cand(RfAutoSel *s);

/* A channel's pacing waits at the start whose receive window stayed open
 * (a wait the destination's window held says nothing of the path): the
 * bytes the path took from its socket in them, and their seconds. */
typedef struct RfStartWaits {
    long long drained;
    double waited;
} RfStartWaits;
/* @return true if the finished waits in w and the current one (drained
 * bytes in waited s so far; 0, 0 for none) add up to 8 ms or more at
 * under 40 MB/s: a slow path.  A 1 Gbit/s link gives each of 4 channels
 * some 30 MB/s, 10 Gbit/s 300 MB/s; a loopback destination busy with its
 * start (both ends on this 2-core host) drained 42-61 MB/s over waits of
 * 4-4.5 ms with its receive window open, and at 64 MB/s and 4 ms that
 * compressed 7 of 24 fast-link runs.  Added up, because a zero-heavy
 * image's packets are small on the wire: at 1 Gbit/s its channels
 * waited 0.3-5 ms at a time, none long enough alone, and a fifth of its
 * page data went raw. */
bool rf_start_waits_slow(const RfStartWaits *w, long long drained,
                         double waited);
/* Counts a finished wait of the channel (drained bytes in waited s). */
void rf_start_waits_add(RfStartWaits *w, long long drained, double waited);
/* Channel ch wrote its SYNC for `round`: what it sent since its last
 * SYNC belongs to that round (the report's per-round table). */
void rf_autosel_round_end(RfAutoSel *s, unsigned ch, uint32_t round);
/* The destination's latest STATS (cumulative figures). */
void rf_autosel_peer(RfAutoSel *s, const RfStats *st);
/* True when a window is due: the next rf_autosel_tick decides (every
 * 0.25 s at most, the first after 0.05 s).  Lets the caller compute
 * remaining_raw only then. */
bool rf_autosel_due(RfAutoSel *s);
/* Measures the window since the last decision and decides again, when
 * one is due (rf_autosel_due; otherwise returns at once).  remaining_raw:
 * normal-page bytes still to send in this round (for the prediction of
 * the end). */
void rf_autosel_tick(RfAutoSel *s, uint64_t remaining_raw);
/* The migration ended after total_s seconds: kept for the report's
 * prediction-against-outcome line. */
void rf_autosel_finish(RfAutoSel *s, double total_s);

/* "zstd-1 x4" (the current choice and active channels). */
void rf_autosel_describe(RfAutoSel *s, char *buf, size_t cap);
/* One line: share of page data per candidate and the number of
 * switches, e.g. "zstd-1 81%, none 19%; 3 switches". */
void rf_autosel_summary(RfAutoSel *s, char *buf, size_t cap);
/* The JSON object of docs/methods.md (candidates, rounds, decisions,
 * predicted_s, actual_s).  @return the length it needs, as snprintf. */
size_t rf_autosel_json(RfAutoSel *s, char *buf, size_t cap);

#endif
