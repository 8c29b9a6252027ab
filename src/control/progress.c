/* ramflow - a one-line progress display on a terminal. */
#include <string.h>
#include <unistd.h>

#include "control/cli.h"

static bool shown;

void rf_progress_print(RfMigration *m, const RfProgress *p, void *opaque)
{
    (void)m;
    (void)opaque;
    /* 'auto' changed its choice: a line of its own, on a terminal or in a
     * log, so the decisions can be followed (and waited for) live. */
    static char last_method[64];
    if (p->method && strcmp(p->method, last_method) != 0) {
        snprintf(last_method, sizeof(last_method), "%s", p->method);
        fprintf(stderr, "%sramflow: auto: %s at %.1f s\n", shown ? "\n" : "",
                p->method, p->elapsed_s);
        fflush(stderr);
    }
    if (!isatty(STDERR_FILENO)) {
        return;
    }
    if (!p->is_source) {
        fprintf(stderr, "\r  receiving round %u  %8.1f Mbit/s  %7.1f MiB "
                "received  %.1f s   ", p->round, p->throughput_bps / 1e6,
                (double)p->wire_bytes / (1 << 20), p->elapsed_s);
        fflush(stderr);
        shown = true;
        return;
    }
    uint64_t total_pages = p->total_bytes / RF_PAGE_SIZE;
    double done = p->round == 1 && total_pages
                      ? 100.0 * (double)p->sent_pages / (double)total_pages
                      : 100.0 * (1.0 - (double)p->remaining_pages /
                                           (double)(total_pages ? total_pages
                                                                : 1));
    double rate = p->elapsed_s > 0 ? (double)p->sent_pages / p->elapsed_s
                                   : 0;
    double left = rate > 0 ? (double)p->remaining_pages / rate : 0;
    if (p->round == 1 && rate > 0 && total_pages > p->sent_pages) {
        left = (double)(total_pages - p->sent_pages) / rate;
    }
    fprintf(stderr, "\r  round %u  %5.1f%%  %8.1f Mbit/s  %7.1f MiB sent"
            "  ~%.1f s left%s%s%s   ", p->round, done,
            p->throughput_bps / 1e6, (double)p->wire_bytes / (1 << 20), left,
            p->method ? "  [auto: " : "", p->method ? p->method : "",
            p->method ? "]" : "");
    fflush(stderr);
    shown = true;
}

void rf_progress_done(void)
{
    if (shown) {
        fprintf(stderr, "\n");
        shown = false;
    }
}
