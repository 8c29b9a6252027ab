/*
 * libFuzzer harness for the destination as a whole: the real rf_incoming
 * (src/engine/incoming.c) fed a whole conversation, not one packet: the
 * main channel's HELLO, ROUND, STATE and END frames and, over up to three
 * data channels, channel hellos, packets and SYNC/FINAL barriers.
 *
 * Input (fuzz_handshake.h): an options byte, then the main channel's bytes
 * and each data channel's bytes, separated by FH_SEP.  Each exec:
 *   - the main channel is a socketpair handed to the engine as its
 *     accepted main connection; a feeder thread writes the main stream,
 *     shuts its writing side and reads what the destination answers
 *     (ACCEPT, ROUND_ACK, COMPLETE, ERROR) until it closes;
 *   - the data channels connect to a fresh (autobound, abstract) unix
 *     listening socket given to the engine; one feeder thread per stream
 *     connects, writes its bytes and closes, so a short stream ends in
 *     EOF at once rather than in the timeout;
 *   - the destination writes into a region sink over two small regions,
 *     each between PROT_NONE pages: a write out of bounds faults;
 *   - timeout is 100 ms (the parameter's minimum), so a stream that stops
 *     early (a missing channel) ends the exec quickly.
 * Any outcome (completed, or a clean error) is fine: the result and the
 * error must agree, the engine must give back every thread, descriptor
 * and byte it took (the count of open sockets is checked after every exec,
 * LeakSanitizer checks memory), and every wait must end (libFuzzer's
 * -timeout catches a hang).
 */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "channel/transport.h"
#include "engine/engine.h"
#include "fuzz_handshake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct Stream {
    const uint8_t *p;
    size_t len;
} Stream;

typedef struct Feeder {
    pthread_t thread;
    bool started;
    Stream s;
    int fd;                    /* main: our end of the socketpair */
    struct sockaddr_un addr;   /* data: where to connect */
    socklen_t addrlen;
} Feeder;

static struct {
    RfRamSink *sink;
    int fds;                   /* open descriptors between execs */
    bool verbose;              /* FUZZ_VERBOSE set: print each outcome */
} fz;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_handshake: %s\n", what);
    abort();
}

/* Maps `pages` pages between two PROT_NONE guard pages. */
static void *guarded(unsigned pages)
{
    size_t len = ((size_t)pages + 2) * RF_PAGE_SIZE;
    uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        die("mmap");
    }
    mprotect(p, RF_PAGE_SIZE, PROT_NONE);
    mprotect(p + ((size_t)pages + 1) * RF_PAGE_SIZE, RF_PAGE_SIZE,
             PROT_NONE);
    return p + RF_PAGE_SIZE;
}

/* Counts the open sockets and anonymous inodes (eventfd, epoll...):
 * what the engine opens.  Not pipes: libFuzzer's symbolizer keeps two
 * open once it has printed a NEW_FUNC line.  With `show`, prints every
 * descriptor. */
static int count_fds(bool show)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d) {
        die("opendir /proc/self/fd");
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300], target[300] = "";
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        ssize_t k = readlink(path, target, sizeof(target) - 1);
        if (k > 0 && (strncmp(target, "socket:", 7) == 0 ||
                      strncmp(target, "anon_inode:", 11) == 0)) {
            n++;
        }
        if (show && k > 0) {
            fprintf(stderr, "  fd %s -> %.*s\n", e->d_name, (int)k, target);
        }
    }
    closedir(d);
    return n;
}

static void fuzz_init(void)
{
    /* A peer that closed while the destination writes must give EPIPE,
     * not kill the fuzzer (the engine sends with MSG_NOSIGNAL; this is
     * for the harness's own writes too). */
    signal(SIGPIPE, SIG_IGN);
    fz.verbose = getenv("FUZZ_VERBOSE") != NULL;
    RfRegion r[2] = {
        {.name = FH_RAM_NAME, .addr = guarded(FH_RAM_PAGES),
         .size = (uint64_t)FH_RAM_PAGES * RF_PAGE_SIZE},
        {.name = FH_ROM_NAME, .addr = guarded(FH_ROM_PAGES),
         .size = (uint64_t)FH_ROM_PAGES * RF_PAGE_SIZE},
    };
    RfError *err = NULL;
    fz.sink = rf_region_sink_new(r, 2, &err);
    if (!fz.sink) {
        die(rf_error_msg(err));
    }
}

static void write_all(int fd, const Stream *s)
{
    size_t off = 0;
    while (off < s->len) {
        ssize_t n = send(fd, s->p + off, s->len - off, MSG_NOSIGNAL);
        if (n <= 0) {
            return; /* the destination gave up: fine */
        }
        off += (size_t)n;
    }
}

/* Main channel: write, half-close, read the answers until closed. */
static void *main_feeder(void *arg)
{
    Feeder *f = arg;
    write_all(f->fd, &f->s);
    shutdown(f->fd, SHUT_WR);
    char buf[4096];
    while (read(f->fd, buf, sizeof(buf)) > 0) {
    }
    close(f->fd);
    return NULL;
}

/* Data channel: connect, write, close (what was written stays readable
 * at the destination, then EOF). */
static void *data_feeder(void *arg)
{
    Feeder *f = arg;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        die("socket");
    }
    if (connect(fd, (struct sockaddr *)&f->addr, f->addrlen) == 0) {
        write_all(fd, &f->s);
    }
    close(fd);
    return NULL;
}

/* Splits the input at each FH_SEP: streams[0] is the main channel.
 * @return the number of streams (1..1 + FH_MAX_DATA). */
static unsigned split(const uint8_t *p, size_t len, Stream *streams)
{
    unsigned n = 0;
    for (;;) {
        const uint8_t *sep = n < FH_MAX_DATA
                                 ? memmem(p, len, FH_SEP, FH_SEP_LEN)
                                 : NULL;
        size_t part = sep ? (size_t)(sep - p) : len;
        streams[n++] = (Stream){.p = p, .len = part};
        if (!sep) {
            return n;
        }
        p += part + FH_SEP_LEN;
        len -= part + FH_SEP_LEN;
    }
}

static bool load_state(void *opaque, const uint8_t *buf, size_t len,
                       RfError **errp)
{
    uint8_t opt = *(const uint8_t *)opaque;
    uint8_t x = 0;
    for (size_t i = 0; i < len; i++) {
        x ^= buf[i]; /* every byte is readable: ASan checks the bounds */
    }
    if (opt & FH_OPT_STATE_REFUSE) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "fuzz: state refused (%zu "
                     "bytes, xor 0x%02x)", len, x);
        return false;
    }
    return true;
}

/* A listening unix socket with an abstract, kernel-chosen name. */
static int listen_socket(Feeder *f)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(sa_family_t)) < 0 ||
        listen(fd, 16) < 0) {
        die("unix listener");
    }
    f->addrlen = sizeof(f->addr);
    if (getsockname(fd, (struct sockaddr *)&f->addr, &f->addrlen) < 0) {
        die("getsockname");
    }
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fz.sink) {
        fuzz_init();
        fz.fds = count_fds(false);
    }
    if (size < 1) {
        return 0;
    }
    uint8_t opt = data[0];
    Stream st[1 + FH_MAX_DATA];
    unsigned ns = split(data + 1, size - 1, st);

    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
        die("socketpair");
    }
    Feeder f[1 + FH_MAX_DATA] = {0};
    int lfd = listen_socket(&f[1]);
    RfError *err = NULL;
    RfConn *main = rf_conn_from_fd(sp[0], &err);
    RfListener *l = main ? rf_listener_from_fd(lfd, &err) : NULL;
    if (!main || !l) {
        die(rf_error_msg(err));
    }

    f[0].s = st[0];
    f[0].fd = sp[1];
    for (unsigned i = 0; i < ns; i++) {
        if (i > 0) {
            f[i].s = st[i];
            f[i].addr = f[1].addr;
            f[i].addrlen = f[1].addrlen;
        }
        if (pthread_create(&f[i].thread, NULL,
                           i ? data_feeder : main_feeder, &f[i]) != 0) {
            die("pthread_create");
        }
        f[i].started = true;
    }

    RfIncomingOptions o = {
        .timeout_ms = 100,
        .listener = l,
        .main_conn = main,
        .load_state = (opt & FH_OPT_LOAD_STATE) ? load_state : NULL,
        .max_memory = (opt & FH_OPT_MAX_MEMORY) ? FH_MAX_MEMORY : 0,
        .expect_channels = (opt & FH_OPT_EXPECT_CHANS) ? ns - 1 : 0,
        .opaque = &opt,
    };
    if (opt & FH_OPT_EXPECT_METHOD) {
        snprintf(o.expect_method, sizeof(o.expect_method), "none");
    }
    RfReport rep;
    bool ok = rf_incoming("unix:unused", fz.sink, &o, &rep, &err);
    if (ok != (err == NULL)) {
        die("result and error disagree");
    }
    if (err && strlen(rf_error_msg(err)) < 5) {
        die("an error without a message");
    }
    if (fz.verbose) {
        fprintf(stderr, "fuzz_handshake: %s\n",
                ok ? "completed" : rf_error_msg(err));
    }
    rf_error_free(err);
    for (unsigned i = 0; i < ns; i++) {
        if (f[i].started) {
            pthread_join(f[i].thread, NULL);
        }
    }
    int fds = count_fds(false);
    if (fds != fz.fds) {
        count_fds(true);
        fprintf(stderr, "fuzz_handshake: %d sockets open after the "
                "exec, %d before\n", fds, fz.fds);
        die("descriptor leak");
    }
    return 0;
}
