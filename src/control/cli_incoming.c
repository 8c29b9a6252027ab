/* ramflow - `ramflow incoming`: the destination side on the command line. */
#include <stdlib.h>
#include <string.h>

#include "control/guest_run.h"
#include "control/qmp.h"
#include "control/run.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: ramflow incoming [--listen URI] --memory [NAME=]FILE[:SIZE] "
        "[...]\n"
        "                        [--reuse-memory] [--multifd-compression M]"
        " [--multifd-channels N]\n"
        "                        [--json] [--timeout MS] [--uri-file PATH]\n"
        "                        [--tls-creds DIR | --tls-psk DIR] "
        "[--tls-authz DN[;DN...]]\n"
        "                        [--tls-authz-file FILE] [--allow-peer "
        "CIDR[,CIDR...]]\n"
        "                        [--max-memory SIZE] [--insecure]\n"
        "       ramflow incoming [--listen URI] --guest [--kind "
        "auto|kvm|thread] [...]\n"
        "       ramflow incoming --qmp unix:PATH|tcp:[HOST]:PORT [--monitor "
        "stdio|unix:PATH|tcp:...]\n"
        "                        [--listen URI] (--memory ... | --guest)\n"
        "\n"
        "--listen defaults to " RF_CLI_DEFAULT_LISTEN " (loopback).  An "
        "address\n"
        "other hosts can reach needs TLS (--tls-creds or --tls-psk), or\n"
        "--insecure, which lets anyone who reaches the port write this\n"
        "destination's memory.  Connections that are not the source\n"
        "(--allow-peer, TLS, authz, no hello) are dropped and reported;\n"
        "the wait goes on.  Nothing is written, created or allocated before\n"
        "the source has authenticated and its layout passed the checks\n"
        "(--memory ...:SIZE, --max-memory, the free space).  See\n"
        "docs/security.md.\n"
        "\n"
        "Receives one migration into FILE(s): each into a temporary file\n"
        "beside it, renamed over FILE when the migration completes; on\n"
        "failure FILE is left as it was.  :SIZE (K/M/G/T) refuses a source\n"
        "whose block has another size.  With --reuse-memory, into existing\n"
        "FILE(s) in place (never created or truncated, pages only mapped\n"
        "ahead; sizes must equal the blocks'; contents undefined after a\n"
        "failure).\n"
        "With --multifd-compression or --multifd-channels, refuses a\n"
        "source that uses anything else.\n"
        "--uri-file writes the actual listening URI (port 0 resolved).\n"
        "--guest receives the test VM of 'ramflow guest': builds its VM,\n"
        "loads its vCPU state, resumes it and checks its memory pattern.\n"
        "--qmp serves QEMU's QMP there, --monitor QEMU's human monitor\n"
        "(docs/qmp.md); the process then runs until 'quit';\n"
        "without --listen it waits for migrate-incoming (QEMU's -incoming\n"
        "defer).\n");
}

/* incoming --qmp: the sink (files or the test VM) waits for commands. */
static int run_qmp(const QmpCliOptions *o, RfCliIncoming *in, bool guest,
                   RfGuestKind kind)
{
    RfError *err = NULL;
    RfGuest *g = NULL;
    RfRamSink *sink;
    if (guest) {
        g = rf_guest_new_incoming(kind, &err);
        sink = g ? rf_guest_ram_sink(g) : NULL;
    } else {
        sink = rf_file_sink_new(in->specs, in->nspecs,
                                in->reuse_memory ? RF_FILE_SINK_REUSE : 0,
                                &err);
    }
    if (!sink) {
        return rf_cli_fail(NULL, err);
    }
    QmpMachine m;
    qmp_machine_init(&m, QMP_ROLE_DEST, in->params);
    m.guest = g;
    m.sink = sink;
    int rc = rf_cli_qmp_run(o, &m);
    if (g) {
        rf_guest_free(g);
    } else {
        rf_ram_sink_free(sink);
    }
    return rc;
}

int rf_cli_incoming(int argc, char **argv)
{
    enum { O_LISTEN = 1, O_MEMORY, O_JSON, O_TIMEOUT, O_URIFILE, O_HELP,
           O_QUIET, O_GUEST, O_KIND, O_REUSE, O_QMP, O_MONITOR };
    struct option opts[48] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"memory", required_argument, NULL, O_MEMORY},
        {"json", no_argument, NULL, O_JSON},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"uri-file", required_argument, NULL, O_URIFILE},
        {"quiet", no_argument, NULL, O_QUIET},
        {"help", no_argument, NULL, O_HELP},
        {"guest", no_argument, NULL, O_GUEST},
        {"kind", required_argument, NULL, O_KIND},
        {"reuse-memory", no_argument, NULL, O_REUSE},
        {"qmp", required_argument, NULL, O_QMP},
        {"monitor", required_argument, NULL, O_MONITOR},
    };
    rf_cli_add_param_options(opts, 12);
    const char *qmp = NULL, *monitor = NULL;
    bool guest = false;
    RfGuestKind kind = RF_GUEST_AUTO;
    RfCliIncoming in;
    rf_cli_incoming_init(&in);
    const char *specs[RF_MAX_BLOCKS];
    RfError *err = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int r = rf_cli_param_option(in.params, c, optarg, &err);
        if (r < 0) {
            return rf_cli_fail(NULL, err);
        }
        if (r > 0) {
            continue;
        }
        switch (c) {
        case O_LISTEN: in.uri = optarg; break;
        case O_MEMORY:
            if (!rf_cli_add_memory_spec(specs, &in.nspecs, optarg)) {
                return RF_EXIT_USAGE;
            }
            break;
        case O_JSON: in.json = true; break;
        case O_QUIET: in.quiet = true; break;
        case O_REUSE: in.reuse_memory = true; break;
        case O_URIFILE: in.uri_file = optarg; break;
        case O_TIMEOUT:
            if (!rf_params_set(in.params, "timeout", optarg, &err)) {
                return rf_cli_fail(NULL, err);
            }
            break;
        case O_GUEST: guest = true; break;
        case O_QMP: qmp = optarg; break;
        case O_MONITOR: monitor = optarg; break;
        case O_KIND:
            if (!rf_cli_parse_guest_kind(optarg, &kind)) {
                fprintf(stderr, "ramflow: --kind: invalid value '%s' (auto, "
                        "kvm or thread)\n", optarg);
                return RF_EXIT_USAGE;
            }
            break;
        case O_HELP: usage(stdout); return RF_EXIT_OK;
        default: usage(stderr); return RF_EXIT_USAGE;
        }
    }
    bool listen_given = in.uri != NULL;
    if (!in.uri) {
        in.uri = RF_CLI_DEFAULT_LISTEN;
    }
    if (optind != argc || (in.nspecs == 0) == !guest) {
        fprintf(stderr, "ramflow: incoming needs either --memory FILE or "
                "--guest\n");
        usage(stderr);
        return RF_EXIT_USAGE;
    }
    if (guest && in.reuse_memory) {
        fprintf(stderr, "ramflow: --reuse-memory goes with --memory, not "
                "--guest\n");
        return RF_EXIT_USAGE;
    }
    in.specs = specs;
    rf_cli_install_signals();
    if (qmp || monitor) {
        QmpCliOptions o = {qmp, monitor, listen_given ? in.uri : NULL,
                           in.uri_file, in.quiet};
        return run_qmp(&o, &in, guest, kind);
    }
    if (guest) {
        RfCliGuestIncoming gi;
        rf_cli_guest_incoming_init(&gi);
        gi.uri = in.uri;
        gi.kind = kind;
        gi.params = in.params;
        gi.json = in.json;
        gi.quiet = in.quiet;
        gi.uri_file = in.uri_file;
        return rf_cli_run_guest_incoming(&gi);
    }
    return rf_cli_run_incoming(&in);
}
