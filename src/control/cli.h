/* ramflow - the command-line tool's shared pieces. */
#ifndef RF_CONTROL_CLI_H
#define RF_CONTROL_CLI_H

#include <getopt.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

#include "ramflow/ramflow.h"

/* Exit statuses. */
#define RF_EXIT_OK 0
#define RF_EXIT_FAIL 1
#define RF_EXIT_USAGE 2
/* Where `incoming` listens without --listen: loopback only. */
#define RF_CLI_DEFAULT_LISTEN "tcp:127.0.0.1:4444"

#define RF_EXIT_AUTH 3 /* RF_ERR_AUTH: authentication failed or refused */

/* Options every subcommand that takes parameters accepts: one long option
 * per parameter name (val = 1000 + index into rf_params_names()). */
#define RF_OPT_PARAM_BASE 1000
/* Appends the parameter options to `opts` (which has room), returns the
 * new count. */
int rf_cli_add_param_options(struct option *opts, int n);
/* If `val` is a parameter option, applies optarg to p.  @return 1 if
 * handled, 0 if not a parameter option, -1 on a bad value (error set). */
int rf_cli_param_option(RfParams *p, int val, const char *arg,
                        RfError **errp);

/* Prints "ramflow: <message>" once, and returns the exit status that fits
 * the error's kind. */
int rf_cli_fail(const char *what, RfError *err);

/* Announces the listening URI on stderr (unless quiet), in `file`
 * (atomically) and on fd (if >= 0). */
void rf_cli_announce_uri(const char *uri, bool quiet, const char *file,
                         int fd);

/* Appends a --memory spec to specs (RF_MAX_BLOCKS entries, *n used).
 * @return false (message printed) when full. */
bool rf_cli_add_memory_spec(const char **specs, unsigned *n,
                            const char *spec);

/* Parses a size like "1G", "512M", "4096". */
bool rf_cli_parse_size(const char *s, uint64_t *out);

/* Report output (report.c). */
void rf_report_print_text(FILE *f, const RfReport *r, bool source);
/* @return 0, or -1 if jansson failed. */
int rf_report_print_json(FILE *f, const RfReport *r, bool source,
                         const char *status, const char *error);

/* Progress line on a terminal (progress.c): an RfCallbacks.progress. */
void rf_progress_print(RfMigration *m, const RfProgress *p, void *opaque);
void rf_progress_done(void);

int rf_cli_migrate(int argc, char **argv);
int rf_cli_incoming(int argc, char **argv);
int rf_cli_demo(int argc, char **argv);
int rf_cli_guest(int argc, char **argv);
int rf_cli_genimage(int argc, char **argv);
int rf_cli_bench(int argc, char **argv);

/* Cancellation flag set by SIGINT/SIGTERM (main.c), read from any
 * thread. */
extern atomic_int rf_cli_cancel;
void rf_cli_install_signals(void);
/* The migration that SIGINT/SIGTERM cancel (NULL: none running). */
void rf_cli_set_migration(RfMigration *m);

#endif
