/*
 * ramflow - the unix transport: "unix:PATH", a Unix-domain stream socket.
 * Creates and removes the socket file, then hands the socket to
 * socket.c's connection or listener.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "channel/socket.h"
#include "channel/uri.h"

#define RF_LISTEN_BACKLOG 512

static bool unix_sockaddr(const char *path, struct sockaddr_un *sun,
                          RfError **errp)
{
    if (!rf_unix_addr_check(path, errp)) {
        return false;
    }
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, strlen(path) + 1);
    return true;
}

/* Unix connect never says EINPROGRESS; a full backlog gives EAGAIN on a
 * non-blocking socket, so retry that until the deadline. */
static RfConn *unix_connect(const char *addr, unsigned timeout_ms,
                            atomic_int *cancel, RfError **errp)
{
    struct sockaddr_un sun;
    char uri[RF_URI_CAP];
    if (!unix_sockaddr(addr, &sun, errp)) {
        return NULL;
    }
    snprintf(uri, sizeof(uri), "unix:%s", addr);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        rf_error_set(errp, RF_ERR_IO, "%s: socket: %s", uri,
                     strerror(errno));
        return NULL;
    }
    long long deadline = timeout_ms ? rf_sock_now_ms() + timeout_ms : 0;
    int err;
    for (;;) {
        err = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0
                  ? 0 : errno;
        if (err == EINTR) {
            continue;
        }
        if (err != EAGAIN) {
            break;
        }
        if (deadline && rf_sock_now_ms() >= deadline) {
            err = ETIMEDOUT;
            break;
        }
        if (cancel && atomic_load(cancel)) {
            err = ECANCELED;
            break;
        }
        poll(NULL, 0, 2);
    }
    if (err == EINPROGRESS) {
        err = rf_sock_connect_wait(fd, deadline, cancel);
    }
    if (err) {
        close(fd);
        rf_sock_connect_error(errp, uri, err, timeout_ms);
        return NULL;
    }
    RfConn *c = rf_sock_conn_new(fd, uri, errp);
    if (!c) {
        close(fd);
        return NULL;
    }
    c->timeout_ms = timeout_ms;
    c->cancel = cancel;
    return c;
}

/* Removes a socket file left by a process that is gone, refusing to touch
 * anything that is not a socket or that still has a listener. */
static bool unix_clear_stale(const struct sockaddr_un *sun, RfError **errp)
{
    struct stat st;
    if (lstat(sun->sun_path, &st) < 0) {
        return true;
    }
    if (!S_ISSOCK(st.st_mode)) {
        rf_error_set(errp, RF_ERR_IO, "cannot listen on unix:%s: the path "
                     "exists and is not a socket", sun->sun_path);
        return false;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0) {
        int r = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
        int err = errno;
        close(fd);
        if (r == 0 || err == EAGAIN) {
            rf_error_set(errp, RF_ERR_IO, "cannot listen on unix:%s: "
                         "another process is listening there",
                         sun->sun_path);
            return false;
        }
    }
    unlink(sun->sun_path);
    return true;
}

static RfListener *unix_listen(const char *addr, RfError **errp)
{
    struct sockaddr_un sun;
    if (!unix_sockaddr(addr, &sun, errp) || !unix_clear_stale(&sun, errp)) {
        return NULL;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    bool bound = fd >= 0 &&
                 bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
    if (!bound || listen(fd, RF_LISTEN_BACKLOG) < 0) {
        rf_error_set(errp, RF_ERR_IO, "cannot listen on unix:%s: %s", addr,
                     strerror(errno));
        if (bound) {
            unlink(addr);
        }
        if (fd >= 0) {
            close(fd);
        }
        return NULL;
    }
    char uri[RF_URI_CAP];
    snprintf(uri, sizeof(uri), "unix:%s", addr);
    RfListener *l = rf_sock_listener_new(fd, uri, addr, errp);
    if (!l) {
        unlink(addr);
        close(fd);
    }
    return l;
}

const RfTransportOps rf_unix_transport = {
    .scheme = "unix",
    .connect = unix_connect,
    .listen = unix_listen,
};
