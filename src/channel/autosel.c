/*
 * ramflow - the 'auto' selector: measurements in, decisions out.
 *
 * Counters are cumulative relaxed atomics written by one channel thread
 * each; rf_autosel_tick (the engine thread) takes differences over the
 * window since its last decision, turns them into the model's inputs
 * (costs smoothed over windows, so one odd window does not flip the
 * choice), decides and logs the decision when it changes.
 *
 * The link: a window in which the source's channels spent most of their
 * sending time blocked and the destination's channels most of their time
 * waiting for data was limited by neither CPU: its wire rate is the
 * link's.  A link seen limiting stays known until a window carries more
 * than it; to find out whether it became faster while a compressor keeps
 * the wire below it, the selector now and then probes (one window with
 * the candidate that would win on a fast link), at growing intervals.
 */
#include "channel/autosel.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "util/hostcpu.h"

#define C RF_AUTO_MAX_CANDS
#define YOUNG_S 1.0 /* a migration's first second: its start's rules */
#define DECIDE_EVERY_S 0.25
#define FIRST_WINDOW_S 0.05
#define HYSTERESIS 0.05
#define BLOCKED 0.3        /* a side is waiting on the link above this */
/* ...in the first second, the source's share beyond the time its
 * connections were limited by the receive window */
#define PATH_HELD 0.15
#define PROBE_FIRST_S 4.0
#define PROBE_MAX_S 32.0
#define MAX_DECISIONS 256
#define LEAD_SETTLED_PCT 150 /* fewer sweeps above this lead */
#define SWEEP_QUEUE (256u << 10) /* a socket queue that starts sweeps */
#define SWEEP_CHANNELS_YOUNG 1 /* channels sweeping in the first second */
/* The socket queue per channel until decided: what the path delivers to
 * the channel in START_QUEUE_S, within these bounds. */
#define START_QUEUE_MIN (64u << 10)
#define START_QUEUE_MAX (512u << 10)
#define START_QUEUE_S 0.005
#define ABSORBING 1.5 /* young window: written / delivered since start */
/* The shortest span of the destination's reports that is taken: it
 * sends one every 20 ms at the start (its host's idle time is counted in
 * 10 ms ticks, so it is coarse there; its channels' waits are exact). */
#define PEER_MIN_NS 2e7

typedef struct AutoChan {
    _Atomic uint64_t raw[C], wire[C], comp_ns[C], packets[C];
    _Atomic uint64_t send_cpu_ns, send_wall_ns, other_ns;
    _Atomic uint64_t queued; /* unacknowledged in its socket, last seen */
    _Atomic uint64_t rwnd_us; /* receive-window limited, last seen */
    _Atomic uint64_t s_raw[C], s_wire[C], s_comp[C], s_dec[C];
    _Atomic uint64_t sweeps, sweep_ns; /* whole sweeps, set-up included */
    /* the channel thread's own */
    uint64_t work_ns, sample_ns;
    uint64_t host_idle, host_total; /* its last /proc/stat reading... */
    double host_at;                 /* ...and when (0: none yet) */
    uint64_t round_raw[C], round_pk[C]; /* at its last SYNC */
    double first_at; /* its first packet's end (0: none yet) */
} AutoChan;

/* Sums over channels, for window differences. */
typedef struct Totals {
    uint64_t raw[C], wire[C], comp_ns[C];
    uint64_t s_raw[C], s_wire[C], s_comp[C], s_dec[C];
    uint64_t send_cpu_ns, send_wall_ns, other_ns;
    uint64_t rwnd_us;
} Totals;

typedef struct Decision {
    double t;
    unsigned cand, channels;
    double pred_Bps, actual_Bps;
    char reason[160];
} Decision;

typedef struct RoundRow {
    uint32_t round;
    uint64_t raw[C], packets[C];
} RoundRow;

struct RfAutoSel {
    RfAutoConfig cfg;
    unsigned none_idx;
    AutoChan *ch;
    atomic_uint choice, active;
    /* the choice's predicted rate over the runner-up's, in percent; 0
     * while some candidate is unpriced */
    atomic_uint lead_pct;
    atomic_bool link_limited; /* a window saw the link limit */
    /* a decision had every candidate priced, or the destination's
     * figures and no link limit: the start's pacing ends */
    atomic_bool decided;
    atomic_bool spare_seen;   /* the host had a spare half core */
    atomic_bool rwnd_known;   /* a channel reported its tcp_info */
    atomic_bool first_decided; /* a window's decision was made */
    double t0;
    uint64_t idle0, total0;   /* /proc/stat at t0 */
    /* engine thread only */
    double last_t, last_cpu;
    uint64_t last_idle, last_total;
    Totals last;
    RfAutoCost cost[C];
    double dec_ns[C];           /* sampled decode cost at the source */
    double sw_ratio[C], sw_comp[C]; /* from sweeps: all on the same data */
    double act_ratio[C], act_comp[C]; /* from the packets each carried */
    double dst_method_ns[32];   /* destination's measured, per method */
    double src_wire_ns, src_page_ns;
    double link_Bps;
    double probe_every, last_probe;
    bool probing;
    unsigned probe_from;
    RfStats peer, peer_prev;
    bool have_base, have_peer;
    bool link_provisional; /* link_Bps guessed without the peer */
    bool same_host;        /* the destination shares this host's CPUs */
    double dst_own;        /* destination process cores, last window */
    double dst_cores, dst_idle;
    Decision dec[MAX_DECISIONS];
    unsigned ndec, switches;
    double predicted_s, actual_s;
    /* channel threads, under lock */
    pthread_mutex_t lock;
    RoundRow *rounds;
    unsigned nrounds, rounds_cap;
};

static void log_decision(RfAutoSel *s, double now, unsigned cand,
                         double pred, const char *reason);

RfAutoSel *rf_autosel_new(const RfAutoConfig *cfg)
{
    RfAutoSel *s = calloc(1, sizeof(*s));
    if (!s || cfg->ncands == 0 || cfg->ncands > C || cfg->channels == 0 ||
        !(s->ch = calloc(cfg->channels, sizeof(*s->ch)))) {
        free(s);
        return NULL;
    }
    s->cfg = *cfg;
    if (!s->cfg.host_cpu) {
        s->cfg.host_cpu = rf_host_cpu;
    }
    s->none_idx = cfg->ncands;
    for (unsigned i = 0; i < cfg->ncands; i++) {
        if (cfg->cands[i].method->id == RF_METHOD_NONE) {
            s->none_idx = i;
        }
    }
    unsigned active = cfg->channels;
    if (cfg->max_cpu > 0) {
        double k = ceil(cfg->max_cpu);
        active = k < 1 ? 1 : k < active ? (unsigned)k : active;
    }
    /* none until the first window is measured (50 ms): it
     * costs nothing where the link is fast, little where it is slow, and
     * the samples of that window already price the compressors. */
    atomic_init(&s->choice, s->none_idx < cfg->ncands ? s->none_idx : 0);
    atomic_init(&s->active, active);
    pthread_mutex_init(&s->lock, NULL);
    s->t0 = s->last_t = rf_now();
    s->last_cpu = rf_process_cpu();
    s->cfg.host_cpu(&s->last_idle, &s->last_total);
    s->idle0 = s->last_idle;
    s->total0 = s->last_total;
    s->probe_every = PROBE_FIRST_S;
    s->predicted_s = -1;
    if (s->none_idx < cfg->ncands) {
        s->cost[s->none_idx] = (RfAutoCost){.known = false, .ratio = 1.0};
    }
    s->last_probe = s->t0;
    log_decision(s, s->t0, rf_autosel_choice(s), 0, "start: none until "
                 "the first 50 ms are measured");
    return s;
}

void rf_autosel_free(RfAutoSel *s)
{
    if (s) {
        pthread_mutex_destroy(&s->lock);
        free(s->rounds);
        free(s->ch);
        free(s);
    }
}

const RfAutoConfig *rf_autosel_config(const RfAutoSel *s)
{
    return &s->cfg;
}

unsigned rf_autosel_choice(RfAutoSel *s)
{
    return atomic_load_explicit(&s->choice, memory_order_relaxed);
}

unsigned rf_autosel_active(RfAutoSel *s)
{
    return atomic_load_explicit(&s->active, memory_order_relaxed);
}

static void add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

void rf_autosel_packet(RfAutoSel *s, unsigned ch, unsigned cand,
                       uint32_t raw, uint32_t wire, uint64_t comp_ns,
                       uint64_t send_cpu_ns, uint64_t send_wall_ns,
                       uint64_t other_ns)
{
    AutoChan *a = &s->ch[ch];
    add(&a->raw[cand], raw);
    add(&a->wire[cand], wire);
    add(&a->comp_ns[cand], comp_ns);
    add(&a->packets[cand], 1);
    add(&a->send_cpu_ns, send_cpu_ns);
    add(&a->send_wall_ns, send_wall_ns);
    add(&a->other_ns, other_ns);
    a->work_ns += comp_ns + send_cpu_ns + other_ns;
    if (a->first_at == 0) {
        a->first_at = rf_now();
    }
}

/* True while channel ch's sweeps wait for its socket queue: in the
 * first second, on the sweeping channel, until a window saw the link. */
static bool waits_for_queue(RfAutoSel *s, unsigned ch, double age)
{
    return age < YOUNG_S && ch < SWEEP_CHANNELS_YOUNG &&
           !atomic_load_explicit(&s->link_limited, memory_order_relaxed);
}

bool rf_autosel_starting(RfAutoSel *s)
{
    return !atomic_load_explicit(&s->decided, memory_order_relaxed) &&
           rf_now() - s->t0 < YOUNG_S;
}

/* What channel a's path has delivered: the bytes it wrote less those
 * still queued in its socket (as last read). */
static uint64_t delivered(const RfAutoSel *s, AutoChan *a)
{
    uint64_t wire = 0;
    for (unsigned c = 0; c < s->cfg.ncands; c++) {
        wire += atomic_load_explicit(&a->wire[c], memory_order_relaxed);
    }
    uint64_t queued = atomic_load_explicit(&a->queued, memory_order_relaxed);
    return wire > queued ? wire - queued : 0;
}

uint64_t rf_autosel_start_queue(RfAutoSel *s, unsigned ch)
{
    /* A few milliseconds of what the path delivered to this channel since
     * its first packet (written less still queued): on a fast link the
     * bound, 512 KiB, never holds a write back; on a 100 Mbit/s one the
     * sockets held 2-4 MiB of raw pages when the first decision came,
     * 0.1 s of a 1.3 s zero-heavy migration, and now hold a quarter. */
    AutoChan *a = &s->ch[ch];
    double age = rf_now() - a->first_at;
    if (a->first_at == 0 || age <= 0) {
        return START_QUEUE_MAX;
    }
    double got = (double)delivered(s, a);
    double q = got / age * START_QUEUE_S;
    /* Never more than the path delivered so far: a young channel's rate
     * is a burst (at 1 Gbit/s its first 128 KiB was acknowledged within
     * 2 ms, a token bucket's burst), and extrapolated over 5 ms it let
     * every channel write its second packet at once. */
    q = q < got ? q : got;
    return q < START_QUEUE_MIN   ? START_QUEUE_MIN
           : q > START_QUEUE_MAX ? START_QUEUE_MAX
                                 : (uint64_t)q;
}

bool rf_autosel_queue_wanted(RfAutoSel *s, unsigned ch)
{
    (void)ch;
    return rf_now() - s->t0 < YOUNG_S;
}

#define SPARE_WINDOW_S 0.02 /* /proc/stat counts in 10 ms ticks */
#define SPARE_CORES 0.5

/* True once the host was seen with half a core idle over 20 ms or more
 * (channel ch's own readings of /proc/stat, at most one per 20 ms): a
 * sweep then takes time no thread of the migration wanted.  Where no
 * core is spare the socket queue is rarely the link's: a destination on
 * this host that cannot keep up builds it too, and there a sweep (20 ms
 * of CPU the first time: the candidates' states and tables faulted in)
 * was a tenth of a 0.2 s migration that none wins.  Unknown (no
 * /proc/stat): true, as before the check. */
static bool host_has_spare(RfAutoSel *s, AutoChan *a, double now)
{
    if (atomic_load_explicit(&s->spare_seen, memory_order_relaxed)) {
        return true;
    }
    if (a->host_at == 0) {
        a->host_at = s->t0;
        a->host_idle = s->idle0;
        a->host_total = s->total0;
    }
    if (now - a->host_at < SPARE_WINDOW_S) {
        return false;
    }
    uint64_t idle = 0, total = 0;
    bool known = s->cfg.host_cpu(&idle, &total) && a->host_total;
    double cores = known && total > a->host_total && idle >= a->host_idle
        ? (double)(idle - a->host_idle) / (double)(total - a->host_total) *
              rf_host_ncpus()
        : 0;
    a->host_at = now;
    a->host_idle = idle;
    a->host_total = total;
    if (!known || cores >= SPARE_CORES) {
        atomic_store_explicit(&s->spare_seen, true, memory_order_relaxed);
        return true;
    }
    return false;
}

/* The socket queue that starts a young channel's sweeps: 256 KiB, or
 * less where the start's pacing holds the queue lower (a slow link: it
 * holds the channel there, which is what the queue was to show). */
static uint64_t sweep_queue(RfAutoSel *s, unsigned ch)
{
    uint64_t start = rf_autosel_starting(s) ? rf_autosel_start_queue(s, ch)
                                            : SWEEP_QUEUE;
    return start < SWEEP_QUEUE ? start : SWEEP_QUEUE;
}

bool rf_autosel_sweep_due(RfAutoSel *s, unsigned ch)
{
    AutoChan *a = &s->ch[ch];
    double now = rf_now(), age = now - s->t0;
    /* A compressor beats none only where the path holds the writes back.
     * Until this channel's socket queues 256 KiB (half a full packet;
     * less where the start's pacing keeps its queue lower) or
     * a window saw the link limit, a young migration does not price
     * them: on a fast link the sweeps cost a fifth of a 0.2 s migration's
     * time, and on a slow one the queue is there after the first few
     * packets (a megabyte came too late on a zero-heavy image, whose
     * packets are small on the wire).  In that first second only the
     * first channel sweeps (the lowest stay active when others are
     * parked): each channel's first sweep only warms its codecs up (cold
     * allocations: with two channels sweeping, a 10 Gbit/s migration of
     * 0.2 s still lost 40%), and the pages of one channel are like the
     * others'. */
    if ((age < YOUNG_S && ch >= SWEEP_CHANNELS_YOUNG) ||
        (waits_for_queue(s, ch, age) &&
         (atomic_load_explicit(&a->queued, memory_order_relaxed) <
              sweep_queue(s, ch) ||
          !host_has_spare(s, a, now)))) {
        return false;
    }
    double share = age < YOUNG_S ? 0.10 : 0.03, per_s = 0.02;
    /* A choice that leads by half again needs no finer prices: the
     * sweeps only watch for the data changing (on a fast link, where
     * none leads every compressor, they were a fifth of a short
     * migration's time). */
    if (atomic_load_explicit(&s->lead_pct, memory_order_relaxed) >=
        LEAD_SETTLED_PCT) {
        share = 0.01;
        per_s = 0.002;
    }
    /* A share of its work, plus some of a core in time: a channel that
     * mostly waits on a slow link still learns its candidates. */
    return (double)a->sample_ns <=
           share * (double)a->work_ns + per_s * age * 1e9;
}

void rf_autosel_queued(RfAutoSel *s, unsigned ch, uint64_t bytes)
{
    atomic_store_explicit(&s->ch[ch].queued, bytes, memory_order_relaxed);
}

void rf_autosel_rwnd(RfAutoSel *s, unsigned ch, uint64_t us)
{
    atomic_store_explicit(&s->ch[ch].rwnd_us, us, memory_order_relaxed);
    atomic_store_explicit(&s->rwnd_known, true, memory_order_relaxed);
}

void rf_autosel_sampled(RfAutoSel *s, unsigned ch, unsigned cand,
                        uint32_t raw, uint32_t wire, uint64_t comp_ns,
                        uint64_t dec_ns)
{
    AutoChan *a = &s->ch[ch];
    add(&a->s_raw[cand], raw);
    add(&a->s_wire[cand], wire);
    add(&a->s_comp[cand], comp_ns);
    add(&a->s_dec[cand], dec_ns);
    a->sample_ns += comp_ns + dec_ns;
}

void rf_autosel_swept(RfAutoSel *s, unsigned ch, uint64_t ns)
{
    add(&s->ch[ch].sweeps, 1);
    add(&s->ch[ch].sweep_ns, ns);
}

/* The table row of `round`, appended if new; lock held. */
static RoundRow *round_row(RfAutoSel *s, uint32_t round)
{
    for (unsigned i = s->nrounds; i-- > 0;) {
        if (s->rounds[i].round == round) {
            return &s->rounds[i];
        }
    }
    if (s->nrounds == s->rounds_cap) {
        unsigned cap = s->rounds_cap ? 2 * s->rounds_cap : 16;
        RoundRow *r = realloc(s->rounds, cap * sizeof(*r));
        if (!r) {
            return NULL;
        }
        s->rounds = r;
        s->rounds_cap = cap;
    }
    RoundRow *r = &s->rounds[s->nrounds++];
    memset(r, 0, sizeof(*r));
    r->round = round;
    return r;
}

void rf_autosel_round_end(RfAutoSel *s, unsigned ch, uint32_t round)
{
    AutoChan *a = &s->ch[ch];
    pthread_mutex_lock(&s->lock);
    RoundRow *r = round_row(s, round);
    for (unsigned c = 0; c < s->cfg.ncands; c++) {
        uint64_t raw = atomic_load(&a->raw[c]);
        uint64_t pk = atomic_load(&a->packets[c]);
        if (r) {
            r->raw[c] += raw - a->round_raw[c];
            r->packets[c] += pk - a->round_pk[c];
        }
        a->round_raw[c] = raw;
        a->round_pk[c] = pk;
    }
    pthread_mutex_unlock(&s->lock);
}

void rf_autosel_peer(RfAutoSel *s, const RfStats *st)
{
    /* The first report is the baseline: its figures are counted from
     * before the data flowed (the host's since boot). */
    /* The same kernel's counters: the destination runs on this host (a
     * loopback or namespace link), and the two sides share its CPUs.
     * Another host's CPU time since boot is off by its uptime. */
    uint64_t idle = 0, total = 0;
    if (s->cfg.host_cpu(&idle, &total) && st->host_total_ns &&
        st->ncpus == rf_host_ncpus()) {
        double diff = fabs((double)total - (double)st->host_total_ns);
        s->same_host = diff < 0.5e9 * st->ncpus;
    } else {
        s->same_host = false;
    }
    if (!s->have_base) {
        s->peer_prev = *st;
        s->have_base = true;
        return;
    }
    s->peer = *st;
    s->have_peer = true;
}

static void totals(RfAutoSel *s, Totals *t)
{
    memset(t, 0, sizeof(*t));
    for (unsigned i = 0; i < s->cfg.channels; i++) {
        AutoChan *a = &s->ch[i];
        for (unsigned c = 0; c < s->cfg.ncands; c++) {
            t->raw[c] += atomic_load(&a->raw[c]);
            t->wire[c] += atomic_load(&a->wire[c]);
            t->comp_ns[c] += atomic_load(&a->comp_ns[c]);
            t->s_raw[c] += atomic_load(&a->s_raw[c]);
            t->s_wire[c] += atomic_load(&a->s_wire[c]);
            t->s_comp[c] += atomic_load(&a->s_comp[c]);
            t->s_dec[c] += atomic_load(&a->s_dec[c]);
        }
        t->send_cpu_ns += atomic_load(&a->send_cpu_ns);
        t->send_wall_ns += atomic_load(&a->send_wall_ns);
        t->other_ns += atomic_load(&a->other_ns);
        t->rwnd_us += atomic_load(&a->rwnd_us);
    }
}

/* Moves an estimate halfway to a new measurement (the first one is
 * taken as it is). */
static double smooth(double old, double now)
{
    return old > 0 ? 0.5 * old + 0.5 * now : now;
}

#define MIN_BYTES (256.0 * 1024)
#define SWEEP_MIN (64.0 * 1024)

static double clamp(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The costs each candidate showed in this window.  The one that carried
 * the packets is priced by them; the others by the sweeps, where every
 * candidate compressed the same pages, scaled by how far the sweeps were
 * off for the one that carried the packets (sweeps see a few pages of a
 * packet, warm in the cache).  Candidates priced by samples of different
 * packets would be compared on different data: on a mixed image one
 * level's samples may all fall on text and another's on binaries. */
static void update_costs(RfAutoSel *s, const Totals *d)
{
    double corr_r = 1, corr_c = 1;
    for (unsigned c = 0; c < s->cfg.ncands; c++) {
        double raw = (double)d->raw[c], sraw = (double)d->s_raw[c];
        if (c == s->none_idx) {
            continue;
        }
        if (sraw >= SWEEP_MIN) {
            s->sw_ratio[c] = smooth(s->sw_ratio[c],
                                    (double)d->s_wire[c] / sraw);
            s->sw_comp[c] = smooth(s->sw_comp[c],
                                   (double)d->s_comp[c] / sraw);
            s->dec_ns[c] = smooth(s->dec_ns[c], (double)d->s_dec[c] / sraw);
        }
        if (raw >= MIN_BYTES) {
            s->act_ratio[c] = smooth(s->act_ratio[c],
                                     (double)d->wire[c] / raw);
            s->act_comp[c] = smooth(s->act_comp[c],
                                    (double)d->comp_ns[c] / raw);
            if (s->sw_ratio[c] > 0 && s->sw_comp[c] > 0) {
                corr_r = clamp(s->act_ratio[c] / s->sw_ratio[c], 0.5, 2);
                corr_c = clamp(s->act_comp[c] / s->sw_comp[c], 0.5, 2);
            }
        }
    }
    for (unsigned c = 0; c < s->cfg.ncands; c++) {
        RfAutoCost *k = &s->cost[c];
        if (c == s->none_idx) {
            k->ratio = 1.0;
            k->comp_ns = 0;
        } else if ((double)d->raw[c] >= MIN_BYTES) {
            k->ratio = s->act_ratio[c];
            k->comp_ns = s->act_comp[c];
            k->known = true;
        } else if (s->sw_ratio[c] > 0) {
            k->ratio = clamp(s->sw_ratio[c] * corr_r, 0, 1);
            k->comp_ns = s->sw_comp[c] * corr_c;
            k->known = true;
        }
    }
    uint64_t raw = 0, wire = 0;
    for (unsigned c = 0; c < s->cfg.ncands; c++) {
        raw += d->raw[c];
        wire += d->wire[c];
    }
    if (wire >= MIN_BYTES) {
        s->src_wire_ns = smooth(s->src_wire_ns,
                                (double)d->send_cpu_ns / (double)wire);
    }
    if (raw >= MIN_BYTES) {
        s->src_page_ns = smooth(s->src_page_ns,
                                (double)d->other_ns / (double)raw);
    }
    if (s->none_idx < s->cfg.ncands && s->src_wire_ns > 0) {
        s->cost[s->none_idx].known = true;
    }
}

/* The destination's figures over the window: its cores and per-method
 * cost.  @return the share of time its channels waited for data, 0 when
 * unknown (no report yet: the link is then not taken as the limit). */
static double update_peer(RfAutoSel *s)
{
    if (!s->have_peer) {
        s->dst_cores = s->dst_cores > 0 ? s->dst_cores : rf_host_ncpus();
        return 0;
    }
    const RfStats *a = &s->peer_prev, *b = &s->peer;
    double wall = (double)(b->wall_ns - a->wall_ns);
    if (wall < PEER_MIN_NS) {
        return 0; /* no new report in this window */
    }
    double own = (double)(b->cpu_ns - a->cpu_ns) / wall;
    double idle = 0;
    if (b->host_total_ns > a->host_total_ns) {
        double share = (double)(b->host_idle_ns - a->host_idle_ns) /
                       (double)(b->host_total_ns - a->host_total_ns);
        idle = share * (b->ncpus ? b->ncpus : 1);
    }
    s->dst_idle = idle;
    s->dst_own = own;
    double cores = rf_host_cores_available(own, idle, s->cfg.channels,
                                           b->running,
                                           b->ncpus ? b->ncpus : 1);
    if (b->max_cpu_milli && cores > b->max_cpu_milli / 1000.0) {
        cores = b->max_cpu_milli / 1000.0;
    }
    s->dst_cores = smooth(s->dst_cores, cores);
    for (unsigned i = 0; i < b->nmethods; i++) {
        const RfStatsMethod *m = &b->methods[i];
        uint64_t raw0 = 0, ns0 = 0;
        for (unsigned j = 0; j < a->nmethods; j++) {
            if (a->methods[j].method == m->method) {
                raw0 = a->methods[j].raw_bytes;
                ns0 = a->methods[j].decode_ns;
            }
        }
        double raw = (double)(m->raw_bytes - raw0);
        if (m->method < 32 && raw >= MIN_BYTES) {
            s->dst_method_ns[m->method] = smooth(
                s->dst_method_ns[m->method],
                (double)(m->decode_ns - ns0) / raw);
        }
    }
    double n = s->cfg.channels;
    double wait = (double)(b->recv_wait_ns - a->recv_wait_ns) / (wall * n);
    s->peer_prev = s->peer;
    return wait;
}

/* Destination cost per raw byte of each candidate: measured for its
 * method where the destination decoded some, else estimated from the
 * source's sample decode plus what `none` costs there per wire byte. */
static void fill_dst_costs(RfAutoSel *s)
{
    double none_ns = s->dst_method_ns[RF_METHOD_NONE];
    for (unsigned c = 0; c < s->cfg.ncands; c++) {
        uint8_t id = s->cfg.cands[c].method->id;
        double ns = s->dst_method_ns[id];
        if (!(ns > 0)) {
            ns = s->dec_ns[c] + s->cost[c].ratio * (none_ns > 0 ? none_ns
                                                                : 0.3);
        }
        s->cost[c].dst_ns = ns;
    }
}

static void log_decision(RfAutoSel *s, double now, unsigned cand,
                         double pred, const char *reason)
{
    if (s->ndec > 1) {
        Decision *prev = &s->dec[s->ndec - 1];
        if (prev->cand == cand && prev->channels == rf_autosel_active(s)) {
            return;
        }
    }
    if (s->ndec == MAX_DECISIONS) {
        return;
    }
    Decision *d = &s->dec[s->ndec++];
    d->t = now - s->t0;
    d->cand = cand;
    d->channels = rf_autosel_active(s);
    d->pred_Bps = pred;
    d->actual_Bps = -1;
    snprintf(d->reason, sizeof(d->reason), "%s", reason);
}

/* The actual rate of the decision in force: raw bytes over the window. */
static void note_actual(RfAutoSel *s, double raw_Bps)
{
    if (s->ndec > 0) {
        Decision *d = &s->dec[s->ndec - 1];
        d->actual_Bps = d->actual_Bps < 0 ? raw_Bps
                                          : smooth(d->actual_Bps, raw_Bps);
    }
}

/* A prior for a compressor no sweep has priced yet: half the bytes,
 * 4 ns per raw byte to compress and 1.5 to decode and store, worse than
 * every level measured on this project's data (docs/methods.md).  It
 * stands in only while the link is seen limiting and nothing is priced,
 * so that a link slow enough for halving the data to win gets the first
 * compressor at once instead of a window later (40-50 ms of raw pages at
 * 1 Gbit/s); under it a fast link still goes to none.
 * @return the candidate priced so, or ncands for none. */
#define PRIOR_RATIO 0.5
#define PRIOR_COMP_NS 4.0
#define PRIOR_DST_NS 1.5
/* A candidate priced at the prior replaces the current choice only when
 * predicted this much faster: its figures are a guess. */
#define PRIOR_LEAD 1.5

static unsigned apply_prior(const RfAutoSel *s, RfAutoInputs *in)
{
    if (s->link_Bps <= 0) {
        return in->ncands;
    }
    for (unsigned c = 0; c < in->ncands; c++) {
        if (c != s->none_idx && in->cost[c].known) {
            return in->ncands; /* a sweep priced one: no guessing */
        }
    }
    for (unsigned c = 0; c < in->ncands; c++) {
        if (c != s->none_idx) {
            in->cost[c] = (RfAutoCost){true, PRIOR_RATIO, PRIOR_COMP_NS,
                                       PRIOR_DST_NS};
            return c;
        }
    }
    return in->ncands;
}

bool rf_autosel_due(RfAutoSel *s)
{
    double now = rf_now();
    /* Short windows while little is known (a short migration is over
     * before a few quarter-second windows have passed), longer ones
     * later, for steadier figures. */
    double window = (now - s->t0) / 4;
    window = window < FIRST_WINDOW_S ? FIRST_WINDOW_S
             : window > DECIDE_EVERY_S ? DECIDE_EVERY_S : window;
    /* the first decision waits (up to 0.1 s) for the destination's
     * second STATS: without it the link cannot be told from the
     * destination's CPU */
    return now - s->last_t >= window &&
           (s->have_peer || now - s->t0 >= 2 * FIRST_WINDOW_S);
}

void rf_autosel_tick(RfAutoSel *s, uint64_t remaining_raw)
{
    if (!rf_autosel_due(s)) {
        return;
    }
    double now = rf_now();
    double wall = now - s->last_t;
    Totals t, d;
    totals(s, &t);
    uint64_t *a = (uint64_t *)&t, *b = (uint64_t *)&s->last,
             *o = (uint64_t *)&d;
    for (size_t i = 0; i < sizeof(Totals) / sizeof(uint64_t); i++) {
        o[i] = a[i] - b[i];
    }
    double cpu = rf_process_cpu();
    uint64_t idle = 0, total = 0;
    bool host = s->cfg.host_cpu(&idle, &total);
    unsigned ncpus = rf_host_ncpus();
    double own = (cpu - s->last_cpu) / wall;
    double idle_cores = host && total > s->last_total
        ? (double)(idle - s->last_idle) / (double)(total - s->last_total) *
              ncpus
        : ncpus - own;
    s->last = t;
    s->last_t = now;
    s->last_cpu = cpu;
    s->last_idle = idle;
    s->last_total = total;

    uint64_t raw = 0, wire = 0;
    for (unsigned c = 0; c < s->cfg.ncands; c++) {
        raw += d.raw[c];
        wire += d.wire[c];
    }
    if (raw == 0 && d.s_raw[0] == 0) {
        return; /* nothing was sent: nothing learnt */
    }
    note_actual(s, raw / wall);
    update_costs(s, &d);
    double dst_wait = update_peer(s);
    fill_dst_costs(s);

    unsigned active = rf_autosel_active(s);
    double src_block = d.send_wall_ns > d.send_cpu_ns
        ? (double)(d.send_wall_ns - d.send_cpu_ns) / (wall * 1e9 * active)
        : 0;
    double wire_Bps = wire / wall, link_seen = wire_Bps;
    bool young = now - s->t0 < YOUNG_S;
    bool absorbing = false; /* the sockets took much more than they passed */
    /* What a young migration's window shows of the link is inflated by
     * the socket buffers filling (the start's pacing keeps up to 512 KiB
     * per channel, without it 4 MiB and more, a tenth of a second of a
     * 1 Gbit/s link).  What the path delivered since the start is not:
     * the bytes written less those still in the sockets.  Written bytes
     * alone took a 100 Mbit/s link for 29 MB/s at 0.12 s. */
    if (young) {
        uint64_t sent = 0;
        for (unsigned ch = 0; ch < s->cfg.channels; ch++) {
            sent += delivered(s, &s->ch[ch]);
        }
        double since_start = sent / (now - s->t0);
        link_seen = since_start < wire_Bps ? since_start : wire_Bps;
        absorbing = wire_Bps > ABSORBING * since_start;
    }
    /* The destination keeps up when its channels wait for data or its
     * host has a core's third idle (its threads then were not short of
     * CPU). */
    bool dst_keeps_up = dst_wait > BLOCKED ||
                        (s->have_peer && s->dst_idle > 0.3);
    /* Held back by the path, not by the destination's reading: the time
     * the receive window limited the connections (their tcp_info, read
     * with their queues) is taken out.  On this 2-core host a loopback
     * destination busy with its start (both ends and the live guest on
     * the CPUs) held the source back 20-40% of a window, nearly all of
     * it receive-window limited, while its channels were off the CPU
     * without reading (its start keeps it busy): taken for a 60-250 MB/s
     * link, zstd compressed 0.12 s migrations.  A 1 Gbit/s link held it
     * back 20-33% beyond that.  After the first second a destination
     * that cannot keep up does the same: taken for a 240 MB/s link, a
     * 1 GiB loopback migration compressed from its second second on and
     * took 3.65 s where none took 2.52 (its receive-window time was
     * read only in the first second).  After the first second only a
     * destination whose channels were not waiting for data is taken
     * to hold its window shut: one that waits while the source's window
     * is shut has something between them that reads slowly, a relay or
     * tunnel, which is the path (an 8 MB/s proxy then looked like a
     * busy destination, and auto sent raw throughout).  In the first
     * second the destination's waits do not tell: one busy with its
     * start is off the CPU without reading, which counts as waiting.
     * The bars are as before: the lower PATH_HELD in the first second,
     * BLOCKED after it. */
    bool rwnd_known = atomic_load_explicit(&s->rwnd_known,
                                           memory_order_relaxed);
    bool dst_reads = young || dst_wait <= BLOCKED;
    double rwnd = rwnd_known && dst_reads
                      ? (double)d.rwnd_us * 1e3 / (wall * 1e9 * active)
                      : 0;
    double bar = young && rwnd_known ? PATH_HELD : BLOCKED;
    bool path_held = src_block - rwnd > bar;
    bool provisional = s->link_provisional;
    s->link_provisional = false;
    if (path_held && dst_keeps_up) {
        s->link_Bps = link_seen;
    } else if (path_held && !s->have_peer) {
        /* No destination figures yet (the first decision): a blocked
         * source is taken as link-bound for one window, so that a slow
         * link gets a compressor now rather than a window later; the
         * next window, with the destination's figures, confirms it or
         * forgets it. */
        s->link_Bps = link_seen;
        s->link_provisional = true;
    } else if (provisional) {
        s->link_Bps = 0;
    } else if (src_block > BLOCKED && s->have_peer && dst_wait < 0.1) {
        s->link_Bps = 0; /* the destination's CPU holds it back, not the
                          * link (as far as can be seen) */
    } else if (s->link_Bps > 0 && link_seen > 1.1 * s->link_Bps) {
        /* The link carried more than it did.  Up to twice as much is the
         * estimate's own error (a young migration's first windows see
         * the start's ramp): the new figure replaces it.  Forgotten, it
         * made none look unbounded and a compressing 1 Gbit/s migration
         * switched to none for a window (4 runs in 24).  More than twice
         * is a faster path (a shaper or route changed): forgotten, so
         * that none can show what it carries. */
        s->link_Bps = link_seen < 2 * s->link_Bps ? link_seen : 0;
    }

    if (s->link_Bps > 0) {
        atomic_store_explicit(&s->link_limited, true, memory_order_relaxed);
    } else if (s->have_peer && src_block <= BLOCKED && !absorbing) {
        /* With the destination's figures, no link limit in sight and the
         * source's writes not held back, the start's pacing has nothing
         * to guard, and its polling costs CPU (a tenth of a core on a
         * loopback migration).  A held-back source with no limit seen is
         * often a slow link whose destination's figures do not show it
         * yet (its host busy with the start): ended there, the pacing let
         * the sockets fill with raw pages, 3-5% of a 100 Mbit/s run.
         * So did a young window whose sockets took more than 1.5 times
         * what the path delivered since the start: zero-heavy packets
         * are small on the wire, and their channels did not wait long
         * enough in the pacing to count as held back. */
        atomic_store_explicit(&s->decided, true, memory_order_relaxed);
    }
    double src_cores = rf_host_cores_available(own, host ? idle_cores : -1,
                                               active, rf_host_running(),
                                               ncpus);
    if (s->cfg.max_cpu > 0 && src_cores > s->cfg.max_cpu) {
        src_cores = s->cfg.max_cpu;
    }
    RfAutoInputs in = {
        .ncands = s->cfg.ncands,
        .src_wire_ns = s->src_wire_ns,
        .src_page_ns = s->src_page_ns,
        .src_cores = src_cores,
        .dst_cores = s->dst_cores,
        .channels = active,
        .dst_channels = s->cfg.channels,
        .link_Bps = s->link_Bps,
    };
    if (s->same_host && s->have_peer) {
        /* Both processes and the idle time, each core counted once. */
        double shared = own + s->dst_own + (host ? idle_cores : 0);
        in.shared_cores = shared < ncpus ? shared : ncpus;
        /* Either side may take what the other leaves: each side's own
         * bound is the whole share (within its budget), the shared
         * bound splits it by what each candidate costs each side. */
        double src_max = s->cfg.max_cpu > 0 ? s->cfg.max_cpu : INFINITY;
        double dst_max = s->peer.max_cpu_milli
                             ? s->peer.max_cpu_milli / 1000.0 : INFINITY;
        in.src_cores = fmax(in.src_cores, fmin(in.shared_cores, src_max));
        in.dst_cores = fmax(in.dst_cores, fmin(in.shared_cores, dst_max));
    }
    memcpy(in.cost, s->cost, sizeof(in.cost));
    unsigned prior = apply_prior(s, &in);

    unsigned cur = rf_autosel_choice(s);
    if (s->probing) {
        s->probing = false;
        cur = s->probe_from;
        if (s->link_Bps > 0) {
            s->probe_every = 2 * s->probe_every < PROBE_MAX_S
                                 ? 2 * s->probe_every : PROBE_MAX_S;
        }
    }
    double rates[C];
    unsigned next = rf_auto_decide(&in, cur, HYSTERESIS, rates);
    /* The prior's guess must win by half again: the first window's link
     * figure is low by the start's ramp, and a busy start on a fast path
     * (a 10 Gbit/s link, or loopback with the live guest on this 2-core
     * host) showed "253 MB/s": zstd-1 at its prior predicted 350 and
     * compressed a migration that none finishes in 0.12 s.  A slow
     * link's lead is twice (the prior halves the bytes). */
    if (prior < in.ncands && next == prior && cur != prior &&
        rates[prior] < PRIOR_LEAD * rates[cur]) {
        next = cur;
    }
    RfAutoBound bound;
    double pred = rf_auto_predict(&in, next, &bound);
    char reason[160];
    /* The runner-up, so the log says what the choice won against. */
    unsigned second = next;
    for (unsigned c = 0; c < in.ncands; c++) {
        if (c != next && (second == next || rates[c] > rates[second])) {
            second = c;
        }
    }
    bool all_known = true;
    for (unsigned c = 0; c < in.ncands; c++) {
        all_known = all_known && s->cost[c].known;
    }
    /* A decision with every candidate priced ends the start's pacing,
     * unless its window wrote much faster than the path delivered with
     * no link limit seen: the sockets were filling, the next window
     * shows why, and a zero-heavy 100 Mbit/s migration that chose none
     * there and ended the pacing took 1.79 s where its other runs took
     * 1.47 (its packets are small on the wire: the channels were not
     * held back long enough to count as blocked). */
    if (all_known && (s->link_Bps > 0 || !absorbing)) {
        atomic_store_explicit(&s->decided, true, memory_order_relaxed);
    }
    atomic_store_explicit(&s->lead_pct,
                          all_known && second != next && rates[second] > 0
                              ? (unsigned)fmin(1e4, 100 * rates[next] /
                                                        rates[second])
                              : 0,
                          memory_order_relaxed);
    snprintf(reason, sizeof(reason),
             "%s bound: %.0f MB/s predicted, %s %.0f MB/s; link %s%.0f MB/s, "
             "cores src %.1f dst %.1f%s", rf_auto_bound_name(bound),
             pred / 1e6,
             second != next ? s->cfg.cands[second].name : "-",
             second != next ? rates[second] / 1e6 : 0,
             s->link_Bps > 0 ? "" : ">", (s->link_Bps > 0 ? s->link_Bps
                                                          : wire_Bps) / 1e6,
             src_cores, s->dst_cores,
             in.shared_cores > 0 ? " (one host)" : "");
    if (prior < in.ncands) {
        size_t n = strlen(reason);
        snprintf(reason + n, sizeof(reason) - n, "; %s at a prior",
                 s->cfg.cands[prior].name);
    }

    if (s->link_Bps > 0 && now - s->last_probe >= s->probe_every) {
        double prate = 0;
        unsigned p = rf_auto_probe(&in, next, HYSTERESIS, &prate);
        if (p != next) {
            s->probing = true;
            s->probe_from = next;
            s->last_probe = now;
            snprintf(reason, sizeof(reason),
                     "probe: would %s do %.0f MB/s if the link carried more "
                     "than %.0f MB/s?", s->cfg.cands[p].name, prate / 1e6,
                     s->link_Bps / 1e6);
            next = p;
            pred = prate;
        }
    }
    if (next != s->dec[s->ndec - 1].cand || s->ndec == 1) {
        if (next != s->dec[s->ndec - 1].cand) {
            s->switches++;
        }
        log_decision(s, now, next, pred, reason);
    }
    if (s->predicted_s < 0 && pred > 0 && !s->probing) {
        s->predicted_s = (now - s->t0) + (double)remaining_raw / pred;
    }
    atomic_store(&s->choice, next);
    atomic_store_explicit(&s->first_decided, true, memory_order_relaxed);
}

unsigned rf_autosel_start_cand(RfAutoSel *s)
{
    if (atomic_load_explicit(&s->first_decided, memory_order_relaxed)) {
        return rf_autosel_choice(s);
    }
    for (unsigned c = 0; c < s->cfg.ncands; c++) {
        if (c != s->none_idx) {
            return c; /* as apply_prior() */
        }
    }
    return rf_autosel_choice(s);
}

#define START_SLOW_BPS (40.0 * 1000 * 1000)
#define START_HELD_MIN_S 0.008

bool rf_start_waits_slow(const RfStartWaits *w, long long drained,
                         double waited)
{
    long long all = w->drained + drained;
    double all_s = w->waited + waited;
    return all > 0 && all_s >= START_HELD_MIN_S &&
           (double)all / all_s < START_SLOW_BPS;
}

void rf_start_waits_add(RfStartWaits *w, long long drained, double waited)
{
    w->drained += drained;
    w->waited += waited;
}

void rf_autosel_finish(RfAutoSel *s, double total_s)
{
    /* The last decision's rate over what is left of its window. */
    Totals t;
    totals(s, &t);
    uint64_t raw = 0;
    for (unsigned c = 0; c < s->cfg.ncands; c++) {
        raw += t.raw[c] - s->last.raw[c];
    }
    double wall = rf_now() - s->last_t;
    if (raw && wall > 0.01) {
        note_actual(s, (double)raw / wall);
    }
    s->actual_s = total_s;
}

void rf_autosel_describe(RfAutoSel *s, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s x%u", s->cfg.cands[rf_autosel_choice(s)].name,
             rf_autosel_active(s));
}

void rf_autosel_summary(RfAutoSel *s, char *buf, size_t cap)
{
    Totals t;
    totals(s, &t);
    uint64_t sum = 0;
    for (unsigned c = 0; c < s->cfg.ncands; c++) {
        sum += t.raw[c];
    }
    size_t off = 0;
    buf[0] = '\0';
    for (unsigned c = 0; c < s->cfg.ncands && off < cap; c++) {
        if (t.raw[c] == 0) {
            continue;
        }
        off += (size_t)snprintf(buf + off, cap - off, "%s%s %.0f%%",
                                off ? ", " : "", s->cfg.cands[c].name,
                                100.0 * (double)t.raw[c] / (double)sum);
    }
    if (off < cap) {
        snprintf(buf + off, cap - off, "%s%u switch%s", off ? "; " : "",
                 s->switches, s->switches == 1 ? "" : "es");
    }
}

/* snprintf that keeps counting past the end of buf. */
static size_t put(char *buf, size_t cap, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t put(char *buf, size_t cap, size_t off, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(off < cap ? buf + off : NULL, off < cap ? cap - off : 0,
                      fmt, ap);
    va_end(ap);
    return off + (n > 0 ? (size_t)n : 0);
}

static size_t put_per_cand(RfAutoSel *s, char *buf, size_t cap, size_t off,
                           const char *key, const uint64_t *v)
{
    off = put(buf, cap, off, "\"%s\": {", key);
    bool first = true;
    for (unsigned c = 0; c < s->cfg.ncands; c++) {
        if (v[c]) {
            off = put(buf, cap, off, "%s\"%s\": %llu", first ? "" : ", ",
                      s->cfg.cands[c].name, (unsigned long long)v[c]);
            first = false;
        }
    }
    return put(buf, cap, off, "}");
}

size_t rf_autosel_json(RfAutoSel *s, char *buf, size_t cap)
{
    size_t off = put(buf, cap, 0, "{\"candidates\": [");
    for (unsigned c = 0; c < s->cfg.ncands; c++) {
        off = put(buf, cap, off, "%s\"%s\"", c ? ", " : "",
                  s->cfg.cands[c].name);
    }
    off = put(buf, cap, off, "], \"max_cpu\": %.3f, \"rounds\": [",
              s->cfg.max_cpu);
    pthread_mutex_lock(&s->lock);
    for (unsigned i = 0; i < s->nrounds; i++) {
        off = put(buf, cap, off, "%s{\"round\": %u, ", i ? ", " : "",
                  s->rounds[i].round);
        off = put_per_cand(s, buf, cap, off, "bytes", s->rounds[i].raw);
        off = put(buf, cap, off, ", ");
        off = put_per_cand(s, buf, cap, off, "packets", s->rounds[i].packets);
        off = put(buf, cap, off, "}");
    }
    pthread_mutex_unlock(&s->lock);
    off = put(buf, cap, off, "], \"decisions\": [");
    for (unsigned i = 0; i < s->ndec; i++) {
        const Decision *d = &s->dec[i];
        off = put(buf, cap, off,
                  "%s{\"t\": %.3f, \"choice\": \"%s\", \"channels\": %u, "
                  "\"predicted_MBps\": %.1f, \"actual_MBps\": %.1f, "
                  "\"reason\": \"%s\"}", i ? ", " : "", d->t,
                  s->cfg.cands[d->cand].name, d->channels, d->pred_Bps / 1e6,
                  d->actual_Bps >= 0 ? d->actual_Bps / 1e6 : -1.0, d->reason);
    }
    uint64_t sweeps = 0, sweep_ns = 0;
    for (unsigned i = 0; i < s->cfg.channels; i++) {
        sweeps += atomic_load(&s->ch[i].sweeps);
        sweep_ns += atomic_load(&s->ch[i].sweep_ns);
    }
    return put(buf, cap, off,
               "], \"switches\": %u, \"predicted_s\": %.3f, "
               "\"actual_s\": %.3f, \"sweeps\": %llu, \"sweep_s\": %.4f}",
               s->switches, s->predicted_s, s->actual_s,
               (unsigned long long)sweeps, (double)sweep_ns / 1e9);
}
