/*
 * ramflow - `ramflow bench`: upstream's performance tables on this
 * machine, with one command.
 *
 * For every link (loopback, or an emulated link in a network namespace),
 * method and channel count it migrates the test VM (idle vCPUs by
 * default, as upstream's table; its RAM filled with the generated mix or
 * with --fill data) between two fresh processes, --repeat times, and
 * reports the median with min-max.  Calibration on the same data in the
 * same run gives each row its bound (link or CPU) and efficiency.  The
 * results folder gets results.md, results.json, chart.svg, bench.log and
 * every raw report; the markdown is printed on stdout, progress on
 * stderr.  See docs/benchmarks.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_common.h"
#include "compress/method.h"
#include "control/cli.h"
#include "util/clock.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: ramflow bench [--quick] [--memory-size SIZE] [--fill PATH]\n"
        "         [--methods LIST] [--channels LIST] [--link LIST]"
        " [--delay MS]\n"
        "         [--repeat N] [--short-runs N] [--idle | --live"
        " [--dirty-rate N]]\n"
        "         [--vcpus N]"
        " [--data LIST] [--guest idle,live] [--max-cpu CORES]\n"
        "         [--kind auto|kvm|thread] [--out DIR] [--calib-mb N]\n"
        "         [--tcp-seconds S] [--row-timeout S] [--idle-wait S]"
        " [--tls]\n"
        "         [--dest-memory warm,cold] [--compare qemu] [PARAMS]\n"
        "\n"
        "Migrates the test VM for every link x method x channel count and\n"
        "prints upstream's table (time, throughput, pages/s, send and recv\n"
        "CPU%%, downtime) plus ratio, verified, the row's bound and its\n"
        "efficiency, after calibrating codecs, memcpy and raw TCP on the\n"
        "same data.  Defaults: --memory-size 1G, generated RAM mix,\n"
        "--methods none,zlib,zstd,qatzip, --channels 4,8,16, --link\n"
        "unlimited, --repeat 1, idle vCPUs, --out bench-results/DATE-TIME.\n"
        "--link takes unlimited (loopback) and rates such as 1gbit,10gbit,\n"
        "500mbit: the destination then runs in a network namespace behind a\n"
        "veth pair shaped with tc (needs root and iproute2; otherwise the\n"
        "bench says so and uses loopback).  --delay adds a one-way delay.\n"
        "--quick: 64M, none,zstd, channels 1,2, one repeat, loopback.\n"
        "Rows run interleaved: run 1 of every row of a link, then run 2, ...\n"
        "--short-runs N: when a link's fastest row takes under 1 s (median\n"
        "of --repeat runs), every row of that link gets more runs, N in all,\n"
        "interleaved too (default 3 x --repeat in a grid of several\n"
        "sections, else --repeat; at most 25).\n"
        "--idle-wait: before each run, wait up to S s (default 60, quick 0)\n"
        "for the machine to be quiet.\n"
        "--tls: every row also over TLS 1.3 (PSK, a key made for this run in\n"
        "OUT/tls-psk), plaintext and TLS runs interleaved, and a TLS cost\n"
        "table; defaults then --methods none,zstd,qatzip (--quick: none,zstd)\n"
        "and --channels 4.\n"
        "--dest-memory warm|cold|warm,cold: file mode, one row per mode: the\n"
        "source sends a RAM image (the generated mix or --fill) with `ramflow\n"
        "migrate`, the destination receives with `ramflow incoming --memory`\n"
        "into an existing, populated file in place (warm, --reuse-memory) or\n"
        "into a fresh file (cold); files in /dev/shm, or on hugetlbfs where\n"
        "the host has huge pages; each destination is compared with the\n"
        "image.\n"
        "--compare qemu: also migrates the same image with QEMU's multifd\n"
        "(qemu-system-x86_64, paused, RAM on memory-backend-file; installed\n"
        "by `make bench-deps`), same method (qatzip: QEMU's zstd), level,\n"
        "channels and destination mode, each ramflow run followed by QEMU's,\n"
        "and adds a table with the ratio ramflow time / QEMU time and both\n"
        "tools' CPU-seconds (loopback only, no --tls; implies --dest-memory\n"
        "warm,cold unless given).\n"
        "--data LIST: one section (a whole link x method x channels matrix)\n"
        "per item: generated (the generated mix, seed 1, as without --fill),\n"
        "random (incompressible pages: splitmix64 output), zero (zero-heavy:\n"
        "of every 80 pages the first 64 zero, the last 16 the generated mix;\n"
        "about 84%% zero pages in all), silesia (the Silesia corpus members,\n"
        "repeated: *.xz of $SILESIA_DIR, else ../shared/corpus/silesia beside\n"
        "the current folder or the source tree, decompressed once with xz\n"
        "into /dev/shm/ramflow-silesia), or a file or folder (as --fill).\n"
        "--guest idle,live: one section per guest mode (instead of --idle or\n"
        "--live).  Several sections: results per section in OUT/NN-DATA-GUEST/\n"
        "and the whole grid in OUT/results.md and results.json; defaults\n"
        "then --memory-size 192M.  With --data or --guest the live guest\n"
        "writes --dirty-rate 1000 unless told otherwise (pages/s: a guest\n"
        "writing flat out never converges at 100 Mbit/s).\n"
        "With auto among --methods: a table of auto against the best fixed\n"
        "method of every cell (link x data x guest x channels, chosen after\n"
        "the fact), verdicts (within 5%%, within 10%%, MISS; with a 90%%\n"
        "bootstrap interval of auto/best, and whether the verdict is clear of\n"
        "the noise) and grid totals.\n"
        "--max-cpu CORES: passed to both sides' ramflow processes (only when\n"
        "given); the source process's CPU is measured from /proc and a table\n"
        "says whether it stayed within the budget.\n"
        "PARAMS: migrate parameters other than multifd-compression and\n"
        "multifd-channels (e.g. --multifd-zstd-level 3), for the migrations\n"
        "and the calibration.\n");
}

static void on_signal(int sig)
{
    (void)sig;
    rf_cli_cancel = 1;
}

/* SIGINT, SIGTERM and SIGHUP all end the bench through its normal path,
 * so that namespaces and processes are cleaned up. */
static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Splits a comma list; calls item() on each.  @return false on the first
 * bad item (message printed). */
static bool each_item(const char *list, const char *opt,
                      bool (*item)(RfBenchConfig *, const char *),
                      RfBenchConfig *cfg)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", list);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",",
                                                              &save)) {
        if (!item(cfg, t)) {
            fprintf(stderr, "ramflow bench: %s: invalid item '%s'\n", opt,
                    t);
            return false;
        }
    }
    return true;
}

static bool add_method(RfBenchConfig *cfg, const char *s)
{
    if (cfg->nmethods == RF_BENCH_MAX_METHODS) {
        return false;
    }
    for (unsigned i = 0; i < cfg->nmethods; i++) {
        if (!strcmp(cfg->methods[i], s)) {
            fprintf(stderr, "ramflow bench: method '%s' listed twice\n", s);
            return false;
        }
    }
    /* auto is a choice of the engine, not a codec of the registry: the
     * source process says so if this ramflow lacks it. */
    if (strcmp(s, RF_BENCH_AUTO_NAME) != 0 && !rf_method_find(s)) {
        fprintf(stderr, "ramflow bench: method '%s' is %s\n", s,
                rf_method_known(s) ? "not built into this ramflow"
                                   : "unknown");
        return false;
    }
    snprintf(cfg->methods[cfg->nmethods++], RF_METHOD_NAME_MAX + 1, "%s",
             s);
    return true;
}

static bool add_channels(RfBenchConfig *cfg, const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 1 || v > 255 || cfg->nchannels == RF_BENCH_MAX_CHANNELS) {
        return false;
    }
    cfg->channels[cfg->nchannels++] = (unsigned)v;
    return true;
}

static bool add_dest(RfBenchConfig *cfg, const char *s)
{
    RfBenchDest d;
    if (!strcmp(s, "warm")) {
        d = RF_BENCH_DEST_WARM;
    } else if (!strcmp(s, "cold")) {
        d = RF_BENCH_DEST_COLD;
    } else {
        return false;
    }
    for (unsigned i = 0; i < cfg->ndests; i++) {
        if (cfg->dests[i] == d) {
            return false;
        }
    }
    cfg->dests[cfg->ndests++] = d;
    return true;
}

/* File mode and --compare qemu go with some options only.  @return the
 * usage exit status, or -1 to go on. */
static int check_file_mode(RfBenchConfig *cfg)
{
    if (cfg->compare_qemu && cfg->ndests == 0) {
        add_dest(cfg, "warm");
        add_dest(cfg, "cold");
    }
    if (!cfg->ndests) {
        return -1;
    }
    const char *bad = cfg->live ? "--live" : NULL;
    bad = cfg->compare_qemu && rf_bench_auto_index(cfg) >= 0
              ? "--methods auto" : bad;
    for (unsigned i = 0; i < cfg->nlinks && cfg->compare_qemu; i++) {
        bad = cfg->links[i].rate_bps ? "--link with a rate" : bad;
    }
    bad = cfg->compare_qemu && cfg->tls ? "--tls" : bad;
    if (bad) {
        fprintf(stderr, "ramflow bench: %s does not go with %s\n", bad,
                cfg->compare_qemu ? "--compare qemu" : "--dest-memory");
        return RF_EXIT_USAGE;
    }
    return -1;
}

static bool add_link(RfBenchConfig *cfg, const char *s)
{
    return cfg->nlinks < RF_BENCH_MAX_LINKS &&
           rf_bench_parse_link(s, &cfg->links[cfg->nlinks++]);
}

static bool parse_num(const char *s, double lo, double hi, double *v)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || *end || x < lo || x > hi) {
        return false;
    }
    *v = x;
    return true;
}

static void config_defaults(RfBenchConfig *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    rf_params_init(&cfg->params);
    cfg->mem_size = 1ull << 30;
    cfg->repeat = 1;
    cfg->vcpus = 1;
    cfg->kind = "auto";
    cfg->calib_mb = 128;
    cfg->blast_s = -1;
    cfg->idle_wait_s = -1;
    cfg->row_timeout_s = 900;
}

/* Fills what the options left unset, with --quick's or the full
 * defaults. */
static void config_finish(RfBenchConfig *cfg, bool set_size)
{
    static const char *const full[] = {"none", "zlib", "zstd", "qatzip",
                                       NULL};
    static const char *const quick[] = {"none", "zstd", NULL};
    static const char *const tls[] = {"none", "zstd", "qatzip", NULL};
    if (cfg->quick && !set_size) {
        cfg->mem_size = 64ull << 20;
    }
    if (cfg->nmethods == 0) {
        const char *const *list = cfg->quick ? quick : cfg->tls ? tls : full;
        for (unsigned i = 0; list[i]; i++) {
            if (rf_method_find(list[i])) {
                add_method(cfg, list[i]);
            }
        }
    }
    if (cfg->nchannels == 0 && cfg->tls) {
        cfg->channels[cfg->nchannels++] = 4;
    }
    if (cfg->nchannels == 0) {
        static const unsigned q[] = {1, 2}, f[] = {4, 8, 16};
        const unsigned *l = cfg->quick ? q : f;
        for (unsigned i = 0; i < (cfg->quick ? 2u : 3u); i++) {
            cfg->channels[cfg->nchannels++] = l[i];
        }
    }
    if (cfg->nlinks == 0) {
        rf_bench_parse_link("unlimited", &cfg->links[cfg->nlinks++]);
    }
    if (!cfg->out_dir[0]) {
        char stamp[32];
        time_t now = time(NULL);
        strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", localtime(&now));
        snprintf(cfg->out_dir, sizeof(cfg->out_dir), "bench-results/%s",
                 stamp);
    }
}

/* One --data item (a path must be readable: said here, at once). */
static bool add_data(RfBenchDims *dims, const char *s)
{
    if (dims->ndata == RF_BENCH_MAX_DATA) {
        fprintf(stderr, "ramflow bench: --data: at most %d items\n",
                RF_BENCH_MAX_DATA);
        return false;
    }
    RfBenchData *d = &dims->data[dims->ndata];
    if (!rf_bench_parse_data(s, d)) {
        return false;
    }
    if (d->kind == RF_BENCH_DATA_PATH && access(s, R_OK) != 0) {
        fprintf(stderr, "ramflow bench: --data: '%s' is none of generated, "
                "random, zero, silesia, and not a readable file or folder "
                "(%s)\n", s, strerror(errno));
        return false;
    }
    for (unsigned i = 0; i < dims->ndata; i++) {
        if (!strcmp(dims->data[i].name, d->name)) {
            fprintf(stderr, "ramflow bench: --data: '%s' listed twice\n",
                    d->name);
            return false;
        }
    }
    dims->ndata++;
    return true;
}

static bool add_guest(RfBenchDims *dims, const char *s)
{
    bool live;
    if (!rf_bench_parse_guest(s, &live) || dims->nguests == 2 ||
        (dims->nguests == 1 && dims->live[0] == live)) {
        return false;
    }
    dims->live[dims->nguests++] = live;
    return true;
}

/* Splits a comma list of --data or --guest.  @return false on the first
 * bad item (message printed). */
static bool each_dim(const char *list, const char *opt,
                     bool (*item)(RfBenchDims *, const char *),
                     RfBenchDims *dims)
{
    char buf[2048];
    if (snprintf(buf, sizeof(buf), "%s", list) >= (int)sizeof(buf)) {
        fprintf(stderr, "ramflow bench: %s: list too long\n", opt);
        return false;
    }
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        if (!item(dims, t)) {
            fprintf(stderr, "ramflow bench: %s: invalid item '%s'\n", opt,
                    t);
            return false;
        }
    }
    return true;
}

/* The dimensions go with some options only; several sections get a
 * smaller default size.  @return the usage exit status, or -1. */
static int check_dims(RfBenchConfig *cfg, RfBenchDims *dims, bool set_size,
                      bool idle_live, bool set_rate)
{
    if (dims->ndata && cfg->fill) {
        fprintf(stderr, "ramflow bench: --fill and --data: give the path as "
                "an item of --data\n");
        return RF_EXIT_USAGE;
    }
    if (dims->nguests && idle_live) {
        fprintf(stderr, "ramflow bench: --guest and --idle/--live: use one "
                "of them\n");
        return RF_EXIT_USAGE;
    }
    bool live = cfg->live || (dims->nguests && (dims->live[0] ||
                              (dims->nguests > 1 && dims->live[1])));
    if (cfg->ndests && live) {
        fprintf(stderr, "ramflow bench: a live guest does not go with "
                "--dest-memory (file mode)\n");
        return RF_EXIT_USAGE;
    }
    unsigned nsec = (dims->ndata ? dims->ndata : 1) *
                    (dims->nguests ? dims->nguests : 1);
    if (nsec > 1 && !set_size && !cfg->quick) {
        cfg->mem_size = 192ull << 20;
    }
    /* A guest writing every page flat out never converges on a 100 Mbit/s
     * link (64 MiB: 31 rounds, 174 s): the grid's live guest writes 1000
     * pages/s (4 MB/s, a third of 100 Mbit/s) unless told otherwise, also
     * in a grid of one section (--data or --guest with one item each). */
    if ((nsec > 1 || dims->ndata || dims->nguests) && live && !set_rate) {
        cfg->dirty_rate = 1000;
    }
    /* A 0.1 s migration varies by 15% from run to run (process start,
     * scheduling): a grid's short cells take more runs, so that their
     * medians compare methods rather than luck. */
    if (cfg->short_runs == 0) {
        cfg->short_runs = nsec > 1 ? cfg->repeat * 3 : cfg->repeat;
    }
    if (cfg->short_runs > RF_BENCH_MAX_REPEAT) {
        cfg->short_runs = RF_BENCH_MAX_REPEAT;
    }
    if (cfg->short_runs < cfg->repeat) {
        cfg->short_runs = cfg->repeat;
    }
    return -1;
}

/* Parses the options.  @return -1 to go on, or the exit status. */
static int parse_options(RfBenchConfig *cfg, RfBenchDims *dims, int argc,
                         char **argv)
{
    enum { O_QUICK = 1, O_SIZE, O_FILL, O_METHODS, O_CHANNELS, O_LINK,
           O_DELAY, O_REPEAT, O_IDLE, O_LIVE, O_RATE, O_VCPUS, O_KIND,
           O_OUT, O_CALIB, O_TCP, O_TIMEOUT, O_IDLE_WAIT, O_TLS, O_HELP,
           O_DEST, O_COMPARE, O_DATA, O_GUEST, O_MAX_CPU, O_SHORT };
    struct option opts[64] = {
        {"quick", no_argument, NULL, O_QUICK},
        {"memory-size", required_argument, NULL, O_SIZE},
        {"fill", required_argument, NULL, O_FILL},
        {"methods", required_argument, NULL, O_METHODS},
        {"channels", required_argument, NULL, O_CHANNELS},
        {"link", required_argument, NULL, O_LINK},
        {"delay", required_argument, NULL, O_DELAY},
        {"repeat", required_argument, NULL, O_REPEAT},
        {"idle", no_argument, NULL, O_IDLE},
        {"live", no_argument, NULL, O_LIVE},
        {"dirty-rate", required_argument, NULL, O_RATE},
        {"vcpus", required_argument, NULL, O_VCPUS},
        {"kind", required_argument, NULL, O_KIND},
        {"out", required_argument, NULL, O_OUT},
        {"calib-mb", required_argument, NULL, O_CALIB},
        {"tcp-seconds", required_argument, NULL, O_TCP},
        {"row-timeout", required_argument, NULL, O_TIMEOUT},
        {"idle-wait", required_argument, NULL, O_IDLE_WAIT},
        {"tls", no_argument, NULL, O_TLS},
        {"help", no_argument, NULL, O_HELP},
        {"dest-memory", required_argument, NULL, O_DEST},
        {"compare", required_argument, NULL, O_COMPARE},
        {"data", required_argument, NULL, O_DATA},
        {"guest", required_argument, NULL, O_GUEST},
        {"max-cpu", required_argument, NULL, O_MAX_CPU},
        {"short-runs", required_argument, NULL, O_SHORT},
    };
    rf_cli_add_param_options(opts, O_SHORT);
    bool set_size = false, idle_live = false, set_rate = false;
    RfError *err = NULL;
    int c;
    double v = 0;
    uint64_t u;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int r = rf_cli_param_option(&cfg->params, c, optarg, &err);
        if (r < 0) {
            return rf_cli_fail("bench", err);
        }
        if (r > 0) {
            const char *name = rf_params_names()[c - RF_OPT_PARAM_BASE];
            if (!strcmp(name, "multifd-compression") ||
                !strcmp(name, "multifd-channels")) {
                fprintf(stderr, "ramflow bench: use --methods and "
                        "--channels instead of --%s\n", name);
                return RF_EXIT_USAGE;
            }
            /* The bench makes its own key and gives it to both sides. */
            if (!strcmp(name, "tls-creds") || !strcmp(name, "tls-psk") ||
                !strcmp(name, "insecure")) {
                fprintf(stderr, "ramflow bench: --%s is not passed on: "
                        "--tls measures TLS (PSK) against plaintext\n",
                        name);
                return RF_EXIT_USAGE;
            }
            if (cfg->npass == RF_BENCH_MAX_PASS) {
                fprintf(stderr, "ramflow bench: too many parameters\n");
                return RF_EXIT_USAGE;
            }
            snprintf(cfg->pass[cfg->npass++], sizeof(cfg->pass[0]),
                     "--%s=%s", name, optarg);
            continue;
        }
        bool ok = true;
        switch (c) {
        case O_QUICK: cfg->quick = true; break;
        case O_SIZE:
            ok = rf_cli_parse_size(optarg, &u) && u >= (2u << 20) &&
                 u % RF_PAGE_SIZE == 0 && u <= (64ull << 30);
            cfg->mem_size = u;
            set_size = true;
            break;
        case O_FILL: cfg->fill = optarg; ok = access(optarg, R_OK) == 0;
            break;
        case O_METHODS:
            ok = each_item(optarg, "--methods", add_method, cfg);
            break;
        case O_CHANNELS:
            ok = each_item(optarg, "--channels", add_channels, cfg);
            break;
        case O_LINK: ok = each_item(optarg, "--link", add_link, cfg); break;
        case O_DELAY:
            ok = parse_num(optarg, 0, 10000, &cfg->delay_ms);
            break;
        case O_REPEAT:
            ok = parse_num(optarg, 1, RF_BENCH_MAX_REPEAT, &v);
            cfg->repeat = (unsigned)v;
            break;
        case O_SHORT:
            ok = parse_num(optarg, 1, RF_BENCH_MAX_REPEAT, &v);
            cfg->short_runs = (unsigned)v;
            break;
        case O_IDLE: cfg->live = false; idle_live = true; break;
        case O_LIVE: cfg->live = true; idle_live = true; break;
        case O_DATA: ok = each_dim(optarg, "--data", add_data, dims); break;
        case O_GUEST:
            ok = each_dim(optarg, "--guest", add_guest, dims);
            break;
        case O_MAX_CPU:
            ok = rf_bench_parse_cores(optarg, &cfg->max_cpu) &&
                 strlen(optarg) < sizeof(cfg->max_cpu_arg);
            snprintf(cfg->max_cpu_arg, sizeof(cfg->max_cpu_arg), "%s",
                     optarg);
            break;
        case O_RATE:
            ok = rf_cli_parse_size(optarg, &cfg->dirty_rate);
            set_rate = true;
            break;
        case O_VCPUS:
            ok = parse_num(optarg, 1, 64, &v);
            cfg->vcpus = (unsigned)v;
            break;
        case O_KIND:
            ok = !strcmp(optarg, "auto") || !strcmp(optarg, "kvm") ||
                 !strcmp(optarg, "thread");
            cfg->kind = optarg;
            break;
        case O_OUT:
            snprintf(cfg->out_dir, sizeof(cfg->out_dir), "%s", optarg);
            break;
        case O_CALIB:
            ok = parse_num(optarg, 1, 4096, &v);
            cfg->calib_mb = (unsigned)v;
            break;
        case O_TCP: ok = parse_num(optarg, 0, 60, &cfg->blast_s); break;
        case O_TIMEOUT:
            ok = parse_num(optarg, 10, 86400, &v);
            cfg->row_timeout_s = (unsigned)v;
            break;
        case O_IDLE_WAIT:
            ok = parse_num(optarg, 0, 3600, &cfg->idle_wait_s);
            break;
        case O_TLS: cfg->tls = true; break;
        case O_DEST:
            cfg->ndests = 0;
            ok = each_item(optarg, "--dest-memory", add_dest, cfg);
            break;
        case O_COMPARE:
            ok = !strcmp(optarg, "qemu");
            cfg->compare_qemu = ok;
            break;
        case O_HELP: usage(stdout); return RF_EXIT_OK;
        default: usage(stderr); return RF_EXIT_USAGE;
        }
        if (!ok) {
            fprintf(stderr, "ramflow bench: --%s: invalid value '%s'\n",
                    opts[c - 1].name, optarg);
            return RF_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "ramflow bench: unexpected argument '%s'\n",
                argv[optind]);
        return RF_EXIT_USAGE;
    }
    if (!rf_params_check(&cfg->params, &err)) {
        return rf_cli_fail("bench", err);
    }
    if (cfg->blast_s < 0) {
        cfg->blast_s = cfg->quick ? 0.5 : 2;
    }
    if (cfg->idle_wait_s < 0) {
        cfg->idle_wait_s = cfg->quick ? 0 : 60;
    }
    config_finish(cfg, set_size);
    int st = check_file_mode(cfg);
    return st >= 0 ? st : check_dims(cfg, dims, set_size, idle_live,
                                     set_rate);
}


/* mkdir -p */
static bool make_dirs(const char *path)
{
    char buf[PATH_MAX + 16];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
                return false;
            }
            *p = '/';
        }
    }
    return mkdir(buf, 0755) == 0 || errno == EEXIST;
}

/* Creates the results folder (absolute path from now on), its raw/
 * folder and bench.log. */
static bool prepare_out(RfBench *b)
{
    RfBenchConfig *cfg = &b->cfg;
    char raw[PATH_MAX + 8], abs[PATH_MAX], log[PATH_MAX + 16];
    snprintf(raw, sizeof(raw), "%s/raw", cfg->out_dir);
    if (!make_dirs(raw) || !realpath(cfg->out_dir, abs)) {
        fprintf(stderr, "ramflow bench: --out %s: %s\n", cfg->out_dir,
                strerror(errno));
        return false;
    }
    snprintf(cfg->out_dir, sizeof(cfg->out_dir), "%s", abs);
    snprintf(log, sizeof(log), "%s/bench.log", cfg->out_dir);
    b->log = fopen(log, "w");
    if (!b->log) {
        fprintf(stderr, "ramflow bench: %s: %s\n", log, strerror(errno));
        return false;
    }
    return true;
}

/* --tls: out_dir/tls-psk/keys.psk, "qemu:" and 32 random bytes in hex,
 * mode 0600 in a folder of mode 0700, made anew for every bench. */
static bool make_psk(RfBenchConfig *cfg)
{
    char path[sizeof(cfg->psk_dir) + 16];
    snprintf(cfg->psk_dir, sizeof(cfg->psk_dir), "%s/tls-psk", cfg->out_dir);
    snprintf(path, sizeof(path), "%s/keys.psk", cfg->psk_dir);
    uint8_t key[32];
    char line[8 + 2 * sizeof(key) + 2] = "qemu:";
    if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
        fprintf(stderr, "ramflow bench: getrandom: %s\n", strerror(errno));
        return false;
    }
    for (size_t i = 0; i < sizeof(key); i++) {
        snprintf(line + 5 + 2 * i, 3, "%02x", key[i]);
    }
    strcat(line, "\n");
    explicit_bzero(key, sizeof(key));
    if ((mkdir(cfg->psk_dir, 0700) < 0 && errno != EEXIST) ||
        chmod(cfg->psk_dir, 0700) < 0) {
        fprintf(stderr, "ramflow bench: %s: %s\n", cfg->psk_dir,
                strerror(errno));
        return false;
    }
    unlink(path); /* a key of an earlier bench in the same folder */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
                  O_CLOEXEC, 0600);
    size_t len = strlen(line);
    bool ok = fd >= 0 && write(fd, line, len) == (ssize_t)len;
    int e = errno;
    explicit_bzero(line, sizeof(line));
    if (fd >= 0 && close(fd) < 0 && ok) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        fprintf(stderr, "ramflow bench: %s: %s\n", path, strerror(e));
    }
    return ok;
}

int rf_cli_bench(int argc, char **argv)
{
    RfBench *b = calloc(1, sizeof(*b));
    if (!b) {
        fprintf(stderr, "ramflow bench: out of memory\n");
        return RF_EXIT_FAIL;
    }
    config_defaults(&b->cfg);
    RfBenchDims dims;
    memset(&dims, 0, sizeof(dims));
    int status = parse_options(&b->cfg, &dims, argc, argv);
    if (status >= 0) {
        free(b);
        return status;
    }
    /* The children run this very binary through /proc/PID/exe: still
     * this file if it is rebuilt meanwhile, and a path that also works
     * behind `ip netns exec` (where /proc/self would be ip). */
    char self[PATH_MAX] = "";
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        fprintf(stderr, "ramflow bench: cannot find this binary: %s\n",
                strerror(errno));
        free(b);
        return RF_EXIT_FAIL;
    }
    snprintf(b->cfg.exe, sizeof(b->cfg.exe), "/proc/%d/exe", (int)getpid());
    RfError *err = NULL;
    if (b->cfg.compare_qemu && !rf_bench_qemu_probe(&b->cfg, &err)) {
        free(b);
        return rf_cli_fail("bench", err);
    }
    if (!prepare_out(b) || (b->cfg.tls && !make_psk(&b->cfg))) {
        if (b->log) {
            fclose(b->log);
        }
        free(b);
        return RF_EXIT_FAIL;
    }
    fprintf(b->log, "## binary: %.*s, run by the children as %s\n", (int)n,
            self, b->cfg.exe);
    install_signals();
    rf_bench_link_init(b->log);
    status = rf_bench_run_sections(b, &dims);
    rf_bench_link_down();
    rf_bench_qemu_kill_all();
    rf_bench_image_cleanup();
    fclose(b->log);
    b->log = NULL;
    free(b->rows);
    free(b);
    return status;
}
