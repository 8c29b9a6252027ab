/*
 * ramflow - `ramflow demo`: a live migration between two local processes.
 *
 * Generates a realistic RAM image in /dev/shm, forks a destination process
 * listening on loopback, and migrates the image while a simulated guest
 * keeps writing to it, with progress, --verify and the report.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control/run.h"
#include "testvm/imagegen.h"
#include "util/clock.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: ramflow demo [--size SIZE] [--writes PAGES_PER_S] [PARAMS]\n"
        "\n"
        "Migrates a generated RAM image (default 1G; text, code, data, zero\n"
        "and random pages) between two local processes over TCP loopback,\n"
        "while a thread keeps writing pages (default 2000/s), then verifies\n"
        "the copy.  Defaults: multifd-compression zstd, multifd-channels 2.\n");
}

static bool make_image(const char *path, uint64_t size, RfError **errp)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
        rf_error_set(errp, RF_ERR_IO, "cannot create %s", path);
        if (fd >= 0) {
            close(fd);
        }
        return false;
    }
    uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        rf_error_set(errp, RF_ERR_IO, "cannot map %s", path);
        return false;
    }
    bool ok = rf_image_generate(p, size, 1, 2, errp);
    munmap(p, size);
    return ok;
}

int rf_cli_demo(int argc, char **argv)
{
    enum { O_SIZE = 1, O_WRITES, O_HELP };
    struct option opts[32] = {
        {"size", required_argument, NULL, O_SIZE},
        {"writes", required_argument, NULL, O_WRITES},
        {"help", no_argument, NULL, O_HELP},
    };
    rf_cli_add_param_options(opts, 3);
    RfCliMigrate m;
    rf_cli_migrate_init(&m);
    if (!rf_params_set(&m.params, "multifd-compression", "zstd", NULL)) {
        rf_params_set(&m.params, "multifd-compression", "none", NULL);
    }
    uint64_t size = 1ull << 30;
    m.writes_per_s = 2000;
    RfError *err = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int r = rf_cli_param_option(&m.params, c, optarg, &err);
        if (r < 0) {
            return rf_cli_fail(NULL, err);
        }
        if (r > 0) {
            continue;
        }
        switch (c) {
        case O_SIZE:
            if (!rf_cli_parse_size(optarg, &size) || size < (1 << 20) ||
                size % RF_PAGE_SIZE) {
                fprintf(stderr, "ramflow: --size: invalid value '%s' (at "
                        "least 1M, a multiple of 4K)\n", optarg);
                return RF_EXIT_USAGE;
            }
            break;
        case O_WRITES:
            if (!rf_cli_parse_size(optarg, &m.writes_per_s)) {
                fprintf(stderr, "ramflow: --writes: invalid value '%s' "
                        "(pages per second)\n", optarg);
                return RF_EXIT_USAGE;
            }
            break;
        case O_HELP: usage(stdout); return RF_EXIT_OK;
        default: usage(stderr); return RF_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return RF_EXIT_USAGE;
    }
    char src_path[64], dst_path[64];
    snprintf(src_path, sizeof(src_path), "/dev/shm/ramflow-demo-%d-src",
             (int)getpid());
    snprintf(dst_path, sizeof(dst_path), "/dev/shm/ramflow-demo-%d-dst",
             (int)getpid());
    printf("ramflow demo: generating a %.0f MiB RAM image in %s\n",
           (double)size / (1 << 20), src_path);
    fflush(stdout);
    double t = rf_now();
    if (!make_image(src_path, size, &err)) {
        unlink(src_path);
        return rf_cli_fail(NULL, err);
    }
    printf("ramflow demo: generated in %.2f s; starting the destination "
           "process\n", rf_now() - t);
    fflush(stdout);

    int pipefd[2];
    if (pipe(pipefd) != 0) {
        unlink(src_path);
        perror("ramflow: pipe");
        return RF_EXIT_FAIL;
    }
    pid_t child = fork();
    if (child == 0) {
        close(pipefd[0]);
        const char *specs[1] = {dst_path};
        RfCliIncoming in;
        rf_cli_incoming_init(&in);
        in.uri = "tcp:127.0.0.1:0";
        in.specs = specs;
        in.nspecs = 1;
        in.quiet = true;
        in.uri_fd = pipefd[1];
        rf_cli_install_signals();
        _exit(rf_cli_run_incoming(&in));
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
        printf("ramflow demo: destination pid %d listening on %s; migrating "
               "with %s, %u channels, %llu page writes/s\n", (int)child, uri,
               m.params.multifd_compression, m.params.multifd_channels,
               (unsigned long long)m.writes_per_s);
        fflush(stdout);
        const char *specs[1] = {src_path};
        m.uri = uri;
        m.specs = specs;
        m.nspecs = 1;
        m.verify = true;
        m.simulate_writes = m.writes_per_s > 0;
        rf_cli_install_signals();
        status = rf_cli_run_migrate(&m);
    } else {
        fprintf(stderr, "ramflow: the destination process did not start\n");
    }
    int child_status = 0;
    if (child > 0) {
        if (status != RF_EXIT_OK) {
            kill(child, SIGTERM);
        }
        waitpid(child, &child_status, 0);
        if (status == RF_EXIT_OK &&
            (!WIFEXITED(child_status) || WEXITSTATUS(child_status) != 0)) {
            fprintf(stderr, "ramflow: the destination process failed\n");
            status = RF_EXIT_FAIL;
        }
    }
    unlink(src_path);
    unlink(dst_path);
    if (status == RF_EXIT_OK) {
        printf("ramflow demo: done; the destination's copy matched the "
               "source (verified)\n");
    }
    return status;
}
