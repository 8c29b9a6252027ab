/* ramflow - `ramflow migrate`: the source side on the command line. */
#include <stdlib.h>
#include <string.h>

#include "control/cli.h"
#include "control/run.h"
#include "testvm/writer.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: ramflow migrate --memory [NAME=]FILE [--memory ...] [PARAMS]\n"
        "                       [--verify] [--json] [--timeout MS]\n"
        "                       [--simulate-writes PAGES_PER_S] URI\n"
        "\n"
        "Sends the memory in FILE(s) (e.g. /dev/shm/NAME) to the destination\n"
        "listening at URI (tcp:HOST:PORT, tcp:[V6]:PORT, unix:PATH).\n"
        "\n"
        "parameters (QEMU names):\n"
        "  --multifd-channels N        1-255, default 2\n"
        "  --multifd-compression M     none, zlib, zstd, qatzip; default none\n"
        "  --multifd-zlib-level N      0-9, default 1\n"
        "  --multifd-zstd-level N      0-20, default 1\n"
        "  --multifd-qatzip-level N    1-9, default 1\n"
        "  --max-bandwidth BYTES/S     0 = unlimited (default), K/M/G ok\n"
        "  --downtime-limit MS         0-2000000, default 300\n"
        "  --max-rounds N              1-10000, default 30\n"
        "  --multifd-reconnect-attempts N  0-100, default 3: a data\n"
        "                      channel whose connection broke reconnects\n"
        "                      and re-sends what did not arrive (0: the\n"
        "                      migration fails instead)\n"
        "  --multifd-reconnect-backoff MS  0-60000, default 200: wait\n"
        "                      before the first attempt, doubled after\n"
        "\n"
        "  --crc32c on|off     a CRC32C on every data packet, checked before\n"
        "                      it reaches the destination's memory; default\n"
        "                      on (off: for a destination without it)\n"
        "\n"
        "  --verify            compare every block's digest at the end\n"
        "  --json              print the report as JSON\n"
        "  --simulate-writes R a thread writes R random pages/s during the\n"
        "                      migration, like a running guest\n");
}

int rf_cli_migrate(int argc, char **argv)
{
    enum { O_MEMORY = 1, O_VERIFY, O_JSON, O_TIMEOUT, O_WRITES, O_HELP,
           O_QUIET };
    struct option opts[48] = {
        {"memory", required_argument, NULL, O_MEMORY},
        {"verify", no_argument, NULL, O_VERIFY},
        {"json", no_argument, NULL, O_JSON},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"simulate-writes", required_argument, NULL, O_WRITES},
        {"quiet", no_argument, NULL, O_QUIET},
        {"help", no_argument, NULL, O_HELP},
    };
    rf_cli_add_param_options(opts, 7);

    RfCliMigrate m;
    rf_cli_migrate_init(&m);
    const char *specs[RF_MAX_BLOCKS];
    RfError *err = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int r = rf_cli_param_option(m.params, c, optarg, &err);
        if (r < 0) {
            return rf_cli_fail(NULL, err);
        }
        if (r > 0) {
            continue;
        }
        uint64_t v;
        switch (c) {
        case O_MEMORY:
            if (!rf_cli_add_memory_spec(specs, &m.nspecs, optarg)) {
                return RF_EXIT_USAGE;
            }
            break;
        case O_VERIFY: rf_params_set_cap(m.params, "verify", true, NULL);
            break;
        case O_JSON: m.json = true; break;
        case O_QUIET: m.quiet = true; break;
        case O_TIMEOUT:
            if (!rf_params_set(m.params, "timeout", optarg, &err)) {
                return rf_cli_fail(NULL, err);
            }
            break;
        case O_WRITES:
            if (!rf_cli_parse_size(optarg, &v)) {
                fprintf(stderr, "ramflow: --simulate-writes: invalid value "
                        "'%s' (pages per second)\n", optarg);
                return RF_EXIT_USAGE;
            }
            m.writes_per_s = v;
            m.simulate_writes = true;
            break;
        case O_HELP: usage(stdout); return RF_EXIT_OK;
        default: usage(stderr); return RF_EXIT_USAGE;
        }
    }
    if (optind != argc - 1 || m.nspecs == 0) {
        fprintf(stderr, "ramflow: migrate needs --memory FILE and one URI\n");
        usage(stderr);
        return RF_EXIT_USAGE;
    }
    if (!rf_params_check(m.params, &err)) {
        return rf_cli_fail(NULL, err);
    }
    m.uri = argv[optind];
    m.specs = specs;
    rf_cli_install_signals();
    return rf_cli_run_migrate(&m);
}
