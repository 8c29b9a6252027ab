/*
 * ramflow bench - a minimal QMP client for --compare qemu: one unix
 * socket, one command at a time, one JSON object per line (QEMU's QMP
 * ends every message with CRLF).  Asynchronous events between a command
 * and its answer are skipped: the bench polls query-migrate instead.
 */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "bench/bench_common.h"
#include "control/cli.h"
#include "util/clock.h"

#define QMP_TIMEOUT_S 30.0

struct RfQmp {
    int fd;
    char buf[65536];
    size_t len;                  /* bytes in buf not yet parsed */
};

/* Reads one message line into a JSON object (new reference).  @return
 * NULL with an error on EOF, timeout, cancel or bad JSON. */
static json_t *read_msg(RfQmp *q, RfError **errp)
{
    double t0 = rf_now();
    for (;;) {
        char *nl = memchr(q->buf, '\n', q->len);
        if (nl) {
            *nl = '\0';
            json_error_t je;
            json_t *o = json_loads(q->buf, 0, &je);
            size_t used = (size_t)(nl + 1 - q->buf);
            memmove(q->buf, nl + 1, q->len - used);
            q->len -= used;
            if (!json_is_object(o)) {
                json_decref(o);
                rf_error_set(errp, RF_ERR_PROTOCOL, "QMP: not a JSON "
                             "object: %s", je.text);
                return NULL;
            }
            return o;
        }
        if (q->len == sizeof(q->buf)) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "QMP: message too long");
            return NULL;
        }
        double left = QMP_TIMEOUT_S - (rf_now() - t0);
        if (left <= 0 || rf_cli_cancel) {
            rf_error_set(errp, rf_cli_cancel ? RF_ERR_CANCELLED
                                             : RF_ERR_TIMEOUT,
                         "QMP: no answer from QEMU%s",
                         rf_cli_cancel ? " (cancelled)" : " within 30 s");
            return NULL;
        }
        struct pollfd p = {.fd = q->fd, .events = POLLIN};
        if (poll(&p, 1, 200) <= 0) {
            continue;
        }
        ssize_t n = read(q->fd, q->buf + q->len, sizeof(q->buf) - q->len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rf_error_set(errp, RF_ERR_IO, "QMP: QEMU closed the monitor%s%s",
                         n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
            return NULL;
        }
        q->len += (size_t)n;
    }
}

/* Sends one object as a line.  Steals msg. */
static bool send_msg(RfQmp *q, json_t *msg, RfError **errp)
{
    char *s = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!s) {
        rf_error_set(errp, RF_ERR_GENERIC, "QMP: cannot encode a command");
        return false;
    }
    size_t len = strlen(s), off = 0;
    s[len] = '\n'; /* json_dumps' terminator becomes the line end */
    while (off < len + 1) {
        ssize_t n = send(q->fd, s + off, len + 1 - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rf_error_set(errp, RF_ERR_IO, "QMP: send: %s", strerror(errno));
            free(s);
            return false;
        }
        off += (size_t)n;
    }
    free(s);
    return true;
}

RfQmp *rf_qmp_connect(const char *path, double timeout_s, RfError **errp)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        rf_error_set(errp, RF_ERR_PARAM, "QMP socket path too long: %s",
                     path);
        return NULL;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    RfQmp *q = calloc(1, sizeof(*q));
    if (!q) {
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory");
        return NULL;
    }
    /* QEMU creates the socket while it starts: retry until it is there. */
    double t0 = rf_now();
    int err = 0;
    do {
        q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (q->fd >= 0 &&
            connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            break;
        }
        err = errno;
        if (q->fd >= 0) {
            close(q->fd);
        }
        q->fd = -1;
        rf_sleep(0.05);
    } while (!rf_cli_cancel && rf_now() - t0 < timeout_s);
    if (q->fd < 0) {
        rf_error_set(errp, RF_ERR_IO, "QMP: cannot connect to %s: %s", path,
                     rf_cli_cancel ? "cancelled" : strerror(err));
        free(q);
        return NULL;
    }
    json_t *greeting = read_msg(q, errp);
    bool ok = greeting && json_object_get(greeting, "QMP");
    if (greeting && !ok) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "QMP: no greeting from QEMU");
    }
    json_decref(greeting);
    json_t *r = ok ? rf_qmp_call(q, "qmp_capabilities", NULL, errp) : NULL;
    if (!r) {
        rf_qmp_close(q);
        return NULL;
    }
    json_decref(r);
    return q;
}

json_t *rf_qmp_call(RfQmp *q, const char *cmd, json_t *args, RfError **errp)
{
    json_t *msg = json_pack("{s:s}", "execute", cmd);
    if (args) {
        json_object_set_new(msg, "arguments", args);
    }
    if (!send_msg(q, msg, errp)) {
        return NULL;
    }
    for (;;) {
        json_t *o = read_msg(q, errp);
        if (!o) {
            return NULL;
        }
        json_t *ret = json_object_get(o, "return");
        json_t *e = json_object_get(o, "error");
        if (ret) {
            json_incref(ret);
            json_decref(o);
            return ret;
        }
        if (e) {
            const char *desc = json_string_value(json_object_get(e, "desc"));
            rf_error_set(errp, RF_ERR_GENERIC, "QEMU refused %s: %s", cmd,
                         desc ? desc : "(no description)");
            json_decref(o);
            return NULL;
        }
        json_decref(o); /* an event */
    }
}

void rf_qmp_close(RfQmp *q)
{
    if (q) {
        if (q->fd >= 0) {
            close(q->fd);
        }
        free(q);
    }
}
