/* ramflow - command-line entry point: dispatches subcommands. */
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "control/cli.h"
#include "control/qmp.h"

atomic_int rf_cli_cancel;
static RfMigration *_Atomic current;

void rf_cli_set_migration(RfMigration *m)
{
    atomic_store(&current, m);
    if (m && atomic_load(&rf_cli_cancel)) {
        rf_migration_cancel(m); /* the signal came before the handle */
    }
}

/* Lock-free atomics and rf_migration_cancel only: async-signal-safe. */
static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&rf_cli_cancel, 1);
    RfMigration *m = atomic_load(&current);
    if (m) {
        rf_migration_cancel(m);
    }
}

void rf_cli_install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: ramflow COMMAND [OPTIONS]\n"
        "\n"
        "Live migration of VM memory over parallel (multifd) channels.\n"
        "\n"
        "commands:\n"
        "  migrate   --memory FILE [PARAMS] [--verify] [--json] URI\n"
        "            send the memory in FILE to a destination at URI\n"
        "  incoming  --listen URI --memory FILE [--json]\n"
        "            receive one migration into FILE\n"
        "  guest     [--memory-size SIZE] [--vcpus N] [PARAMS] URI\n"
        "            run the test VM and live-migrate it\n"
        "  incoming  --listen URI --guest\n"
        "            receive the test VM, resume it, check its memory\n"
        "  serve     --qmp unix:PATH [--monitor stdio] [--memory FILE ...]\n"
        "            wait for QEMU's migration commands (docs/qmp.md); "
        "incoming\n"
        "            and guest take --qmp and --monitor too\n"
        "  demo      live-migrate the test VM (1 GiB, one vCPU writing) "
        "between\n"
        "            two local processes, with progress and the report\n"
        "  bench     [--quick] [--link 1gbit,10gbit,unlimited] [...]\n"
        "            run upstream's benchmark table on this machine\n"
        "  gen-image --size SIZE [--seed N] FILE\n"
        "            write a realistic generated RAM image\n"
        "  codec     [-m METHOD] [-l LEVEL] [-d] < in > out; "
        "codec --bench FILE\n"
        "  version   print the version and the built-in methods\n"
        "\n"
        "URI: tcp:HOST:PORT, tcp:[IPV6]:PORT, unix:PATH\n"
        "Run 'ramflow COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return RF_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "migrate")) {
        return rf_cli_migrate(argc - 1, argv + 1);
    }
    if (!strcmp(cmd, "incoming")) {
        return rf_cli_incoming(argc - 1, argv + 1);
    }
    if (!strcmp(cmd, "guest")) {
        return rf_cli_guest(argc - 1, argv + 1);
    }
    if (!strcmp(cmd, "serve")) {
        return rf_cli_serve(argc - 1, argv + 1);
    }
    if (!strcmp(cmd, "demo")) {
        return rf_cli_demo(argc - 1, argv + 1);
    }
    if (!strcmp(cmd, "gen-image")) {
        return rf_cli_genimage(argc - 1, argv + 1);
    }
    if (!strcmp(cmd, "bench")) {
        return rf_cli_bench(argc - 1, argv + 1);
    }
    if (!strcmp(cmd, "codec")) {
        return rf_cli_codec(argc - 1, argv + 1);
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("ramflow %s\nmethods:", RAMFLOW_VERSION_STRING);
        for (const char *const *m = rf_method_names(); *m; m++) {
            printf(" %s", *m);
        }
        printf("\n");
        return RF_EXIT_OK;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return RF_EXIT_OK;
    }
    fprintf(stderr, "ramflow: unknown command '%s'\n", cmd);
    usage(stderr);
    return RF_EXIT_USAGE;
}
