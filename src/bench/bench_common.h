/*
 * ramflow - `ramflow bench`: the benchmark matrix of upstream's tables.
 *
 * One file per job:
 *   cli_bench.c    options, results folder, outputs
 *   bench_link.c   link emulation: network namespace, veth pair, tc
 *   bench_matrix.c the matrix: machine, calibration, rows, statistics
 *   bench_calib.c  calibration: codec speeds and ratio, memcpy
 *   bench_tcp.c    calibration: raw TCP throughput of a path
 *   bench_run.c    one migration: a destination and a source process
 *   bench_image.c  --dest-memory: the RAM image, warm/cold destination
 *                  files in /dev/shm, the comparison of the result
 *   bench_qemu.c   --compare qemu: one QEMU multifd migration
 *   bench_qmp.c    a minimal QMP client (unix socket, jansson)
 *   bench_out.c    output: markdown tables, JSON
 *   bench_chart.c  output: the gnuplot chart
 *   bench_chart_qemu.c  output: the --compare qemu chart
 *   bench_sections.c the grid: one matrix per data x guest section
 *   bench_data.c   --data: the fill of each data kind (Silesia, random,
 *                  zero-heavy images)
 *   bench_compare.c auto against the best fixed method of every cell,
 *                  and the CPU budget table
 *   bench_proc.c   the source's CPU from /proc (--max-cpu)
 *   bench_grid.c, bench_auto_json.c  the grid's pure logic (bench_grid.h)
 *
 * Every figure is in decimal units: MB = 10^6 bytes, Mbit = 10^6 bits.
 */
#ifndef RF_BENCH_COMMON_H
#define RF_BENCH_COMMON_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "bench/bench_grid.h"
#include "engine/params.h"
#include "ramflow/ramflow.h"

#define RF_BENCH_MAX_METHODS 8
#define RF_BENCH_MAX_CHANNELS 16
#define RF_BENCH_MAX_LINKS 8
#define RF_BENCH_MAX_REPEAT 25
#define RF_BENCH_SHORT_S 1.0 /* a link whose rows take less gets short_runs */
#define RF_BENCH_MAX_PASS 32  /* pass-through parameter options */
#define RF_BENCH_MAX_DEST 2   /* --dest-memory warm,cold */

/* The destination's memory in file mode (--dest-memory). */
typedef enum RfBenchDest {
    RF_BENCH_DEST_WARM,  /* an existing, populated file, received into in
                            place (incoming --reuse-memory; QEMU:
                            prealloc=on) */
    RF_BENCH_DEST_COLD,  /* a fresh file (incoming --memory; QEMU: a new
                            memory-backend-file) */
} RfBenchDest;

/* One emulated link of --link. */
typedef struct RfBenchLink {
    char name[32];      /* as given: "unlimited", "1gbit", "500mbit" */
    uint64_t rate_bps;  /* bits/s; 0 = loopback, no namespace */
} RfBenchLink;

typedef struct RfBenchConfig {
    char exe[PATH_MAX];          /* this ramflow binary */
    uint64_t mem_size;
    const char *fill;            /* file or folder; NULL = generated mix */
    const char *data_name;       /* this section's --data item ("zero") */
    double max_cpu;              /* --max-cpu CORES for both sides; 0 = not
                                    given (not passed) */
    char max_cpu_arg[32];        /* as given */
    bool reuse_calib;            /* calib already holds this data's codec
                                    and links' TCP figures (the other guest
                                    mode of the same data) */
    char methods[RF_BENCH_MAX_METHODS][RF_METHOD_NAME_MAX + 1];
    unsigned nmethods;
    unsigned channels[RF_BENCH_MAX_CHANNELS];
    unsigned nchannels;
    RfBenchLink links[RF_BENCH_MAX_LINKS];
    unsigned nlinks;
    unsigned repeat;
    unsigned short_runs;         /* runs in all for the rows of a short link
                                    (its fastest row's median under
                                    RF_BENCH_SHORT_S): --short-runs, or
                                    3 x repeat in a grid, else repeat */
    bool live;                   /* vCPUs write (else idle, as upstream) */
    uint64_t dirty_rate;         /* pages/s when live, 0 = unlimited */
    unsigned vcpus;
    const char *kind;            /* guest kind: auto, kvm, thread */
    double delay_ms;             /* one-way delay on emulated links */
    unsigned calib_mb;           /* codec calibration sample, MiB */
    double blast_s;              /* raw TCP measurement, seconds */
    unsigned row_timeout_s;      /* one migration, both processes */
    double idle_wait_s;          /* before each run: wait for a quiet
                                    machine (< 25% of one core busy) */
    bool quick;
    bool tls;                    /* every row also over TLS (PSK) */
    char out_dir[PATH_MAX];
    char psk_dir[PATH_MAX + 16]; /* --tls: out_dir/tls-psk (keys.psk) */
    RfParams params;             /* levels etc. for calibration */
    /* Parameter options the user gave, passed on to the source process
     * as "--NAME=VALUE". */
    char pass[RF_BENCH_MAX_PASS][160];
    unsigned npass;
    /* --dest-memory: file mode (source `ramflow migrate --memory IMAGE`,
     * destination `ramflow incoming --memory FILE`), one row per mode;
     * ndests 0 = the test VM (`guest` / `incoming --guest`). */
    RfBenchDest dests[RF_BENCH_MAX_DEST];
    unsigned ndests;
    bool compare_qemu;           /* --compare qemu (file mode) */
    char qemu_exe[PATH_MAX];     /* qemu-system-x86_64 found in PATH */
    char qemu_version[64];       /* what `qemu --version` says */
    char qemu_accel[16];         /* "kvm" or "tcg" */
    char image[PATH_MAX];        /* the RAM image (file mode) */
    char scratch[PATH_MAX - 64]; /* /dev/shm folder of this bench */
    char huge_note[160];         /* hugetlbfs: used, or why not */
} RfBenchConfig;

/* One migration's figures (from the source's and destination's JSON). */
typedef struct RfBenchRun {
    bool ok;                     /* both completed, pattern check passed */
    bool verified;               /* digests matched and pattern intact */
    bool converged, dest_warm;
    double total_time_s, setup_time_s, downtime_ms, dest_downtime_ms;
    double throughput_mbps, pages_per_s, send_cpu, recv_cpu, ratio;
    double other_cpu;            /* CPU% of everything but the two ramflow
                                    processes during the run (wall time of
                                    both), 100 = one core */
    uint64_t ram_bytes, wire_bytes, pages_sent, normal_pages, zero_pages;
    unsigned rounds;
    char error[256];
    char guest[160];             /* the source's guest description */
    char security[64];           /* the source's and destination's "security" */
    char dst_security[64];       /* ("none", "TLS 1.3 PSK, user-space TLS") */
    double cpu_s;                /* CPU-seconds of both sides during the
                                    migration */
    double src_cores;            /* the source process over the migration,
                                    from /proc (bench_proc.c); -1 unknown */
    double src_cpu_s, src_wall_s; /* what src_cores divides */
    RfBenchAutoSum autosum;      /* the report's "auto" object */
} RfBenchRun;

/* Median, min and max of one figure over a row's successful runs. */
typedef struct RfBenchStat {
    double med, min, max;
} RfBenchStat;

typedef struct RfBenchRow {
    unsigned link, method, channels; /* link/method: config indexes */
    unsigned dest;               /* index into cfg.dests (file mode) */
    bool tls;                    /* the TLS twin of a plaintext row */
    RfBenchRun runs[RF_BENCH_MAX_REPEAT];
    unsigned nruns, nok;
    bool verified;               /* every run ok and verified */
    RfBenchStat time, mbps, pps, send_cpu, recv_cpu, downtime, ratio;
    double ram_MBps;             /* RAM bytes / median total time */
    double bound_MBps;           /* in RAM MB/s; 0 = unknown */
    const char *bound_kind;      /* "link" or "CPU" */
    double efficiency;           /* ram_MBps / bound_MBps */
    double bound_touch_MBps;     /* the lower of link and touch_bound */
    double efficiency_touch;     /* ram_MBps / bound_touch_MBps */
    RfBenchStat cpu_s;           /* CPU-seconds, both sides */
    RfBenchStat src_cores;       /* the source process, from /proc */
    unsigned nsrc_cores;         /* runs with a /proc figure */
    RfBenchAutoSum autosum;      /* auto's decisions over the row's runs */
    /* --compare qemu: QEMU's runs of the same row, interleaved. */
    RfBenchRun qruns[RF_BENCH_MAX_REPEAT];
    unsigned nqruns, nqok;
    bool qverified;
    RfBenchStat qtime, qcpu_s;
    char qmethod[16];            /* QEMU's method ("zstd" for qatzip) */
} RfBenchRow;

/* Calibration of one method at the level the matrix uses. */
typedef struct RfBenchCodec {
    bool ok;
    int level;                   /* -1: the method has no level */
    char detail[128];            /* back end, from the method */
    double ratio;                /* normal page bytes / payload bytes */
    double comp_MBps, decomp_MBps; /* single thread, CPU time */
    double cpu_bound_MBps;       /* RAM MB/s both cores could move */
    double touch_bound_MBps;     /* the same, first touch of the
                                    destination's RAM included (none: two
                                    copies and the first touch) */
    char error[256];
} RfBenchCodec;

typedef struct RfBenchCalib {
    unsigned cores;
    uint64_t sample_bytes;
    double zero_fraction;        /* zero pages in the sample */
    double memcpy_MBps;
    double touch_MBps;           /* first touch of a fresh memfd, one thread
                                    (CPU time): what pre-faulting costs */
    RfBenchCodec codec[RF_BENCH_MAX_METHODS];
    /* Raw TCP over each link's path with as many streams as channels;
     * 0 = not measured. */
    double tcp_mbps[RF_BENCH_MAX_LINKS][RF_BENCH_MAX_CHANNELS];
} RfBenchCalib;

/* What the run found out about the machine. */
typedef struct RfBenchMachine {
    char date[40], cpu[128], kernel[160], os[128], version[64];
    char guest[160];             /* from the first source process */
    char link_note[256];         /* why links fell back to loopback */
    char gnuplot[64];
    char ulps[128];              /* /proc/sys/net/ipv4/tcp_available_ulp */
    double mem_gib, load1, load1_end; /* load average at start, end */
    bool root, kvm;
    bool ktls_ulp;               /* "tls" among them: kernel TLS offered */
} RfBenchMachine;

typedef struct RfBench {
    RfBenchConfig cfg;
    RfBenchMachine machine;
    RfBenchCalib calib;
    RfBenchRow *rows;
    unsigned nrows;
    unsigned planned;            /* runs planned so far (progress lines) */
    FILE *log;                   /* out_dir/bench.log */
    char prefix[64];             /* progress lines: "[section 2/8 zero,
                                    idle]", "" for a single section */
    bool shared_log;             /* log belongs to the grid, not closed */
} RfBench;

/* Destination modes per row position: 1 in test-VM mode. */
static inline unsigned rf_bench_ndest(const RfBenchConfig *c)
{
    return c->ndests ? c->ndests : 1u;
}

/* Rows: per link, per method, per channel count, per destination mode,
 * plaintext then (with --tls) TLS, so that a row's TLS twin is the next
 * one. */
static inline unsigned rf_bench_per_link(const RfBenchConfig *c)
{
    return c->nmethods * c->nchannels * rf_bench_ndest(c) *
           (c->tls ? 2u : 1u);
}

static inline RfBenchRow *rf_bench_row(const RfBench *b, unsigned l,
                                       unsigned m, unsigned ch, unsigned d,
                                       bool tls)
{
    const RfBenchConfig *c = &b->cfg;
    unsigned nsec = c->tls ? 2u : 1u;
    return &b->rows[l * rf_bench_per_link(c) +
                    ((m * c->nchannels + ch) * rf_bench_ndest(c) + d) *
                    nsec + (tls ? 1u : 0u)];
}

static inline const char *rf_bench_dest_name(RfBenchDest d)
{
    return d == RF_BENCH_DEST_WARM ? "warm" : "cold";
}

/* "zstd", "zstd + TLS", with --dest-memory "zstd, warm". */
static inline const char *rf_bench_row_name(const RfBench *b,
                                            const RfBenchRow *r, char *buf,
                                            size_t cap)
{
    snprintf(buf, cap, "%s%s%s%s", b->cfg.methods[r->method],
             r->tls ? " + TLS" : "", b->cfg.ndests ? ", " : "",
             b->cfg.ndests ? rf_bench_dest_name(b->cfg.dests[r->dest]) : "");
    return buf;
}

/* --- link emulation (bench_link.c) ----------------------------------- */

/* A link's endpoints: where the destination listens and from which
 * network namespace (NULL = the caller's). */
typedef struct RfBenchPath {
    char netns[32];              /* "" for loopback */
    char listen_host[64];        /* "127.0.0.1" or the namespace side */
} RfBenchPath;

/* Deletes namespaces left by bench runs that no longer exist (their pid
 * is part of the name), and registers the exit/signal cleanup. */
/* A progress line on stderr ("ramflow bench: ..."), also kept in
 * bench.log (bench_matrix.c). */
void rf_bench_say(RfBench *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void rf_bench_link_init(FILE *log);
/* @return NULL if links can be emulated here (root, `ip` and `tc`), or
 * the reason why not. */
const char *rf_bench_link_unsupported(void);
/* Builds the namespace and the shaped veth pair for `link` (rate 0:
 * fills path for loopback and does nothing). */
bool rf_bench_link_up(const RfBenchLink *link, double delay_ms,
                      RfBenchPath *path, RfError **errp);
/* Tears down what rf_bench_link_up built; safe to call twice. */
void rf_bench_link_down(void);
/* Parses "unlimited", "1gbit", "500mbit", "2.5gbit", "100kbit". */
bool rf_bench_parse_link(const char *s, RfBenchLink *out);

/* Runs a command (argv[0] looked up in PATH), its output appended to
 * log.  @return its exit status, or -1 if it could not run. */
int rf_bench_cmd(FILE *log, const char *const *argv);

/* --- calibration (bench_calib.c, bench_tcp.c) ------------------------ */

/* Fills the sample like the test VM fills its RAM, then measures every
 * method of cfg, memcpy, and the cores. */
bool rf_bench_calibrate_codecs(RfBench *b, RfError **errp);
/* Raw TCP throughput over `path` with `streams` parallel connections for
 * seconds; the server side runs in path->netns.  @return Mbit/s. */
bool rf_bench_tcp_blast(const RfBenchPath *path, unsigned streams,
                        double seconds, double *mbps, RfError **errp);

/* --- one migration (bench_run.c) ------------------------------------- */

/* Runs the destination (in path's namespace) and the source for one
 * migration (in file mode into destination mode cfg.dests[dest]), with
 * tls both over TLS (PSK, cfg.psk_dir); the raw reports
 * go to out_dir/raw/NAME-{src,dst}.{json,err}.  Fills *run (run->ok
 * false with run->error on failure).  @return false only when cancelled
 * (SIGINT/SIGTERM). */
bool rf_bench_run_one(RfBench *b, const RfBenchPath *path,
                      const char *method, unsigned channels, unsigned dest,
                      bool tls, const char *name, RfBenchRun *run);

/* --- file mode and QEMU (bench_image.c, bench_qemu.c) ----------------- */

/* Makes cfg.scratch (/dev/shm/ramflow-bench-PID) and the RAM image in it
 * (the generated mix, seed 1, or cfg.fill), registers the cleanup of both
 * at exit, and notes whether hugetlbfs could back them. */
bool rf_bench_image_make(RfBenchConfig *cfg, RfError **errp);
/* The destination's file for one run: removed (cold), or created at the
 * image's size and populated (warm). */
bool rf_bench_dest_prepare(const RfBenchConfig *cfg, RfBenchDest d,
                           const char *path, RfError **errp);
/* Does the file at path hold exactly the image's bytes? */
bool rf_bench_dest_equal(const RfBenchConfig *cfg, const char *path,
                         RfError **errp);
/* Removes the scratch folder and everything in it; safe to call twice. */
void rf_bench_image_cleanup(void);

/* Finds qemu-system-x86_64 and its version and picks kvm or tcg.
 * @return false with "run make bench-deps" when it is not installed. */
bool rf_bench_qemu_probe(RfBenchConfig *cfg, RfError **errp);
/* QEMU's method for ramflow's (qatzip: zstd, QEMU has no software
 * qatzip). */
const char *rf_bench_qemu_method(const char *method);
/* One QEMU multifd migration of the image into a destination of mode d
 * (both QEMUs paused, RAM on memory-backend-file); fills *run (ok,
 * verified, total_time_s from QEMU's own total-time, cpu_s of both
 * processes).  @return false only when cancelled. */
bool rf_bench_qemu_run_one(RfBench *b, const char *method,
                           unsigned channels, RfBenchDest d,
                           const char *name, RfBenchRun *run);
/* Ends QEMU processes still running (exit and signal paths). */
void rf_bench_qemu_kill_all(void);

/* A QMP connection (bench_qmp.c). */
typedef struct RfQmp RfQmp;
/* Connects to QEMU's QMP unix socket (retrying up to timeout_s while
 * QEMU starts), reads the greeting and leaves capabilities negotiation. */
RfQmp *rf_qmp_connect(const char *path, double timeout_s, RfError **errp);
/* Runs a command (args may be NULL; stolen) and returns its "return"
 * value (new reference), skipping events; an "error" answer becomes
 * *errp with QEMU's description. */
struct json_t *rf_qmp_call(RfQmp *q, const char *cmd, struct json_t *args,
                           RfError **errp);
void rf_qmp_close(RfQmp *q);

/* --- the source's CPU (bench_proc.c) --------------------------------- */

/* Cumulative CPU-seconds of a process sampled over time. */
typedef struct RfBenchTrace {
    double *t, *cpu;
    size_t n, cap;
} RfBenchTrace;

/* utime + stime of /proc/PID/stat in seconds.  @return false if the
 * process is gone or the file unreadable. */
bool rf_bench_proc_cpu_s(pid_t pid, double *cpu_s);
/* Appends a sample (dropped if memory runs out). */
void rf_bench_trace_add(RfBenchTrace *tr, double t, double cpu_s);
void rf_bench_trace_free(RfBenchTrace *tr);

/* Spawn helpers shared by bench_run.c and bench_qemu.c. */
pid_t rf_bench_spawn(FILE *log, const char *const *argv, const char *out,
                     const char *err);
/* Ends a child we started: SIGTERM, SIGKILL after 5 s; reaps it. */
void rf_bench_stop_child(pid_t *pid, int *st);
/* Has the child exited (reaped, status in *st)? */
bool rf_bench_reaped(pid_t *pid, int *st);

/* --- the matrix (bench_matrix.c) ------------------------------------- */

/* Fills b->machine (date, CPU, kernel, memory, root, KVM). */
void rf_bench_machine_info(RfBench *b);
/* Describes the machine, calibrates, runs every row and computes each
 * row's statistics, bound and efficiency; progress on stderr.
 * @return 0 if every row verified, 1 if one failed or a step failed,
 * 130 when interrupted (rows run so far are filled). */
int rf_bench_run_matrix(RfBench *b);

/* Busy and total jiffies of all CPUs from /proc/stat. */
bool rf_bench_cpu_jiffies(uint64_t *busy, uint64_t *total);

/* --- the grid (bench_sections.c, bench_data.c, bench_compare.c) ------- */

/* The data x guest dimensions of one `ramflow bench` command: one
 * section (a whole link x method x channels matrix) per pair, data
 * outer. */
typedef struct RfBenchDims {
    RfBenchData data[RF_BENCH_MAX_DATA];
    unsigned ndata;              /* 0: --fill or the generated mix */
    bool live[2];                /* --guest idle,live */
    unsigned nguests;            /* 0: --idle / --live as given */
} RfBenchDims;

/* Runs every section of the grid on top of b (options parsed, results
 * folder, log and signals ready): the data fills, each section's matrix
 * and outputs (in b's folder for a single section, else in one
 * sub-folder per section, with results.md and results.json on top), and
 * the auto comparison and CPU budget tables.
 * @return as rf_bench_run_matrix, or the output's failure. */
int rf_bench_run_sections(RfBench *b, RfBenchDims *dims);

/* Makes the fill of one data item (sets d->path; see bench_data.c).
 * @return false with an error naming what is missing. */
bool rf_bench_data_prepare(RfBenchData *d, uint64_t mem_size, FILE *log,
                           RfError **errp);
/* Removes the images this bench made; safe to call twice. */
void rf_bench_data_cleanup(void);
/* One line saying what the item's pages are. */
const char *rf_bench_data_describe(const RfBenchData *d, char *buf,
                                   size_t cap);

/* The index of "auto" among the methods, or -1. */
int rf_bench_auto_index(const RfBenchConfig *c);
/* Section label: "zero, idle". */
const char *rf_bench_section_name(const RfBench *b, char *buf, size_t cap);
/* The auto comparison (when auto is a method) and the CPU budget table
 * (with --max-cpu) over the sections secs[0..n), which share methods,
 * links and channels. */
void rf_bench_print_compare(FILE *f, RfBench *const *secs, unsigned n);
void rf_bench_print_budget(FILE *f, RfBench *const *secs, unsigned n);
/* The same as JSON (NULL when the section does not apply). */
struct json_t *rf_bench_compare_json(RfBench *const *secs, unsigned n);
struct json_t *rf_bench_budget_json(RfBench *const *secs, unsigned n);

/* --- output (bench_out.c, bench_chart.c) ----------------------------- */

void rf_bench_print_markdown(FILE *f, const RfBench *b);
/* The whole of results.json as an object (new reference). */
struct json_t *rf_bench_json(const RfBench *b);
/* Writes out_dir/results.json.  @return false with an error. */
bool rf_bench_write_json(const RfBench *b, const char *path,
                         RfError **errp);
/* Writes chart.dat, chart.gp and runs gnuplot to make chart.svg.
 * @return false (and says why in *why) when no chart was made. */
bool rf_bench_write_chart(const RfBench *b, char *why, size_t cap);
/* Ends the multiplot script f (at gp), closes it and runs gnuplot on it,
 * which must write svg.  @return false, saying why in *why, if not. */
bool rf_bench_gnuplot_run(const RfBench *b, FILE *f, const char *gp,
                          const char *svg, char *why, size_t cap);
/* --compare qemu (bench_chart_qemu.c): chart-qemu.svg, ramflow's and
 * QEMU's time and CPU-seconds per row.  @return false as above. */
bool rf_bench_write_qemu_chart(const RfBench *b, char *why, size_t cap);

#endif /* RF_BENCH_COMMON_H */
