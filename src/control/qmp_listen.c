/*
 * ramflow - the monitors' listening sockets: unix:PATH created 0600, and
 * tcp:[HOST]:PORT on loopback unless HOST says otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/qmp.h"

_Static_assert(QMP_UNIX_PATH_MAX == sizeof(((struct sockaddr_un *)0)->sun_path),
               "QMP_UNIX_PATH_MAX is sun_path's size");

/* unix:PATH, created 0600 so only this user can drive the migration. */
static int listen_unix(const char *path, char *unix_path, RfError **errp)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path) || !path[0]) {
        rf_error_set(errp, RF_ERR_PARAM, "--qmp unix:%s: bad path", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        unlink(path); /* a stale socket of an earlier run */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rf_error_set(errp, RF_ERR_IO, "--qmp: socket: %s", strerror(errno));
        return -1;
    }
    mode_t old = umask(077);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc < 0 || chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
        rf_error_set(errp, RF_ERR_IO, "--qmp unix:%s: %s", path,
                     strerror(errno));
        close(fd);
        return -1;
    }
    snprintf(unix_path, QMP_UNIX_PATH_MAX, "%s", path);
    return fd;
}

/* tcp:[HOST]:PORT; no HOST means loopback (never every interface). */
static int listen_tcp(const char *addr, RfError **errp)
{
    char host[256], port[16];
    const char *colon = strrchr(addr, ':');
    size_t hl = colon ? (size_t)(colon - addr) : 0;
    if (!colon || hl >= sizeof(host) || strlen(colon + 1) >= sizeof(port) ||
        !colon[1]) {
        rf_error_set(errp, RF_ERR_PARAM, "--qmp tcp:%s: expected "
                     "tcp:[HOST]:PORT", addr);
        return -1;
    }
    memcpy(host, addr, hl);
    host[hl] = '\0';
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    snprintf(port, sizeof(port), "%s", colon + 1);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(host[0] ? host : "127.0.0.1", port, &hints, &ai);
    if (gai != 0) {
        rf_error_set(errp, RF_ERR_PARAM, "--qmp tcp:%s: %s", addr,
                     gai_strerror(gai));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 16) < 0) {
        rf_error_set(errp, RF_ERR_IO, "--qmp tcp:%s: %s", addr,
                     strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    return fd;
}

/* Says where a tcp: monitor listens (port 0 resolved) on stderr. */
static void announce_tcp(int fd, const char *what)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
        getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), serv,
                    sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
        fprintf(stderr, "ramflow: %s on tcp:%s%s%s:%s\n", what,
                strchr(host, ':') ? "[" : "", host,
                strchr(host, ':') ? "]" : "", serv);
    }
}

int qmp_listen(const char *addr, const char *opt, const char *what,
               char *unix_path, RfError **errp)
{
    int fd;
    unix_path[0] = '\0';
    if (!strncmp(addr, "unix:", 5)) {
        fd = listen_unix(addr + 5, unix_path, errp);
    } else if (!strncmp(addr, "tcp:", 4)) {
        fd = listen_tcp(addr + 4, errp);
        if (fd >= 0) {
            announce_tcp(fd, what);
        }
    } else {
        rf_error_set(errp, RF_ERR_PARAM, "%s %s: expected unix:PATH or "
                     "tcp:[HOST]:PORT", opt, addr);
        return -1;
    }
    /* Non-blocking: accept() must never stall the server thread. */
    int fl = fd >= 0 ? fcntl(fd, F_GETFL) : -1;
    if (fd >= 0 && (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)) {
        rf_error_set(errp, RF_ERR_IO, "%s %s: %s", opt, addr,
                     strerror(errno));
        close(fd);
        if (unix_path[0]) {
            unlink(unix_path);
        }
        return -1;
    }
    return fd;
}
