/*
 * ramflow - a source channel's resend log (capability 'reconnect').
 *
 * What each packet written on a data channel was, without its payload:
 * seq, round, block, SYNC/FINAL, and the page indexes as runs of
 * consecutive pages (a round-1 packet of 128 pages is one run).  After a
 * reconnect the channel re-sends the packets from the destination's
 * next_seq on, re-reading the pages' current contents.  Entries of a
 * round the destination confirmed (ROUND_ACK: every channel passed that
 * SYNC, so everything of that round and before was applied) are dropped.
 * One thread (the channel's) uses a log; it is not locked.
 */
#ifndef RF_CHANNEL_RESEND_LOG_H
#define RF_CHANNEL_RESEND_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct RfLogEntry {
    uint64_t seq;
    uint32_t round;
    uint32_t block;
    bool sync, final;
    uint32_t n;        /* pages */
    size_t run;        /* first run in the log's pool */
    uint32_t nruns;
} RfLogEntry;

typedef struct RfResendLog {
    RfLogEntry *e;
    size_t head, count, cap;        /* live entries: e[head .. count) */
    uint32_t *runs;                 /* pairs (first page, length) */
    size_t run_head, run_count, run_cap;
} RfResendLog;

/* Appends a packet.  @return false when out of memory. */
bool rf_resend_log_add(RfResendLog *l, uint64_t seq, uint32_t round,
                       uint32_t block, bool sync, bool final,
                       const uint32_t *idx, uint32_t n);
/* Drops the leading entries of rounds <= acked_round. */
void rf_resend_log_prune(RfResendLog *l, uint32_t acked_round);
/* Number of live entries, and entry i of them (0 = oldest). */
size_t rf_resend_log_len(const RfResendLog *l);
const RfLogEntry *rf_resend_log_at(const RfResendLog *l, size_t i);
/* Writes entry e's page indexes (e->n of them, ascending) into idx. */
void rf_resend_log_pages(const RfResendLog *l, const RfLogEntry *e,
                         uint32_t *idx);
void rf_resend_log_free(RfResendLog *l);

#endif
