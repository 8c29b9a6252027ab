/*
 * ramflow - `ramflow guest`: live-migrate the built-in test VM (source).
 *
 * Starts the test guest (KVM, or host threads where KVM is missing), lets
 * it write its memory, and migrates it: the engine pauses the vCPUs for
 * the final round and sends their state.  If the migration fails or is
 * cancelled, the guest is resumed and keeps running; the command shows it
 * still makes progress and that its memory pattern is intact.
 */
#include <stdlib.h>
#include <string.h>

#include "control/guest_run.h"
#include "control/qmp.h"
#include "testvm/guest.h"
#include "util/clock.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: ramflow guest [--memory-size SIZE] [--vcpus N] [--idle]\n"
        "                     [--dirty-rate PAGES_PER_S] [--fill PATH]\n"
        "                     [--kind auto|kvm|thread] [--auto-converge]\n"
        "                     [PARAMS] [--verify] [--json] URI\n"
        "       ramflow guest --qmp unix:PATH|tcp:[HOST]:PORT [--monitor "
        "stdio|unix:PATH|tcp:...] [...] [URI]\n"
        "\n"
        "Starts the test VM (default 1G RAM filled with a generated mix, one\n"
        "vCPU incrementing a byte in every page) and live-migrates it to a\n"
        "destination started with 'ramflow incoming --guest'.  --kind thread\n"
        "forces the fallback guest (host threads, userfaultfd tracking).\n"
        "PARAMS are the migrate parameters (see 'ramflow migrate --help').\n"
        "--qmp serves QEMU's QMP there, --monitor QEMU's human monitor\n"
        "(docs/qmp.md); the process runs until 'quit':\n"
        "without URI the VM runs and waits for 'migrate'.\n");
}

/* guest --qmp: the VM runs and waits for commands. */
static int run_qmp(const QmpCliOptions *o, RfCliGuestRun *gr)
{
    RfError *err = NULL;
    RfGuest *g = rf_guest_start(&gr->cfg, &err);
    if (!g) {
        return rf_cli_fail("cannot start the test guest", err);
    }
    if (!gr->quiet) {
        fprintf(stderr, "ramflow: source: %s\n", rf_guest_describe(g));
    }
    QmpMachine m;
    qmp_machine_init(&m, QMP_ROLE_SOURCE, gr->params);
    m.guest = g;
    m.src = rf_guest_ram_source(g);
    m.vm_running = true;
    int rc = rf_cli_qmp_run(o, &m);
    rf_guest_free(g);
    return rc;
}

int rf_cli_guest(int argc, char **argv)
{
    enum { O_VERIFY = 1, O_JSON, O_TIMEOUT, O_HELP, O_QUIET, O_QMP,
           O_MONITOR };
    struct option opts[48] = {
        {"verify", no_argument, NULL, O_VERIFY},
        {"json", no_argument, NULL, O_JSON},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"quiet", no_argument, NULL, O_QUIET},
        {"help", no_argument, NULL, O_HELP},
        {"qmp", required_argument, NULL, O_QMP},
        {"monitor", required_argument, NULL, O_MONITOR},
    };
    rf_cli_add_param_options(opts, rf_cli_add_guest_options(opts, 7));
    const char *qmp = NULL, *monitor = NULL;
    RfCliGuestRun g;
    rf_cli_guest_run_init(&g);
    RfError *err = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int r = rf_cli_param_option(g.params, c, optarg, &err);
        if (r < 0) {
            return rf_cli_fail(NULL, err);
        }
        int k = r ? r : rf_cli_guest_option(&g, c, optarg);
        if (k < 0) {
            return RF_EXIT_USAGE;
        }
        if (k > 0) {
            continue;
        }
        switch (c) {
        case O_TIMEOUT:
            if (!rf_params_set(g.params, "timeout", optarg, &err)) {
                return rf_cli_fail(NULL, err);
            }
            break;
        case O_VERIFY: rf_params_set_cap(g.params, "verify", true, NULL);
            break;
        case O_JSON: g.json = true; break;
        case O_QUIET: g.quiet = true; break;
        case O_QMP: qmp = optarg; break;
        case O_MONITOR: monitor = optarg; break;
        case O_HELP: usage(stdout); return RF_EXIT_OK;
        default: usage(stderr); return RF_EXIT_USAGE;
        }
    }
    if ((qmp || monitor) && optind >= argc - 1) {
        rf_cli_install_signals();
        QmpCliOptions o = {qmp, monitor,
                           optind == argc - 1 ? argv[optind] : NULL, NULL,
                           g.quiet};
        return run_qmp(&o, &g);
    }
    if (optind != argc - 1) {
        fprintf(stderr, "ramflow: guest needs one URI\n");
        usage(stderr);
        return RF_EXIT_USAGE;
    }
    if (!rf_params_check(g.params, &err)) {
        return rf_cli_fail(NULL, err);
    }
    g.uri = argv[optind];
    rf_cli_install_signals();
    return rf_cli_run_guest(&g);
}
