/*
 * ramflow - QMP commands: the request checks QEMU's dispatcher makes (in
 * its order, with its messages), then one handler per command.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/qmp.h"

typedef json_t *(*Handler)(QmpMachine *m, json_t *args);

typedef struct Command {
    const char *name;
    Handler fn;
    const char *const *args;  /* accepted argument names; NULL = any */
} Command;

static json_t *ok(void)
{
    return qmp_return(NULL);
}

static json_t *error_of(RfError *err)
{
    json_t *e = qmp_error("GenericError", "%s", rf_error_msg(err));
    rf_error_free(err);
    return e;
}

static json_t *cmd_query_version(QmpMachine *m, json_t *args)
{
    (void)m;
    (void)args;
    return qmp_return(json_pack("{s:{s:i, s:i, s:i}, s:s}", "qemu", "micro",
                                QMP_QEMU_MICRO, "minor", QMP_QEMU_MINOR,
                                "major", QMP_QEMU_MAJOR, "package",
                                "ramflow " RAMFLOW_VERSION_STRING));
}

static json_t *cmd_query_commands(QmpMachine *m, json_t *args);

static json_t *cmd_query_status(QmpMachine *m, json_t *args)
{
    (void)args;
    return qmp_return(qmp_machine_status(m));
}

static json_t *cmd_query_migrate(QmpMachine *m, json_t *args)
{
    (void)args;
    return qmp_return(qmp_machine_query_migrate(m));
}

static json_t *cmd_query_params(QmpMachine *m, json_t *args)
{
    (void)args;
    return qmp_params_query(m);
}

static json_t *cmd_set_params(QmpMachine *m, json_t *args)
{
    return qmp_params_set(m, args);
}

static json_t *cmd_query_caps(QmpMachine *m, json_t *args)
{
    (void)args;
    return qmp_caps_query(m);
}

static json_t *cmd_set_caps(QmpMachine *m, json_t *args)
{
    return qmp_caps_set(m, args);
}

/* One channel's address ({"transport": "socket", "type": "inet", "host",
 * "port"} or {"type": "unix", "path"}) as a URI. */
static char *channel_uri(json_t *addr, json_t **errorp)
{
    const char *transport = json_string_value(json_object_get(addr,
                                                              "transport"));
    const char *type = json_string_value(json_object_get(addr, "type"));
    if (!transport || strcmp(transport, "socket") != 0 || !type) {
        *errorp = qmp_error("GenericError", "ramflow migrates over socket "
                            "channels only (transport 'socket', type 'inet' "
                            "or 'unix')");
        return NULL;
    }
    char uri[1024];
    if (!strcmp(type, "unix")) {
        const char *path = json_string_value(json_object_get(addr, "path"));
        if (!path) {
            *errorp = qmp_error("GenericError", "Parameter 'path' is "
                                "missing");
            return NULL;
        }
        snprintf(uri, sizeof(uri), "unix:%s", path);
    } else if (!strcmp(type, "inet")) {
        const char *host = json_string_value(json_object_get(addr, "host"));
        const char *port = json_string_value(json_object_get(addr, "port"));
        if (!host || !port) {
            *errorp = qmp_error("GenericError", "Parameter '%s' is missing",
                                host ? "port" : "host");
            return NULL;
        }
        bool v6 = strchr(host, ':') != NULL;
        snprintf(uri, sizeof(uri), "tcp:%s%s%s:%s", v6 ? "[" : "", host,
                 v6 ? "]" : "", port);
    } else {
        *errorp = qmp_error("GenericError", "ramflow does not migrate over "
                            "'%s' sockets", type);
        return NULL;
    }
    return strdup(uri);
}

char *qmp_args_uri(json_t *args, json_t **errorp)
{
    json_t *uri = json_object_get(args, "uri");
    json_t *channels = json_object_get(args, "channels");
    if (uri && channels) {
        *errorp = qmp_error("GenericError", "'uri' and 'channels' arguments "
                            "are mutually exclusive; exactly one of the two "
                            "should be present");
        return NULL;
    }
    if (uri) {
        if (!json_is_string(uri)) {
            *errorp = qmp_error("GenericError", "Invalid parameter type for "
                                "'uri', expected: string");
            return NULL;
        }
        return strdup(json_string_value(uri));
    }
    if (!channels) {
        *errorp = qmp_error("GenericError", "need either 'uri' or "
                            "'channels' argument");
        return NULL;
    }
    if (!json_is_array(channels) || json_array_size(channels) != 1) {
        *errorp = qmp_error("GenericError", "Channel list has more than one "
                            "entries");
        return NULL;
    }
    json_t *ch = json_array_get(channels, 0);
    const char *type = json_string_value(json_object_get(ch,
                                                         "channel-type"));
    json_t *addr = json_object_get(ch, "addr");
    if (!type || strcmp(type, "main") != 0 || !json_is_object(addr)) {
        *errorp = qmp_error("GenericError", "Channel list has no main "
                            "entry");
        return NULL;
    }
    return channel_uri(addr, errorp);
}

/* migrate and migrate-incoming: the URI from either form, then start. */
static json_t *start_at(QmpMachine *m, json_t *args, bool incoming)
{
    json_t *reply = NULL;
    char *uri = qmp_args_uri(args, &reply);
    if (!uri) {
        return reply;
    }
    RfError *err = NULL;
    bool started = incoming ? qmp_machine_incoming(m, uri, &err)
                            : qmp_machine_migrate(m, uri, &err);
    free(uri);
    return started ? ok() : error_of(err);
}

static json_t *cmd_migrate(QmpMachine *m, json_t *args)
{
    if (json_is_true(json_object_get(args, "resume"))) {
        return qmp_error("GenericError", "Cannot resume if there is no "
                         "paused migration");
    }
    return start_at(m, args, false);
}

static json_t *cmd_migrate_incoming(QmpMachine *m, json_t *args)
{
    return start_at(m, args, true);
}

static json_t *cmd_migrate_cancel(QmpMachine *m, json_t *args)
{
    (void)args;
    if (qmp_machine_migrating(m)) {
        rf_migration_cancel(m->mig);
    }
    return ok();
}

static json_t *cmd_stop(QmpMachine *m, json_t *args)
{
    (void)args;
    qmp_machine_stop(m);
    return ok();
}

static json_t *cmd_cont(QmpMachine *m, json_t *args)
{
    (void)args;
    qmp_machine_cont(m);
    return ok();
}

static json_t *cmd_quit(QmpMachine *m, json_t *args)
{
    (void)args;
    atomic_store(&m->quit, true);
    return ok();
}

/* object-add for QEMU's TLS credentials objects: their id can then be
 * given as tls-creds (ramflow's tls-creds/tls-psk are directories). */
static json_t *cmd_object_add(QmpMachine *m, json_t *args)
{
    const char *type = json_string_value(json_object_get(args, "qom-type"));
    const char *id = json_string_value(json_object_get(args, "id"));
    const char *dir = json_string_value(json_object_get(args, "dir"));
    if (!type || !id) {
        return qmp_error("GenericError", "Parameter '%s' is missing",
                         type ? "id" : "qom-type");
    }
    if (strcmp(type, "tls-creds-x509") != 0 &&
        strcmp(type, "tls-creds-psk") != 0) {
        return qmp_error("GenericError", "ramflow's object-add takes "
                         "tls-creds-x509 and tls-creds-psk only, not '%s'",
                         type);
    }
    if (!dir) {
        return qmp_error("GenericError", "Parameter 'dir' is missing");
    }
    if (json_object_get(m->objects, id)) {
        return qmp_error("GenericError", "attempt to add duplicate property "
                         "'%s' to object (type 'container')", id);
    }
    json_object_set_new(m->objects, id, json_pack("{s:s, s:s}", "qom-type",
                                                  type, "dir", dir));
    return ok();
}

static json_t *cmd_object_del(QmpMachine *m, json_t *args)
{
    const char *id = json_string_value(json_object_get(args, "id"));
    if (!id || json_object_del(m->objects, id) != 0) {
        return qmp_error("GenericError", "object '%s' not found",
                         id ? id : "");
    }
    return ok();
}

/* ramflow's own: the test VM's progress, and with check its memory
 * pattern (which pauses it a moment). */
static json_t *cmd_query_guest(QmpMachine *m, json_t *args)
{
    if (!m->guest) {
        return qmp_error("GenericError", "this ramflow has no test VM");
    }
    if (m->role == QMP_ROLE_DEST && qmp_machine_migrating(m)) {
        /* The migration thread is building this VM right now. */
        return qmp_error("GenericError", "the test VM is being received");
    }
    json_t *o = json_object();
    pthread_mutex_lock(&m->vm_lock);
    json_object_set_new(o, "running", json_boolean(m->vm_running));
    json_object_set_new(o, "passes",
                        json_integer((json_int_t)rf_guest_passes(m->guest)));
    json_object_set_new(o, "describe",
                        json_string(rf_guest_describe(m->guest)));
    bool migrating = qmp_machine_migrating(m);
    if (json_is_true(json_object_get(args, "check")) && !migrating) {
        char summary[256] = "";
        RfError *err = NULL;
        bool good = rf_guest_check_pattern(m->guest, summary,
                                           sizeof(summary), &err);
        if (m->vm_running) {
            rf_guest_resume(m->guest);
        }
        json_object_set_new(o, "pattern-ok", json_boolean(good));
        json_object_set_new(o, "summary",
                            json_string(good ? summary : rf_error_msg(err)));
        rf_error_free(err);
    }
    pthread_mutex_unlock(&m->vm_lock);
    return qmp_return(o);
}

/* QEMU's human-monitor-command: one HMP line, its text as the return. */
static json_t *cmd_hmp(QmpMachine *m, json_t *args)
{
    const char *line = json_string_value(json_object_get(args,
                                                         "command-line"));
    if (!line) {
        return qmp_error("GenericError",
                         "Parameter 'command-line' is missing");
    }
    char *text = hmp_execute(m, line, NULL);
    /* QEMU's monitor ends its lines with CR LF. */
    size_t n = 0, len = text ? strlen(text) : 0;
    for (size_t i = 0; i < len; i++) {
        n += text[i] == '\n';
    }
    char *crlf = malloc(len + n + 1);
    if (!crlf) {
        free(text);
        return qmp_error("GenericError", "out of memory");
    }
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\n') {
            crlf[o++] = '\r';
        }
        crlf[o++] = text[i];
    }
    crlf[o] = '\0';
    json_t *r = qmp_return(json_string(crlf));
    free(crlf);
    free(text);
    return r;
}

static const char *const no_args[] = {NULL};
static const char *const migrate_args[] = {"uri", "channels", "detach",
                                           "resume", NULL};
static const char *const incoming_args[] = {"uri", "channels",
                                            "exit-on-error", NULL};
static const char *const caps_args[] = {"capabilities", NULL};
static const char *const enable_args[] = {"enable", NULL};
static const char *const id_args[] = {"id", NULL};
static const char *const guest_args[] = {"check", NULL};
static const char *const hmp_args[] = {"command-line", "cpu-index", NULL};

static json_t *cmd_capabilities(QmpMachine *m, json_t *args)
{
    (void)m;
    (void)args;
    return ok();
}

static const Command commands[] = {
    {"qmp_capabilities", cmd_capabilities, enable_args},
    {"query-version", cmd_query_version, no_args},
    {"query-commands", cmd_query_commands, no_args},
    {"query-status", cmd_query_status, no_args},
    {"query-migrate", cmd_query_migrate, no_args},
    {"query-migrate-parameters", cmd_query_params, no_args},
    {"migrate-set-parameters", cmd_set_params, NULL},
    {"query-migrate-capabilities", cmd_query_caps, no_args},
    {"migrate-set-capabilities", cmd_set_caps, caps_args},
    {"migrate", cmd_migrate, migrate_args},
    {"migrate-incoming", cmd_migrate_incoming, incoming_args},
    {"migrate_cancel", cmd_migrate_cancel, no_args},
    {"stop", cmd_stop, no_args},
    {"cont", cmd_cont, no_args},
    {"quit", cmd_quit, no_args},
    {"object-add", cmd_object_add, NULL},
    {"object-del", cmd_object_del, id_args},
    {"human-monitor-command", cmd_hmp, hmp_args},
    {"x-ramflow-query-guest", cmd_query_guest, guest_args},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static json_t *cmd_query_commands(QmpMachine *m, json_t *args)
{
    (void)m;
    (void)args;
    json_t *a = json_array();
    for (size_t i = 0; i < N_COMMANDS; i++) {
        json_array_append_new(a, json_pack("{s:s}", "name",
                                           commands[i].name));
    }
    return qmp_return(a);
}

/* Checks the arguments against a command's list: QEMU's visitor reports
 * the first unexpected one. */
static json_t *check_args(const Command *c, json_t *args)
{
    if (!c->args) {
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(args, key, v) {
        bool known = false;
        for (const char *const *a = c->args; *a && !known; a++) {
            known = !strcmp(*a, key);
        }
        if (!known) {
            return qmp_error("GenericError", "Parameter '%s' is unexpected",
                             key);
        }
    }
    return NULL;
}

/* The request-level checks of QEMU's dispatcher; @return NULL if the
 * request is well formed, else the error. */
static json_t *check_request(json_t *req)
{
    if (!json_is_object(req)) {
        return qmp_error("GenericError", "QMP input must be a JSON object");
    }
    const char *key;
    json_t *v;
    json_object_foreach(req, key, v) {
        if (!strcmp(key, "execute")) {
            if (!json_is_string(v)) {
                return qmp_error("GenericError", "QMP input member 'execute'"
                                 " must be a string");
            }
        } else if (!strcmp(key, "arguments")) {
            if (!json_is_object(v)) {
                return qmp_error("GenericError", "QMP input member "
                                 "'arguments' must be an object");
            }
        } else if (strcmp(key, "id") != 0) {
            return qmp_error("GenericError", "QMP input member '%s' is "
                             "unexpected", key);
        }
    }
    if (!json_object_get(req, "execute")) {
        return qmp_error("GenericError",
                         "QMP input lacks member 'execute'");
    }
    return NULL;
}

static json_t *run(QmpMachine *m, QmpSession *s, json_t *req)
{
    json_t *e = check_request(req);
    if (e) {
        return e;
    }
    const char *name = json_string_value(json_object_get(req, "execute"));
    json_t *args = json_object_get(req, "arguments");
    bool caps = !strcmp(name, "qmp_capabilities");
    if (!s->negotiated && !caps) {
        return qmp_error("CommandNotFound", "Expecting capabilities "
                         "negotiation with 'qmp_capabilities'");
    }
    if (s->negotiated && caps) {
        return qmp_error("CommandNotFound", "Capabilities negotiation is "
                         "already complete, command ignored");
    }
    json_t *reply = qmp_execute(m, name, args);
    if (caps && json_object_get(reply, "return")) {
        s->negotiated = true;
    }
    return reply;
}

json_t *qmp_execute(QmpMachine *m, const char *name, json_t *args)
{
    const Command *c = NULL;
    for (size_t i = 0; i < N_COMMANDS && !c; i++) {
        c = strcmp(commands[i].name, name) ? NULL : &commands[i];
    }
    if (!c) {
        return qmp_error("CommandNotFound", "The command %s has not been "
                         "found", name);
    }
    json_t *empty = args ? NULL : json_object();
    json_t *a = args ? args : empty;
    json_t *reply = check_args(c, a);
    if (!reply && c->fn == cmd_capabilities &&
        json_array_size(json_object_get(a, "enable"))) {
        reply = qmp_error("GenericError", "This monitor does not support "
                          "Out-Of-Band (OOB)");
    }
    if (!reply) {
        reply = c->fn(m, a);
    }
    json_decref(empty);
    return reply;
}

json_t *qmp_dispatch(QmpMachine *m, QmpSession *s, const char *text,
                     size_t len)
{
    json_error_t jerr;
    json_t *req = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
    if (!req) {
        return qmp_error("GenericError", "JSON parse error, %s", jerr.text);
    }
    json_t *reply = run(m, s, req);
    json_t *id = json_is_object(req) ? json_object_get(req, "id") : NULL;
    if (reply && id) {
        json_object_set(reply, "id", id);
    }
    json_decref(req);
    return reply;
}
