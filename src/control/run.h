/* ramflow - running one side of a migration from the CLI (run.c). */
#ifndef RF_CONTROL_RUN_H
#define RF_CONTROL_RUN_H

#include "control/cli.h"

typedef struct RfCliMigrate {
    const char *uri;
    const char *const *specs;
    unsigned nspecs;
    RfParams params;
    bool verify, json, quiet;
    bool simulate_writes;
    uint64_t writes_per_s;
    unsigned timeout_ms;
} RfCliMigrate;

typedef struct RfCliIncoming {
    const char *uri;
    const char *const *specs;
    unsigned nspecs;
    RfIncomingOptions opts;
    bool json, quiet;
    const char *uri_file;   /* write the listening URI here */
    int uri_fd;             /* or to this fd (demo), -1 if none */
} RfCliIncoming;

void rf_cli_migrate_init(RfCliMigrate *m);
void rf_cli_incoming_init(RfCliIncoming *in);
/* Run and print the report; @return the exit status. */
int rf_cli_run_migrate(const RfCliMigrate *m);
int rf_cli_run_incoming(RfCliIncoming *in);

#endif
