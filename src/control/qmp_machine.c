/*
 * ramflow - what a QMP monitor controls: the test VM or memory files, and
 * their migration.  Migrations run on the library's thread; its callbacks
 * only queue events (qmp_post_event) and pause or resume the vCPUs under
 * vm_lock, so a client can never block or harm a migration.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/cli.h"
#include "control/qmp.h"

void qmp_machine_init(QmpMachine *m, QmpRole role, const RfParams *params)
{
    memset(m, 0, sizeof(*m));
    m->role = role;
    m->params = rf_params_dup(params);
    m->multifd = true;
    /* QEMU's default is off; on here so a client that never sets it still
     * hears MIGRATION (clients that set it on see no difference). */
    m->events = true;
    m->objects = json_object();
    pthread_mutex_init(&m->vm_lock, NULL);
}

void qmp_machine_destroy(QmpMachine *m)
{
    rf_cli_set_migration(NULL);
    rf_migration_free(m->mig); /* cancels a running one and waits */
    m->mig = NULL;
    json_decref(m->objects);
    rf_params_free(m->params);
    pthread_mutex_destroy(&m->vm_lock);
}

bool qmp_machine_migrating(QmpMachine *m)
{
    return m->mig && !m->mig_ended;
}

/* ---- callbacks: on the migration thread ------------------------------ */

static void on_status(RfMigration *mig, RfStatus st, void *opaque)
{
    QmpMachine *m = opaque;
    (void)mig;
    qmp_post_event(m->srv, "MIGRATION",
                   json_pack("{s:s}", "status", rf_status_name(st)));
}

static void on_pass(RfMigration *mig, unsigned pass, void *opaque)
{
    QmpMachine *m = opaque;
    (void)mig;
    qmp_post_event(m->srv, "MIGRATION_PASS",
                   json_pack("{s:i}", "pass", (int)pass));
}

/* Pauses the vCPUs if they run, telling the clients (STOP).  vm_lock
 * held. */
static void vcpus_pause_locked(QmpMachine *m)
{
    if (m->guest && m->vm_running) {
        rf_guest_pause(m->guest);
        m->vm_running = false;
        qmp_post_event(m->srv, "STOP", NULL);
    }
}

/* Resumes the vCPUs unless a client stopped them (RESUME).  vm_lock
 * held. */
static void vcpus_resume_locked(QmpMachine *m)
{
    if (m->guest && !m->vm_running && !m->user_stopped) {
        rf_guest_resume(m->guest);
        m->vm_running = true;
        qmp_post_event(m->srv, "RESUME", NULL);
    }
}

static void on_pause(void *opaque)
{
    QmpMachine *m = opaque;
    pthread_mutex_lock(&m->vm_lock);
    vcpus_pause_locked(m);
    pthread_mutex_unlock(&m->vm_lock);
}

static void on_resume(void *opaque)
{
    QmpMachine *m = opaque;
    pthread_mutex_lock(&m->vm_lock);
    vcpus_resume_locked(m);
    pthread_mutex_unlock(&m->vm_lock);
}

static bool on_save_state(void *opaque, uint8_t **buf, size_t *len,
                          RfError **errp)
{
    return rf_guest_save_state(((QmpMachine *)opaque)->guest, buf, len, errp);
}

static bool on_load_state(void *opaque, const uint8_t *buf, size_t len,
                          RfError **errp)
{
    return rf_guest_load_state(((QmpMachine *)opaque)->guest, buf, len,
                               errp);
}

static void on_throttle(unsigned pct, void *opaque)
{
    rf_guest_throttle(((QmpMachine *)opaque)->guest, pct);
}

static void on_listening(RfMigration *mig, const char *uri, void *opaque)
{
    QmpMachine *m = opaque;
    (void)mig;
    pthread_mutex_lock(&m->vm_lock);
    snprintf(m->listen_uri, sizeof(m->listen_uri), "%s", uri);
    pthread_mutex_unlock(&m->vm_lock);
    rf_cli_announce_uri(uri, m->quiet, m->uri_file, -1);
}

static void on_rejected(RfMigration *mig, const char *peer, const char *why,
                        void *opaque)
{
    (void)mig;
    (void)opaque;
    fprintf(stderr, "ramflow: dropped a connection from %s: %s\n", peer, why);
}

/* ---- starting --------------------------------------------------------- */

/* The parameters a migration starts with: tls-creds naming an object-add'ed
 * credentials object becomes that object's directory (QEMU's tls-creds is
 * an object id). */
static RfParams *effective_params(QmpMachine *m, RfError **errp)
{
    RfParams *p = rf_params_dup(m->params);
    if (!p) {
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory");
        return NULL;
    }
    char id[256];
    if (rf_params_get(p, "tls-creds", id, sizeof(id), NULL) && id[0]) {
        json_t *o = json_object_get(m->objects, id);
        const char *dir = json_string_value(json_object_get(o, "dir"));
        const char *type = json_string_value(json_object_get(o, "qom-type"));
        if (dir) {
            bool psk = type && !strcmp(type, "tls-creds-psk");
            rf_params_set(p, "tls-creds", psk ? "" : dir, NULL);
            if (psk && !rf_params_set(p, "tls-psk", dir, errp)) {
                rf_params_free(p);
                return NULL;
            }
        }
    }
    return p;
}

static RfMigration *new_migration(QmpMachine *m, RfError **errp)
{
    if (qmp_machine_migrating(m)) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "There's a migration process in progress");
        return NULL;
    }
    rf_migration_free(m->mig); /* the last one has ended */
    m->mig = NULL;
    RfParams *p = effective_params(m, errp);
    if (!p) {
        return NULL;
    }
    RfMigration *mig = rf_migration_new(p, errp);
    rf_params_free(p);
    if (!mig) {
        return NULL;
    }
    RfCallbacks cb = RF_CALLBACKS_INIT;
    cb.status = on_status;
    cb.pass = on_pass;
    cb.opaque = m;
    if (m->role == QMP_ROLE_SOURCE) {
        cb.pause = on_pause;
        cb.resume = on_resume;
        if (m->guest) {
            cb.save_state = on_save_state;
            cb.throttle = on_throttle;
        }
    } else {
        cb.listening = on_listening;
        cb.rejected = on_rejected;
        if (m->guest) {
            cb.load_state = on_load_state;
        }
    }
    if (!rf_migration_set_callbacks(mig, &cb, errp)) {
        rf_migration_free(mig);
        return NULL;
    }
    return mig;
}

/* ramflow serve: the first migrate or migrate-incoming decides whether
 * the memory files are sent or received, and opens them then. */
static bool serve_choose(QmpMachine *m, QmpRole role, RfError **errp)
{
    if (m->role != QMP_ROLE_IDLE) {
        return true;
    }
    if (m->nspecs == 0) {
        rf_error_set(errp, RF_ERR_PARAM, "ramflow serve holds no memory: "
                     "start it with --memory FILE");
        return false;
    }
    if (role == QMP_ROLE_SOURCE) {
        m->src = rf_file_source_open(m->specs, m->nspecs, errp);
    } else {
        m->sink = rf_file_sink_new(m->specs, m->nspecs, m->sink_flags, errp);
    }
    if (!m->src && !m->sink) {
        return false;
    }
    m->role = role;
    return true;
}

/* Builds and starts one migration: received into m->sink or sent from
 * m->src. */
static bool start(QmpMachine *m, const char *uri, RfError **errp)
{
    RfMigration *mig = new_migration(m, errp);
    if (!mig) {
        return false;
    }
    m->mig = mig;
    m->mig_ended = false;
    rf_cli_set_migration(mig);
    bool ok = m->role == QMP_ROLE_DEST
                  ? rf_migration_start_incoming(mig, m->sink, uri, 0, errp)
                  : rf_migration_start_outgoing(mig, m->src, uri, 0, errp);
    m->mig_ended = !ok;
    return ok;
}

bool qmp_machine_incoming(QmpMachine *m, const char *uri, RfError **errp)
{
    if (m->role == QMP_ROLE_SOURCE) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "'-incoming' was not specified on the command line");
        return false;
    }
    if (m->incoming_started) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "The incoming migration has already been started");
        return false;
    }
    if (!serve_choose(m, QMP_ROLE_DEST, errp)) {
        return false;
    }
    m->incoming_started = true;
    return start(m, uri, errp);
}

bool qmp_machine_migrate(QmpMachine *m, const char *uri, RfError **errp)
{
    if (m->role == QMP_ROLE_DEST) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "Guest is waiting for an incoming migration");
        return false;
    }
    return serve_choose(m, QMP_ROLE_SOURCE, errp) && start(m, uri, errp);
}

/* ---- events, on the server thread ------------------------------------- */

void qmp_machine_on_event(QmpMachine *m, const char *name, json_t *data)
{
    if (strcmp(name, "MIGRATION") != 0 || !m->mig) {
        return;
    }
    const char *st = json_string_value(json_object_get(data, "status"));
    bool completed = st && !strcmp(st, "completed");
    if (!st || (!completed && strcmp(st, "failed") != 0 &&
                strcmp(st, "cancelled") != 0)) {
        return;
    }
    /* Joins the migration thread (it ends right after this status). */
    rf_migration_wait(m->mig, NULL);
    rf_cli_set_migration(NULL);
    m->mig_ended = true;
    if (completed && m->role == QMP_ROLE_DEST && m->guest) {
        /* The VM runs here now (QEMU's autostart), unless stopped. */
        pthread_mutex_lock(&m->vm_lock);
        vcpus_resume_locked(m);
        pthread_mutex_unlock(&m->vm_lock);
    }
}

void qmp_machine_stop(QmpMachine *m)
{
    pthread_mutex_lock(&m->vm_lock);
    m->user_stopped = true;
    vcpus_pause_locked(m);
    pthread_mutex_unlock(&m->vm_lock);
}

void qmp_machine_cont(QmpMachine *m)
{
    pthread_mutex_lock(&m->vm_lock);
    m->user_stopped = false;
    /* The source's final round has the vCPUs paused; they stay so until
     * the migration ends (resumed then if it did not complete). */
    RfStatus st = m->mig && !m->mig_ended ? rf_migration_status(m->mig)
                                          : RF_STATUS_NONE;
    bool engine_paused = m->role == QMP_ROLE_SOURCE &&
                         st == RF_STATUS_DEVICE;
    bool dest_waiting = m->role == QMP_ROLE_DEST &&
                        (!m->mig || rf_migration_status(m->mig) !=
                                        RF_STATUS_COMPLETED);
    if (!engine_paused && !dest_waiting) {
        vcpus_resume_locked(m);
    }
    pthread_mutex_unlock(&m->vm_lock);
}

json_t *qmp_machine_status(QmpMachine *m)
{
    RfStatus st = m->mig ? rf_migration_status(m->mig) : RF_STATUS_NONE;
    pthread_mutex_lock(&m->vm_lock);
    bool running = m->vm_running;
    bool stopped = m->user_stopped;
    pthread_mutex_unlock(&m->vm_lock);
    const char *status;
    if (running) {
        status = "running";
    } else if (m->role == QMP_ROLE_DEST && st != RF_STATUS_COMPLETED) {
        status = "inmigrate";
    } else if (m->role == QMP_ROLE_SOURCE && st == RF_STATUS_DEVICE) {
        status = "finish-migrate";
    } else if (m->role == QMP_ROLE_SOURCE && st == RF_STATUS_COMPLETED &&
               !stopped) {
        status = "postmigrate";
    } else {
        status = "paused";
    }
    return json_pack("{s:b, s:s}", "running", running, "status", status);
}

/* Splits "tcp:HOST:PORT" / "unix:PATH" into QEMU's SocketAddress. */
static json_t *socket_address(const char *uri)
{
    if (!strncmp(uri, "unix:", 5)) {
        return json_pack("{s:s, s:s}", "type", "unix", "path", uri + 5);
    }
    const char *addr = uri + (strncmp(uri, "tcp:", 4) ? 0 : 4);
    const char *colon = strrchr(addr, ':');
    if (!colon) {
        return NULL;
    }
    int hl = (int)(colon - addr);
    if (hl >= 2 && addr[0] == '[') {
        addr++;
        hl -= 2;
    }
    char host[300];
    snprintf(host, sizeof(host), "%.*s", hl, addr);
    return json_pack("{s:s, s:s, s:s}", "type", "inet", "host", host, "port",
                     colon + 1);
}

/* ramflow's own figures, under "x-ramflow" (QEMU clients ignore it). */
static json_t *own_figures(QmpMachine *m, const RfMigrationInfo *info)
{
    json_t *o = json_pack("{s:s, s:i}", "role",
                          info->is_source ? "source" : "destination", "pass",
                          (int)info->pass);
    RfReport rep = RF_REPORT_INIT;
    /* The engine settles its report before it publishes the final status,
     * so a "completed" reply always carries these (not only once the
     * server thread has handled the event). */
    if (rf_migration_report(m->mig, &rep)) {
        json_object_set_new(o, "method", json_string(rep.method));
        json_object_set_new(o, "channels", json_integer(rep.channels));
        json_object_set_new(o, "rounds", json_integer(rep.rounds));
        json_object_set_new(o, "compression-ratio",
                            json_real(rep.compression_ratio));
        json_object_set_new(o, "throughput-mbps",
                            json_real(rep.throughput_mbps));
        json_object_set_new(o, "security", json_string(rep.security[0]
                                                           ? rep.security
                                                           : "none"));
        json_object_set_new(o, "verified", json_boolean(rep.verified));
        json_object_set_new(o, "converged", json_boolean(rep.converged));
    }
    return o;
}

json_t *qmp_machine_query_migrate(QmpMachine *m)
{
    if (!m->mig) {
        return json_object(); /* QEMU: {} before any migration */
    }
    RfMigrationInfo in = RF_MIGRATION_INFO_INIT;
    rf_migration_query(m->mig, &in);
    if (in.status == RF_STATUS_NONE) {
        /* Started, its thread not yet running: QEMU says setup. */
        in.status = RF_STATUS_SETUP;
    }
    in.is_source = m->role == QMP_ROLE_SOURCE; /* known before the engine */
    json_t *o = json_pack("{s:s}", "status", rf_status_name(in.status));
    bool done = in.status == RF_STATUS_COMPLETED;
    if (in.status != RF_STATUS_SETUP) {
        json_t *ram = json_pack(
            "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:i, s:I,"
            " s:I, s:I, s:I}",
            "transferred", (json_int_t)in.ram_transferred,
            "remaining", (json_int_t)in.ram_remaining,
            "total", (json_int_t)in.ram_total,
            "duplicate", (json_int_t)in.ram_duplicate,
            "normal", (json_int_t)in.ram_normal,
            "normal-bytes", (json_int_t)in.ram_normal_bytes,
            /* QEMU's schema: int */
            "dirty-pages-rate", (json_int_t)in.dirty_pages_rate,
            "dirty-sync-count", (json_int_t)in.dirty_sync_count,
            "mbps", in.ram_mbps,
            "precopy-bytes", (json_int_t)in.precopy_bytes,
            "page-size", (int)RF_PAGE_SIZE,
            "multifd-bytes", (json_int_t)in.ram_transferred,
            "postcopy-requests", (json_int_t)0,
            "downtime-bytes", (json_int_t)(in.ram_transferred >
                                                   in.precopy_bytes
                                               ? in.ram_transferred -
                                                     in.precopy_bytes
                                               : 0),
            "postcopy-bytes", (json_int_t)0);
        json_object_set_new(ram, "pages-per-second",
                            json_integer((json_int_t)in.ram_pages_per_second));
        json_object_set_new(o, "ram", ram);
        json_object_set_new(o, "total-time",
                            json_integer((json_int_t)in.total_time_ms));
        json_object_set_new(o, "setup-time",
                            json_integer((json_int_t)in.setup_time_ms));
    }
    if (done) {
        json_object_set_new(o, "downtime",
                            json_integer((json_int_t)in.downtime_ms));
    } else if (in.is_source && in.status == RF_STATUS_ACTIVE) {
        json_object_set_new(o, "expected-downtime",
                            json_integer((json_int_t)in.expected_downtime_ms));
    }
    if (in.status == RF_STATUS_FAILED && in.error_desc[0]) {
        json_object_set_new(o, "error-desc", json_string(in.error_desc));
    }
    if (!in.is_source) {
        pthread_mutex_lock(&m->vm_lock);
        json_t *sa = m->listen_uri[0] ? socket_address(m->listen_uri) : NULL;
        pthread_mutex_unlock(&m->vm_lock);
        if (sa) {
            json_object_set_new(o, "socket-address", json_pack("[o]", sa));
        }
    }
    json_object_set_new(o, "x-ramflow", own_figures(m, &in));
    return o;
}
