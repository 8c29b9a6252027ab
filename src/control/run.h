/* ramflow - running one side of a migration from the CLI (run.c). */
#ifndef RF_CONTROL_RUN_H
#define RF_CONTROL_RUN_H

#include "control/cli.h"

typedef struct RfCliMigrate {
    const char *uri;
    const char *const *specs;
    unsigned nspecs;
    RfParams *params;       /* parameters and capabilities (verify) */
    bool json, quiet;
    bool simulate_writes;
    uint64_t writes_per_s;
} RfCliMigrate;

typedef struct RfCliIncoming {
    const char *uri;
    const char *const *specs;
    unsigned nspecs;
    RfParams *params;       /* explicit method/channels = expectations */
    bool json, quiet;
    bool reuse_memory;      /* receive into the files as they are */
    const char *uri_file;   /* write the listening URI here */
    int uri_fd;             /* or to this fd (demo), -1 if none */
} RfCliIncoming;

void rf_cli_migrate_init(RfCliMigrate *m);
void rf_cli_incoming_init(RfCliIncoming *in);
/* A parameter set that lives until exit (freed by an atexit handler). */
RfParams *rf_cli_params_new(void);
/* Run and print the report; @return the exit status. */
int rf_cli_run_migrate(RfCliMigrate *m);
int rf_cli_run_incoming(RfCliIncoming *in);

/* Runs one migration with the handle API on this thread, SIGINT/SIGTERM
 * cancelling it: outgoing from src, or incoming into sink.  Fills rep
 * (RF_REPORT_INIT) whatever the outcome. */
bool rf_cli_run_handle(RfParams *params, const RfCallbacks *cb,
                       RfRamSource *src, RfRamSink *sink, const char *uri,
                       RfReport *rep, RfError **errp);
/* The decision log of the last migration rf_cli_run_handle ran, when it
 * was a source with multifd-compression 'auto' (JSON text), or NULL. */
const char *rf_cli_auto_json(void);

#endif
