/* Unit tests: the tcp and unix transports, their listener and connection
 * ops, and adopted sockets (src/channel/transport.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "channel/socket.h"
#include "channel/transport.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static pid_t my_tid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* The system call thread `tid` of this process is blocked in, -1 if it is
 * running, -2 if the kernel does not say (no /proc/.../syscall). */
static long blocked_in(pid_t tid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        return -2;
    }
    long nr = -2;
    if (fgets(line, sizeof(line), fp)) {
        nr = strncmp(line, "running", 7) == 0 ? -1 : strtol(line, NULL, 10);
    }
    fclose(fp);
    return nr;
}

/* Waits until thread `tid` sleeps in system call nr1 or nr2: the event
 * that a test must not run ahead of (a reader blocked in recvmsg, accept
 * waiting in poll), observed instead of guessed with a sleep.  @return
 * false, after a note, where the kernel does not tell: the test then goes
 * on unsynchronised (its checks still hold; it may test less). */
static bool wait_blocked_in(pid_t tid, long nr1, long nr2)
{
    double end = now_s() + 20;
    for (;;) {
        long nr = blocked_in(tid);
        if (nr == nr1 || nr == nr2) {
            return true;
        }
        if (nr == -2) {
            printf("note: /proc/self/task/%d/syscall unreadable: not "
                   "waiting for the thread to block\n", (int)tid);
            return false;
        }
        if (now_s() > end) {
            fail_msg("thread %d never blocked in system call %ld or %ld "
                     "(last: %ld)", (int)tid, nr1, nr2, nr);
        }
        struct timespec d = {0, 200 * 1000};
        nanosleep(&d, NULL);
    }
}

#ifdef SYS_poll
#define NR_POLL SYS_poll
#else
#define NR_POLL SYS_ppoll
#endif

/* A connected pair: c is the connecting side, a the accepted one. */
typedef struct Pair {
    RfListener *l;
    RfConn *c, *a;
} Pair;

static void pair_open(Pair *p, const char *uri)
{
    RfError *err = NULL;
    p->l = rf_listen(uri, &err);
    if (!p->l) {
        fail_msg("listen %s: %s", uri, rf_error_msg(err));
    }
    p->c = rf_conn_connect(p->l->uri, 2000, &err);
    if (!p->c) {
        fail_msg("connect %s: %s", p->l->uri, rf_error_msg(err));
    }
    p->a = rf_listener_accept(p->l, 2000, NULL, &err);
    if (!p->a) {
        fail_msg("accept %s: %s", p->l->uri, rf_error_msg(err));
    }
    p->a->timeout_ms = 5000;
    p->c->timeout_ms = 5000;
}

static void pair_close(Pair *p)
{
    rf_conn_close(p->c);
    rf_conn_close(p->a);
    rf_listener_close(p->l);
}

/* Sends a message each way and checks the bytes and the counters. */
static void ping_pong(Pair *p)
{
    RfError *err = NULL;
    char msg[] = "hello ramflow", back[sizeof(msg)] = "";
    assert_true(rf_conn_send(p->c, msg, sizeof(msg), &err));
    assert_true(rf_conn_recv(p->a, back, sizeof(back), &err));
    assert_string_equal(back, msg);
    uint32_t v = 0xdeadbeef, w = 0;
    assert_true(rf_conn_send(p->a, &v, sizeof(v), &err));
    assert_true(rf_conn_recv(p->c, &w, sizeof(w), &err));
    assert_int_equal(w, v);
    assert_int_equal(p->c->bytes_out, sizeof(msg));
    assert_int_equal(p->c->bytes_in, sizeof(v));
    assert_int_equal(p->a->bytes_in, sizeof(msg));
    assert_int_equal(p->a->bytes_out, sizeof(v));
    assert_null(err);
}

static void test_tcp_ipv4(void **state)
{
    (void)state;
    Pair p;
    pair_open(&p, "tcp:127.0.0.1:0");
    /* Port 0 was replaced by the port the kernel chose. */
    assert_true(strncmp(p.l->uri, "tcp:127.0.0.1:", 14) == 0);
    int port = atoi(p.l->uri + 14);
    assert_true(port > 0 && port < 65536);
    ping_pong(&p);
    pair_close(&p);
}

static bool ipv6_configured(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0) {
        return false;
    }
    struct sockaddr_in6 a = { .sin6_family = AF_INET6,
                              .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

static void test_tcp_ipv6(void **state)
{
    (void)state;
    if (!ipv6_configured()) {
        printf("SKIP: IPv6 loopback [::1] is not configured here\n");
        skip();
    }
    Pair p;
    pair_open(&p, "tcp:[::1]:0");
    assert_true(strncmp(p.l->uri, "tcp:[::1]:", 10) == 0);
    assert_true(atoi(p.l->uri + 10) > 0);
    ping_pong(&p);
    pair_close(&p);
}

static char tmpdir[64];

static void test_unix(void **state)
{
    (void)state;
    char path[128], uri[140];
    snprintf(path, sizeof(path), "%s/sock", tmpdir);
    snprintf(uri, sizeof(uri), "unix:%s", path);

    /* A stale socket file from a dead process is replaced. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    assert_true(strlen(path) < sizeof(sun.sun_path));
    memcpy(sun.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    close(fd);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);

    Pair p;
    pair_open(&p, uri);
    assert_string_equal(p.l->uri, uri);
    ping_pong(&p);

    /* A second listener on a live path is refused, and leaves it alone. */
    RfError *err = NULL;
    assert_null(rf_listen(uri, &err));
    assert_non_null(strstr(rf_error_msg(err), "another process"));
    rf_error_free(err);
    err = NULL;
    assert_int_equal(lstat(path, &st), 0);

    pair_close(&p);
    assert_int_equal(lstat(path, &st), -1); /* unlinked on close */

    /* A path that is not a socket is never deleted. */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_null(rf_listen(uri, &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_IO);
    assert_non_null(strstr(rf_error_msg(err), "not a socket"));
    rf_error_free(err);
    assert_int_equal(lstat(path, &st), 0);
    unlink(path);
}

/* --- large vectored transfers ------------------------------------------ */

#define BIG_BYTES (24u << 20)

typedef struct Xfer {
    RfConn *conn;
    uint8_t *buf;
    size_t len;
    unsigned seed; /* picks the iovec split */
    bool ok;
    RfError *err;
} Xfer;

/* Cuts buf into many iovecs of varied size (some empty), more than
 * IOV_MAX of them, so sendv/recvv must loop and re-slice. */
static int make_iov(struct iovec **out, uint8_t *buf, size_t len,
                    unsigned seed)
{
    int cap = 8192, n = 0;
    struct iovec *iov = calloc((size_t)cap, sizeof(*iov));
    size_t off = 0;
    while (off < len) {
        seed = seed * 1103515245u + 12345u;
        size_t piece = (seed >> 8) % 9000;
        if (piece > len - off) {
            piece = len - off;
        }
        assert_true(n < cap);
        iov[n].iov_base = buf + off;
        iov[n].iov_len = piece;
        n++;
        off += piece;
    }
    *out = iov;
    return n;
}

static void *xfer_send(void *opaque)
{
    Xfer *x = opaque;
    struct iovec *iov;
    int n = make_iov(&iov, x->buf, x->len, x->seed);
    x->ok = rf_conn_sendv(x->conn, iov, n, &x->err);
    free(iov);
    return NULL;
}

static void big_transfer(const char *uri)
{
    Pair p;
    pair_open(&p, uri);
    uint8_t *src = malloc(BIG_BYTES), *dst = calloc(1, BIG_BYTES);
    for (size_t i = 0; i < BIG_BYTES; i++) {
        src[i] = (uint8_t)(i * 131 + (i >> 13));
    }
    Xfer x = { .conn = p.c, .buf = src, .len = BIG_BYTES, .seed = 7 };
    pthread_t th;
    pthread_create(&th, NULL, xfer_send, &x);
    struct iovec *iov;
    int n = make_iov(&iov, dst, BIG_BYTES, 99);
    assert_true(n > 1024);
    RfError *err = NULL;
    bool ok = rf_conn_recvv(p.a, iov, n, &err);
    pthread_join(th, NULL);
    assert_true(x.ok);
    if (!ok) {
        fail_msg("recvv: %s", rf_error_msg(err));
    }
    assert_memory_equal(src, dst, BIG_BYTES);
    assert_int_equal(p.a->bytes_in, BIG_BYTES);
    assert_int_equal(p.c->bytes_out, BIG_BYTES);
    free(iov);
    free(src);
    free(dst);
    pair_close(&p);
}

static void test_big_vectored_tcp(void **state)
{
    (void)state;
    big_transfer("tcp:127.0.0.1:0");
}

static void test_big_vectored_unix(void **state)
{
    (void)state;
    char uri[140];
    snprintf(uri, sizeof(uri), "unix:%s/big", tmpdir);
    big_transfer(uri);
}

/* --- failures ------------------------------------------------------------ */

static void test_eof_mid_read(void **state)
{
    (void)state;
    Pair p;
    pair_open(&p, "tcp:127.0.0.1:0");
    char buf[4096] = { 0 };
    RfError *err = NULL;
    assert_true(rf_conn_send(p.c, buf, 1000, &err));
    rf_conn_close(p.c);
    p.c = NULL;
    assert_false(rf_conn_recv(p.a, buf, sizeof(buf), &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_IO);
    assert_non_null(strstr(rf_error_msg(err), "connection closed by peer "
                                              "after 1000 of 4096 bytes"));
    rf_error_free(err);
    pair_close(&p);
}

static void test_recv_stall_timeout(void **state)
{
    (void)state;
    Pair p;
    pair_open(&p, "tcp:127.0.0.1:0");
    p.a->timeout_ms = 300;
    char buf[64];
    RfError *err = NULL;
    /* A few bytes arrive, then nothing. */
    assert_true(rf_conn_send(p.c, buf, 10, &err));
    double t0 = now_s();
    assert_false(rf_conn_recv(p.a, buf, sizeof(buf), &err));
    double dt = now_s() - t0;
    assert_int_equal(rf_error_kind(err), RF_ERR_TIMEOUT);
    assert_non_null(strstr(rf_error_msg(err), "peer stalled: only 10 of 64 "
                                              "bytes received within 300 "
                                              "ms"));
    /* The limit covers the whole call: detected after 1x the limit. */
    assert_true(dt >= 0.25 && dt < 0.6);
    rf_error_free(err);
    pair_close(&p);
}

/* A peer that sends `n` chunks of `len` bytes, `gap_ms` apart. */
typedef struct Trickle {
    RfConn *c;
    int n, gap_ms;
    size_t len;
} Trickle;

static void *trickle_thread(void *opaque)
{
    Trickle *t = opaque;
    char b[64] = {0};
    for (int i = 0; i < t->n; i++) {
        struct timespec d = {t->gap_ms / 1000, (t->gap_ms % 1000) * 1000000L};
        nanosleep(&d, NULL);
        if (!rf_conn_send(t->c, b, t->len, NULL)) {
            break;
        }
    }
    return NULL;
}

/* One byte every 100 ms never let a per-read limit fire; the limit is
 * per call now, so a 350 ms limit fires after 350 ms. */
static void test_recv_trickle(void **state)
{
    (void)state;
    Pair p;
    pair_open(&p, "tcp:127.0.0.1:0");
    p.a->timeout_ms = 350;
    Trickle t = {.c = p.c, .n = 20, .gap_ms = 100, .len = 1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, trickle_thread, &t), 0);
    char buf[64];
    RfError *err = NULL;
    double t0 = now_s();
    assert_false(rf_conn_recv(p.a, buf, sizeof(buf), &err));
    double dt = now_s() - t0;
    assert_int_equal(rf_error_kind(err), RF_ERR_TIMEOUT);
    assert_non_null(strstr(rf_error_msg(err), "bytes received within 350 "
                                              "ms"));
    assert_true(dt >= 0.3 && dt < 0.7);
    rf_error_free(err);
    rf_conn_shutdown(p.c);
    pthread_join(th, NULL);
    pair_close(&p);
}

/* A frame read in several calls shares one deadline: each 4-byte piece
 * comes within the limit, the whole does not. */
static void test_frame_deadline(void **state)
{
    (void)state;
    Pair p;
    pair_open(&p, "tcp:127.0.0.1:0");
    p.a->timeout_ms = 400;
    Trickle t = {.c = p.c, .n = 6, .gap_ms = 150, .len = 4};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, trickle_thread, &t), 0);
    char buf[4];
    RfError *err = NULL;
    double t0 = now_s();
    rf_conn_frame_begin(p.a);
    int got = 0;
    while (rf_conn_recv(p.a, buf, sizeof(buf), &err)) {
        got++;
    }
    rf_conn_frame_end(p.a);
    double dt = now_s() - t0;
    assert_int_equal(got, 2);
    assert_int_equal(rf_error_kind(err), RF_ERR_TIMEOUT);
    assert_true(dt >= 0.35 && dt < 0.7);
    rf_error_free(err);
    /* Without a frame, the next piece arrives within its own limit. */
    assert_true(rf_conn_recv(p.a, buf, sizeof(buf), &err));
    pthread_join(th, NULL);
    pair_close(&p);
}

static atomic_int io_cancel;

static void *cancel_later(void *opaque)
{
    (void)opaque;
    struct timespec d = {0, 200 * 1000000L};
    nanosleep(&d, NULL);
    atomic_store(&io_cancel, 1);
    return NULL;
}

/* A receive blocked on a silent peer ends soon after its cancel flag is
 * set, well before its stall limit. */
static void test_recv_cancel(void **state)
{
    (void)state;
    Pair p;
    pair_open(&p, "tcp:127.0.0.1:0");
    atomic_store(&io_cancel, 0);
    p.a->cancel = &io_cancel;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_later, NULL), 0);
    char buf[64];
    RfError *err = NULL;
    double t0 = now_s();
    assert_false(rf_conn_recv(p.a, buf, sizeof(buf), &err));
    double dt = now_s() - t0;
    pthread_join(th, NULL);
    assert_int_equal(rf_error_kind(err), RF_ERR_CANCELLED);
    assert_non_null(strstr(rf_error_msg(err), "cancelled while receiving"));
    assert_true(dt >= 0.15 && dt < 0.6);
    rf_error_free(err);
    /* A send that fits in the socket buffer still goes through: the
     * flag is looked at only while a call has to wait. */
    assert_true(rf_conn_send(p.a, buf, 10, &err));
    pair_close(&p);
}

/* A connect to a listener whose backlog is full ends on cancel. */
static void test_connect_cancel(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 0), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", ntohs(a.sin_port));
    RfConn *conns[8] = { NULL };
    RfError *err = NULL;
    atomic_store(&io_cancel, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_later, NULL), 0);
    double t0 = now_s();
    for (int i = 0; i < 8 && !err; i++) {
        conns[i] = rf_conn_connect_cancel(uri, 10000, &io_cancel, &err);
    }
    double dt = now_s() - t0;
    pthread_join(th, NULL);
    assert_non_null(err);
    assert_int_equal(rf_error_kind(err), RF_ERR_CANCELLED);
    assert_non_null(strstr(rf_error_msg(err), "cancelled while connecting"));
    assert_true(dt < 0.6);
    rf_error_free(err);
    for (int i = 0; i < 8; i++) {
        rf_conn_close(conns[i]);
    }
    close(fd);
}

static int sockopt(int fd, int level, int opt)
{
    int v = -1;
    socklen_t len = sizeof(v);
    assert_int_equal(getsockopt(fd, level, opt, &v, &len), 0);
    return v;
}

/* Keepalive and TCP_USER_TIMEOUT reach the socket; unix sockets are left
 * alone. */
static void test_tcp_liveness(void **state)
{
    (void)state;
    Pair p;
    pair_open(&p, "tcp:127.0.0.1:0");
    RfError *err = NULL;
    assert_true(rf_conn_tcp_liveness(p.a, 6, 4500, &err));
    int fd = rf_sock_conn_fd(p.a, NULL);
    assert_int_equal(sockopt(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
    assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE), 6);
    assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL), 2);
    assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPCNT), 3);
    assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 4500);
    pair_close(&p);
    char path[64];
    snprintf(path, sizeof(path), "unix:/tmp/rf-live-%d.sock", getpid());
    pair_open(&p, path);
    assert_true(rf_conn_tcp_liveness(p.a, 6, 4500, &err));
    pair_close(&p);
}

static void test_send_stall_timeout(void **state)
{
    (void)state;
    Pair p;
    pair_open(&p, "tcp:127.0.0.1:0");
    p.c->timeout_ms = 300;
    size_t len = 256u << 20; /* far more than the socket buffers hold */
    uint8_t *buf = calloc(1, len);
    RfError *err = NULL;
    double t0 = now_s();
    assert_false(rf_conn_send(p.c, buf, len, &err));
    double dt = now_s() - t0;
    assert_int_equal(rf_error_kind(err), RF_ERR_TIMEOUT);
    assert_non_null(strstr(rf_error_msg(err), "peer stalled"));
    assert_true(p.c->bytes_out > 0 && p.c->bytes_out < len);
    assert_true(dt >= 0.25 && dt < 2.0);
    rf_error_free(err);
    free(buf);
    pair_close(&p);
}

/* tcp_info's receive-window-limited time, for 'auto': none on a fresh
 * connection, most of a stall against a peer that does not read (the
 * send times out after 300 ms), unknown (-1) on a Unix socket. */
static void test_rwnd_limited(void **state)
{
    (void)state;
    Pair p;
    pair_open(&p, "tcp:127.0.0.1:0");
    assert_int_equal(rf_conn_rwnd_limited_us(p.c), 0);
    p.c->timeout_ms = 300;
    size_t len = 256u << 20;
    uint8_t *buf = calloc(1, len);
    RfError *err = NULL;
    assert_false(rf_conn_send(p.c, buf, len, &err));
    rf_error_free(err);
    free(buf);
    long long us = rf_conn_rwnd_limited_us(p.c);
    assert_true(us > 100 * 1000);
    pair_close(&p);
    char path[64];
    snprintf(path, sizeof(path), "unix:/tmp/rf-rwnd-%d.sock", getpid());
    pair_open(&p, path);
    assert_int_equal(rf_conn_rwnd_limited_us(p.c), -1);
    pair_close(&p);
}

/* Writing to a peer that has gone must give an error, not SIGPIPE. */
static void test_send_to_dead_peer(void **state)
{
    (void)state;
    Pair p;
    pair_open(&p, "tcp:127.0.0.1:0");
    rf_conn_close(p.a);
    p.a = NULL;
    char buf[65536] = { 0 };
    RfError *err = NULL;
    bool ok = true;
    for (int i = 0; i < 1000 && ok; i++) {
        ok = rf_conn_send(p.c, buf, sizeof(buf), &err);
    }
    assert_false(ok);
    assert_int_equal(rf_error_kind(err), RF_ERR_IO);
    assert_true(strstr(rf_error_msg(err), strerror(EPIPE)) ||
                strstr(rf_error_msg(err), strerror(ECONNRESET)));
    rf_error_free(err);
    pair_close(&p);
}

typedef struct Blocked {
    RfConn *conn;
    pid_t tid; /* set before the thread starts reading */
    bool ok;
    RfError *err;
} Blocked;

static void *blocked_recv(void *opaque)
{
    Blocked *b = opaque;
    char buf[16];
    __atomic_store_n(&b->tid, my_tid(), __ATOMIC_RELEASE);
    b->ok = rf_conn_recv(b->conn, buf, sizeof(buf), &b->err);
    return NULL;
}

/* A reader blocked in recvmsg (waited for, not slept for) is woken by a
 * shutdown from another thread. */
static void test_shutdown_wakes_reader(void **state)
{
    (void)state;
    Pair p;
    pair_open(&p, "tcp:127.0.0.1:0");
    p.a->timeout_ms = 0; /* would wait forever */
    Blocked b = { .conn = p.a, .ok = true };
    pthread_t th;
    pthread_create(&th, NULL, blocked_recv, &b);
    pid_t tid;
    while (!(tid = __atomic_load_n(&b.tid, __ATOMIC_ACQUIRE))) {
        sched_yield();
    }
    wait_blocked_in(tid, SYS_recvmsg, SYS_recvfrom);
    double t0 = now_s();
    rf_conn_shutdown(p.a);
    pthread_join(th, NULL);
    assert_true(now_s() - t0 < 1.0);
    assert_false(b.ok);
    assert_int_equal(rf_error_kind(b.err), RF_ERR_IO);
    rf_error_free(b.err);
    pair_close(&p);
}

static void test_connect_refused(void **state)
{
    (void)state;
    RfError *err = NULL;
    RfListener *l = rf_listen("tcp:127.0.0.1:0", &err);
    assert_non_null(l);
    char uri[RF_URI_CAP];
    snprintf(uri, sizeof(uri), "%s", l->uri);
    rf_listener_close(l);
    double t0 = now_s();
    assert_null(rf_conn_connect(uri, 2000, &err));
    assert_true(now_s() - t0 < 1.0); /* fails fast, no retries */
    assert_int_equal(rf_error_kind(err), RF_ERR_IO);
    assert_non_null(strstr(rf_error_msg(err), "connection refused"));
    assert_non_null(strstr(rf_error_msg(err), uri));
    rf_error_free(err);
    err = NULL;

    char path[140];
    snprintf(path, sizeof(path), "unix:%s/nobody", tmpdir);
    assert_null(rf_conn_connect(path, 2000, &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_IO);
    assert_non_null(strstr(rf_error_msg(err), path));
    rf_error_free(err);
}

/* A listener whose accept queue is full drops new SYNs, so connect()
 * hangs: rf_conn_connect must give up after timeout_ms. */
static void test_connect_timeout(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 0), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", ntohs(a.sin_port));
    RfConn *conns[8] = { NULL };
    RfError *err = NULL;
    double dt = 0;
    for (int i = 0; i < 8 && !err; i++) {
        double t0 = now_s();
        conns[i] = rf_conn_connect(uri, 300, &err);
        dt = now_s() - t0;
    }
    assert_non_null(err);
    assert_int_equal(rf_error_kind(err), RF_ERR_TIMEOUT);
    assert_non_null(strstr(rf_error_msg(err), uri));
    assert_true(dt >= 0.25 && dt < 0.9);
    rf_error_free(err);
    for (int i = 0; i < 8; i++) {
        rf_conn_close(conns[i]);
    }
    close(fd);
}

/* "tcp::PORT" listens on loopback only (QEMU: every address). */
static void test_listen_no_host(void **state)
{
    (void)state;
    RfError *err = NULL;
    RfListener *l = rf_listen("tcp::0", &err);
    if (!l) {
        fail_msg("tcp::0: %s", rf_error_msg(err));
    }
    assert_true(strncmp(l->uri, "tcp:127.0.0.1:", 14) == 0);
    rf_listener_close(l);
}

static void test_bad_uris(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "tcp", "http:localhost:80", "tcp:localhost", "tcp:localhost:",
        "tcp:localhost:99999", "tcp:localhost:12ab", "tcp:::1:80",
        "tcp:[::1]80", "tcp:[::1:80", "tcp::80", "tcp:[]:80", "unix:",
        "tcp:127.0.0.1:-1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        for (int listen = 0; listen < 2; listen++) {
            RfError *err = NULL;
            if (listen && strcmp(bad[i], "tcp::80") == 0) {
                continue; /* listens on loopback: test_listen_no_host */
            }
            if (listen) {
                assert_null(rf_listen(bad[i], &err));
            } else {
                assert_null(rf_conn_connect(bad[i], 100, &err));
            }
            assert_non_null(err);
            if (rf_error_kind(err) != RF_ERR_PARAM ||
                !strstr(rf_error_msg(err), "tcp:HOST:PORT, tcp:[IPV6]:PORT "
                                           "or unix:PATH")) {
                fail_msg("'%s': %s", bad[i], rf_error_msg(err));
            }
            /* The message quotes the URI (minus nothing). */
            if (bad[i][0] && !strstr(rf_error_msg(err), bad[i])) {
                fail_msg("'%s' not quoted: %s", bad[i], rf_error_msg(err));
            }
            rf_error_free(err);
        }
    }
    /* Port 0 is fine to listen on but not to connect to. */
    RfError *err = NULL;
    assert_null(rf_conn_connect("tcp:127.0.0.1:0", 100, &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_PARAM);
    rf_error_free(err);
    err = NULL;
    char longpath[200];
    memset(longpath, 'x', sizeof(longpath));
    memcpy(longpath, "unix:/tmp/", 10);
    longpath[sizeof(longpath) - 1] = '\0';
    assert_null(rf_listen(longpath, &err));
    assert_int_equal(rf_error_kind(err), RF_ERR_PARAM);
    assert_non_null(strstr(rf_error_msg(err), "too long"));
    rf_error_free(err);
}

/* The cancel flag of accept, set by another thread. */
static atomic_int cancel_flag;

typedef struct Canceller {
    pid_t waiter;   /* the thread inside rf_listener_accept */
    double set_at;  /* when the flag was set */
} Canceller;

/* Sets the flag once the accepting thread sleeps in poll(), so that what
 * is tested is a flag noticed while waiting, not before. */
static void *set_cancel(void *opaque)
{
    Canceller *c = opaque;
    wait_blocked_in(c->waiter, NR_POLL, SYS_ppoll);
    c->set_at = now_s();
    atomic_store(&cancel_flag, 1);
    return NULL;
}

/* Cancel and timeout of an accept, through whatever listener l is. */
static void accept_cancel_and_timeout(RfListener *l)
{
    RfError *err = NULL;

    /* No timeout: only the flag can end the wait, and it is noticed
     * within a poll slice (100 ms; 2 s allows for a loaded machine). */
    atomic_store(&cancel_flag, 0);
    Canceller cn = { .waiter = my_tid() };
    pthread_t th;
    pthread_create(&th, NULL, set_cancel, &cn);
    assert_null(rf_listener_accept(l, 0, &cancel_flag, &err));
    double back = now_s();
    pthread_join(th, NULL);
    assert_int_equal(rf_error_kind(err), RF_ERR_CANCELLED);
    assert_true(back >= cn.set_at && back - cn.set_at < 2.0);
    rf_error_free(err);
    err = NULL;
    double t0, dt;

    t0 = now_s();
    assert_null(rf_listener_accept(l, 150, NULL, &err));
    dt = now_s() - t0;
    assert_int_equal(rf_error_kind(err), RF_ERR_TIMEOUT);
    assert_non_null(strstr(rf_error_msg(err), l->uri));
    /* Not before the limit; the upper bound only says "not forever" and
     * leaves room for a loaded machine. */
    assert_true(dt >= 0.14 && dt < 2.0);
    rf_error_free(err);
}

static void test_accept_cancel_and_timeout(void **state)
{
    (void)state;
    RfError *err = NULL;
    RfListener *l = rf_listen("tcp:127.0.0.1:0", &err);
    assert_non_null(l);
    accept_cancel_and_timeout(l);
    rf_listener_close(l);

    char uri[140];
    snprintf(uri, sizeof(uri), "unix:%s/cancel", tmpdir);
    l = rf_listen(uri, &err);
    assert_non_null(l);
    accept_cancel_and_timeout(l);
    rf_listener_close(l);
}

/* --- helpers for the ops and adoption tests ------------------------------ */

/* Checks err is of `kind` and its message contains `needle`; frees it. */
static void expect_error(RfError *err, RfErrorKind kind, const char *needle)
{
    if (!err) {
        fail_msg("no error; expected one with '%s'", needle);
    }
    if (rf_error_kind(err) != kind || !strstr(rf_error_msg(err), needle)) {
        fail_msg("expected kind %d with '%s', got kind %d: %s", kind,
                 needle, rf_error_kind(err), rf_error_msg(err));
    }
    rf_error_free(err);
}

static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

static unsigned uri_port(const char *uri)
{
    const char *colon = strrchr(uri, ':');
    assert_non_null(colon);
    return (unsigned)atoi(colon + 1);
}

/* A plain blocking TCP client socket connected to 127.0.0.1:port. */
static int raw_tcp_connect(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* A plain TCP socket bound to 127.0.0.1 on a free port; listening if
 * `listening`. */
static int raw_tcp_bound(bool listening, unsigned *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    if (listening) {
        assert_int_equal(listen(fd, 8), 0);
    }
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static socklen_t unix_addr(struct sockaddr_un *sun, const char *path)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    assert_true(strlen(path) < sizeof(sun->sun_path));
    memcpy(sun->sun_path, path, strlen(path) + 1);
    return sizeof(*sun);
}

/* --- listener ops -------------------------------------------------------- */

/* A listener wrapping another one through the ops table, as a TLS layer
 * will: it counts its calls and defers to the inner listener. */
typedef struct WrapListener {
    RfListener base;
    RfListener *inner;
    int accepts;
} WrapListener;

static int wrap_closes;

static RfConn *wrap_accept(RfListener *l, unsigned timeout_ms,
                           atomic_int *cancel, RfError **errp)
{
    WrapListener *w = (WrapListener *)l;
    w->accepts++;
    return rf_listener_accept(w->inner, timeout_ms, cancel, errp);
}

static void wrap_close(RfListener *l)
{
    WrapListener *w = (WrapListener *)l;
    rf_listener_close(w->inner);
    wrap_closes++;
    free(w);
}

static const RfListenerOps wrap_ops = {
    .accept = wrap_accept,
    .close = wrap_close,
};

static void listener_ops(const char *uri)
{
    RfError *err = NULL;
    RfListener *inner = rf_listen(uri, &err);
    if (!inner) {
        fail_msg("listen %s: %s", uri, rf_error_msg(err));
    }
    assert_non_null(inner->ops);
    assert_non_null(inner->ops->accept);
    assert_non_null(inner->ops->close);

    WrapListener *w = calloc(1, sizeof(*w));
    w->base.ops = &wrap_ops;
    w->inner = inner;
    snprintf(w->base.uri, sizeof(w->base.uri), "%s", inner->uri);
    char actual[RF_URI_CAP];
    snprintf(actual, sizeof(actual), "%s", inner->uri);

    Pair p = { .l = &w->base };
    p.c = rf_conn_connect(p.l->uri, 2000, &err);
    assert_non_null(p.c);
    p.a = rf_listener_accept(p.l, 2000, NULL, &err);
    if (!p.a) {
        fail_msg("accept %s: %s", actual, rf_error_msg(err));
    }
    assert_int_equal(w->accepts, 1);
    assert_int_equal(p.a->timeout_ms, 0);
    p.a->timeout_ms = 5000;
    p.c->timeout_ms = 5000;
    ping_pong(&p);

    /* Deadline and cancel work through the wrapper too. */
    accept_cancel_and_timeout(p.l);
    assert_int_equal(w->accepts, 3);

    wrap_closes = 0;
    pair_close(&p); /* closes the wrapper, which closes the inner one */
    assert_int_equal(wrap_closes, 1);
    /* The inner listener is really gone. */
    assert_null(rf_conn_connect(actual, 500, &err));
    expect_error(err, RF_ERR_IO, "connection refused");
}

static void test_listener_ops_tcp(void **state)
{
    (void)state;
    listener_ops("tcp:127.0.0.1:0");
}

static void test_listener_ops_unix(void **state)
{
    (void)state;
    char uri[140];
    snprintf(uri, sizeof(uri), "unix:%s/ops", tmpdir);
    listener_ops(uri);
    struct stat st;
    assert_int_equal(lstat(uri + 5, &st), -1); /* socket file removed */
}

/* --- adopting connected sockets ------------------------------------------ */

static void test_conn_from_fd_tcp(void **state)
{
    (void)state;
    RfError *err = NULL;
    Pair p;
    p.l = rf_listen("tcp:127.0.0.1:0", &err);
    assert_non_null(p.l);

    /* Source side: a connected socket made non-blocking by its owner. */
    int fd = raw_tcp_connect(uri_port(p.l->uri));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    p.c = rf_conn_from_fd(fd, &err);
    if (!p.c) {
        fail_msg("rf_conn_from_fd: %s", rf_error_msg(err));
    }
    assert_int_equal(p.c->timeout_ms, 0);
    assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0); /* blocking */
    p.a = rf_listener_accept(p.l, 2000, NULL, &err);
    assert_non_null(p.a);
    p.a->timeout_ms = 5000;
    p.c->timeout_ms = 5000;
    ping_pong(&p);
    /* Messages name the peer by its address. */
    rf_conn_close(p.a);
    p.a = NULL;
    char buf[8];
    assert_false(rf_conn_recv(p.c, buf, sizeof(buf), &err));
    assert_non_null(strstr(rf_error_msg(err), p.l->uri));
    expect_error(err, RF_ERR_IO, "connection closed by peer");
    err = NULL;
    rf_conn_close(p.c); /* owns fd */
    p.c = NULL;
    assert_false(fd_is_open(fd));
    pair_close(&p);

    /* Destination side: a socket the caller accepted itself. */
    unsigned port;
    int lfd = raw_tcp_bound(true, &port);
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", port);
    p.l = NULL;
    p.c = rf_conn_connect(uri, 2000, &err);
    assert_non_null(p.c);
    int afd = accept(lfd, NULL, NULL);
    assert_true(afd >= 0);
    p.a = rf_conn_from_fd(afd, &err);
    assert_non_null(p.a);
    p.a->timeout_ms = 5000;
    ping_pong(&p);
    pair_close(&p);
    assert_false(fd_is_open(afd));
    close(lfd);
}

static void test_conn_from_fd_unix(void **state)
{
    (void)state;
    RfError *err = NULL;
    char uri[140];
    snprintf(uri, sizeof(uri), "unix:%s/adopt", tmpdir);
    Pair p;
    p.l = rf_listen(uri, &err);
    assert_non_null(p.l);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun;
    socklen_t len = unix_addr(&sun, uri + 5);
    assert_int_equal(connect(fd, (struct sockaddr *)&sun, len), 0);
    p.c = rf_conn_from_fd(fd, &err);
    assert_non_null(p.c);
    p.a = rf_listener_accept(p.l, 2000, NULL, &err);
    assert_non_null(p.a);
    p.a->timeout_ms = 5000;
    p.c->timeout_ms = 5000;
    ping_pong(&p);
    pair_close(&p);
    assert_false(fd_is_open(fd));

    /* Both ends of a socketpair: connected, though neither has a name. */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    p.l = NULL;
    p.c = rf_conn_from_fd(sv[0], &err);
    p.a = rf_conn_from_fd(sv[1], &err);
    assert_non_null(p.c);
    assert_non_null(p.a);
    ping_pong(&p);
    pair_close(&p);
    assert_false(fd_is_open(sv[0]) || fd_is_open(sv[1]));
    assert_null(err);
}

/* --- adopting listening sockets ------------------------------------------ */

static void test_listener_from_fd_tcp(void **state)
{
    (void)state;
    RfError *err = NULL;
    unsigned port;
    int fd = raw_tcp_bound(true, &port);
    Pair p;
    p.l = rf_listener_from_fd(fd, &err);
    if (!p.l) {
        fail_msg("rf_listener_from_fd: %s", rf_error_msg(err));
    }
    char want[64];
    snprintf(want, sizeof(want), "tcp:127.0.0.1:%u", port);
    assert_string_equal(p.l->uri, want);
    /* Made non-blocking, so a client gone before accept() cannot hang. */
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    p.c = rf_conn_connect(p.l->uri, 2000, &err);
    assert_non_null(p.c);
    p.a = rf_listener_accept(p.l, 2000, NULL, &err);
    assert_non_null(p.a);
    p.a->timeout_ms = 5000;
    p.c->timeout_ms = 5000;
    ping_pong(&p);
    accept_cancel_and_timeout(p.l);
    pair_close(&p);
    assert_false(fd_is_open(fd));
}

static void test_listener_from_fd_unix(void **state)
{
    (void)state;
    RfError *err = NULL;
    char path[128], want[140];
    snprintf(path, sizeof(path), "%s/given", tmpdir);
    snprintf(want, sizeof(want), "unix:%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun;
    socklen_t len = unix_addr(&sun, path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, len), 0);
    assert_int_equal(listen(fd, 8), 0);
    Pair p;
    p.l = rf_listener_from_fd(fd, &err);
    assert_non_null(p.l);
    assert_string_equal(p.l->uri, want);
    p.c = rf_conn_connect(p.l->uri, 2000, &err);
    assert_non_null(p.c);
    p.a = rf_listener_accept(p.l, 2000, NULL, &err);
    assert_non_null(p.a);
    p.a->timeout_ms = 5000;
    p.c->timeout_ms = 5000;
    ping_pong(&p);
    pair_close(&p);
    assert_false(fd_is_open(fd));
    /* The socket file is the caller's: left in place. */
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    unlink(path);
}

/* --- refusals ------------------------------------------------------------ */

static void test_from_fd_refusals(void **state)
{
    (void)state;
    RfError *err = NULL;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    assert_null(rf_conn_from_fd(pfd[0], &err));
    expect_error(err, RF_ERR_PARAM, "is not a socket (it is a pipe");
    err = NULL;
    assert_null(rf_listener_from_fd(pfd[1], &err));
    expect_error(err, RF_ERR_PARAM, "is not a socket (it is a pipe");
    err = NULL;
    /* Refused descriptors stay the caller's. */
    assert_true(fd_is_open(pfd[0]) && fd_is_open(pfd[1]));
    close(pfd[0]);
    close(pfd[1]);

    assert_null(rf_conn_from_fd(-1, &err));
    expect_error(err, RF_ERR_PARAM, "not an open file descriptor");
    err = NULL;

    /* Bound but neither listening nor connected. */
    unsigned port;
    int fd = raw_tcp_bound(false, &port);
    int fl = fcntl(fd, F_GETFL);
    assert_null(rf_listener_from_fd(fd, &err));
    expect_error(err, RF_ERR_PARAM, "not listening");
    err = NULL;
    assert_null(rf_conn_from_fd(fd, &err));
    expect_error(err, RF_ERR_PARAM, "not connected");
    err = NULL;
    assert_true(fd_is_open(fd));
    assert_int_equal(fcntl(fd, F_GETFL), fl);
    close(fd);

    /* Listening, given as a connection. */
    fd = raw_tcp_bound(true, &port);
    assert_null(rf_conn_from_fd(fd, &err));
    expect_error(err, RF_ERR_PARAM, "is a listening socket");
    err = NULL;
    assert_true(fd_is_open(fd));
    close(fd);

    /* A connected datagram socket. */
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(9),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_null(rf_conn_from_fd(fd, &err));
    expect_error(err, RF_ERR_PARAM, "not a TCP or Unix stream socket");
    err = NULL;
    assert_null(rf_listener_from_fd(fd, &err));
    expect_error(err, RF_ERR_PARAM, "not a TCP or Unix stream socket");
    close(fd);
}

/* --- peer URI ------------------------------------------------------------ */

/* The peer URI of the connecting side is the listener's address, and a
 * second connection to it reaches the same listener. */
static void peer_uri_reaches_listener(Pair *p)
{
    RfError *err = NULL;
    char uri[RF_URI_CAP];
    if (!rf_conn_peer_uri(p->c, uri, sizeof(uri), &err)) {
        fail_msg("peer uri: %s", rf_error_msg(err));
    }
    assert_string_equal(uri, p->l->uri);
    RfConn *c2 = rf_conn_connect(uri, 2000, &err);
    assert_non_null(c2);
    RfConn *a2 = rf_listener_accept(p->l, 2000, NULL, &err);
    assert_non_null(a2);
    rf_conn_close(c2);
    rf_conn_close(a2);

    /* A buffer too small is an error, not a truncated URI. */
    char small[8];
    assert_false(rf_conn_peer_uri(p->c, small, sizeof(small), &err));
    expect_error(err, RF_ERR_PARAM, "only 8 given");
}

/* The accepting side's peer is the client's ephemeral port. */
static void peer_uri_of_client(Pair *p, const char *prefix)
{
    RfError *err = NULL;
    char uri[RF_URI_CAP];
    assert_true(rf_conn_peer_uri(p->a, uri, sizeof(uri), &err));
    assert_true(strncmp(uri, prefix, strlen(prefix)) == 0);
    unsigned port = uri_port(uri);
    assert_true(port > 0 && port < 65536);
    assert_int_not_equal(port, uri_port(p->l->uri));
}

static void test_peer_uri_tcp_ipv4(void **state)
{
    (void)state;
    Pair p;
    pair_open(&p, "tcp:127.0.0.1:0");
    peer_uri_reaches_listener(&p);
    peer_uri_of_client(&p, "tcp:127.0.0.1:");
    pair_close(&p);
}

static void test_peer_uri_tcp_ipv6(void **state)
{
    (void)state;
    if (!ipv6_configured()) {
        printf("SKIP: IPv6 loopback [::1] is not configured here\n");
        skip();
    }
    Pair p;
    pair_open(&p, "tcp:[::1]:0");
    peer_uri_reaches_listener(&p);
    peer_uri_of_client(&p, "tcp:[::1]:");
    pair_close(&p);
}

/* A dual-stack IPv6 socket connected to an IPv4 address: its peer is
 * named in IPv4 form. */
static void test_peer_uri_v4_mapped(void **state)
{
    (void)state;
    RfError *err = NULL;
    RfListener *l = rf_listen("tcp:127.0.0.1:0", &err);
    assert_non_null(l);
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a = { .sin6_family = AF_INET6,
                              .sin6_port = htons((uint16_t)uri_port(l->uri)) };
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &a.sin6_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        printf("SKIP: no IPv4-mapped IPv6 connect here: %s\n",
               strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        rf_listener_close(l);
        skip();
    }
    Pair p = { .l = l };
    p.c = rf_conn_from_fd(fd, &err);
    assert_non_null(p.c);
    p.a = rf_listener_accept(l, 2000, NULL, &err);
    assert_non_null(p.a);
    peer_uri_reaches_listener(&p);
    pair_close(&p);
}

static void test_peer_uri_unix(void **state)
{
    (void)state;
    RfError *err = NULL;
    char uri[140];
    snprintf(uri, sizeof(uri), "unix:%s/peer", tmpdir);
    Pair p;
    pair_open(&p, uri);
    peer_uri_reaches_listener(&p);
    /* The accepted side's peer is an unnamed client socket. */
    char got[RF_URI_CAP];
    assert_false(rf_conn_peer_uri(p.a, got, sizeof(got), &err));
    assert_non_null(strstr(rf_error_msg(err), uri)); /* names the conn */
    expect_error(err, RF_ERR_PARAM, "unnamed");
    err = NULL;
    pair_close(&p);

    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    RfConn *c = rf_conn_from_fd(sv[0], &err);
    assert_non_null(c);
    assert_false(rf_conn_peer_uri(c, got, sizeof(got), &err));
    expect_error(err, RF_ERR_PARAM, "unnamed");
    err = NULL;
    rf_conn_close(c);
    close(sv[1]);

    /* An abstract address has no unix:PATH form. */
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    int n = snprintf(sun.sun_path + 1, sizeof(sun.sun_path) - 1,
                     "rf-test-%d", (int)getpid());
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
                                1 + (size_t)n);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sun, len), 0);
    assert_int_equal(listen(lfd, 8), 0);
    int cfd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(connect(cfd, (struct sockaddr *)&sun, len), 0);
    c = rf_conn_from_fd(cfd, &err);
    assert_non_null(c);
    assert_false(rf_conn_peer_uri(c, got, sizeof(got), &err));
    expect_error(err, RF_ERR_PARAM, "abstract");
    err = NULL;
    rf_conn_close(c);
    /* Its listener is adopted under a descriptive, unconnectable name. */
    RfListener *l = rf_listener_from_fd(lfd, &err);
    assert_non_null(l);
    char want[32];
    snprintf(want, sizeof(want), "fd:%d", lfd);
    assert_string_equal(l->uri, want);
    rf_listener_close(l);
}

/* --- wait_readable ------------------------------------------------------- */

typedef struct LateSend {
    RfConn *conn;
    bool ok;
} LateSend;

static void *late_send(void *opaque)
{
    LateSend *ls = opaque;
    usleep(150 * 1000);
    ls->ok = rf_conn_send(ls->conn, "x", 1, NULL);
    return NULL;
}

static void wait_readable(const char *uri)
{
    Pair p;
    pair_open(&p, uri);
    RfError *err = NULL;

    /* Nothing sent: not readable, and the wait lasts as long as asked. */
    assert_false(rf_conn_wait_readable(p.a, 0));
    double t0 = now_s();
    assert_false(rf_conn_wait_readable(p.a, 150));
    double dt = now_s() - t0;
    assert_true(dt >= 0.14 && dt < 0.6);

    /* A byte arriving during the wait ends it early. */
    LateSend ls = { .conn = p.c };
    pthread_t th;
    pthread_create(&th, NULL, late_send, &ls);
    t0 = now_s();
    assert_true(rf_conn_wait_readable(p.a, 5000));
    dt = now_s() - t0;
    pthread_join(th, NULL);
    assert_true(ls.ok);
    assert_true(dt >= 0.1 && dt < 2.0);
    assert_true(rf_conn_wait_readable(p.a, 0)); /* still unread */

    /* Once read, nothing is left. */
    char b;
    assert_true(rf_conn_recv(p.a, &b, 1, &err));
    assert_int_equal(b, 'x');
    assert_false(rf_conn_wait_readable(p.a, 0));
    /* The other direction is independent. */
    assert_false(rf_conn_wait_readable(p.c, 0));

    /* The peer closing counts as readable: the receive then says so. */
    rf_conn_close(p.c);
    p.c = NULL;
    assert_true(rf_conn_wait_readable(p.a, 2000));
    assert_false(rf_conn_recv(p.a, &b, 1, &err));
    expect_error(err, RF_ERR_IO, "connection closed by peer");
    pair_close(&p);
}

static void test_wait_readable_tcp(void **state)
{
    (void)state;
    wait_readable("tcp:127.0.0.1:0");
}

static void test_wait_readable_unix(void **state)
{
    (void)state;
    char uri[140];
    snprintf(uri, sizeof(uri), "unix:%s/wait", tmpdir);
    wait_readable(uri);
}

static int setup_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/rf-transport-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_ipv4),
        cmocka_unit_test(test_tcp_ipv6),
        cmocka_unit_test(test_unix),
        cmocka_unit_test(test_big_vectored_tcp),
        cmocka_unit_test(test_big_vectored_unix),
        cmocka_unit_test(test_eof_mid_read),
        cmocka_unit_test(test_recv_stall_timeout),
        cmocka_unit_test(test_recv_trickle),
        cmocka_unit_test(test_frame_deadline),
        cmocka_unit_test(test_recv_cancel),
        cmocka_unit_test(test_connect_cancel),
        cmocka_unit_test(test_tcp_liveness),
        cmocka_unit_test(test_send_stall_timeout),
        cmocka_unit_test(test_rwnd_limited),
        cmocka_unit_test(test_send_to_dead_peer),
        cmocka_unit_test(test_shutdown_wakes_reader),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_bad_uris),
        cmocka_unit_test(test_listen_no_host),
        cmocka_unit_test(test_accept_cancel_and_timeout),
        cmocka_unit_test(test_listener_ops_tcp),
        cmocka_unit_test(test_listener_ops_unix),
        cmocka_unit_test(test_conn_from_fd_tcp),
        cmocka_unit_test(test_conn_from_fd_unix),
        cmocka_unit_test(test_listener_from_fd_tcp),
        cmocka_unit_test(test_listener_from_fd_unix),
        cmocka_unit_test(test_from_fd_refusals),
        cmocka_unit_test(test_peer_uri_tcp_ipv4),
        cmocka_unit_test(test_peer_uri_tcp_ipv6),
        cmocka_unit_test(test_peer_uri_v4_mapped),
        cmocka_unit_test(test_peer_uri_unix),
        cmocka_unit_test(test_wait_readable_tcp),
        cmocka_unit_test(test_wait_readable_unix),
    };
    return cmocka_run_group_tests(tests, setup_tmpdir, remove_tmpdir);
}
