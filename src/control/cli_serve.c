/*
 * ramflow - `ramflow serve`: a process that holds memory files (or nothing
 * yet) and waits for QMP / human-monitor commands.  The first migrate sends
 * the files, the first migrate-incoming receives into them.
 */
#include <string.h>

#include "control/cli.h"
#include "control/qmp.h"
#include "control/run.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: ramflow serve --qmp unix:PATH|tcp:[HOST]:PORT "
        "[--monitor stdio|unix:PATH|tcp:...]\n"
        "                     [--memory [NAME=]FILE[:SIZE] ...] "
        "[--reuse-memory] [--uri-file PATH]\n"
        "                     [PARAMS] [--quiet]\n"
        "\n"
        "Waits for QEMU's migration commands (docs/qmp.md) until 'quit'.\n"
        "'migrate' sends the memory in FILE(s) (as 'ramflow migrate');\n"
        "'migrate-incoming' receives into them (as 'ramflow incoming').\n"
        "PARAMS set the initial parameters (see 'ramflow migrate --help').\n");
}

int rf_cli_serve(int argc, char **argv)
{
    enum { O_QMP = 1, O_MONITOR, O_MEMORY, O_REUSE, O_URIFILE, O_QUIET,
           O_HELP };
    struct option opts[48] = {
        {"qmp", required_argument, NULL, O_QMP},
        {"monitor", required_argument, NULL, O_MONITOR},
        {"memory", required_argument, NULL, O_MEMORY},
        {"reuse-memory", no_argument, NULL, O_REUSE},
        {"uri-file", required_argument, NULL, O_URIFILE},
        {"quiet", no_argument, NULL, O_QUIET},
        {"help", no_argument, NULL, O_HELP},
    };
    rf_cli_add_param_options(opts, 7);
    RfParams *params = rf_cli_params_new();
    QmpCliOptions o = {0};
    const char *specs[RF_MAX_BLOCKS];
    unsigned nspecs = 0, flags = 0;
    RfError *err = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int r = rf_cli_param_option(params, c, optarg, &err);
        if (r < 0) {
            return rf_cli_fail(NULL, err);
        }
        if (r > 0) {
            continue;
        }
        switch (c) {
        case O_QMP: o.qmp_addr = optarg; break;
        case O_MONITOR: o.hmp_addr = optarg; break;
        case O_MEMORY:
            if (!rf_cli_add_memory_spec(specs, &nspecs, optarg)) {
                return RF_EXIT_USAGE;
            }
            break;
        case O_REUSE: flags |= RF_FILE_SINK_REUSE; break;
        case O_URIFILE: o.uri_file = optarg; break;
        case O_QUIET: o.quiet = true; break;
        case O_HELP: usage(stdout); return RF_EXIT_OK;
        default: usage(stderr); return RF_EXIT_USAGE;
        }
    }
    if (optind != argc || (!o.qmp_addr && !o.hmp_addr)) {
        fprintf(stderr, "ramflow: serve needs --qmp or --monitor\n");
        usage(stderr);
        return RF_EXIT_USAGE;
    }
    rf_cli_install_signals();
    QmpMachine m;
    qmp_machine_init(&m, QMP_ROLE_IDLE, params);
    m.specs = specs;
    m.nspecs = nspecs;
    m.sink_flags = flags;
    int rc = rf_cli_qmp_run(&o, &m);
    rf_ram_source_free(m.src);
    rf_ram_sink_free(m.sink);
    return rc;
}
