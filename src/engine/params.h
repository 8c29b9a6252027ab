/*
 * ramflow - the parameter set's layout, private to the library and its
 * tests.  The public API sees RfParams as an opaque object (ramflow.h), so
 * fields can be added here without breaking callers.
 */
#ifndef RF_ENGINE_PARAMS_H
#define RF_ENGINE_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

#include "ramflow/ramflow.h"

#define RF_PARAM_PATH_MAX 1024
#define RF_PARAM_TEXT_MAX 4096

struct RfParams {
    unsigned multifd_channels;   /* multifd-channels, 1-255, default 2 */
    char multifd_compression[RF_METHOD_NAME_MAX + 1]; /* default "none" */
    int multifd_zlib_level;      /* multifd-zlib-level, 0-9, default 1 */
    int multifd_zstd_level;      /* multifd-zstd-level, 0-20, default 1 */
    int multifd_qatzip_level;    /* multifd-qatzip-level, 1-9, default 1 */
    uint64_t max_bandwidth;      /* max-bandwidth, bytes/s, 0 = unlimited */
    uint64_t downtime_limit;     /* downtime-limit, ms, 0-2000000, def 300 */
    unsigned max_rounds;         /* max-rounds, 1-10000, default 30 */
    unsigned timeout_ms;         /* timeout, 100-3600000, default 30000 */
    unsigned tcp_keepalive_s;    /* tcp-keepalive, s, 0 = timeout / 2 */
    unsigned tcp_user_timeout_ms; /* tcp-user-timeout, ms, 0 = timeout */
    /* multifd-reconnect-attempts, 0-100, default 3 (0 = a broken data
     * channel fails the migration); multifd-reconnect-backoff, ms before
     * the first attempt (doubling), 0-60000, default 200. */
    unsigned multifd_reconnect_attempts;
    unsigned multifd_reconnect_backoff_ms;
    /* Security (docs/security.md); strings, "" = unset. */
    char tls_creds[RF_PARAM_PATH_MAX];    /* tls-creds: x509 directory */
    char tls_psk[RF_PARAM_PATH_MAX];      /* tls-psk: keys.psk directory */
    char tls_psk_username[128];           /* tls-psk-username, def. qemu */
    char tls_hostname[256];               /* tls-hostname */
    char tls_authz[RF_PARAM_TEXT_MAX];    /* tls-authz: "DN;DN" or names */
    char tls_authz_file[RF_PARAM_PATH_MAX]; /* tls-authz-file */
    char allow_peer[RF_PARAM_TEXT_MAX];   /* allow-peer: "CIDR,CIDR" */
    bool insecure;               /* insecure: plaintext off loopback */
    uint64_t max_memory;         /* max-memory, bytes, 0 = the sink's cap */
    bool crc32c;                 /* crc32c: source CRCs packets, def. on */
    unsigned max_cpu_milli;      /* max-cpu, 1/1000 core, 0 = no limit */
    /* multifd-auto-methods: what 'auto' chooses from, a comma list of
     * methods (zstd stands for levels 1-3), default none,zstd,qatzip */
    char multifd_auto_methods[128];
    bool auto_converge;          /* capability auto-converge */
    bool verify;                 /* capability verify */
    uint32_t explicit_set;       /* bit i: parameter i set by rf_params_set */
};

/* Fills *p with the defaults (for stack-allocated sets inside the
 * library and its tests). */
void rf_params_init(RfParams *p);

/* The level parameter value for a method (RfMethodOps.level_param). */
int rf_params_level(const RfParams *p, const char *level_param);

/* Whether parameter `name` was set explicitly by rf_params_set. */
bool rf_params_is_explicit(const RfParams *p, const char *name);

#define RF_AUTO_METHODS_DEFAULT "none,zstd,qatzip"

/* Checks multifd-auto-methods (every item a method, built unless it is
 * the default list, where unbuilt ones are left out) and, when cfg is
 * not NULL, fills its candidates: none first, zstd as levels 1-3, the
 * others at their level parameter, leaving out those whose bit is not
 * in dst_mask (the methods the destination decodes). */
struct RfAutoConfig;
bool rf_auto_candidates(const RfParams *p, uint32_t dst_mask,
                        struct RfAutoConfig *cfg, RfError **errp);

/* Whether `name` may change while a migration runs (QEMU's list). */
bool rf_params_live(const char *name);

#endif
