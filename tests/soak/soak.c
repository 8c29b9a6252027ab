/*
 * soak: a live test VM migrated back and forth between two processes,
 * the destination of one migration becoming the source of the next.
 *
 *   soak [--cycles N] [--memory-size MIB] [--vcpus N] [--dirty-rate P]
 *        [--channels N] [--method NAME] [--dir DIR]
 *
 * The process forks into two nodes, each with its own migration handles
 * (the public API, libramflow) and test VM (thread back end, testvm
 * library).  Node 0 starts the guest, writing its pattern at the given
 * dirty rate.  In cycle i the node holding the guest migrates it, live
 * and with verify, to the other, listening at DIR/nodeK.sock; the
 * receiver resumes it, lets it run, checks its pattern and resumes it
 * again; the sender frees its paused copy.  The nodes keep in step
 * through two pipes (ready, the sender's figures, the receiver's verdict).
 *
 * Measured in each node: open descriptors (/proc/self/fd) and heap bytes
 * in use (the sanitizer allocator's count; mallinfo2 without one) after
 * each cycle, and RSS.  Passes when every migration completed and
 * verified, every pattern check passed, each node ends with the
 * descriptors it started with, and the heap of a node that holds no guest
 * did not grow from the first such cycle to the last by more than 1 MiB
 * (its RSS by more than 16 MiB).
 * Built with AddressSanitizer, LeakSanitizer then checks each node at its
 * exit (make soak sets detect_leaks=1).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ramflow/ramflow.h"
#include "testvm/guest.h"
#include "util/clock.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_SAN_ALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_SAN_ALLOC 1
#endif
#endif
#ifdef HAVE_SAN_ALLOC
/* The sanitizer allocator's count of heap bytes in use (declared here:
 * gcc ships no header for it). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

typedef struct Config {
    unsigned cycles;
    uint64_t mem_mib;
    unsigned vcpus;
    uint64_t dirty_rate;
    const char *channels;
    const char *method;
    char dir[256];
} Config;

/* What a node measures about itself after a cycle. */
typedef struct Usage {
    int fds;
    uint64_t heap;  /* bytes in use */
    uint64_t rss;   /* bytes */
} Usage;

/* The sender's figures, passed to the receiver, which prints the line. */
typedef struct SendResult {
    int ok;
    double total_s, downtime_ms;
    unsigned rounds;
    uint64_t wire_bytes;
    int verified;
    Usage use;          /* the sender after freeing its copy */
    char err[256];
} SendResult;

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = -1; /* the directory's own descriptor */
    if (!d) {
        return -1;
    }
    while (readdir(d)) {
        n++;
    }
    closedir(d);
    return n - 2; /* . and .. */
}

static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    char line[128];
    unsigned long long kib = 0;
    while (f && fgets(line, sizeof(line), f)) {
        if (sscanf(line, "VmRSS: %llu kB", &kib) == 1) {
            break;
        }
    }
    if (f) {
        fclose(f);
    }
    return (uint64_t)kib * 1024;
}

static Usage usage(void)
{
    Usage u = {.fds = count_fds(), .rss = rss_bytes()};
#ifdef HAVE_SAN_ALLOC
    u.heap = __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();
    u.heap = mi.uordblks + mi.hblkhd;
#endif
    return u;
}

/* ---- the pipes between the nodes ------------------------------------ */

typedef struct Link {
    int in, out;
} Link;

static bool send_all(Link *l, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t k = write(l->out, b, n);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            return false;
        }
        b += k, n -= (size_t)k;
    }
    return true;
}

static bool recv_all(Link *l, void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        ssize_t k = read(l->in, b, n);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            return false;
        }
        b += k, n -= (size_t)k;
    }
    return true;
}

/* ---- one migration --------------------------------------------------- */

static RfParams *params(const Config *c)
{
    RfParams *p = rf_params_new();
    RfError *err = NULL;
    if (!p || !rf_params_set(p, "multifd-channels", c->channels, &err) ||
        !rf_params_set(p, "multifd-compression", c->method, &err) ||
        !rf_params_set_cap(p, "verify", true, &err)) {
        fprintf(stderr, "soak: parameters: %s\n",
                err ? rf_error_msg(err) : "out of memory");
        exit(2);
    }
    return p;
}

static bool save_state(void *opaque, uint8_t **buf, size_t *len,
                       RfError **errp)
{
    return rf_guest_save_state(opaque, buf, len, errp);
}

static bool load_state(void *opaque, const uint8_t *buf, size_t len,
                       RfError **errp)
{
    return rf_guest_load_state(opaque, buf, len, errp);
}

typedef struct Listen {
    Link *link;
    bool told;
} Listen;

/* The receiver's listener is up: tell the sender. */
static void on_listening(RfMigration *m, const char *uri, void *opaque)
{
    (void)m;
    (void)uri;
    Listen *l = opaque;
    char r = 'R';
    l->told = send_all(l->link, &r, 1);
}

typedef struct DestCtx {
    RfGuest *guest;
    Listen listen;
} DestCtx;

static bool dest_load_state(void *opaque, const uint8_t *buf, size_t len,
                            RfError **errp)
{
    return load_state(((DestCtx *)opaque)->guest, buf, len, errp);
}

static void dest_listening(RfMigration *m, const char *uri, void *opaque)
{
    on_listening(m, uri, &((DestCtx *)opaque)->listen);
}

/* Sends the guest to the other node.  Frees it on success (the copy
 * there runs now); keeps it, running, on failure. */
static SendResult send_guest(const Config *c, RfGuest **gp, const char *uri,
                             Link *link)
{
    SendResult r = {0};
    char ready;
    if (!recv_all(link, &ready, 1) || ready != 'R') {
        snprintf(r.err, sizeof(r.err), "the receiver never listened");
        return r;
    }
    RfParams *p = params(c);
    RfError *err = NULL;
    RfMigration *m = rf_migration_new(p, &err);
    RfCallbacks cb = RF_CALLBACKS_INIT;
    cb.pause = rf_guest_hook_pause;
    cb.resume = rf_guest_hook_resume;
    cb.save_state = save_state;
    cb.opaque = *gp;
    bool ok = m && rf_migration_set_callbacks(m, &cb, &err) &&
              rf_migration_start_outgoing(m, rf_guest_ram_source(*gp), uri,
                                          RF_START_BLOCKING, &err);
    RfReport rep = RF_REPORT_INIT;
    if (m) {
        rf_migration_report(m, &rep);
    }
    r.ok = ok;
    r.total_s = rep.total_time_s;
    r.downtime_ms = rep.downtime_ms;
    r.rounds = rep.rounds;
    r.wire_bytes = rep.wire_bytes;
    r.verified = rep.verified;
    if (!ok) {
        snprintf(r.err, sizeof(r.err), "%s",
                 err ? rf_error_msg(err) : "failed");
    }
    rf_error_free(err);
    rf_migration_free(m);
    rf_params_free(p);
    if (ok) {
        rf_guest_free(*gp); /* paused: it runs on the other node now */
        *gp = NULL;
    }
    r.use = usage();
    return r;
}

/* Receives the guest; on success it runs, its pattern checked. */
static RfGuest *receive_guest(const Config *c, const char *uri, Link *link,
                              char *verdict, size_t cap)
{
    RfError *err = NULL;
    DestCtx ctx = {.listen = {.link = link}};
    ctx.guest = rf_guest_new_incoming(RF_GUEST_THREAD, &err);
    if (!ctx.guest) {
        snprintf(verdict, cap, "no incoming guest: %s", rf_error_msg(err));
        rf_error_free(err);
        return NULL;
    }
    RfParams *p = params(c);
    RfMigration *m = rf_migration_new(p, &err);
    RfCallbacks cb = RF_CALLBACKS_INIT;
    cb.listening = dest_listening;
    cb.load_state = dest_load_state;
    cb.opaque = &ctx;
    bool ok = m && rf_migration_set_callbacks(m, &cb, &err) &&
              rf_migration_start_incoming(m, rf_guest_ram_sink(ctx.guest),
                                          uri, RF_START_BLOCKING, &err);
    if (!ctx.listen.told) {
        char r = 'F'; /* never listened: do not leave the sender waiting */
        send_all(link, &r, 1);
    }
    rf_migration_free(m);
    rf_params_free(p);
    if (!ok) {
        snprintf(verdict, cap, "incoming failed: %s",
                 err ? rf_error_msg(err) : "?");
        rf_error_free(err);
        rf_guest_free(ctx.guest);
        return NULL;
    }
    /* Runs here now: let it write a while, check, run on. */
    rf_guest_resume(ctx.guest);
    uint64_t before = rf_guest_passes(ctx.guest);
    rf_sleep(0.3);
    uint64_t ran = rf_guest_passes(ctx.guest) - before;
    char summary[200] = "";
    bool pattern = rf_guest_check_pattern(ctx.guest, summary,
                                          sizeof(summary), &err);
    rf_guest_resume(ctx.guest);
    snprintf(verdict, cap, "pattern %s (%s), %llu passes after resume",
             pattern ? "intact" : "BROKEN",
             pattern ? summary : rf_error_msg(err),
             (unsigned long long)ran);
    rf_error_free(err);
    if (!pattern) {
        rf_guest_free(ctx.guest);
        return NULL;
    }
    return ctx.guest;
}

/* ---- a node ---------------------------------------------------------- */

static double mib(uint64_t b)
{
    return (double)b / (1 << 20);
}

static int node(const Config *c, unsigned id, Link *link)
{
    Usage start = usage();
    RfGuest *g = NULL;
    if (id == 0) {
        RfGuestConfig gc = {
            .mem_size = c->mem_mib << 20,
            .vcpus = c->vcpus,
            .kind = RF_GUEST_THREAD,
            .dirty_rate = c->dirty_rate,
            .seed = 7,
        };
        RfError *err = NULL;
        g = rf_guest_start(&gc, &err);
        if (!g) {
            fprintf(stderr, "soak: node 0: %s\n", rf_error_msg(err));
            rf_error_free(err);
            return 1;
        }
        printf("soak: %s; %u cycles, %s channel(s), %s\n",
               rf_guest_describe(g), c->cycles, c->channels, c->method);
        fflush(stdout);
    }
    char my_uri[300], peer_uri[300];
    snprintf(my_uri, sizeof(my_uri), "unix:%s/node%u.sock", c->dir, id);
    snprintf(peer_uri, sizeof(peer_uri), "unix:%s/node%u.sock", c->dir,
             1 - id);
    bool ok = true;
    Usage first_free = {0}, last_free = {0};
    bool have_free = false;
    double t0 = rf_now(), total_down = 0, max_down = 0;
    unsigned done = 0, received = 0;
    for (unsigned i = 0; i < c->cycles && ok; i++) {
        bool sender = i % 2 == id;
        if (sender) {
            SendResult r = send_guest(c, &g, peer_uri, link);
            char verdict = 0;
            ok = send_all(link, &r, sizeof(r)) &&
                 recv_all(link, &verdict, 1) && verdict == 'A' && r.ok;
            if (ok) {
                /* No guest here now: comparable from cycle to cycle. */
                if (!have_free) {
                    first_free = r.use;
                    have_free = true;
                }
                last_free = r.use;
            }
        } else {
            char verdict[400];
            g = receive_guest(c, my_uri, link, verdict, sizeof(verdict));
            SendResult r;
            ok = recv_all(link, &r, sizeof(r));
            Usage u = usage();
            bool good = ok && r.ok && r.verified && g;
            if (ok) {
                printf("cycle %2u node%u->node%u: %s in %.2f s, %u rounds, "
                       "downtime %.0f ms, %.1f MiB on the wire, %s; %s | "
                       "fds %d/%d, heap %.1f/%.1f MiB, rss %.0f/%.0f MiB "
                       "(sender/receiver)\n",
                       i + 1, 1 - id, id,
                       r.ok ? "completed" : "FAILED", r.total_s, r.rounds,
                       r.downtime_ms, mib(r.wire_bytes),
                       r.verified ? "verified" : "NOT verified",
                       r.ok ? verdict : r.err, r.use.fds, u.fds,
                       mib(r.use.heap), mib(u.heap), mib(r.use.rss),
                       mib(u.rss));
                fflush(stdout);
                received++;
                total_down += r.downtime_ms;
                max_down = r.downtime_ms > max_down ? r.downtime_ms
                                                    : max_down;
            }
            char a = good ? 'A' : 'F';
            ok = send_all(link, &a, 1) && good;
            if (!good) {
                fprintf(stderr, "soak: cycle %u failed: %s\n", i + 1,
                        r.ok ? verdict : r.err);
            }
        }
        done += ok;
    }
    /* The holder checks once more, then everything is freed. */
    char summary[200] = "";
    bool final_pattern = true;
    if (g) {
        RfError *err = NULL;
        rf_sleep(0.2);
        final_pattern = rf_guest_check_pattern(g, summary, sizeof(summary),
                                               &err);
        printf("soak: node%u holds the guest at the end: %llu passes, "
               "pattern %s: %s\n", id,
               (unsigned long long)rf_guest_passes(g),
               final_pattern ? "intact" : "BROKEN",
               final_pattern ? summary : rf_error_msg(err));
        rf_error_free(err);
        rf_guest_free(g);
    }
    Usage end = usage();
    double growth = have_free ? mib(last_free.heap) - mib(first_free.heap)
                              : 0;
    double rss_growth = have_free ? mib(last_free.rss) - mib(first_free.rss)
                                  : 0;
    bool fds_ok = end.fds == start.fds;
    bool heap_ok = growth < 1.0;
    /* RSS is coarser (thread stacks, allocator caches; under ASan its
     * quarantine, which soak.sh keeps small): 16 MiB of slack. */
    bool rss_ok = rss_growth < 16.0;
    printf("soak: node%u: %u/%u cycles in %.1f s; descriptors %d at start, "
           "%d at the end%s; without a guest (after its first and last "
           "send): heap %.2f -> %.2f MiB (%+.3f)%s, rss %.0f -> %.0f MiB "
           "(%+.1f)%s; at the end heap %.2f MiB, rss %.0f MiB\n",
           id, done, c->cycles, rf_now() - t0, start.fds, end.fds,
           fds_ok ? "" : " (LEAKED)", mib(first_free.heap),
           mib(last_free.heap), growth, heap_ok ? "" : " (GROWING)",
           mib(first_free.rss), mib(last_free.rss), rss_growth,
           rss_ok ? "" : " (GROWING)", mib(end.heap), mib(end.rss));
    if (received) {
        printf("soak: node%u: downtime mean %.0f ms, max %.0f ms over the "
               "%u migrations into it\n", id, total_down / received,
               max_down, received);
    }
    fflush(stdout);
    return ok && done == c->cycles && final_pattern && fds_ok && heap_ok &&
                   rss_ok
               ? 0 : 1;
}

static void usage_exit(void)
{
    fprintf(stderr, "usage: soak [--cycles N] [--memory-size MIB] "
            "[--vcpus N] [--dirty-rate PAGES] [--channels N] "
            "[--method NAME] [--dir DIR]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    Config c = {.cycles = 50, .mem_mib = 64, .vcpus = 2,
                .dirty_rate = 5000, .channels = "2", .method = "zstd"};
    const char *dir = NULL;
    static const struct option opts[] = {
        {"cycles", required_argument, NULL, 'n'},
        {"memory-size", required_argument, NULL, 'm'},
        {"vcpus", required_argument, NULL, 'v'},
        {"dirty-rate", required_argument, NULL, 'r'},
        {"channels", required_argument, NULL, 'c'},
        {"method", required_argument, NULL, 'M'},
        {"dir", required_argument, NULL, 'd'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'n': c.cycles = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'm': c.mem_mib = strtoull(optarg, NULL, 10); break;
        case 'v': c.vcpus = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'r': c.dirty_rate = strtoull(optarg, NULL, 10); break;
        case 'c': c.channels = optarg; break;
        case 'M': c.method = optarg; break;
        case 'd': dir = optarg; break;
        default: usage_exit();
        }
    }
    if (optind != argc || c.cycles < 1 || c.mem_mib < 1) {
        usage_exit();
    }
    if (dir) {
        snprintf(c.dir, sizeof(c.dir), "%s", dir);
    } else {
        snprintf(c.dir, sizeof(c.dir), "/tmp/ramflow-soak.XXXXXX");
        if (!mkdtemp(c.dir)) {
            perror("soak: mkdtemp");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    /* Two pipes: node0 -> node1 and node1 -> node0. */
    int a[2], b[2];
    if (pipe2(a, O_CLOEXEC) < 0 || pipe2(b, O_CLOEXEC) < 0) {
        perror("soak: pipe");
        return 2;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("soak: fork");
        return 2;
    }
    if (pid == 0) {
        close(a[1]);
        close(b[0]);
        Link l = {.in = a[0], .out = b[1]};
        int rc = node(&c, 1, &l);
        close(l.in);
        close(l.out);
        exit(rc);
    }
    close(a[0]);
    close(b[1]);
    Link l = {.in = b[0], .out = a[1]};
    int rc = node(&c, 0, &l);
    close(l.in);
    close(l.out);
    int st = 0;
    waitpid(pid, &st, 0);
    int child = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (!dir) {
        rmdir(c.dir);
    }
    printf("soak: %s (node0 exit %d, node1 exit %d)\n",
           rc == 0 && child == 0 ? "PASSED" : "FAILED", rc, child);
    return rc == 0 && child == 0 ? 0 : 1;
}
