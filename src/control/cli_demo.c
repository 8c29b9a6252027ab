/*
 * ramflow - `ramflow demo`: live-migrate the test VM between two local
 * processes.
 *
 * Forks a destination process (`incoming --guest` on loopback), starts the
 * test VM here (KVM, or host threads where KVM is missing) with 1 GiB of
 * generated memory and one vCPU writing, migrates it with --verify, and
 * shows the destination's resume and pattern check.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control/guest_run.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: ramflow demo [--memory-size SIZE] [--vcpus N] [--idle]\n"
        "                    [--dirty-rate N] [--fill PATH] "
        "[--kind auto|kvm|thread]\n"
        "                    [--auto-converge] [PARAMS]\n"
        "\n"
        "Live-migrates the test VM (default: 1G RAM filled with a generated\n"
        "mix of text, code, data, zero and random pages, one vCPU writing)\n"
        "from this process to a destination process on loopback, with\n"
        "progress, the report, --verify and the destination's check of the\n"
        "guest's memory pattern.  PARAMS as for 'ramflow migrate'.\n");
}

int rf_cli_demo(int argc, char **argv)
{
    enum { O_HELP = 1 };
    struct option opts[48] = {
        {"help", no_argument, NULL, O_HELP},
    };
    rf_cli_add_param_options(opts, rf_cli_add_guest_options(opts, 1));
    RfCliGuestRun g;
    rf_cli_guest_run_init(&g);
    rf_params_set_cap(g.params, "verify", true, NULL);
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
        if (k == 0) {
            if (c == O_HELP) {
                usage(stdout);
                return RF_EXIT_OK;
            }
            usage(stderr);
            return RF_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return RF_EXIT_USAGE;
    }
    printf("ramflow demo: live migration of the test VM (%.0f MiB, %u vCPU%s)"
           " between two local processes\n",
           (double)g.cfg.mem_size / (1 << 20), g.cfg.vcpus,
           g.cfg.vcpus == 1 ? "" : "s");
    fflush(stdout);
    int pipefd[2];
    if (pipe(pipefd) != 0) {
        perror("ramflow: pipe");
        return RF_EXIT_FAIL;
    }
    pid_t child = fork();
    if (child == 0) {
        close(pipefd[0]);
        RfCliGuestIncoming in;
        rf_cli_guest_incoming_init(&in);
        in.uri = "tcp:127.0.0.1:0";
        in.kind = g.cfg.kind;
        in.quiet = true;
        in.uri_fd = pipefd[1];
        rf_cli_install_signals();
        /* The destination's lines are prefixed so the two sides read
         * apart. */
        _exit(rf_cli_run_guest_incoming(&in));
    }
    close(pipefd[1]);
    char uri[300] = "";
    FILE *f = fdopen(pipefd[0], "r");
    bool got = f && fgets(uri, sizeof(uri), f);
    if (f) {
        fclose(f);
    }
    int status = RF_EXIT_FAIL;
    if (child > 0 && got) {
        uri[strcspn(uri, "\n")] = '\0';
        char method[32] = "", channels[8] = "";
        rf_params_get(g.params, "multifd-compression", method,
                      sizeof(method), NULL);
        rf_params_get(g.params, "multifd-channels", channels,
                      sizeof(channels), NULL);
        printf("ramflow demo: destination process %d listening on %s; "
               "migrating with multifd-compression %s, %s channels\n",
               (int)child, uri, method, channels);
        fflush(stdout);
        g.uri = uri;
        rf_cli_install_signals();
        status = rf_cli_run_guest(&g);
    } else {
        fprintf(stderr, "ramflow: the destination process did not start\n");
    }
    if (child > 0) {
        if (status != RF_EXIT_OK) {
            kill(child, SIGTERM);
        }
        int child_status = 0;
        waitpid(child, &child_status, 0);
        if (status == RF_EXIT_OK &&
            (!WIFEXITED(child_status) || WEXITSTATUS(child_status) != 0)) {
            fprintf(stderr, "ramflow: the destination failed its checks\n");
            status = RF_EXIT_FAIL;
        }
    }
    if (status == RF_EXIT_OK) {
        printf("ramflow demo: done: memory verified by digest, and the guest "
               "runs on the destination with its memory pattern intact\n");
    }
    return status;
}
