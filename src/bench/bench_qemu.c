/*
 * ramflow bench - --compare qemu: one QEMU multifd migration of the same
 * RAM image, method, level, channel count and destination mode as a
 * ramflow row, run between ramflow's runs of that row.
 *
 * Two qemu-system-x86_64 processes, both paused (-S: no vCPU touches the
 * RAM, as the idle guest of the ramflow rows), their RAM a
 * memory-backend-file with share=on: the source's is the bench's image,
 * the destination's a fresh file (cold) or one created and populated
 * before QEMU starts, which QEMU pre-allocates again (warm, prealloc=on).
 * QMP sets the multifd capability and parameters on both (max-bandwidth
 * lifted: QEMU's default is 128 MiB/s), migrate-incoming on the
 * destination (-incoming defer), migrate on the source; query-migrate is
 * polled until both say completed, and QEMU's own total-time is the row's
 * time.  CPU: utime + stime of both processes from /proc/PID/stat (all
 * threads, also those that ended) from just before `migrate` to
 * completion.  Then the destination's file is compared with the image.
 */
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench_common.h"
#include "control/cli.h"
#include "engine/params.h"
#include "util/clock.h"

/* What the exit path must end and remove if a run is cut short. */
static pid_t live_pids[2] = {-1, -1};
static char live_files[3][PATH_MAX + 32];

void rf_bench_qemu_kill_all(void)
{
    for (int i = 0; i < 2; i++) {
        if (live_pids[i] > 0) {
            int st;
            rf_bench_stop_child(&live_pids[i], &st);
        }
    }
    for (int i = 0; i < 3; i++) {
        if (live_files[i][0]) {
            unlink(live_files[i]);
            live_files[i][0] = '\0';
        }
    }
}

/* Looks name up in PATH.  @return true with the full path in buf. */
static bool find_in_path(const char *name, char *buf, size_t cap)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof(dirs), "%s", path ? path : "/usr/bin:/bin");
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d;
         d = strtok_r(NULL, ":", &save)) {
        snprintf(buf, cap, "%s/%s", d[0] ? d : ".", name);
        if (access(buf, X_OK) == 0) {
            return true;
        }
    }
    return false;
}

bool rf_bench_qemu_probe(RfBenchConfig *cfg, RfError **errp)
{
    if (!find_in_path("qemu-system-x86_64", cfg->qemu_exe,
                      sizeof(cfg->qemu_exe))) {
        rf_error_set(errp, RF_ERR_GENERIC, "--compare qemu: "
                     "qemu-system-x86_64 is not installed; run `make "
                     "bench-deps` (it installs QEMU 10 from "
                     "bookworm-backports, or bookworm's 7.2 where "
                     "backports cannot be reached)");
        return false;
    }
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof(cmd), "'%s' --version 2>&1", cfg->qemu_exe);
    FILE *p = popen(cmd, "r");
    char line[256] = "";
    if (!p || !fgets(line, sizeof(line), p) ||
        strncmp(line, "QEMU emulator version ", 22) != 0) {
        if (p) {
            pclose(p);
        }
        rf_error_set(errp, RF_ERR_GENERIC, "--compare qemu: `%s --version` "
                     "does not name a QEMU version: %s", cfg->qemu_exe,
                     line[0] ? line : "(no output)");
        return false;
    }
    pclose(p);
    line[strcspn(line, "\n")] = '\0';
    snprintf(cfg->qemu_version, sizeof(cfg->qemu_version), "%.60s", line + 22);
    snprintf(cfg->qemu_accel, sizeof(cfg->qemu_accel), "%s",
             access("/dev/kvm", R_OK | W_OK) == 0 ? "kvm" : "tcg");
    return true;
}

const char *rf_bench_qemu_method(const char *method)
{
    return strcmp(method, "qatzip") == 0 ? "zstd" : method;
}

/* A free TCP port on 127.0.0.1 for migrate-incoming (bound, read, and
 * released: QEMU 7.2 does not report a port 0 it resolved). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
        port = ntohs(a.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

/* utime + stime of a process, all its threads, in seconds (-1 if gone). */
static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f) {
        fclose(f);
    }
    buf[n] = '\0';
    /* Fields after the command name, which may hold spaces: state is
     * field 3, utime 14, stime 15. */
    char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                     "%llu %llu", &ut, &st) != 2) {
        return -1;
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The QEMU command line of one side. */
static void qemu_argv(const RfBenchConfig *cfg, bool dest, bool prealloc,
                      const char *mem_path, const char *qmp_sock,
                      const char **argv, char (*bufs)[PATH_MAX + 160])
{
    int n = 0;
    snprintf(bufs[0], sizeof(bufs[0]), "pc,accel=%s,memory-backend=ram0",
             cfg->qemu_accel);
    snprintf(bufs[1], sizeof(bufs[1]), "%lluM",
             (unsigned long long)(cfg->mem_size >> 20));
    snprintf(bufs[2], sizeof(bufs[2]), "memory-backend-file,id=ram0,"
             "size=%llu,mem-path=%s,share=on%s",
             (unsigned long long)cfg->mem_size, mem_path,
             prealloc ? ",prealloc=on" : "");
    snprintf(bufs[3], sizeof(bufs[3]), "unix:%s,server=on,wait=off",
             qmp_sock);
    /* -cpu host aborts on some AMD hosts over MSR 0x10a without
     * -arch-capabilities; TCG has no host CPU. */
    const char *cpu = strcmp(cfg->qemu_accel, "kvm") == 0
                          ? "host,-arch-capabilities" : "qemu64";
    const char *base[] = {cfg->qemu_exe, "-S", "-nodefaults",
                          "-no-user-config", "-display", "none",
                          "-machine", bufs[0], "-cpu", cpu, "-m", bufs[1],
                          "-object", bufs[2], "-qmp", bufs[3], NULL};
    for (int i = 0; base[i]; i++) {
        argv[n++] = base[i];
    }
    if (dest) {
        argv[n++] = "-incoming";
        argv[n++] = "defer";
    }
    argv[n] = NULL;
}

/* multifd on, and the parameters of the row (the levels of the bench's
 * parameters; source only: max-bandwidth lifted). */
static bool qemu_setup(RfQmp *q, const RfBenchConfig *cfg,
                       const char *method, unsigned channels, bool source,
                       RfError **errp)
{
    json_t *caps = json_pack("{s:[{s:s, s:b}]}", "capabilities",
                             "capability", "multifd", "state", 1);
    json_t *r = rf_qmp_call(q, "migrate-set-capabilities", caps, errp);
    if (!r) {
        return false;
    }
    json_decref(r);
    json_t *p = json_pack("{s:i, s:s}", "multifd-channels", (int)channels,
                          "multifd-compression", method);
    if (!strcmp(method, "zlib")) {
        json_object_set_new(p, "multifd-zlib-level",
                            json_integer(cfg->params.multifd_zlib_level));
    } else if (!strcmp(method, "zstd")) {
        json_object_set_new(p, "multifd-zstd-level",
                            json_integer(cfg->params.multifd_zstd_level));
    }
    if (source) {
        json_object_set_new(p, "max-bandwidth",
                            json_integer((json_int_t)1 << 40));
    }
    r = rf_qmp_call(q, "migrate-set-parameters", p, errp);
    json_decref(r);
    return r != NULL;
}

/* Polls query-migrate until "completed" (total-time in *ms when asked).
 * @return false with an error on failure, timeout or cancel. */
static bool wait_completed(RfQmp *q, const char *side, double timeout_s,
                           double *ms, RfError **errp)
{
    double t0 = rf_now();
    for (;;) {
        json_t *r = rf_qmp_call(q, "query-migrate", NULL, errp);
        if (!r) {
            return false;
        }
        const char *st = json_string_value(json_object_get(r, "status"));
        st = st ? st : "";
        if (!strcmp(st, "completed")) {
            if (ms) {
                *ms = (double)json_integer_value(
                    json_object_get(r, "total-time"));
            }
            json_decref(r);
            return true;
        }
        if (!strcmp(st, "failed") || !strcmp(st, "cancelled")) {
            const char *why = json_string_value(
                json_object_get(r, "error-desc"));
            rf_error_set(errp, RF_ERR_GENERIC, "QEMU %s: migration %s%s%s",
                         side, st, why ? ": " : "", why ? why : "");
            json_decref(r);
            return false;
        }
        json_decref(r);
        if (rf_cli_cancel || rf_now() - t0 > timeout_s) {
            rf_error_set(errp, rf_cli_cancel ? RF_ERR_CANCELLED
                                             : RF_ERR_TIMEOUT,
                         "QEMU %s: %s (status '%s')", side,
                         rf_cli_cancel ? "cancelled" : "timed out", st);
            return false;
        }
        rf_sleep(0.01);
    }
}

/* The migration itself, both QEMUs up and their monitors connected.
 * @return false with an error. */
static bool qemu_migrate(RfQmp *src, RfQmp *dst, pid_t spid, pid_t dpid,
                         const RfBenchConfig *cfg, const char *method,
                         unsigned channels, RfBenchRun *run, RfError **errp)
{
    int port = free_port();
    if (port < 0) {
        rf_error_set(errp, RF_ERR_IO, "no free TCP port on 127.0.0.1");
        return false;
    }
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", port);
    if (!qemu_setup(dst, cfg, method, channels, false, errp) ||
        !qemu_setup(src, cfg, method, channels, true, errp)) {
        return false;
    }
    json_t *r = rf_qmp_call(dst, "migrate-incoming",
                            json_pack("{s:s}", "uri", uri), errp);
    if (!r) {
        return false;
    }
    json_decref(r);
    double c0 = proc_cpu_s(spid) + proc_cpu_s(dpid);
    r = rf_qmp_call(src, "migrate", json_pack("{s:s}", "uri", uri), errp);
    if (!r) {
        return false;
    }
    json_decref(r);
    double ms = 0;
    if (!wait_completed(src, "source", cfg->row_timeout_s, &ms, errp) ||
        !wait_completed(dst, "destination", 60, NULL, errp)) {
        return false;
    }
    run->cpu_s = proc_cpu_s(spid) + proc_cpu_s(dpid) - c0;
    run->total_time_s = ms / 1000;
    run->ram_bytes = cfg->mem_size;
    run->ok = true;
    return true;
}

/* The last non-empty line of a file (QEMU's error message). */
static void last_line(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    char line[512];
    while (f && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0]) {
            snprintf(buf, cap, "%.*s", (int)(cap - 1), line);
        }
    }
    if (f) {
        fclose(f);
    }
}

/* Connects to a QEMU's monitor once its socket exists; gives up at once
 * when that QEMU exits (its last stderr line then says why). */
static RfQmp *qemu_connect(const char *sock, pid_t *pid, const char *errf,
                           const char *side, double timeout_s,
                           RfError **errp)
{
    double t0 = rf_now();
    int st = 0;
    while (access(sock, F_OK) != 0 && !rf_cli_cancel &&
           rf_now() - t0 < timeout_s && !rf_bench_reaped(pid, &st)) {
        rf_sleep(0.02);
    }
    if (*pid <= 0) {
        char why[256] = "no message";
        last_line(errf, why, sizeof(why));
        rf_error_set(errp, RF_ERR_GENERIC, "QEMU %s exited (status %d): %s",
                     side, WIFEXITED(st) ? WEXITSTATUS(st) : 128 +
                     WTERMSIG(st), why);
        return NULL;
    }
    return rf_qmp_connect(sock, 5, errp);
}

/* Asks a QEMU to quit, then makes sure it is gone. */
static void qemu_quit(RfQmp *q, pid_t *pid)
{
    if (q) {
        RfError *err = NULL;
        json_decref(rf_qmp_call(q, "quit", NULL, &err));
        rf_error_free(err);
    }
    int st;
    for (int i = 0; i < 100 && !rf_bench_reaped(pid, &st); i++) {
        rf_sleep(0.02);
    }
    rf_bench_stop_child(pid, &st);
}

bool rf_bench_qemu_run_one(RfBench *b, const char *method,
                           unsigned channels, RfBenchDest d,
                           const char *name, RfBenchRun *run)
{
    const RfBenchConfig *cfg = &b->cfg;
    static bool registered;
    if (!registered) {
        atexit(rf_bench_qemu_kill_all);
        registered = true;
    }
    memset(run, 0, sizeof(*run));
    char *dst_file = live_files[0], *ssock = live_files[1],
         *dsock = live_files[2];
    snprintf(dst_file, sizeof(live_files[0]), "%s/dst-qemu.img",
             cfg->scratch);
    snprintf(ssock, sizeof(live_files[1]), "%s/qmp-src.sock", cfg->scratch);
    snprintf(dsock, sizeof(live_files[2]), "%s/qmp-dst.sock", cfg->scratch);
    unlink(ssock);
    unlink(dsock);
    RfError *err = NULL;
    RfQmp *src = NULL, *dst = NULL;
    pid_t *spid = &live_pids[0], *dpid = &live_pids[1];
    if (!rf_bench_dest_prepare(cfg, d, dst_file, &err)) {
        goto out;
    }
    const char *sargv[24], *dargv[24];
    char sbufs[4][PATH_MAX + 160], dbufs[4][PATH_MAX + 160];
    qemu_argv(cfg, false, false, cfg->image, ssock, sargv, sbufs);
    qemu_argv(cfg, true, d == RF_BENCH_DEST_WARM, dst_file, dsock, dargv,
              dbufs);
    char out[PATH_MAX + 160], derr[PATH_MAX + 160], serr[PATH_MAX + 160];
    snprintf(out, sizeof(out), "%s/raw/%s-qemu-dst.out", cfg->out_dir, name);
    snprintf(derr, sizeof(derr), "%s/raw/%s-qemu-dst.err", cfg->out_dir,
             name);
    *dpid = rf_bench_spawn(b->log, dargv, out, derr);
    snprintf(out, sizeof(out), "%s/raw/%s-qemu-src.out", cfg->out_dir, name);
    snprintf(serr, sizeof(serr), "%s/raw/%s-qemu-src.err", cfg->out_dir,
             name);
    *spid = *dpid > 0 ? rf_bench_spawn(b->log, sargv, out, serr) : -1;
    if (*dpid <= 0 || *spid <= 0) {
        rf_error_set(&err, RF_ERR_IO, "cannot start %s: %s", cfg->qemu_exe,
                     strerror(errno));
        goto out;
    }
    /* The destination pre-allocates a warm file before it listens on
     * QMP: a generous wait. */
    dst = qemu_connect(dsock, dpid, derr, "destination", 120, &err);
    src = dst ? qemu_connect(ssock, spid, serr, "source", 60, &err) : NULL;
    if (src && dst) {
        qemu_migrate(src, dst, *spid, *dpid, cfg, rf_bench_qemu_method(method),
                     channels, run, &err);
    }
out:
    qemu_quit(src, spid);
    qemu_quit(dst, dpid);
    rf_qmp_close(src);
    rf_qmp_close(dst);
    if (run->ok) {
        run->verified = rf_bench_dest_equal(cfg, dst_file, &err);
    }
    if (err) {
        snprintf(run->error, sizeof(run->error), "%s", rf_error_msg(err));
        rf_error_free(err);
    }
    rf_bench_qemu_kill_all();
    return !rf_cli_cancel;
}
