/* ramflow - running one side of a migration from the CLI. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "channel/secure.h"
#include "control/run.h"
#include "testvm/writer.h"

/* The parameter sets the commands parse into live until exit: usage
 * errors return from deep in option parsing, and need not free them. */
#define MAX_OWNED 4
static RfParams *owned[MAX_OWNED];

static void free_owned(void)
{
    for (unsigned i = 0; i < MAX_OWNED; i++) {
        rf_params_free(owned[i]);
        owned[i] = NULL;
    }
}

RfParams *rf_cli_params_new(void)
{
    static bool registered;
    RfParams *p = rf_params_new();
    unsigned i = 0;
    while (i < MAX_OWNED && owned[i]) {
        i++;
    }
    /* Allocation failure of a few bytes at start-up ends the process:
     * there is nothing sensible to fall back to. */
    if (!p || i == MAX_OWNED) {
        fprintf(stderr, "ramflow: out of memory\n");
        exit(RF_EXIT_FAIL);
    }
    if (!registered) {
        atexit(free_owned);
        registered = true;
    }
    owned[i] = p;
    return p;
}

void rf_cli_migrate_init(RfCliMigrate *m)
{
    memset(m, 0, sizeof(*m));
    m->params = rf_cli_params_new();
}

void rf_cli_incoming_init(RfCliIncoming *in)
{
    memset(in, 0, sizeof(*in));
    in->params = rf_cli_params_new();
    in->uri_fd = -1;
}

/* Each connection a destination drops is worth a line: it is either a
 * misconfigured source or someone who should not be there. */
static void print_rejected(RfMigration *m, const char *peer, const char *why,
                           void *opaque)
{
    (void)m;
    (void)opaque;
    rf_progress_done();
    fprintf(stderr, "ramflow: dropped a connection from %s: %s\n", peer,
            why);
}

/* `insecure` lifts the refusal to listen in plaintext where other hosts
 * reach; say plainly what that means. */
static void warn_insecure(const RfParams *params, const char *uri)
{
    char tls[8], psk[8], insecure[8];
    if (!rf_params_get(params, "insecure", insecure, sizeof(insecure),
                       NULL) || strcmp(insecure, "on") != 0 ||
        rf_uri_is_local(uri)) {
        return;
    }
    rf_params_get(params, "tls-creds", tls, sizeof(tls), NULL);
    rf_params_get(params, "tls-psk", psk, sizeof(psk), NULL);
    if (tls[0] || psk[0]) {
        return;
    }
    fprintf(stderr,
            "ramflow: WARNING: listening on %s without TLS (--insecure): "
            "anyone who can reach this port can send this destination a "
            "whole memory image (and, with --guest, the vCPU state of the "
            "VM it resumes), and anyone on the path can read the guest's "
            "memory.  Use --tls-creds or --tls-psk.\n", uri);
}

/* The last source migration's 'auto' decision log (JSON), or NULL. */
static char *last_auto_json;

bool rf_cli_run_handle(RfParams *params, const RfCallbacks *cb,
                       RfRamSource *src, RfRamSink *sink, const char *uri,
                       RfReport *rep, RfError **errp)
{
    RfMigration *m = rf_migration_new(params, errp);
    if (!m) {
        return false;
    }
    RfCallbacks mine = *cb;
    if (sink && !mine.rejected) {
        mine.rejected = print_rejected;
    }
    if (sink) {
        warn_insecure(params, uri);
    }
    bool ok = rf_migration_set_callbacks(m, &mine, errp);
    if (ok) {
        rf_cli_set_migration(m);
        ok = src ? rf_migration_start_outgoing(m, src, uri,
                                               RF_START_BLOCKING, errp)
                 : rf_migration_start_incoming(m, sink, uri,
                                               RF_START_BLOCKING, errp);
        rf_cli_set_migration(NULL);
    }
    rf_migration_report(m, rep);
    free(last_auto_json);
    last_auto_json = NULL;
    size_t n = rf_migration_auto_json(m, NULL, 0);
    if (n && (last_auto_json = malloc(n + 1))) {
        rf_migration_auto_json(m, last_auto_json, n + 1);
    }
    rf_migration_free(m);
    return ok;
}

const char *rf_cli_auto_json(void)
{
    return last_auto_json;
}

typedef struct MigrateCtx {
    RfWriter *writer;
} MigrateCtx;

static void writer_pause(void *opaque)
{
    rf_writer_hook_pause(((MigrateCtx *)opaque)->writer);
}

static void writer_resume(void *opaque)
{
    rf_writer_hook_resume(((MigrateCtx *)opaque)->writer);
}

int rf_cli_run_migrate(RfCliMigrate *m)
{
    RfError *err = NULL;
    /* Only the simulated writer writes the files: without it they are
     * mapped read-only (see RF_FILE_SOURCE_READ_ONLY). */
    RfRamSource *src = rf_file_source_new(
        m->specs, m->nspecs,
        m->simulate_writes ? 0 : RF_FILE_SOURCE_READ_ONLY, &err);
    if (!src) {
        return rf_cli_fail(NULL, err);
    }
    MigrateCtx ctx = {NULL};
    if (m->simulate_writes) {
        ctx.writer = rf_writer_start(src, m->writes_per_s, 42, &err);
        if (!ctx.writer) {
            rf_ram_source_free(src);
            return rf_cli_fail(NULL, err);
        }
    }
    RfCallbacks cb = RF_CALLBACKS_INIT;
    cb.progress = m->quiet ? NULL : rf_progress_print;
    cb.pause = ctx.writer ? writer_pause : NULL;
    cb.resume = ctx.writer ? writer_resume : NULL;
    cb.opaque = &ctx;
    RfReport rep = RF_REPORT_INIT;
    bool ok = rf_cli_run_handle(m->params, &cb, src, NULL, m->uri, &rep,
                                &err);
    rf_progress_done();
    rf_writer_stop(ctx.writer);
    rf_ram_source_free(src);
    if (m->json) {
        rf_report_print_json(stdout, &rep, true,
                             ok ? "completed" : "failed",
                             ok ? NULL : rf_error_msg(err));
    } else if (ok) {
        rf_report_print_text(stdout, &rep, true);
    }
    fflush(stdout);
    return ok ? RF_EXIT_OK : rf_cli_fail("migration failed", err);
}

static void on_listening(RfMigration *m, const char *uri, void *opaque)
{
    RfCliIncoming *in = opaque;
    (void)m;
    rf_cli_announce_uri(uri, in->quiet, in->uri_file, in->uri_fd);
}

int rf_cli_run_incoming(RfCliIncoming *in)
{
    RfError *err = NULL;
    RfRamSink *sink = rf_file_sink_new(
        in->specs, in->nspecs, in->reuse_memory ? RF_FILE_SINK_REUSE : 0,
        &err);
    if (!sink) {
        return rf_cli_fail(NULL, err);
    }
    RfCallbacks cb = RF_CALLBACKS_INIT;
    cb.listening = on_listening;
    cb.progress = in->quiet ? NULL : rf_progress_print;
    cb.opaque = in;
    RfReport rep = RF_REPORT_INIT;
    bool ok = rf_cli_run_handle(in->params, &cb, NULL, sink, in->uri, &rep,
                                &err);
    rf_progress_done();
    rf_ram_sink_free(sink);
    if (in->json) {
        rf_report_print_json(stdout, &rep, false,
                             ok ? "completed" : "failed",
                             ok ? NULL : rf_error_msg(err));
    } else if (ok && !in->quiet) {
        rf_report_print_text(stdout, &rep, false);
    }
    fflush(stdout);
    return ok ? RF_EXIT_OK : rf_cli_fail("incoming migration failed", err);
}
