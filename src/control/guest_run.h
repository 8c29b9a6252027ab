/* ramflow - running the test VM's migration from the CLI (guest_run.c). */
#ifndef RF_CONTROL_GUEST_RUN_H
#define RF_CONTROL_GUEST_RUN_H

#include "control/cli.h"
#include "testvm/guest.h"

typedef struct RfCliGuestRun {
    const char *uri;
    RfGuestConfig cfg;
    RfParams *params;     /* with the verify and auto-converge caps */
    bool json, quiet;
    double warmup_s;      /* let the guest run before migrating */
} RfCliGuestRun;

typedef struct RfCliGuestIncoming {
    const char *uri;
    RfGuestKind kind;
    RfParams *params;
    bool json, quiet;
    double run_after_s;   /* let the resumed guest run before checking */
    const char *uri_file;
    int uri_fd;
} RfCliGuestIncoming;

void rf_cli_guest_run_init(RfCliGuestRun *g);
void rf_cli_guest_incoming_init(RfCliGuestIncoming *in);
/* Run and print; @return the exit status. */
int rf_cli_run_guest(RfCliGuestRun *g);
int rf_cli_run_guest_incoming(RfCliGuestIncoming *in);
bool rf_cli_parse_guest_kind(const char *s, RfGuestKind *kind);

/* The test VM's options, shared by `guest` and `demo`: --memory-size,
 * --vcpus, --idle, --dirty-rate, --fill, --kind, --auto-converge. */
#define RF_OPT_GUEST_BASE 900
int rf_cli_add_guest_options(struct option *opts, int n);
/* @return 1 if handled, 0 if val is not a guest option, -1 on a bad value
 * (the message is printed). */
int rf_cli_guest_option(RfCliGuestRun *g, int val, const char *arg);

#endif
