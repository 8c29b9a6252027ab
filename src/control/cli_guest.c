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
#include "testvm/guest.h"
#include "util/clock.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: ramflow guest [--memory-size SIZE] [--vcpus N] [--idle]\n"
        "                     [--dirty-rate PAGES_PER_S] [--fill PATH]\n"
        "                     [--kind auto|kvm|thread] [--auto-converge]\n"
        "                     [PARAMS] [--verify] [--json] URI\n"
        "\n"
        "Starts the test VM (default 1G RAM filled with a generated mix, one\n"
        "vCPU incrementing a byte in every page) and live-migrates it to a\n"
        "destination started with 'ramflow incoming --guest'.  --kind thread\n"
        "forces the fallback guest (host threads, userfaultfd tracking).\n"
        "PARAMS are the migrate parameters (see 'ramflow migrate --help').\n");
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

int rf_cli_guest(int argc, char **argv)
{
    enum { O_SIZE = 1, O_VCPUS, O_IDLE, O_RATE, O_FILL, O_KIND, O_AC,
           O_VERIFY, O_JSON, O_TIMEOUT, O_HELP, O_QUIET };
    struct option opts[40] = {
        {"memory-size", required_argument, NULL, O_SIZE},
        {"vcpus", required_argument, NULL, O_VCPUS},
        {"idle", no_argument, NULL, O_IDLE},
        {"dirty-rate", required_argument, NULL, O_RATE},
        {"fill", required_argument, NULL, O_FILL},
        {"kind", required_argument, NULL, O_KIND},
        {"auto-converge", no_argument, NULL, O_AC},
        {"verify", no_argument, NULL, O_VERIFY},
        {"json", no_argument, NULL, O_JSON},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"quiet", no_argument, NULL, O_QUIET},
        {"help", no_argument, NULL, O_HELP},
    };
    rf_cli_add_param_options(opts, 12);
    RfCliGuestRun g;
    rf_cli_guest_run_init(&g);
    RfError *err = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int r = rf_cli_param_option(&g.params, c, optarg, &err);
        if (r < 0) {
            return rf_cli_fail(NULL, err);
        }
        if (r > 0) {
            continue;
        }
        uint64_t v;
        switch (c) {
        case O_SIZE:
            if (!rf_cli_parse_size(optarg, &v) || v < (2u << 20) ||
                v % RF_PAGE_SIZE || v > (64ull << 30)) {
                fprintf(stderr, "ramflow: --memory-size: invalid value '%s' "
                        "(2M to 64G, a multiple of 4K)\n", optarg);
                return RF_EXIT_USAGE;
            }
            g.cfg.mem_size = v;
            break;
        case O_VCPUS:
            if (!rf_cli_parse_size(optarg, &v) || v < 1 ||
                v > RF_GUEST_MAX_VCPUS) {
                fprintf(stderr, "ramflow: --vcpus: invalid value '%s' "
                        "(1 to %u)\n", optarg, RF_GUEST_MAX_VCPUS);
                return RF_EXIT_USAGE;
            }
            g.cfg.vcpus = (unsigned)v;
            break;
        case O_RATE:
            if (!rf_cli_parse_size(optarg, &v)) {
                fprintf(stderr, "ramflow: --dirty-rate: invalid value '%s' "
                        "(pages per second, 0 = unlimited)\n", optarg);
                return RF_EXIT_USAGE;
            }
            g.cfg.dirty_rate = v;
            break;
        case O_KIND:
            if (!rf_cli_parse_guest_kind(optarg, &g.cfg.kind)) {
                fprintf(stderr, "ramflow: --kind: invalid value '%s' (auto, "
                        "kvm or thread)\n", optarg);
                return RF_EXIT_USAGE;
            }
            break;
        case O_TIMEOUT:
            if (!rf_cli_parse_size(optarg, &v) || v < 100 || v > 3600000) {
                fprintf(stderr, "ramflow: --timeout: invalid value '%s' "
                        "(100-3600000 ms)\n", optarg);
                return RF_EXIT_USAGE;
            }
            g.timeout_ms = (unsigned)v;
            break;
        case O_IDLE: g.cfg.idle = true; break;
        case O_FILL: g.cfg.fill_path = optarg; break;
        case O_AC: g.auto_converge = true; break;
        case O_VERIFY: g.verify = true; break;
        case O_JSON: g.json = true; break;
        case O_QUIET: g.quiet = true; break;
        case O_HELP: usage(stdout); return RF_EXIT_OK;
        default: usage(stderr); return RF_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "ramflow: guest needs one URI\n");
        usage(stderr);
        return RF_EXIT_USAGE;
    }
    if (!rf_params_check(&g.params, &err)) {
        return rf_cli_fail(NULL, err);
    }
    g.uri = argv[optind];
    rf_cli_install_signals();
    return rf_cli_run_guest(&g);
}
