/* ramflow - `ramflow gen-image`: write a generated RAM image to a file. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "control/cli.h"
#include "tools/imagegen.h"

int rf_cli_genimage(int argc, char **argv)
{
    enum { O_SIZE = 1, O_SEED, O_FILL, O_HELP };
    struct option opts[] = {
        {"size", required_argument, NULL, O_SIZE},
        {"seed", required_argument, NULL, O_SEED},
        {"fill", required_argument, NULL, O_FILL},
        {"help", no_argument, NULL, O_HELP},
        {0},
    };
    uint64_t size = 0, seed = 1;
    const char *fills[64];
    unsigned nfill = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_SIZE:
            if (!rf_cli_parse_size(optarg, &size) || !size ||
                size % RF_PAGE_SIZE) {
                fprintf(stderr, "ramflow: --size: invalid value '%s' (a "
                        "non-zero multiple of 4K)\n", optarg);
                return RF_EXIT_USAGE;
            }
            break;
        case O_SEED:
            if (!rf_cli_parse_size(optarg, &seed)) {
                fprintf(stderr, "ramflow: --seed: invalid value '%s'\n",
                        optarg);
                return RF_EXIT_USAGE;
            }
            break;
        case O_FILL:
            if (nfill == 64) {
                fprintf(stderr, "ramflow: at most 64 --fill files\n");
                return RF_EXIT_USAGE;
            }
            fills[nfill++] = optarg;
            break;
        case O_HELP:
            printf("usage: ramflow gen-image --size SIZE [--seed N] "
                   "[--fill FILE ...] OUT\n"
                   "Writes a generated RAM image (or FILEs repeated) to OUT.\n");
            return RF_EXIT_OK;
        default:
            return RF_EXIT_USAGE;
        }
    }
    if (optind != argc - 1 || !size) {
        fprintf(stderr, "usage: ramflow gen-image --size SIZE [--seed N] "
                "[--fill FILE ...] OUT\n");
        return RF_EXIT_USAGE;
    }
    const char *path = argv[optind];
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
        fprintf(stderr, "ramflow: cannot create %s: %m\n", path);
        return RF_EXIT_FAIL;
    }
    uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        fprintf(stderr, "ramflow: cannot map %s: %m\n", path);
        return RF_EXIT_FAIL;
    }
    RfError *err = NULL;
    bool ok = nfill ? rf_image_fill_from_files(p, size, fills, nfill, &err)
                    : rf_image_generate(p, size, seed, 2, &err);
    munmap(p, size);
    return ok ? RF_EXIT_OK : rf_cli_fail(NULL, err);
}
