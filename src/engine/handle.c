/*
 * ramflow - the migration handle (RfMigration): the public, embeddable face
 * of the engine.
 *
 * The handle owns a copy of the parameters and the callbacks, runs the
 * engine (rf_migrate / rf_incoming) on the migration thread, and is the
 * meeting point of that thread with the caller's: the status (an atomic),
 * the cancel flag (an atomic the engine polls), the figures for query and
 * the live parameters (RfEngineShared, under its lock), and the end (a
 * condition variable).  Callbacks reach the caller through adapters here,
 * so the engine's options keep their own, simpler signatures.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "channel/transport.h"
#include "engine/engine.h"
#include "engine/params.h"
#include "ram/ram.h"

typedef enum { ROLE_NONE, ROLE_SOURCE, ROLE_DEST } Role;

struct RfMigration {
    RfParams params;
    RfCallbacks cb;
    Role role;
    char *uri;
    RfRamSource *src;
    RfRamSink *sink;
    RfConn *conn;          /* _fd starts: the caller's socket */
    RfListener *listener;
    RfSecure *secure;      /* TLS credentials and peer filter, or NULL */
    atomic_int cancel;
    atomic_int status;     /* RfStatus */
    RfEngineShared shared;
    pthread_t thread;
    bool threaded;
    bool joined;
    /* the end, under `lock` */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool started, ended, ok;
    bool settled;          /* rep and auto_json final (before the last
                            * status is published, so a client that sees
                            * it can read the report) */
    RfError *err;
    RfReport rep;
    char *auto_json;       /* 'auto': the decision log, once settled */
    double started_at;
};

void rf_engine_publish(RfEngineShared *sh, const RfMigrationInfo *info)
{
    pthread_mutex_lock(&sh->lock);
    size_t size = sh->info.size;
    RfStatus st = sh->info.status;
    sh->info = *info;
    sh->info.size = size;
    sh->info.status = st;
    pthread_mutex_unlock(&sh->lock);
}

const char *rf_status_name(RfStatus status)
{
    static const char *const names[] = {
        [RF_STATUS_NONE] = "none",           [RF_STATUS_SETUP] = "setup",
        [RF_STATUS_ACTIVE] = "active",       [RF_STATUS_DEVICE] = "device",
        [RF_STATUS_COMPLETED] = "completed", [RF_STATUS_FAILED] = "failed",
        [RF_STATUS_CANCELLING] = "cancelling",
        [RF_STATUS_CANCELLED] = "cancelled",
    };
    if ((unsigned)status < sizeof(names) / sizeof(names[0])) {
        return names[status];
    }
    return "unknown";
}

/* ---- adapters from the engine's hooks to the caller's callbacks -------- */

static void emit_status(RfMigration *m, RfStatus st)
{
    atomic_store(&m->status, (int)st);
    if (m->cb.status) {
        m->cb.status(m, st, m->cb.opaque);
    }
}

/* The engine reports setup/active/device; once cancel was asked, the
 * status stays "cancelling" until the end. */
static void on_status(RfStatus st, void *opaque)
{
    RfMigration *m = opaque;
    if (atomic_load(&m->cancel)) {
        return;
    }
    emit_status(m, st);
}

static void on_progress(const RfProgress *p, void *opaque)
{
    RfMigration *m = opaque;
    if (m->cb.progress) {
        m->cb.progress(m, p, m->cb.opaque);
    }
}

static void on_pass(unsigned pass, void *opaque)
{
    RfMigration *m = opaque;
    if (m->cb.pass) {
        m->cb.pass(m, pass, m->cb.opaque);
    }
}

static void on_listening(const char *uri, void *opaque)
{
    RfMigration *m = opaque;
    if (m->cb.listening) {
        m->cb.listening(m, uri, m->cb.opaque);
    }
}

static void on_pause(void *opaque)
{
    RfMigration *m = opaque;
    m->cb.pause(m->cb.opaque);
}

static void on_resume(void *opaque)
{
    RfMigration *m = opaque;
    m->cb.resume(m->cb.opaque);
}

static bool on_save_state(void *opaque, uint8_t **buf, size_t *len,
                          RfError **errp)
{
    RfMigration *m = opaque;
    return m->cb.save_state(m->cb.opaque, buf, len, errp);
}

static bool on_load_state(void *opaque, const uint8_t *buf, size_t len,
                          RfError **errp)
{
    RfMigration *m = opaque;
    return m->cb.load_state(m->cb.opaque, buf, len, errp);
}

static void on_throttle(unsigned pct, void *opaque)
{
    RfMigration *m = opaque;
    m->cb.throttle(pct, m->cb.opaque);
}

static void on_rejected(const char *peer, const char *why, void *opaque)
{
    RfMigration *m = opaque;
    if (m->cb.rejected) {
        m->cb.rejected(m, peer, why, m->cb.opaque);
    }
}

/* Loads the TLS credentials and peer filter the parameters name, at
 * start so that a missing file fails the start call itself.  Nothing is
 * loaded (NULL) when no security parameter is set. */
static bool load_security(RfMigration *m, bool server, RfError **errp)
{
    const RfParams *p = &m->params;
    if (!p->tls_creds[0] && !p->tls_psk[0] && !p->allow_peer[0]) {
        return true;
    }
    RfSecureConfig cfg = {
        .tls_creds = p->tls_creds,
        .tls_psk = p->tls_psk,
        .psk_username = p->tls_psk_username,
        .hostname = p->tls_hostname,
        .authz = p->tls_authz,
        .authz_file = p->tls_authz_file,
        .allow_peer = p->allow_peer,
        .handshake_timeout_ms = p->timeout_ms < 10000 ? p->timeout_ms : 0,
        .rejected = on_rejected,
        .opaque = m,
    };
    m->secure = rf_secure_new(&cfg, server, errp);
    return m->secure != NULL;
}

/* ---- running ----------------------------------------------------------- */

static bool run_source(RfMigration *m, RfError **errp)
{
    RfMigrateOptions o = {
        .verify = m->params.verify,
        .timeout_ms = m->params.timeout_ms,
        .cancel = &m->cancel,
        .tcp_keepalive_s = m->params.tcp_keepalive_s,
        .tcp_user_timeout_ms = m->params.tcp_user_timeout_ms,
        .status = on_status,
        .progress = on_progress,
        .round_start = on_pass,
        .pause = m->cb.pause ? on_pause : NULL,
        .resume = m->cb.resume ? on_resume : NULL,
        .save_state = m->cb.save_state ? on_save_state : NULL,
        .auto_converge = m->params.auto_converge,
        .throttle = m->cb.throttle ? on_throttle : NULL,
        .main_conn = m->conn,
        .secure = m->secure,
        .shared = &m->shared,
        .auto_json = &m->auto_json,
        .opaque = m,
    };
    m->conn = NULL; /* the engine owns it now */
    return rf_migrate(m->uri, m->src, &m->params, &o, &m->rep, errp);
}

static bool run_dest(RfMigration *m, RfError **errp)
{
    RfIncomingOptions o = {
        .timeout_ms = m->params.timeout_ms,
        .cancel = &m->cancel,
        .tcp_keepalive_s = m->params.tcp_keepalive_s,
        .tcp_user_timeout_ms = m->params.tcp_user_timeout_ms,
        .status = on_status,
        .progress = on_progress,
        .round_done = on_pass,
        .listening = on_listening,
        .load_state = m->cb.load_state ? on_load_state : NULL,
        .listener = m->listener,
        .main_conn = m->conn,
        .secure = m->secure,
        .insecure = m->params.insecure,
        .max_memory = m->params.max_memory,
        .max_cpu = m->params.max_cpu_milli / 1000.0,
        .rejected = on_rejected,
        .shared = &m->shared,
        .opaque = m,
    };
    if (rf_params_is_explicit(&m->params, "multifd-compression")) {
        snprintf(o.expect_method, sizeof(o.expect_method), "%s",
                 m->params.multifd_compression);
    }
    if (rf_params_is_explicit(&m->params, "multifd-channels")) {
        o.expect_channels = m->params.multifd_channels;
    }
    m->conn = NULL;
    m->listener = NULL;
    return rf_incoming(m->uri, m->sink, &o, &m->rep, errp);
}

/* The migration thread's whole life: run, settle the final status, wake
 * rf_migration_wait. */
static void run(RfMigration *m)
{
    RfError *err = NULL;
    bool ok = m->role == ROLE_SOURCE ? run_source(m, &err)
                                     : run_dest(m, &err);
    /* Only our own cancel makes "cancelled": a destination whose source
     * was cancelled has failed, as in QEMU. */
    bool cancelled = !ok && atomic_load(&m->cancel);
    pthread_mutex_lock(&m->lock);
    m->settled = true;
    pthread_mutex_unlock(&m->lock);
    if (cancelled) {
        if (atomic_load(&m->status) != RF_STATUS_CANCELLING) {
            emit_status(m, RF_STATUS_CANCELLING);
        } else if (m->cb.status) {
            m->cb.status(m, RF_STATUS_CANCELLING, m->cb.opaque);
        }
        emit_status(m, RF_STATUS_CANCELLED);
    } else {
        emit_status(m, ok ? RF_STATUS_COMPLETED : RF_STATUS_FAILED);
    }
    pthread_mutex_lock(&m->lock);
    m->ok = ok;
    m->err = err;
    m->ended = true;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

static void *thread_main(void *opaque)
{
    run(opaque);
    return NULL;
}

RfMigration *rf_migration_new(const RfParams *params, RfError **errp)
{
    RfMigration *m = calloc(1, sizeof(*m));
    if (!m) {
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory");
        return NULL;
    }
    if (params) {
        m->params = *params;
    } else {
        rf_params_init(&m->params);
    }
    if (!rf_params_check(&m->params, errp)) {
        free(m);
        return NULL;
    }
    m->cb.size = sizeof(m->cb);
    atomic_init(&m->cancel, 0);
    atomic_init(&m->status, RF_STATUS_NONE);
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    pthread_mutex_init(&m->shared.lock, NULL);
    m->shared.info.size = sizeof(m->shared.info);
    m->shared.max_bandwidth = m->params.max_bandwidth;
    m->shared.downtime_limit = m->params.downtime_limit;
    m->shared.max_rounds = m->params.max_rounds;
    return m;
}

bool rf_migration_set_callbacks(RfMigration *m, const RfCallbacks *cb,
                                RfError **errp)
{
    if (!cb || cb->size < offsetof(RfCallbacks, pass)) {
        rf_error_set(errp, RF_ERR_PARAM, "callbacks: 'size' not set to "
                     "sizeof(RfCallbacks)");
        return false;
    }
    pthread_mutex_lock(&m->lock);
    bool started = m->started;
    pthread_mutex_unlock(&m->lock);
    if (started) {
        rf_error_set(errp, RF_ERR_PARAM, "callbacks: the migration has "
                     "already started");
        return false;
    }
    memset(&m->cb, 0, sizeof(m->cb));
    memcpy(&m->cb, cb, cb->size < sizeof(m->cb) ? cb->size : sizeof(m->cb));
    m->cb.size = sizeof(m->cb);
    return true;
}

/* Claims the handle for one start; fails for a second one. */
static bool claim(RfMigration *m, Role role, RfError **errp)
{
    pthread_mutex_lock(&m->lock);
    bool again = m->started;
    m->started = true;
    pthread_mutex_unlock(&m->lock);
    if (again) {
        rf_error_set(errp, RF_ERR_PARAM, "this migration handle was already "
                     "started (a handle runs one migration)");
        return false;
    }
    m->role = role;
    return true;
}

/* Starts the migration thread, or runs here when blocking. */
static bool launch(RfMigration *m, unsigned flags, RfError **errp)
{
    if (flags & RF_START_BLOCKING) {
        run(m);
        return rf_migration_wait(m, errp);
    }
    if (pthread_create(&m->thread, NULL, thread_main, m) != 0) {
        rf_error_set(errp, RF_ERR_GENERIC, "cannot start the migration "
                     "thread");
        pthread_mutex_lock(&m->lock);
        m->ended = true;
        rf_error_set(&m->err, RF_ERR_GENERIC, "the migration thread did not "
                     "start");
        pthread_mutex_unlock(&m->lock);
        atomic_store(&m->status, RF_STATUS_FAILED);
        return false;
    }
    m->threaded = true;
    return true;
}

/* A start that fails before the migration thread exists still ends the
 * handle, so wait and free behave. */
static bool fail_start(RfMigration *m, RfError *err, RfError **errp)
{
    pthread_mutex_lock(&m->lock);
    m->ended = true;
    rf_error_set(&m->err, rf_error_kind(err), "%s", rf_error_msg(err));
    pthread_mutex_unlock(&m->lock);
    atomic_store(&m->status, RF_STATUS_FAILED);
    rf_error_propagate(errp, err);
    return false;
}

bool rf_migration_start_outgoing(RfMigration *m, RfRamSource *src,
                                 const char *uri, unsigned flags,
                                 RfError **errp)
{
    if (!src || !uri) {
        rf_error_set(errp, RF_ERR_PARAM, "start: %s is NULL",
                     src ? "uri" : "the RAM source");
        return false;
    }
    if (!claim(m, ROLE_SOURCE, errp)) {
        return false;
    }
    m->src = src;
    m->uri = strdup(uri);
    RfError *err = NULL;
    if (!load_security(m, false, &err)) {
        return fail_start(m, err, errp);
    }
    return launch(m, flags, errp);
}

bool rf_migration_start_outgoing_fd(RfMigration *m, RfRamSource *src, int fd,
                                    unsigned flags, RfError **errp)
{
    if (!src) {
        rf_error_set(errp, RF_ERR_PARAM, "start: the RAM source is NULL");
        return false;
    }
    if (!claim(m, ROLE_SOURCE, errp)) {
        return false;
    }
    RfError *err = NULL;
    m->src = src;
    m->conn = rf_conn_from_fd(fd, &err);
    if (!m->conn) {
        close(fd); /* ours from the call on, as documented */
        return fail_start(m, err, errp);
    }
    if (!load_security(m, false, &err)) {
        return fail_start(m, err, errp);
    }
    return launch(m, flags, errp);
}

bool rf_migration_start_incoming(RfMigration *m, RfRamSink *sink,
                                 const char *uri, unsigned flags,
                                 RfError **errp)
{
    if (!sink || !uri) {
        rf_error_set(errp, RF_ERR_PARAM, "start: %s is NULL",
                     sink ? "uri" : "the RAM sink");
        return false;
    }
    if (!claim(m, ROLE_DEST, errp)) {
        return false;
    }
    m->sink = sink;
    m->uri = strdup(uri);
    RfError *err = NULL;
    if (!load_security(m, true, &err)) {
        return fail_start(m, err, errp);
    }
    return launch(m, flags, errp);
}

bool rf_migration_start_incoming_fd(RfMigration *m, RfRamSink *sink,
                                    int listen_fd, int conn_fd,
                                    unsigned flags, RfError **errp)
{
    if (!sink) {
        rf_error_set(errp, RF_ERR_PARAM, "start: the RAM sink is NULL");
        return false;
    }
    if (!claim(m, ROLE_DEST, errp)) {
        return false;
    }
    RfError *err = NULL;
    m->sink = sink;
    m->listener = rf_listener_from_fd(listen_fd, &err);
    if (m->listener && conn_fd >= 0) {
        m->conn = rf_conn_from_fd(conn_fd, &err);
    }
    if (!m->listener || (conn_fd >= 0 && !m->conn)) {
        if (m->listener) {
            rf_listener_close(m->listener);
        } else {
            close(listen_fd);
        }
        m->listener = NULL;
        if (conn_fd >= 0 && !m->conn) {
            close(conn_fd);
        }
        return fail_start(m, err, errp);
    }
    if (!load_security(m, true, &err)) {
        return fail_start(m, err, errp);
    }
    return launch(m, flags, errp);
}

void rf_migration_cancel(RfMigration *m)
{
    if (!m) {
        return;
    }
    atomic_store(&m->cancel, 1);
    /* Query shows "cancelling" at once; the callback follows on the
     * migration thread. */
    int st = atomic_load(&m->status);
    while ((st == RF_STATUS_SETUP || st == RF_STATUS_ACTIVE ||
            st == RF_STATUS_DEVICE) &&
           !atomic_compare_exchange_weak(&m->status, &st,
                                         RF_STATUS_CANCELLING)) {
    }
}

bool rf_migration_set_param(RfMigration *m, const char *name,
                            const char *value, RfError **errp)
{
    pthread_mutex_lock(&m->lock);
    bool started = m->started, ended = m->ended;
    pthread_mutex_unlock(&m->lock);
    if (!started) {
        RfParams next = m->params;
        if (!rf_params_set(&next, name, value, errp) ||
            !rf_params_check(&next, errp)) {
            return false;
        }
        m->params = next;
        pthread_mutex_lock(&m->shared.lock);
        m->shared.max_bandwidth = next.max_bandwidth;
        m->shared.downtime_limit = next.downtime_limit;
        m->shared.max_rounds = next.max_rounds;
        pthread_mutex_unlock(&m->shared.lock);
        return true;
    }
    if (ended) {
        rf_error_set(errp, RF_ERR_PARAM, "%s: the migration has ended", name);
        return false;
    }
    if (!rf_params_live(name)) {
        rf_error_set(errp, RF_ERR_PARAM, "%s cannot be changed while a "
                     "migration runs (live: max-bandwidth, downtime-limit, "
                     "max-rounds)", name);
        return false;
    }
    RfParams next;
    rf_params_init(&next);
    if (!rf_params_set(&next, name, value, errp)) {
        return false;
    }
    pthread_mutex_lock(&m->shared.lock);
    if (strcmp(name, "max-bandwidth") == 0) {
        m->shared.max_bandwidth = next.max_bandwidth;
        m->shared.bandwidth_changed = true;
    } else if (strcmp(name, "downtime-limit") == 0) {
        m->shared.downtime_limit = next.downtime_limit;
    } else {
        m->shared.max_rounds = next.max_rounds;
    }
    pthread_mutex_unlock(&m->shared.lock);
    return true;
}

RfStatus rf_migration_status(const RfMigration *m)
{
    return (RfStatus)atomic_load(&((RfMigration *)m)->status);
}

bool rf_migration_query(const RfMigration *mc, RfMigrationInfo *info)
{
    RfMigration *m = (RfMigration *)mc;
    if (!info || info->size == 0) {
        return false;
    }
    RfMigrationInfo i;
    pthread_mutex_lock(&m->shared.lock);
    i = m->shared.info;
    pthread_mutex_unlock(&m->shared.lock);
    i.size = info->size;
    i.status = rf_migration_status(m);
    pthread_mutex_lock(&m->lock);
    if (m->ended) {
        const RfReport *r = &m->rep;
        if (m->ok) {
            i.total_time_ms = (uint64_t)(r->total_time_s * 1000);
            i.setup_time_ms = (uint64_t)(r->setup_time_s * 1000);
            i.downtime_ms = (uint64_t)(r->is_source ? r->downtime_ms
                                                    : r->dest_downtime_ms);
            i.ram_total = r->ram_bytes;
            i.ram_transferred = r->wire_bytes;
            i.ram_remaining = 0;
            i.ram_duplicate = r->zero_pages;
            i.ram_normal = r->normal_pages;
            i.ram_normal_bytes = r->normal_pages * RF_PAGE_SIZE;
            i.ram_mbps = r->throughput_mbps;
            i.ram_pages_per_second = r->pages_per_s;
            i.precopy_bytes = r->precopy_bytes;
        }
        if (m->err) {
            snprintf(i.error_desc, sizeof(i.error_desc), "%s",
                     rf_error_msg(m->err));
        }
    }
    pthread_mutex_unlock(&m->lock);
    memcpy(info, &i, info->size < sizeof(i) ? info->size : sizeof(i));
    return true;
}

bool rf_migration_wait(RfMigration *m, RfError **errp)
{
    pthread_mutex_lock(&m->lock);
    if (!m->started) {
        pthread_mutex_unlock(&m->lock);
        rf_error_set(errp, RF_ERR_PARAM, "the migration was never started");
        return false;
    }
    while (!m->ended) {
        pthread_cond_wait(&m->cond, &m->lock);
    }
    bool join = m->threaded && !m->joined;
    m->joined = true;
    bool ok = m->ok;
    if (!ok && m->err) {
        rf_error_set(errp, rf_error_kind(m->err), "%s", rf_error_msg(m->err));
    }
    pthread_mutex_unlock(&m->lock);
    if (join) {
        pthread_join(m->thread, NULL);
    }
    return ok;
}

bool rf_migration_report(const RfMigration *mc, RfReport *rep)
{
    RfMigration *m = (RfMigration *)mc;
    if (!rep || rep->size == 0) {
        return false;
    }
    /* m->rep is the migration thread's until settled: not even copied
     * before. */
    pthread_mutex_lock(&m->lock);
    bool settled = m->settled;
    RfReport r;
    if (settled) {
        r = m->rep;
    }
    pthread_mutex_unlock(&m->lock);
    if (!settled) {
        return false;
    }
    r.size = rep->size;
    memcpy(rep, &r, rep->size < sizeof(r) ? rep->size : sizeof(r));
    return true;
}

size_t rf_migration_auto_json(const RfMigration *mc, char *buf, size_t cap)
{
    RfMigration *m = (RfMigration *)mc;
    pthread_mutex_lock(&m->lock);
    const char *j = m->settled ? m->auto_json : NULL;
    pthread_mutex_unlock(&m->lock);
    if (!j) {
        if (cap) {
            buf[0] = '\0';
        }
        return 0;
    }
    size_t n = strlen(j);
    if (cap) {
        size_t k = n < cap - 1 ? n : cap - 1;
        memcpy(buf, j, k);
        buf[k] = '\0';
    }
    return n;
}

void rf_migration_free(RfMigration *m)
{
    if (!m) {
        return;
    }
    pthread_mutex_lock(&m->lock);
    bool started = m->started;
    pthread_mutex_unlock(&m->lock);
    if (started) {
        rf_migration_cancel(m);
        rf_migration_wait(m, NULL);
    }
    rf_conn_close(m->conn);
    rf_listener_close(m->listener);
    rf_secure_free(m->secure);
    rf_error_free(m->err);
    free(m->auto_json);
    free(m->uri);
    pthread_mutex_destroy(&m->shared.lock);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->lock);
    free(m);
}
