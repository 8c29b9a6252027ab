/*
 * ramflow bench - link emulation.
 *
 * An emulated link is a network namespace "rfbench-PID" holding the
 * destination, joined to the caller's namespace by a veth pair
 * rfbPIDa <-> rfbPIDb with addresses of TEST-NET-1 (192.0.2.0/24, the
 * first /30 from one picked by the pid that no interface uses yet; they
 * exist only on this veth and are never routed anywhere else).  Both
 * ends are shaped with tc: a token bucket (tbf) at the link's rate,
 * under a netem delay when --delay is given, so that data and
 * acknowledgements both see the link.
 *
 * Cleanup: the namespace is deleted (which deletes the veth pair and its
 * qdiscs) by rf_bench_link_down, called after each link, at exit (atexit)
 * and so after SIGINT/SIGTERM too, since the bench turns those into a
 * normal return.  A run killed outright leaves its namespace behind: the
 * next run deletes namespaces whose pid no longer exists.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench_common.h"

extern char **environ;

#define NETNS_DIR "/run/netns"
#define NS_PREFIX "rfbench-"

static char ns_name[32];    /* non-empty while a namespace exists */
static char veth_root[16];
static FILE *link_log;
static pid_t owner_pid;     /* only the process that built it cleans up */

int rf_bench_cmd(FILE *log, const char *const *argv)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (log) {
        fprintf(log, "+");
        for (int i = 0; argv[i]; i++) {
            fprintf(log, " %s", argv[i]);
        }
        fprintf(log, "\n");
        fflush(log);
        posix_spawn_file_actions_adddup2(&fa, fileno(log), 1);
        posix_spawn_file_actions_adddup2(&fa, fileno(log), 2);
    } else {
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    }
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv,
                          environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        if (log) {
            fprintf(log, "  cannot run %s: %s\n", argv[0], strerror(rc));
        }
        return -1;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            return -1;
        }
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Is `prog` an executable in PATH? */
static bool in_path(const char *prog)
{
    const char *path = getenv("PATH");
    char buf[PATH_MAX];
    if (!path) {
        path = "/usr/sbin:/usr/bin:/sbin:/bin";
    }
    while (*path) {
        size_t n = strcspn(path, ":");
        snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, prog);
        if (access(buf, X_OK) == 0) {
            return true;
        }
        path += n + (path[n] == ':');
    }
    return false;
}

const char *rf_bench_link_unsupported(void)
{
    if (geteuid() != 0) {
        return "not root: link emulation (network namespace, veth, tc) "
               "needs root; running on loopback only";
    }
    if (!in_path("ip") || !in_path("tc")) {
        return "'ip' or 'tc' (Debian package iproute2) not found: running "
               "on loopback only";
    }
    return NULL;
}

void rf_bench_link_down(void)
{
    if (!ns_name[0] || getpid() != owner_pid) {
        return;
    }
    const char *del[] = {"ip", "netns", "del", ns_name, NULL};
    rf_bench_cmd(link_log, del);
    /* The root end goes with its peer; this is for a half-built pair. */
    const char *link_del[] = {"ip", "link", "del", veth_root, NULL};
    char sys[64];
    snprintf(sys, sizeof(sys), "/sys/class/net/%s", veth_root);
    /* The kernel removes the pair asynchronously: give it a second. */
    for (int i = 0; i < 50 && access(sys, F_OK) == 0; i++) {
        usleep(20000);
    }
    if (access(sys, F_OK) == 0) {
        rf_bench_cmd(link_log, link_del);
    }
    ns_name[0] = '\0';
}

/* Deletes "rfbench-PID" namespaces whose PID is gone (a bench that was
 * killed outright). */
static void remove_stale(void)
{
    DIR *d = opendir(NETNS_DIR);
    if (!d) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, NS_PREFIX, strlen(NS_PREFIX)) != 0) {
            continue;
        }
        char *end;
        long pid = strtol(e->d_name + strlen(NS_PREFIX), &end, 10);
        if (*end || pid <= 0 || (kill((pid_t)pid, 0) == 0 ||
                                 errno != ESRCH)) {
            continue;
        }
        const char *del[] = {"ip", "netns", "del", e->d_name, NULL};
        rf_bench_cmd(link_log, del);
    }
    closedir(d);
}

void rf_bench_link_init(FILE *log)
{
    link_log = log;
    owner_pid = getpid();
    atexit(rf_bench_link_down);
    if (!rf_bench_link_unsupported()) {
        remove_stale();
    }
}

bool rf_bench_parse_link(const char *s, RfBenchLink *out)
{
    memset(out, 0, sizeof(*out));
    size_t len = strlen(s);
    if (len >= sizeof(out->name)) {
        return false;
    }
    memcpy(out->name, s, len + 1);
    if (!strcmp(s, "unlimited") || !strcmp(s, "loopback")) {
        return true;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v <= 0) {
        return false;
    }
    double mult;
    if (!strcasecmp(end, "gbit")) {
        mult = 1e9;
    } else if (!strcasecmp(end, "mbit")) {
        mult = 1e6;
    } else if (!strcasecmp(end, "kbit")) {
        mult = 1e3;
    } else {
        return false;
    }
    v *= mult;
    if (v < 1e6 || v > 400e9) {
        return false; /* 1 Mbit/s to 400 Gbit/s */
    }
    out->rate_bps = (uint64_t)v;
    return true;
}

/* Shapes one veth end (in namespace ns, or the caller's when NULL). */
static bool shape(const char *ns, const char *dev, uint64_t rate_bps,
                  double delay_ms, RfError **errp)
{
    char rate[32], burst[32], delay[32];
    snprintf(rate, sizeof(rate), "%llubit", (unsigned long long)rate_bps);
    /* 2 ms of data per bucket, at least 64 KiB: large enough for the
     * timer resolution at 10 Gbit/s, small enough to keep the rate. */
    uint64_t b = rate_bps / 8 / 500;
    snprintf(burst, sizeof(burst), "%llu",
             (unsigned long long)(b < 65536 ? 65536 : b));
    snprintf(delay, sizeof(delay), "%.3fms", delay_ms);
    /* tc [-n NS] qdisc add dev DEV ... */
    const char *argv[24];
    int n = 0;
    argv[n++] = "tc";
    if (ns) {
        argv[n++] = "-n";
        argv[n++] = ns;
    }
    argv[n++] = "qdisc";
    argv[n++] = "add";
    argv[n++] = "dev";
    argv[n++] = dev;
    int base = n;
    if (delay_ms > 0) {
        const char *tail[] = {"root", "handle", "1:", "netem", "delay",
                              delay, "limit", "100000", NULL};
        for (int i = 0; tail[i]; i++) {
            argv[n++] = tail[i];
        }
        argv[n] = NULL;
        if (rf_bench_cmd(link_log, argv) != 0) {
            rf_error_set(errp, RF_ERR_IO, "tc: cannot add a netem delay "
                         "of %s on %s (see bench.log)", delay, dev);
            return false;
        }
        n = base;
        argv[n++] = "parent";
        argv[n++] = "1:1";
    } else {
        argv[n++] = "root";
    }
    const char *tail[] = {"tbf", "rate", rate, "burst", burst, "latency",
                          "20ms", NULL};
    for (int i = 0; tail[i]; i++) {
        argv[n++] = tail[i];
    }
    argv[n] = NULL;
    if (rf_bench_cmd(link_log, argv) != 0) {
        rf_error_set(errp, RF_ERR_IO, "tc: cannot shape %s to %s (see "
                     "bench.log)", dev, rate);
        return false;
    }
    return true;
}

/* A /30 of 192.0.2.0/24 that no interface here uses yet, starting the
 * search at `first` (from the pid), so that concurrent benches do not
 * share one. */
static unsigned free_subnet(unsigned first)
{
    bool used[64] = {false};
    struct ifaddrs *ifa = NULL;
    if (getifaddrs(&ifa) == 0) {
        for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
            if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) {
                continue;
            }
            uint32_t a = ntohl(
                ((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr.s_addr);
            if ((a >> 8) == 0xc00002) { /* 192.0.2.x */
                used[(a & 0xff) / 4] = true;
            }
        }
        freeifaddrs(ifa);
    }
    for (unsigned k = 0; k < 64; k++) {
        if (!used[(first + k) % 64]) {
            return (first + k) % 64;
        }
    }
    return first;
}

/* Runs the command; on failure sets an error naming what failed. */
static bool must(const char *const *argv, const char *what, RfError **errp)
{
    if (rf_bench_cmd(link_log, argv) == 0) {
        return true;
    }
    rf_error_set(errp, RF_ERR_IO, "link emulation: cannot %s (see "
                 "bench.log)", what);
    return false;
}

bool rf_bench_link_up(const RfBenchLink *link, double delay_ms,
                      RfBenchPath *path, RfError **errp)
{
    memset(path, 0, sizeof(*path));
    if (link->rate_bps == 0) {
        snprintf(path->listen_host, sizeof(path->listen_host), "127.0.0.1");
        return true;
    }
    rf_bench_link_down();
    pid_t pid = getpid();
    unsigned sub = free_subnet((unsigned)pid % 64) * 4;
    char veth_ns[16], addr_root[32], addr_ns[32];
    snprintf(ns_name, sizeof(ns_name), NS_PREFIX "%d", (int)pid);
    snprintf(veth_root, sizeof(veth_root), "rfb%da", (int)pid % 10000000);
    snprintf(veth_ns, sizeof(veth_ns), "rfb%db", (int)pid % 10000000);
    snprintf(addr_root, sizeof(addr_root), "192.0.2.%u/30", sub + 1);
    snprintf(addr_ns, sizeof(addr_ns), "192.0.2.%u/30", sub + 2);
    owner_pid = pid;
    const char *add_ns[] = {"ip", "netns", "add", ns_name, NULL};
    if (!must(add_ns, "create a network namespace", errp)) {
        ns_name[0] = '\0';
        return false;
    }
    const char *add_veth[] = {"ip", "link", "add", veth_root, "type",
                              "veth", "peer", "name", veth_ns, "netns",
                              ns_name, NULL};
    const char *addr1[] = {"ip", "addr", "add", addr_root, "dev",
                           veth_root, NULL};
    const char *up1[] = {"ip", "link", "set", veth_root, "up", NULL};
    const char *addr2[] = {"ip", "-n", ns_name, "addr", "add", addr_ns,
                           "dev", veth_ns, NULL};
    const char *up2[] = {"ip", "-n", ns_name, "link", "set", veth_ns, "up",
                         NULL};
    const char *lo[] = {"ip", "-n", ns_name, "link", "set", "lo", "up",
                        NULL};
    if (!must(add_veth, "create the veth pair", errp) ||
        !must(addr1, "address the veth", errp) ||
        !must(up1, "bring the veth up", errp) ||
        !must(addr2, "address the namespace's veth", errp) ||
        !must(up2, "bring the namespace's veth up", errp) ||
        !must(lo, "bring the namespace's loopback up", errp) ||
        !shape(NULL, veth_root, link->rate_bps, delay_ms, errp) ||
        !shape(ns_name, veth_ns, link->rate_bps, delay_ms, errp)) {
        rf_bench_link_down();
        return false;
    }
    snprintf(path->netns, sizeof(path->netns), "%s", ns_name);
    snprintf(path->listen_host, sizeof(path->listen_host), "192.0.2.%u",
             sub + 2);
    return true;
}
