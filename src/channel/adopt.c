/*
 * ramflow - adopting sockets the caller made: an embedding VMM may start
 * the source on a connected socket, or the destination on a listening or
 * an accepted one.  The socket is checked first (a stream socket of a
 * family the transports speak, listening or connected as asked) so that a
 * wrong descriptor fails here with a clear message rather than later in
 * the middle of a migration.  The socket then gets the same connection or
 * listener as tcp.c and unix.c make.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "channel/socket.h"
#include "channel/uri.h"

/* Names what fd is when it is not a socket, for the error message. */
static const char *file_kind(mode_t mode)
{
    if (S_ISFIFO(mode)) {
        return "a pipe or FIFO";
    }
    if (S_ISREG(mode)) {
        return "a regular file";
    }
    if (S_ISDIR(mode)) {
        return "a directory";
    }
    if (S_ISCHR(mode)) {
        return "a character device";
    }
    if (S_ISBLK(mode)) {
        return "a block device";
    }
    return "not a socket";
}

static int sockopt_int(int fd, int opt, int *val)
{
    socklen_t len = sizeof(*val);
    return getsockopt(fd, SOL_SOCKET, opt, val, &len);
}

/* Checks that fd is a TCP (IPv4/IPv6) or Unix stream socket that listens
 * if `listening`, else is connected.  fn names the caller in messages. */
static bool sock_check(int fd, bool listening, const char *fn,
                       RfError **errp)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        rf_error_set(errp, RF_ERR_PARAM, "%s: fd %d is not an open file "
                     "descriptor", fn, fd);
        return false;
    }
    if (!S_ISSOCK(st.st_mode)) {
        rf_error_set(errp, RF_ERR_PARAM, "%s: fd %d is not a socket (it is "
                     "%s)", fn, fd, file_kind(st.st_mode));
        return false;
    }
    int type = 0, domain = 0, proto = 0, acc = 0;
    if (sockopt_int(fd, SO_TYPE, &type) < 0 ||
        sockopt_int(fd, SO_DOMAIN, &domain) < 0 ||
        sockopt_int(fd, SO_PROTOCOL, &proto) < 0 ||
        sockopt_int(fd, SO_ACCEPTCONN, &acc) < 0) {
        rf_error_set(errp, RF_ERR_PARAM, "%s: fd %d: reading its socket "
                     "options: %s", fn, fd, strerror(errno));
        return false;
    }
    bool inet = domain == AF_INET || domain == AF_INET6;
    if (type != SOCK_STREAM || (!inet && domain != AF_UNIX) ||
        (inet && proto != IPPROTO_TCP)) {
        rf_error_set(errp, RF_ERR_PARAM, "%s: fd %d is not a TCP or Unix "
                     "stream socket (family %d, type %d, protocol %d)", fn,
                     fd, domain, type, proto);
        return false;
    }
    if (listening && !acc) {
        rf_error_set(errp, RF_ERR_PARAM, "%s: fd %d is a socket that is "
                     "not listening (call listen() on it first)", fn, fd);
        return false;
    }
    if (!listening && acc) {
        rf_error_set(errp, RF_ERR_PARAM, "%s: fd %d is a listening socket, "
                     "not a connected one (use rf_listener_from_fd)", fn,
                     fd);
        return false;
    }
    return true;
}

/* Names fd's local end: the URI of its address, or "fd:N" when it has
 * none (an unnamed or abstract unix socket). */
static void local_name(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
        !rf_sockaddr_uri((struct sockaddr *)&ss, len, out, cap, NULL)) {
        snprintf(out, cap, "fd:%d", fd);
    }
}

RfConn *rf_conn_from_fd(int fd, RfError **errp)
{
    static const char fn[] = "rf_conn_from_fd";
    if (!sock_check(fd, false, fn, errp)) {
        return NULL;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) {
        rf_error_set(errp, RF_ERR_PARAM, "%s: fd %d is a socket that is "
                     "not connected: %s", fn, fd, strerror(errno));
        return NULL;
    }
    /* As for an accepted unix client, a peer without a name is called
     * after our own end. */
    char peer[RF_URI_CAP];
    if (!rf_sockaddr_uri((struct sockaddr *)&ss, len, peer, sizeof(peer),
                         NULL)) {
        local_name(fd, peer, sizeof(peer));
    }
    return rf_sock_conn_new(fd, peer, errp);
}

RfListener *rf_listener_from_fd(int fd, RfError **errp)
{
    static const char fn[] = "rf_listener_from_fd";
    if (!sock_check(fd, true, fn, errp)) {
        return NULL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) &&
                   fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)) {
        rf_error_set(errp, RF_ERR_IO, "%s: fd %d: making it non-blocking: "
                     "%s", fn, fd, strerror(errno));
        return NULL;
    }
    char uri[RF_URI_CAP];
    local_name(fd, uri, sizeof(uri));
    /* The socket file is the caller's: never removed (NULL unix_path). */
    RfListener *l = rf_sock_listener_new(fd, uri, NULL, errp);
    if (!l && !(fl & O_NONBLOCK)) {
        fcntl(fd, F_SETFL, fl);  /* "left unchanged" on failure */
    }
    return l;
}
