/*
 * ramflow - the QMP control socket (docs/qmp.md): QEMU's migration
 * commands, replies, errors and events, over unix: or tcp: sockets.
 *
 * One thread, the process's main thread, runs the server: it owns every
 * socket, parses and answers commands, and starts, queries and cancels
 * migrations through the handle API.  Migration callbacks (on the library's
 * migration thread) never touch a socket: they queue events
 * (qmp_post_event), which the server thread sends.
 */
#ifndef RF_CONTROL_QMP_H
#define RF_CONTROL_QMP_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "ramflow/ramflow.h"
#include "testvm/guest.h"

/* The QEMU version whose migration commands ramflow speaks. */
#define QMP_QEMU_MAJOR 10
#define QMP_QEMU_MINOR 0
#define QMP_QEMU_MICRO 0
/* Largest message a client may send, and most output buffered for one. */
#define QMP_MAX_MESSAGE (1u << 20)
#define QMP_MAX_OUTPUT (8u << 20)
#define QMP_MAX_CLIENTS 64

/* ---- framing (qmp_json.c) ------------------------------------------- */

/* Splits a byte stream into top-level JSON texts, as QEMU's JSON streamer:
 * objects and arrays by bracket depth (strings and escapes honoured),
 * scalars up to the next white space. */
typedef struct QmpReader {
    char *buf;
    size_t len, cap;
    size_t scan;      /* bytes of buf already scanned */
    int depth;
    bool in_string, escape, started;
} QmpReader;

typedef enum {
    QMP_READ_NONE,    /* need more bytes */
    QMP_READ_MESSAGE, /* *out holds one complete text (malloc'd) */
    QMP_READ_TOO_BIG, /* a message passed QMP_MAX_MESSAGE: close */
} QmpReadResult;

void qmp_reader_init(QmpReader *r);
void qmp_reader_free(QmpReader *r);
/* @return false if out of memory or the buffer would pass the limit. */
bool qmp_reader_feed(QmpReader *r, const char *data, size_t n);
QmpReadResult qmp_reader_next(QmpReader *r, char **out, size_t *outlen);

/* Replies (qmp_json.c).  Each returns a new reference. */
json_t *qmp_error(const char *cls, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
json_t *qmp_return(json_t *value);  /* steals value (NULL = {}) */
json_t *qmp_event(const char *name, json_t *data);  /* steals data */

/* ---- the process the monitor controls (qmp_machine.c) ---------------- */

/* IDLE: `ramflow serve` before its first migrate / migrate-incoming. */
typedef enum { QMP_ROLE_SOURCE, QMP_ROLE_DEST, QMP_ROLE_IDLE } QmpRole;

typedef struct QmpServer QmpServer;

typedef struct QmpMachine {
    QmpRole role;
    RfParams *params;       /* own copy; migrate-set-parameters swaps it */
    bool multifd;           /* the capability (always on in effect) */
    bool events;            /* the capability: MIGRATION(_PASS) events */
    RfGuest *guest;         /* the test VM, or NULL (memory files) */
    RfRamSource *src;       /* source side */
    RfRamSink *sink;        /* destination side */
    const char *const *specs; /* serve: memory files, opened on demand */
    unsigned nspecs;
    unsigned sink_flags;    /* serve: RF_FILE_SINK_REUSE */
    bool incoming_started;  /* migrate-incoming (or --listen) happened */
    const char *uri_file;   /* incoming: write the listening URI here */
    bool quiet;
    RfMigration *mig;       /* the current or last migration */
    bool mig_ended;         /* its terminal status was handled */
    QmpServer *srv;
    /* vCPU state: changed by stop/cont (server thread) and by the engine's
     * pause/resume hooks (migration thread), under vm_lock. */
    pthread_mutex_t vm_lock;
    bool vm_running;
    bool user_stopped;
    char listen_uri[300];   /* destination: resolved, under vm_lock */
    /* object-add'ed tls-creds-x509/-psk objects: id -> directory */
    json_t *objects;
    atomic_bool quit;
} QmpMachine;

/* Sets up m for a role with a copy of params (m->params NULL if out of
 * memory: rf_cli_qmp_run says so); the caller fills guest, src or sink. */
void qmp_machine_init(QmpMachine *m, QmpRole role, const RfParams *params);
/* Cancels and frees the migration, frees m's own parts (not guest, src,
 * sink). */
void qmp_machine_destroy(QmpMachine *m);
/* Starts an incoming migration at uri (migrate-incoming, or --listen). */
bool qmp_machine_incoming(QmpMachine *m, const char *uri, RfError **errp);
/* Starts an outgoing migration to uri (migrate). */
bool qmp_machine_migrate(QmpMachine *m, const char *uri, RfError **errp);
/* Called by the server thread for each queued event before it is sent:
 * a terminal MIGRATION status joins the migration and, on a destination
 * with a guest, resumes it. */
void qmp_machine_on_event(QmpMachine *m, const char *name, json_t *data);
/* stop / cont */
void qmp_machine_stop(QmpMachine *m);
void qmp_machine_cont(QmpMachine *m);
/* query-status's reply. */
json_t *qmp_machine_status(QmpMachine *m);
/* query-migrate's reply. */
json_t *qmp_machine_query_migrate(QmpMachine *m);
/* @return whether a migration runs (not ended). */
bool qmp_machine_migrating(QmpMachine *m);

/* ---- parameters and capabilities (qmp_params.c) ---------------------- */

json_t *qmp_params_query(QmpMachine *m);
/* Applies every member of args or none; *err gets QEMU's message. */
json_t *qmp_params_set(QmpMachine *m, json_t *args);
json_t *qmp_caps_query(QmpMachine *m);
json_t *qmp_caps_set(QmpMachine *m, json_t *args);
/* Whether `name` is one of QEMU's migration capabilities (those ramflow
 * has and those it only reports off): what both monitors accept as a
 * name before looking at its state. */
bool qmp_cap_known(const char *name);

/* ---- commands (qmp_commands.c) --------------------------------------- */

/* Per-client protocol state. */
typedef struct QmpSession {
    bool negotiated;
} QmpSession;

/* Handles one message text; @return the reply (with the request's id), or
 * NULL for none.  Sets *close_after for quit. */
json_t *qmp_dispatch(QmpMachine *m, QmpSession *s, const char *text,
                     size_t len);
/* Runs command name with args (NULL = none), negotiation aside.
 * @return the reply (return or error). */
json_t *qmp_execute(QmpMachine *m, const char *name, json_t *args);
/* The migration URI of a migrate / migrate-incoming request: "uri", or
 * QEMU 9's "channels" list.  @return a malloc'd URI or NULL with *errorp
 * set to the error reply. */
char *qmp_args_uri(json_t *args, json_t **errorp);

/* ---- the human monitor (hmp.c) ---------------------------------------- */

/* Runs one HMP line (QEMU's syntax); @return its output text (malloc'd,
 * possibly ""; NULL if out of memory).  *wait (may be NULL) is set when
 * the line was a blocking `migrate` whose result comes with the end of the
 * migration (hmp_migration_ended). */
char *hmp_execute(QmpMachine *m, const char *line, bool *wait);
/* The text a blocking `migrate` prints when the migration has ended. */
char *hmp_migration_ended(QmpMachine *m);

/* ---- listening sockets (qmp_listen.c) ------------------------------- */

#define QMP_UNIX_PATH_MAX 108
/* Listens at addr ("unix:PATH" created 0600, "tcp:[HOST]:PORT" with
 * loopback for no HOST; a tcp: address is announced on stderr as `what`).
 * opt names the option in messages; a unix path goes to unix_path
 * (QMP_UNIX_PATH_MAX bytes) for the unlink at exit.  @return the
 * non-blocking listening fd, or -1 with an error. */
int qmp_listen(const char *addr, const char *opt, const char *what,
               char *unix_path, RfError **errp);

/* ---- the server (qmp_server.c) --------------------------------------- */

/* Listens for QMP at qmp_addr and for the human monitor at hmp_addr
 * ("unix:PATH", "tcp:[HOST]:PORT" -- no HOST binds loopback --, and for
 * hmp_addr also "stdio"); either may be NULL. */
QmpServer *qmp_server_new(const char *qmp_addr, const char *hmp_addr,
                          QmpMachine *m, RfError **errp);
/* Any thread: queues an event (steals data) for every negotiated client. */
void qmp_post_event(QmpServer *s, const char *name, json_t *data);
/* Serves until quit or a signal (rf_cli_cancel); @return the exit
 * status. */
int qmp_server_run(QmpServer *s);
void qmp_server_free(QmpServer *s);

/* ---- the CLI (cli_qmp.c) --------------------------------------------- */

/* How a process is served: --qmp, --monitor, and a first action. */
typedef struct QmpCliOptions {
    const char *qmp_addr;
    const char *hmp_addr;   /* --monitor */
    const char *start_uri;  /* incoming: --listen; guest: its URI */
    const char *uri_file;   /* incoming: write the listening URI here */
    bool quiet;
} QmpCliOptions;

/* Serves m (set up by qmp_machine_init and filled by the caller) until
 * quit or a signal, then destroys it; @return the exit status.  The
 * caller frees what it put in m (and serve's src/sink) afterwards. */
int rf_cli_qmp_run(const QmpCliOptions *o, QmpMachine *m);
int rf_cli_serve(int argc, char **argv);

#endif
