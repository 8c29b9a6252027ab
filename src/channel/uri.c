/*
 * ramflow - transport addresses: "tcp:" and "unix:" address parsing, and
 * the URI of a socket address (to name an adopted socket's peer so that
 * more channels can be opened to it).
 */
#include "channel/uri.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

bool rf_tcp_addr_parse(const char *addr, bool allow_zero,
                       char host[RF_HOST_MAX + 1], unsigned *port,
                       RfError **errp)
{
    const char *hs, *he, *ps;
    if (addr[0] == '[') {
        hs = addr + 1;
        he = strchr(hs, ']');
        if (!he || he[1] != ':') {
            rf_error_set(errp, RF_ERR_PARAM,
                         "address 'tcp:%s': IPv6 literal needs the form "
                         "[ADDR]:PORT; expected %s", addr, RF_URI_FORMS);
            return false;
        }
        ps = he + 2;
    } else {
        hs = addr;
        he = strrchr(addr, ':');
        if (!he || memchr(hs, ':', (size_t)(he - hs))) {
            rf_error_set(errp, RF_ERR_PARAM,
                         "address 'tcp:%s': %s; expected %s", addr,
                         he ? "an IPv6 address must be in brackets"
                            : "no port", RF_URI_FORMS);
            return false;
        }
        ps = he + 1;
    }
    size_t hlen = (size_t)(he - hs);
    if (hlen == 0 || hlen > RF_HOST_MAX) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "address 'tcp:%s': host is %s (1-%u bytes allowed); "
                     "expected %s", addr, hlen ? "too long" : "empty",
                     RF_HOST_MAX, RF_URI_FORMS);
        return false;
    }
    unsigned long p = 0;
    const char *q = ps;
    while (*q >= '0' && *q <= '9' && p <= 65535) {
        p = p * 10 + (unsigned long)(*q++ - '0');
    }
    if (q == ps || *q || p > 65535 || (p == 0 && !allow_zero)) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "address 'tcp:%s': port '%s' is not a number in "
                     "%s-65535; expected %s", addr, ps,
                     allow_zero ? "0" : "1", RF_URI_FORMS);
        return false;
    }
    memcpy(host, hs, hlen);
    host[hlen] = '\0';
    *port = (unsigned)p;
    return true;
}

bool rf_unix_addr_check(const char *addr, RfError **errp)
{
    size_t len = strlen(addr);
    if (len == 0 || len >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "address 'unix:%s': socket path is %s (1-%zu bytes "
                     "allowed); expected %s", addr,
                     len ? "too long" : "empty",
                     sizeof(((struct sockaddr_un *)0)->sun_path) - 1,
                     RF_URI_FORMS);
        return false;
    }
    return true;
}

/* Writes the "%SCOPE" suffix of a link-local IPv6 address (interface name,
 * or its index if it has none) so that connecting to the URI picks the
 * same link; empty for a global address. */
static void ipv6_scope(const struct sockaddr_in6 *in6, char *out,
                       size_t cap)
{
    char ifname[IF_NAMESIZE];
    out[0] = '\0';
    if (!in6->sin6_scope_id) {
        return;
    }
    if (if_indextoname(in6->sin6_scope_id, ifname)) {
        snprintf(out, cap, "%%%s", ifname);
    } else {
        snprintf(out, cap, "%%%u", (unsigned)in6->sin6_scope_id);
    }
}

bool rf_sockaddr_uri(const struct sockaddr *sa, socklen_t len, char *out,
                     size_t cap, RfError **errp)
{
    char ip[INET6_ADDRSTRLEN], scope[IF_NAMESIZE + 2];
    int n;
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        n = snprintf(out, cap, "tcp:%s:%u", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6 &&
               len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            /* A dual-stack socket talking IPv4: name it as IPv4 so the
             * URI also works from an IPv4-only socket. */
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], ip, sizeof(ip));
            n = snprintf(out, cap, "tcp:%s:%u", ip, ntohs(in6->sin6_port));
        } else {
            inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
            ipv6_scope(in6, scope, sizeof(scope));
            n = snprintf(out, cap, "tcp:[%s%s]:%u", ip, scope,
                         ntohs(in6->sin6_port));
        }
    } else if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *sun = (const void *)sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t max = len > off ? len - off : 0;
        if (max > sizeof(sun->sun_path)) {
            max = sizeof(sun->sun_path);
        }
        if (max == 0 || (max == 1 && sun->sun_path[0] == '\0')) {
            rf_error_set(errp, RF_ERR_PARAM, "the unix socket is unnamed "
                         "(not bound to a path, e.g. a connecting client "
                         "or one end of socketpair()): no unix:PATH "
                         "reaches it");
            return false;
        }
        if (sun->sun_path[0] == '\0') {
            rf_error_set(errp, RF_ERR_PARAM, "the unix socket has an "
                         "abstract address (no file), which unix:PATH "
                         "cannot name");
            return false;
        }
        /* sun_path need not be NUL-terminated when it is full. */
        n = snprintf(out, cap, "unix:%.*s",
                     (int)strnlen(sun->sun_path, max), sun->sun_path);
    } else {
        rf_error_set(errp, RF_ERR_PARAM, "socket address family %d has no "
                     "URI form; expected %s", sa->sa_family, RF_URI_FORMS);
        return false;
    }
    if (n < 0 || (size_t)n >= cap) {
        rf_error_set(errp, RF_ERR_PARAM, "the address URI needs %d bytes, "
                     "only %zu given", n + 1, cap);
        return false;
    }
    return true;
}
