/* ramflow - running one side of a migration from the CLI. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/run.h"
#include "testvm/writer.h"

void rf_cli_migrate_init(RfCliMigrate *m)
{
    memset(m, 0, sizeof(*m));
    rf_params_init(&m->params);
}

void rf_cli_incoming_init(RfCliIncoming *in)
{
    memset(in, 0, sizeof(*in));
    in->uri_fd = -1;
}

int rf_cli_run_migrate(const RfCliMigrate *m)
{
    RfError *err = NULL;
    RfRamSource *src = rf_file_source_open(m->specs, m->nspecs, &err);
    if (!src) {
        return rf_cli_fail(NULL, err);
    }
    RfWriter *writer = NULL;
    if (m->simulate_writes) {
        writer = rf_writer_start(src, m->writes_per_s, 42, &err);
        if (!writer) {
            rf_ram_source_free(src);
            return rf_cli_fail(NULL, err);
        }
    }
    RfMigrateOptions o = {
        .verify = m->verify,
        .timeout_ms = m->timeout_ms,
        .cancel = &rf_cli_cancel,
        .progress = m->quiet ? NULL : rf_progress_print,
        .pause = writer ? rf_writer_hook_pause : NULL,
        .resume = writer ? rf_writer_hook_resume : NULL,
        .opaque = writer,
    };
    RfReport rep;
    bool ok = rf_migrate(m->uri, src, &m->params, &o, &rep, &err);
    rf_progress_done();
    rf_writer_stop(writer);
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

static void on_listening(const char *uri, void *opaque)
{
    RfCliIncoming *in = opaque;
    rf_cli_announce_uri(uri, in->quiet, in->uri_file, in->uri_fd);
}

int rf_cli_run_incoming(RfCliIncoming *in)
{
    RfError *err = NULL;
    RfRamSink *sink = rf_file_sink_new(in->specs, in->nspecs, 0, &err);
    if (!sink) {
        return rf_cli_fail(NULL, err);
    }
    in->opts.cancel = &rf_cli_cancel;
    in->opts.listening = on_listening;
    in->opts.opaque = in;
    RfReport rep;
    bool ok = rf_incoming(in->uri, sink, &in->opts, &rep, &err);
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
