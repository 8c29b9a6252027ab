/*
 * ramflow bench - one migration of the matrix.
 *
 * Each run starts a fresh destination process (`ramflow incoming --guest`,
 * inside the link's network namespace through `ip netns exec` when a link
 * is emulated) and a fresh source process (`ramflow guest`), both this
 * same binary, and reads their --json reports.  Separate processes keep
 * each side's CPU% its own, as upstream measured it, and give every run
 * fresh memory.  The destination resumes the guest and checks its memory
 * pattern (exit status 0 only if it holds); the source runs with --verify
 * (block digests).  A TLS run (--tls) gives both `--tls-psk` with the
 * bench's own key; a plaintext run over an emulated link gives the
 * destination `--insecure`, its namespace's veth address being reachable
 * from this host only.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench_common.h"
#include "control/cli.h"
#include "util/clock.h"

extern char **environ;

/* Starts argv with stdout and stderr into files, and logs it with its
 * pid.  @return the pid, or -1 with errno. */
pid_t rf_bench_spawn(FILE *log, const char *const *argv, const char *out,
                     const char *err)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv,
                          environ);
    posix_spawn_file_actions_destroy(&fa);
    if (log) {
        fprintf(log, "+ [pid %d]", rc ? -1 : (int)pid);
        for (int i = 0; argv[i]; i++) {
            fprintf(log, " %s", argv[i]);
        }
        fprintf(log, "\n");
        fflush(log);
    }
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return pid;
}

/* CPU seconds of the children reaped during the current run. */
static double children_cpu_s;

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

/* Polls for a child's exit.  @return true once it has exited (status in
 * *st, the pid cleared, its CPU time added to children_cpu_s). */
bool rf_bench_reaped(pid_t *pid, int *st)
{
    if (*pid <= 0) {
        return true;
    }
    struct rusage ru;
    pid_t r = wait4(*pid, st, WNOHANG, &ru);
    if (r == *pid) {
        children_cpu_s += tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
    }
    if (r == *pid || (r < 0 && errno == ECHILD)) {
        *pid = -1;
        return true;
    }
    return false;
}

/* Ends a child we started: SIGTERM (the ramflow sides cancel cleanly),
 * SIGKILL after 5 s. */
void rf_bench_stop_child(pid_t *pid, int *st)
{
    if (*pid <= 0) {
        return;
    }
    kill(*pid, SIGTERM);
    for (int i = 0; i < 100 && !rf_bench_reaped(pid, st); i++) {
        rf_sleep(0.05);
    }
    if (*pid > 0) {
        kill(*pid, SIGKILL);
        while (!rf_bench_reaped(pid, st)) {
            rf_sleep(0.01);
        }
    }
}

bool rf_bench_cpu_jiffies(uint64_t *busy, uint64_t *total)
{
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    bool ok = f && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu",
                          &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                          &v[7]) == 8;
    if (f) {
        fclose(f);
    }
    if (ok) {
        *total = 0;
        for (int i = 0; i < 8; i++) {
            *total += v[i];
        }
        *busy = *total - v[3] - v[4]; /* minus idle and iowait */
    }
    return ok;
}

static int exit_code(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st)
                         : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
}

/* Copies src into dst, cut to fit (messages may be long). */
static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Copies the last non-empty line of a file (an error message), or the
 * last one before a usage text (a refused option: "incoming:
 * unrecognized option '--max-cpu'", then the usage). */
static void last_line(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    char line[512];
    bool any = false;
    if (!f) {
        return;
    }
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (any && !strncmp(line, "usage: ", 7)) {
            break;
        }
        if (line[0]) {
            copy_str(buf, cap, line);
            any = true;
        }
    }
    fclose(f);
}

/* Finds the line starting with prefix; copies what follows. */
static bool find_line(const char *path, const char *prefix, char *buf,
                      size_t cap)
{
    FILE *f = fopen(path, "r");
    char line[512];
    bool found = false;
    while (f && !found && fgets(line, sizeof(line), f)) {
        if (!strncmp(line, prefix, strlen(prefix))) {
            line[strcspn(line, "\n")] = '\0';
            copy_str(buf, cap, line + strlen(prefix));
            found = true;
        }
    }
    if (f) {
        fclose(f);
    }
    return found;
}

static double jnum(json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

static uint64_t jint(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0;
}

static bool jtrue(json_t *o, const char *key)
{
    return json_is_true(json_object_get(o, key));
}

static void jstr(json_t *o, const char *key, char *buf, size_t cap)
{
    json_t *v = json_object_get(o, key);
    if (json_is_string(v)) {
        snprintf(buf, cap, "%s", json_string_value(v));
    }
}

/* Does a report's "security" name a protection? */
static bool secured(const char *security)
{
    return security[0] && strcmp(security, "none") != 0;
}

static bool completed(json_t *o)
{
    json_t *s = json_object_get(o, "status");
    return json_is_string(s) && !strcmp(json_string_value(s), "completed");
}

/* Reads both reports into run. */
static void parse_reports(RfBenchRun *run, const char *src_json,
                          const char *dst_json)
{
    json_error_t je;
    json_t *s = json_load_file(src_json, 0, &je);
    json_t *d = json_load_file(dst_json, 0, &je);
    if (s) {
        run->total_time_s = jnum(s, "total_time_s");
        run->setup_time_s = jnum(s, "setup_time_s");
        run->downtime_ms = jnum(s, "downtime_ms");
        run->throughput_mbps = jnum(s, "throughput_mbps");
        run->pages_per_s = jnum(s, "pages_per_s");
        run->send_cpu = jnum(s, "send_cpu_pct");
        run->recv_cpu = jnum(s, "recv_cpu_pct");
        run->ratio = jnum(s, "compression_ratio");
        run->ram_bytes = jint(s, "ram_bytes");
        run->wire_bytes = jint(s, "wire_bytes");
        run->pages_sent = jint(s, "pages_sent");
        run->normal_pages = jint(s, "normal_pages");
        run->zero_pages = jint(s, "zero_pages");
        run->rounds = (unsigned)jint(s, "rounds");
        run->converged = jtrue(s, "converged");
        run->dest_warm = jtrue(s, "dest_memory_warm");
        run->verified = jtrue(s, "verified");
        jstr(s, "security", run->security, sizeof(run->security));
        rf_bench_auto_parse(s, &run->autosum);
        json_t *e = json_object_get(s, "error");
        if (json_is_string(e)) {
            snprintf(run->error, sizeof(run->error), "source: %s",
                     json_string_value(e));
        }
    }
    if (d) {
        run->dest_downtime_ms = jnum(d, "dest_downtime_ms");
        jstr(d, "security", run->dst_security, sizeof(run->dst_security));
    }
    run->ok = s && d && completed(s) && completed(d);
    json_decref(s);
    json_decref(d);
}

/* Waits for the destination to write its listening URI.  @return false
 * if it exited, did not within 60 s, or the bench was cancelled. */
static bool wait_uri(const char *path, pid_t *dpid, int *dst, char *uri,
                     size_t cap)
{
    double t0 = rf_now();
    while (!rf_cli_cancel && rf_now() - t0 < 60 &&
           !rf_bench_reaped(dpid, dst)) {
        FILE *f = fopen(path, "r");
        if (f) {
            bool got = fgets(uri, (int)cap, f) != NULL;
            fclose(f);
            if (got) {
                uri[strcspn(uri, "\n")] = '\0';
                return uri[0] != '\0';
            }
        }
        rf_sleep(0.02);
    }
    return false;
}

/* The source's CPU trace (bench_proc.c) and the two moments that bound
 * its migration: its "ramflow: source:" line (guest started; file mode:
 * its start) and its report. */
typedef struct SrcWatch {
    RfBenchTrace trace;
    double line_t, report_t;     /* -1 until seen */
} SrcWatch;

static bool file_nonempty(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && st.st_size > 0;
}

/* One sample while the source runs (every 20 ms). */
static void src_watch(SrcWatch *w, pid_t spid, const char *src_err,
                      const char *src_json)
{
    double cpu;
    if (spid <= 0 || !rf_bench_proc_cpu_s(spid, &cpu)) {
        return;
    }
    double now = rf_now();
    rf_bench_trace_add(&w->trace, now, cpu);
    if (w->line_t < 0) {
        char line[8];
        if (find_line(src_err, "ramflow: source: ", line, sizeof(line))) {
            w->line_t = now;
        }
    }
    if (w->report_t < 0 && file_nonempty(src_json)) {
        w->report_t = now;
    }
}

/* The source's cores over the last total_time_s before its report, from
 * the trace; -1 when unknown (no report, a failed run). */
static void src_watch_finish(SrcWatch *w, RfBenchRun *run)
{
    run->src_cores = -1;
    if (w->report_t > 0 && run->total_time_s > 0 && w->line_t >= 0) {
        double from = w->report_t - run->total_time_s;
        from = from < w->line_t ? w->line_t : from;
        double wall = 0;
        double cores = rf_bench_window_cores(w->trace.t, w->trace.cpu,
                                             w->trace.n, from, w->report_t,
                                             &wall);
        if (cores >= 0) {
            run->src_cores = cores;
            run->src_wall_s = wall;
            run->src_cpu_s = cores * wall;
        }
    }
    rf_bench_trace_free(&w->trace);
}

/* File mode (--dest-memory): the destination receives into a file of
 * the scratch folder, in place when warm; the source sends the image. */
static void file_mode_argv(const RfBenchConfig *cfg, RfBenchDest d,
                           const char *dst_spec, const char **dargv, int *dn,
                           const char **sargv, int *sn, char *src_spec,
                           size_t cap)
{
    /* Named blocks: the file names differ on the two sides. */
    snprintf(src_spec, cap, "ram0=%s", cfg->image);
    dargv[(*dn)++] = "--memory";
    dargv[(*dn)++] = dst_spec;
    if (d == RF_BENCH_DEST_WARM) {
        dargv[(*dn)++] = "--reuse-memory";
    }
    sargv[(*sn)++] = "--memory";
    sargv[(*sn)++] = src_spec;
}

bool rf_bench_run_one(RfBench *b, const RfBenchPath *path,
                      const char *method, unsigned channels, unsigned dest,
                      bool tls, const char *name, RfBenchRun *run)
{
    const RfBenchConfig *cfg = &b->cfg;
    memset(run, 0, sizeof(*run));
    char base[PATH_MAX + 128], uri_file[PATH_MAX + 136],
        src_json[PATH_MAX + 144], src_err[PATH_MAX + 144],
        dst_json[PATH_MAX + 144], dst_err[PATH_MAX + 144];
    snprintf(base, sizeof(base), "%s/raw/%s", cfg->out_dir, name);
    snprintf(uri_file, sizeof(uri_file), "%s.uri", base);
    snprintf(src_json, sizeof(src_json), "%s-src.json", base);
    snprintf(src_err, sizeof(src_err), "%s-src.err", base);
    snprintf(dst_json, sizeof(dst_json), "%s-dst.json", base);
    snprintf(dst_err, sizeof(dst_err), "%s-dst.err", base);
    unlink(uri_file);

    char listen[96], size[32], chans[16], vcpus[16], rate[32];
    snprintf(listen, sizeof(listen), "tcp:%s:0", path->listen_host);
    snprintf(size, sizeof(size), "%llu", (unsigned long long)cfg->mem_size);
    snprintf(chans, sizeof(chans), "%u", channels);
    snprintf(vcpus, sizeof(vcpus), "%u", cfg->vcpus);
    snprintf(rate, sizeof(rate), "%llu", (unsigned long long)cfg->dirty_rate);

    const char *dargv[32];
    int n = 0;
    if (path->netns[0]) {
        dargv[n++] = "ip";
        dargv[n++] = "netns";
        dargv[n++] = "exec";
        dargv[n++] = path->netns;
    }
    /* The link's destination address is a private namespace's, reached
     * only through the bench's own veth pair: plaintext is wanted. */
    const char *dtail[] = {cfg->exe, "incoming", "--listen", listen,
                           "--uri-file", uri_file, "--json", "--quiet",
                           "--insecure", NULL};
    for (int i = 0; dtail[i]; i++) {
        dargv[n++] = dtail[i];
    }
    bool files = cfg->ndests > 0;
    RfBenchDest d = cfg->dests[dest];
    char dst_file[PATH_MAX + 32], dst_spec[PATH_MAX + 40],
        src_spec[PATH_MAX + 8];
    const char *sargv[48 + RF_BENCH_MAX_PASS];
    int sn = 0;
    if (files) {
        snprintf(dst_file, sizeof(dst_file), "%s/dst-ramflow.img",
                 cfg->scratch);
        snprintf(dst_spec, sizeof(dst_spec), "ram0=%s", dst_file);
        RfError *err = NULL;
        if (!rf_bench_dest_prepare(cfg, d, dst_file, &err)) {
            snprintf(run->error, sizeof(run->error), "%s",
                     rf_error_msg(err));
            rf_error_free(err);
            return !rf_cli_cancel;
        }
        const char *stail[] = {cfg->exe, "migrate", NULL};
        for (int i = 0; stail[i]; i++) {
            sargv[sn++] = stail[i];
        }
        file_mode_argv(cfg, d, dst_spec, dargv, &n, sargv, &sn, src_spec,
                       sizeof(src_spec));
    } else {
        const char *gtail[] = {"--guest", "--kind", cfg->kind, NULL};
        for (int i = 0; gtail[i]; i++) {
            dargv[n++] = gtail[i];
        }
        const char *stail[] = {cfg->exe, "guest", "--memory-size", size,
                               "--vcpus", vcpus, "--kind", cfg->kind, NULL};
        for (int i = 0; stail[i]; i++) {
            sargv[sn++] = stail[i];
        }
    }
    if (tls) {
        dargv[n++] = "--tls-psk";
        dargv[n++] = cfg->psk_dir;
    } else if (path->netns[0]) {
        /* Plaintext on the namespace's address is reachable only through
         * the bench's own veth pair. */
        dargv[n++] = "--insecure";
    }
    /* Only when given: a ramflow without the option refuses it. */
    if (cfg->max_cpu > 0) {
        dargv[n++] = "--max-cpu";
        dargv[n++] = cfg->max_cpu_arg;
    }
    dargv[n] = NULL;
    int dst = 0, src = 0;
    uint64_t busy0 = 0, total0 = 0, busy1 = 0, total1 = 0;
    bool have_cpu = rf_bench_cpu_jiffies(&busy0, &total0);
    double w0 = rf_now();
    children_cpu_s = 0;
    pid_t dpid = rf_bench_spawn(b->log, dargv, dst_json, dst_err), spid = -1;
    if (dpid < 0) {
        snprintf(run->error, sizeof(run->error), "cannot start the "
                 "destination: %s", strerror(errno));
        return true;
    }
    char uri[256] = "";
    if (!wait_uri(uri_file, &dpid, &dst, uri, sizeof(uri))) {
        bool cancelled = rf_cli_cancel;
        rf_bench_stop_child(&dpid, &dst);
        snprintf(run->error, sizeof(run->error), "the destination did not "
                 "start listening");
        last_line(dst_err, run->error, sizeof(run->error));
        if (files) {
            unlink(dst_file);
        }
        return !cancelled;
    }

    n = sn;
    const char *stail[] = {"--multifd-compression", method,
                           "--multifd-channels", chans, "--verify",
                           "--json", "--quiet", NULL};
    for (int i = 0; stail[i]; i++) {
        sargv[n++] = stail[i];
    }
    if (!files && !cfg->live) {
        sargv[n++] = "--idle";
    } else if (!files && cfg->dirty_rate) {
        sargv[n++] = "--dirty-rate";
        sargv[n++] = rate;
    }
    if (!files && cfg->fill) {
        sargv[n++] = "--fill";
        sargv[n++] = cfg->fill;
    }
    if (tls) {
        sargv[n++] = "--tls-psk";
        sargv[n++] = cfg->psk_dir;
    }
    if (cfg->max_cpu > 0) {
        sargv[n++] = "--max-cpu";
        sargv[n++] = cfg->max_cpu_arg;
    }
    for (unsigned i = 0; i < cfg->npass; i++) {
        sargv[n++] = cfg->pass[i];
    }
    sargv[n++] = uri;
    sargv[n] = NULL;
    spid = rf_bench_spawn(b->log, sargv, src_json, src_err);
    if (spid < 0) {
        snprintf(run->error, sizeof(run->error), "cannot start the source: "
                 "%s", strerror(errno));
        rf_bench_stop_child(&dpid, &dst);
        return true;
    }
    double t0 = rf_now(), src_end = 0;
    bool timed_out = false, src_failed = false;
    SrcWatch watch = {.line_t = files ? t0 : -1, .report_t = -1};
    for (;;) {
        src_watch(&watch, spid, src_err, src_json);
        bool s_done = rf_bench_reaped(&spid, &src);
        bool d_done = rf_bench_reaped(&dpid, &dst);
        if ((s_done && d_done) || rf_cli_cancel) {
            break;
        }
        double now = rf_now();
        if (s_done && src_end == 0) {
            src_end = now;
            src_failed = exit_code(src) != 0;
        }
        /* The destination resumes the guest and checks it within a few
         * seconds of the source's end; after a failed source (a refused
         * TLS handshake, say) it drops the connection and waits on for
         * one that never comes, so it is stopped sooner. */
        if (now - t0 > cfg->row_timeout_s ||
            (src_end > 0 && now - src_end > (src_failed ? 3 : 30))) {
            timed_out = !src_failed; /* a failed source says why */
            break;
        }
        rf_sleep(0.02);
    }
    bool cancelled = rf_cli_cancel && (spid > 0 || dpid > 0);
    rf_bench_stop_child(&spid, &src);
    rf_bench_stop_child(&dpid, &dst);
    /* What else ran meanwhile: all CPUs' busy time minus the two
     * processes' own, over the wall time of the run. */
    double wall = rf_now() - w0;
    long hz = sysconf(_SC_CLK_TCK);
    if (have_cpu && rf_bench_cpu_jiffies(&busy1, &total1) && wall > 0 &&
        hz > 0) {
        double other = (double)(busy1 - busy0) / (double)hz - children_cpu_s;
        run->other_cpu = other > 0 ? 100 * other / wall : 0;
    }
    parse_reports(run, src_json, dst_json);
    find_line(src_err, "ramflow: source: ", run->guest, sizeof(run->guest));
    int sc = exit_code(src), dc = exit_code(dst);
    run->ok = run->ok && sc == 0 && dc == 0 && !timed_out;
    /* A TLS run must say so on both sides, a plaintext one on neither. */
    if (run->ok && (secured(run->security) != tls ||
                    secured(run->dst_security) != tls)) {
        run->ok = false;
        snprintf(run->error, sizeof(run->error), "%s run, but the source "
                 "reported security '%s' and the destination '%s'",
                 tls ? "TLS" : "plaintext", run->security,
                 run->dst_security);
    }
    run->cpu_s = (run->send_cpu + run->recv_cpu) / 100 * run->total_time_s;
    src_watch_finish(&watch, run);
    if (files) {
        /* The report's digests, and the file itself against the image
         * (outside the timed part). */
        RfError *err = NULL;
        if (run->ok && !rf_bench_dest_equal(cfg, dst_file, &err)) {
            run->verified = false;
            snprintf(run->error, sizeof(run->error), "%s",
                     rf_error_msg(err));
            rf_error_free(err);
        }
        unlink(dst_file);
    }
    run->verified = run->ok && run->verified;
    if (!run->ok && !run->error[0]) {
        char msg[200] = "";
        last_line(src_err, msg, sizeof(msg));
        if (!msg[0] || sc == 0) {
            last_line(dst_err, msg, sizeof(msg));
        }
        snprintf(run->error, sizeof(run->error), "%s(source exit %d, "
                 "destination exit %d) %s", timed_out ? "timed out " : "",
                 sc, dc, msg);
    }
    unlink(uri_file);
    return !cancelled;
}
