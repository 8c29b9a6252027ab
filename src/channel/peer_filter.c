/*
 * ramflow - the peer filter (allow-peer "CIDR[,CIDR...]") and
 * rf_uri_is_local(): which addresses may connect, which can only be
 * reached from this host.  Pure address arithmetic, no I/O.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "channel/secure.h"
#include "channel/tls.h"
#include "channel/uri.h"

typedef struct PeerNet {
    int family;        /* AF_INET or AF_INET6 */
    uint8_t addr[16];  /* network address, 4 or 16 bytes used */
    unsigned bits;     /* prefix length */
} PeerNet;

struct RfPeerFilter {
    size_t n;
    PeerNet nets[];
};

/* Parses "ADDR" or "ADDR/BITS" (IPv6 possibly in brackets) into *net. */
static bool net_parse(const char *s, PeerNet *net)
{
    char buf[INET6_ADDRSTRLEN + 8];
    if (strlen(s) >= sizeof(buf)) {
        return false;
    }
    snprintf(buf, sizeof(buf), "%s", s);
    char *slash = strchr(buf, '/');
    long bits = -1;
    if (slash) {
        char *end;
        *slash = '\0';
        bits = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end || bits < 0) {
            return false;
        }
    }
    char *a = buf;
    size_t len = strlen(a);
    if (len >= 2 && a[0] == '[' && a[len - 1] == ']') {
        a[len - 1] = '\0';
        a++;
    }
    if (inet_pton(AF_INET, a, net->addr) == 1) {
        net->family = AF_INET;
    } else if (inet_pton(AF_INET6, a, net->addr) == 1) {
        net->family = AF_INET6;
    } else {
        return false;
    }
    long max = net->family == AF_INET ? 32 : 128;
    if (bits > max) {
        return false;
    }
    net->bits = (unsigned)(bits < 0 ? max : bits);
    return true;
}

RfPeerFilter *rf_peer_filter_new(const char *spec, RfError **errp)
{
    size_t cap = 1;
    for (const char *p = spec; *p; p++) {
        cap += *p == ',';
    }
    RfPeerFilter *f = calloc(1, sizeof(*f) + cap * sizeof(PeerNet));
    char *copy = strdup(spec);
    if (!f || !copy) {
        free(f);
        free(copy);
        rf_error_set(errp, RF_ERR_GENERIC, "allow-peer: out of memory");
        return NULL;
    }
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok)) {
            tok++;
        }
        char *end = tok + strlen(tok);
        while (end > tok && isspace((unsigned char)end[-1])) {
            *--end = '\0';
        }
        if (!*tok) {
            continue;
        }
        if (!net_parse(tok, &f->nets[f->n])) {
            rf_error_set(errp, RF_ERR_PARAM, "allow-peer: '%s' is not an "
                         "address or a network (expected e.g. 192.0.2.7, "
                         "10.0.0.0/8 or fd00::/64)", tok);
            free(copy);
            free(f);
            return NULL;
        }
        f->n++;
    }
    free(copy);
    if (f->n == 0) {
        rf_error_set(errp, RF_ERR_PARAM, "allow-peer: '%s' names no "
                     "network", spec);
        free(f);
        return NULL;
    }
    return f;
}

void rf_peer_filter_free(RfPeerFilter *f)
{
    free(f);
}

/* Whether the first `bits` bits of a and b agree. */
static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0) {
        return false;
    }
    if (!rest) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return ((a[whole] ^ b[whole]) & mask) == 0;
}

bool rf_peer_filter_allows(const RfPeerFilter *f, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_UNIX) {
        return true;
    }
    const uint8_t *addr;
    int family = sa->sa_family;
    if (family == AF_INET) {
        addr = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (family == AF_INET6) {
        const struct in6_addr *a6 =
            &((const struct sockaddr_in6 *)sa)->sin6_addr;
        addr = a6->s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            family = AF_INET;  /* ::ffff:a.b.c.d is the IPv4 peer a.b.c.d */
            addr += 12;
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < f->n; i++) {
        if (f->nets[i].family == family &&
            prefix_equal(addr, f->nets[i].addr, f->nets[i].bits)) {
            return true;
        }
    }
    return false;
}

bool rf_uri_is_local(const char *uri)
{
    if (!uri) {
        return false;
    }
    if (strncmp(uri, "unix:", 5) == 0) {
        return true;
    }
    if (strncmp(uri, "tcp:", 4) == 0 && uri[4] == ':') {
        return true;  /* "tcp::PORT": rf_listen binds it to 127.0.0.1 */
    }
    char host[RF_HOST_MAX + 1];
    unsigned port;
    if (strncmp(uri, "tcp:", 4) != 0 ||
        !rf_tcp_addr_parse(uri + 4, true, host, &port, NULL)) {
        return false;
    }
    if (!host[0] || strcasecmp(host, "localhost") == 0) {
        return true;
    }
    uint8_t a[16];
    if (inet_pton(AF_INET, host, a) == 1) {
        return a[0] == 127;
    }
    if (inet_pton(AF_INET6, host, a) == 1) {
        const struct in6_addr *a6 = (const struct in6_addr *)a;
        return IN6_IS_ADDR_LOOPBACK(a6) ||
               (IN6_IS_ADDR_V4MAPPED(a6) && a[12] == 127);
    }
    return false;
}
