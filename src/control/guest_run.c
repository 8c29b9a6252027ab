/* ramflow - running the test VM's migration from the CLI. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/guest_run.h"
#include "control/run.h"
#include "util/clock.h"

void rf_cli_guest_run_init(RfCliGuestRun *g)
{
    memset(g, 0, sizeof(*g));
    g->params = rf_cli_params_new();
    g->cfg.mem_size = 1ull << 30;
    g->cfg.vcpus = 1;
    g->cfg.kind = RF_GUEST_AUTO;
    g->cfg.seed = 1;
    g->warmup_s = 0.5;
}

enum { G_SIZE, G_VCPUS, G_IDLE, G_RATE, G_FILL, G_KIND, G_AC, G_COUNT };

int rf_cli_add_guest_options(struct option *opts, int n)
{
    static const struct option guest_opts[G_COUNT] = {
        [G_SIZE] = {"memory-size", required_argument, NULL, 0},
        [G_VCPUS] = {"vcpus", required_argument, NULL, 0},
        [G_IDLE] = {"idle", no_argument, NULL, 0},
        [G_RATE] = {"dirty-rate", required_argument, NULL, 0},
        [G_FILL] = {"fill", required_argument, NULL, 0},
        [G_KIND] = {"kind", required_argument, NULL, 0},
        [G_AC] = {"auto-converge", no_argument, NULL, 0},
    };
    for (int k = 0; k < G_COUNT; k++) {
        opts[n] = guest_opts[k];
        opts[n++].val = RF_OPT_GUEST_BASE + k;
    }
    opts[n] = (struct option){0};
    return n;
}

static int bad_value(const char *opt, const char *arg, const char *allowed)
{
    fprintf(stderr, "ramflow: --%s: invalid value '%s' (%s)\n", opt, arg,
            allowed);
    return -1;
}

int rf_cli_guest_option(RfCliGuestRun *g, int val, const char *arg)
{
    uint64_t v;
    switch (val - RF_OPT_GUEST_BASE) {
    case G_SIZE:
        if (!rf_cli_parse_size(arg, &v) || v < (2u << 20) ||
            v % RF_PAGE_SIZE || v > (64ull << 30)) {
            return bad_value("memory-size", arg, "2M to 64G, a multiple of 4K");
        }
        g->cfg.mem_size = v;
        return 1;
    case G_VCPUS:
        if (!rf_cli_parse_size(arg, &v) || v < 1 || v > RF_GUEST_MAX_VCPUS) {
            return bad_value("vcpus", arg, "1 to 64");
        }
        g->cfg.vcpus = (unsigned)v;
        return 1;
    case G_IDLE:
        g->cfg.idle = true;
        return 1;
    case G_RATE:
        if (!rf_cli_parse_size(arg, &v)) {
            return bad_value("dirty-rate", arg,
                             "pages per second, 0 = unlimited");
        }
        g->cfg.dirty_rate = v;
        return 1;
    case G_FILL:
        g->cfg.fill_path = arg;
        return 1;
    case G_KIND:
        if (!rf_cli_parse_guest_kind(arg, &g->cfg.kind)) {
            return bad_value("kind", arg, "auto, kvm or thread");
        }
        return 1;
    case G_AC:
        rf_params_set_cap(g->params, "auto-converge", true, NULL);
        return 1;
    default:
        return 0;
    }
}

bool rf_cli_parse_guest_kind(const char *s, RfGuestKind *kind)
{
    if (!strcmp(s, "auto")) {
        *kind = RF_GUEST_AUTO;
    } else if (!strcmp(s, "kvm")) {
        *kind = RF_GUEST_KVM;
    } else if (!strcmp(s, "thread")) {
        *kind = RF_GUEST_THREAD;
    } else {
        return false;
    }
    return true;
}

/* Tells whoever waits where we listen: stderr, a file written atomically
 * (rename), and/or a pipe. */
void rf_cli_announce_uri(const char *uri, bool quiet, const char *file,
                         int fd)
{
    if (!quiet) {
        fprintf(stderr, "ramflow: listening on %s\n", uri);
    }
    if (file) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", file);
        FILE *f = fopen(tmp, "w");
        if (f) {
            fprintf(f, "%s\n", uri);
            fclose(f);
            rename(tmp, file);
        }
    }
    if (fd >= 0) {
        dprintf(fd, "%s\n", uri);
    }
}

void rf_cli_guest_incoming_init(RfCliGuestIncoming *in)
{
    memset(in, 0, sizeof(*in));
    in->kind = RF_GUEST_AUTO;
    in->params = rf_cli_params_new();
    in->run_after_s = 1.0;
    in->uri_fd = -1;
}

static void pause_hook(void *opaque)
{
    rf_guest_hook_pause(opaque);
}

static void resume_hook(void *opaque)
{
    rf_guest_hook_resume(opaque);
}

static bool save_state_hook(void *opaque, uint8_t **buf, size_t *len,
                            RfError **errp)
{
    return rf_guest_save_state(opaque, buf, len, errp);
}

static void throttle_hook(unsigned pct, void *opaque)
{
    rf_guest_throttle(opaque, pct);
}

/* Where informational lines go: stderr when stdout carries JSON. */
static FILE *info_stream(bool json)
{
    return json ? stderr : stdout;
}

/* After a failed or cancelled migration: the guest must still run, with
 * its memory intact.  Shows both. */
static void show_source_survived(RfGuest *g, FILE *f)
{
    /* A pass over a large guest can take a while on a loaded machine:
     * wait up to 10 s for the next one. */
    uint64_t before = rf_guest_passes(g), after = before;
    for (int i = 0; i < 200 && after == before; i++) {
        rf_sleep(0.05);
        after = rf_guest_passes(g);
    }
    char summary[256] = "";
    RfError *err = NULL;
    bool ok = rf_guest_check_pattern(g, summary, sizeof(summary), &err);
    fprintf(f, "ramflow: source guest %s after the failure (passes %llu -> "
            "%llu); memory pattern %s: %s\n",
            after > before ? "kept running" : "did NOT run",
            (unsigned long long)before, (unsigned long long)after,
            ok ? "intact" : "BROKEN", ok ? summary : rf_error_msg(err));
    rf_error_free(err);
}

int rf_cli_run_guest(RfCliGuestRun *gr)
{
    RfError *err = NULL;
    FILE *info = info_stream(gr->json);
    RfGuest *g = rf_guest_start(&gr->cfg, &err);
    if (!g) {
        return rf_cli_fail("cannot start the test guest", err);
    }
    fprintf(info, "ramflow: source: %s\n", rf_guest_describe(g));
    fflush(info);
    rf_sleep(gr->warmup_s);
    RfCallbacks cb = RF_CALLBACKS_INIT;
    cb.progress = gr->quiet ? NULL : rf_progress_print;
    cb.pause = pause_hook;
    cb.resume = resume_hook;
    cb.save_state = save_state_hook;
    cb.throttle = throttle_hook;
    cb.opaque = g;
    RfReport rep = RF_REPORT_INIT;
    bool ok = rf_cli_run_handle(gr->params, &cb, rf_guest_ram_source(g),
                                NULL, gr->uri, &rep, &err);
    rf_progress_done();
    if (gr->json) {
        rf_report_print_json(stdout, &rep, true, ok ? "completed" : "failed",
                             ok ? NULL : rf_error_msg(err));
    } else if (ok) {
        rf_report_print_text(stdout, &rep, true);
    }
    fflush(stdout);
    int status = RF_EXIT_OK;
    if (!ok) {
        status = rf_cli_fail("migration failed", err);
        show_source_survived(g, stderr);
    } else {
        fprintf(info, "ramflow: source guest stays paused: it now runs on "
                "the destination (%llu passes here)\n",
                (unsigned long long)rf_guest_passes(g));
    }
    rf_guest_free(g);
    return status;
}

/* The callbacks have one opaque: both pieces travel in it. */
typedef struct IncomingCtx {
    RfCliGuestIncoming *in;
    RfGuest *guest;
} IncomingCtx;

static bool incoming_load_state(void *opaque, const uint8_t *buf,
                                size_t len, RfError **errp)
{
    IncomingCtx *ctx = opaque;
    return rf_guest_load_state(ctx->guest, buf, len, errp);
}

static void on_listening(RfMigration *m, const char *uri, void *opaque)
{
    RfCliGuestIncoming *in = ((IncomingCtx *)opaque)->in;
    (void)m;
    rf_cli_announce_uri(uri, in->quiet, in->uri_file, in->uri_fd);
}

int rf_cli_run_guest_incoming(RfCliGuestIncoming *in)
{
    RfError *err = NULL;
    FILE *info = info_stream(in->json);
    RfGuest *g = rf_guest_new_incoming(in->kind, &err);
    if (!g) {
        return rf_cli_fail("cannot create the destination guest", err);
    }
    IncomingCtx ctx = {in, g};
    RfCallbacks cb = RF_CALLBACKS_INIT;
    cb.listening = on_listening;
    cb.load_state = incoming_load_state;
    cb.opaque = &ctx;
    RfReport rep = RF_REPORT_INIT;
    bool ok = rf_cli_run_handle(in->params, &cb, NULL, rf_guest_ram_sink(g),
                                in->uri, &rep, &err);
    char summary[256] = "";
    bool pattern_ok = false;
    uint64_t passes_at_resume = 0, passes_after = 0;
    if (ok) {
        /* The guest runs here from now on: resume it at once (downtime
         * ends), let it run a moment, then check nothing was lost. */
        double t = rf_now();
        rf_guest_resume(g);
        rep.dest_downtime_ms += (rf_now() - t) * 1000;
        passes_at_resume = rf_guest_passes(g);
        rf_sleep(in->run_after_s);
        passes_after = rf_guest_passes(g);
        pattern_ok = rf_guest_check_pattern(g, summary, sizeof(summary),
                                            &err);
    }
    if (in->json) {
        rf_report_print_json(stdout, &rep, false, ok ? "completed" : "failed",
                             ok ? NULL : rf_error_msg(err));
    } else if (ok && !in->quiet) {
        rf_report_print_text(stdout, &rep, false);
    }
    if (ok) {
        fprintf(info, "ramflow: destination: %s\n", rf_guest_describe(g));
        fprintf(info, "ramflow: destination guest resumed after %.1f ms "
                "(source pause to resume on this side); it ran %llu more "
                "passes in %.1f s\n", rep.dest_downtime_ms,
                (unsigned long long)(passes_after - passes_at_resume),
                in->run_after_s);
        fprintf(info, "ramflow: pattern check %s: %s\n",
                pattern_ok ? "passed" : "FAILED",
                pattern_ok ? summary : rf_error_msg(err));
    }
    fflush(stdout);
    fflush(info);
    int status = RF_EXIT_OK;
    if (!ok) {
        status = rf_cli_fail("incoming migration failed", err);
    } else if (!pattern_ok) {
        rf_error_free(err);
        status = RF_EXIT_FAIL;
    }
    rf_guest_free(g);
    return status;
}
