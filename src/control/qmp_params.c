/*
 * ramflow - query-migrate-parameters / migrate-set-parameters and the
 * capabilities, with QEMU's JSON types, validation order and messages.
 * The parameter list is the library's (rf_params_names); each one's JSON
 * type follows from its default's text form, so a parameter added to the
 * engine shows up here without a table to update.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/qmp.h"

typedef enum { T_INT, T_BOOL, T_STRING } ParamType;

/* The type of a parameter: integer if its default is digits, boolean if
 * on/off, a string otherwise. */
static ParamType param_type(const char *name)
{
    /* max-cpu is decimal ("0.5"): a string, as QEMU passes sizes it
     * does not know. */
    if (!strcmp(name, "multifd-compression") || !strncmp(name, "tls-", 4) ||
        !strcmp(name, "allow-peer") || !strcmp(name, "max-cpu")) {
        return T_STRING;
    }
    RfParams *d = rf_params_new();
    char v[64] = "";
    if (d) {
        rf_params_get(d, name, v, sizeof(v), NULL);
    }
    rf_params_free(d);
    if (!strcmp(v, "on") || !strcmp(v, "off")) {
        return T_BOOL;
    }
    bool digits = v[0] != '\0';
    for (const char *c = v; *c; c++) {
        digits = digits && isdigit((unsigned char)*c);
    }
    return digits ? T_INT : T_STRING;
}

static bool known_param(const char *name)
{
    for (const char *const *n = rf_params_names(); *n; n++) {
        if (!strcmp(*n, name)) {
            return true;
        }
    }
    return false;
}

json_t *qmp_params_query(QmpMachine *m)
{
    json_t *o = json_object();
    for (const char *const *n = rf_params_names(); *n; n++) {
        char v[4096];
        if (!rf_params_get(m->params, *n, v, sizeof(v), NULL)) {
            continue;
        }
        switch (param_type(*n)) {
        case T_INT:
            json_object_set_new(o, *n, json_integer((json_int_t)strtoull(
                                           v, NULL, 10)));
            break;
        case T_BOOL:
            json_object_set_new(o, *n, json_boolean(!strcmp(v, "on")));
            break;
        case T_STRING:
            json_object_set_new(o, *n, json_string(v));
            break;
        }
    }
    return qmp_return(o);
}

/* QEMU 10's migrate_params_check wording for the parameters it has. */
static const struct {
    const char *name, *expects;
} qemu_ranges[] = {
    {"multifd-channels", "a value between 1 and 255"},
    {"multifd-zlib-level", "a value between 0 and 9"},
    {"multifd-zstd-level", "a value between 0 and 20"},
    {"multifd-qatzip-level", "a value between 1 and 9"},
    /* Sic: QEMU prints its macro's text. */
    {"downtime-limit", "an integer in the range of 0 to (2000 * 1000) ms"},
    {"max-bandwidth", "an integer in the range of 0 to 18446744073709551615 "
                      "bytes/second"},
};

/* QEMU's range message: "Parameter 'multifd_channels' expects ..." (the
 * C field name, underscores).  Others quote ramflow's allowed range. */
static json_t *range_error(const char *name, const RfError *err)
{
    char field[64];
    snprintf(field, sizeof(field), "%s", name);
    for (char *c = field; *c; c++) {
        *c = *c == '-' ? '_' : *c;
    }
    for (size_t i = 0; i < sizeof(qemu_ranges) / sizeof(qemu_ranges[0]);
         i++) {
        if (!strcmp(name, qemu_ranges[i].name)) {
            return qmp_error("GenericError", "Parameter '%s' expects %s",
                             field, qemu_ranges[i].expects);
        }
    }
    const char *msg = rf_error_msg(err);
    const char *allowed = strstr(msg, "(allowed: ");
    if (allowed) {
        allowed += strlen("(allowed: ");
        int len = (int)strlen(allowed);
        return qmp_error("GenericError", "Parameter '%s' expects %.*s", field,
                         len > 0 && allowed[len - 1] == ')' ? len - 1 : len,
                         allowed);
    }
    return qmp_error("GenericError", "%s", msg);
}

/* The uint8 parameters (QEMU's schema), checked by QEMU's input visitor
 * first; ramflow's own integers (multifd-reconnect-*, ...) are uint64. */
static bool is_uint8(const char *name)
{
    return !strcmp(name, "multifd-channels") ||
           !strcmp(name, "multifd-zlib-level") ||
           !strcmp(name, "multifd-zstd-level") ||
           !strcmp(name, "multifd-qatzip-level");
}

/* Checks one member's JSON type and applies it to p.  @return NULL or the
 * error reply. */
static json_t *set_one(RfParams *p, const char *name, json_t *v)
{
    char text[4096];
    switch (param_type(name)) {
    case T_INT:
        /* QEMU's input visitor reads any integer member as uint64
         * first, whatever its JSON type. */
        if (!json_is_integer(v)) {
            return qmp_error("GenericError", "Parameter '%s' expects uint64",
                             name);
        }
        if (is_uint8(name) &&
            (json_integer_value(v) < 0 || json_integer_value(v) > 255)) {
            return qmp_error("GenericError", "Parameter '%s' expects uint8_t",
                             name);
        }
        if (json_integer_value(v) < 0) {
            return qmp_error("GenericError", "Parameter '%s' expects uint64",
                             name);
        }
        snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(v));
        break;
    case T_BOOL:
        if (!json_is_boolean(v)) {
            return qmp_error("GenericError", "Invalid parameter type for "
                             "'%s', expected: boolean", name);
        }
        snprintf(text, sizeof(text), "%s", json_is_true(v) ? "on" : "off");
        break;
    case T_STRING:
        /* tls-* are QEMU's StrOrNull: null resets them. */
        if (json_is_null(v) && !strncmp(name, "tls-", 4)) {
            text[0] = '\0';
        } else if (!json_is_string(v)) {
            return qmp_error("GenericError", "Invalid parameter type for "
                             "'%s', expected: %s", name,
                             strncmp(name, "tls-", 4) ? "string"
                                                      : "StrOrNull");
        } else {
            snprintf(text, sizeof(text), "%s", json_string_value(v));
        }
        break;
    }
    RfError *err = NULL;
    if (rf_params_set(p, name, text, &err)) {
        return NULL;
    }
    json_t *reply;
    if (!strcmp(name, "multifd-compression")) {
        reply = qmp_error("GenericError", "Parameter 'multifd-compression' "
                          "does not accept value '%s'", text);
    } else if (param_type(name) == T_INT) {
        reply = range_error(name, err);
    } else {
        reply = qmp_error("GenericError", "%s", rf_error_msg(err));
    }
    rf_error_free(err);
    return reply;
}

/* The parameters the engine takes while a migration runs. */
static bool live_param(const char *name)
{
    return !strcmp(name, "max-bandwidth") ||
           !strcmp(name, "downtime-limit") || !strcmp(name, "max-rounds");
}

json_t *qmp_params_set(QmpMachine *m, json_t *args)
{
    const char *name;
    json_t *v;
    /* Unknown members first, as QEMU's visitor reports them. */
    json_object_foreach(args, name, v) {
        if (!known_param(name)) {
            return qmp_error("GenericError", "Parameter '%s' is unexpected",
                             name);
        }
    }
    RfParams *p = rf_params_dup(m->params);
    if (!p) {
        return qmp_error("GenericError", "out of memory");
    }
    json_object_foreach(args, name, v) {
        json_t *e = set_one(p, name, v);
        if (e) {
            rf_params_free(p);
            return e; /* nothing applied */
        }
    }
    rf_params_free(m->params);
    m->params = p;
    if (qmp_machine_migrating(m)) {
        json_object_foreach(args, name, v) {
            char text[64];
            if (live_param(name) &&
                rf_params_get(p, name, text, sizeof(text), NULL)) {
                /* Valid (checked above); a migration that just ended
                 * refuses, which is harmless. */
                rf_migration_set_param(m->mig, name, text, NULL);
            }
        }
    }
    return qmp_return(NULL);
}

/* ---- capabilities ----------------------------------------------------- */

/* QEMU 10's capabilities that ramflow does not have: setting one off is
 * accepted (it is off), on is refused by name. */
static const char *const qemu_only_caps[] = {
    "xbzrle", "rdma-pin-all", "postcopy-ram", "x-colo", "release-ram",
    "return-path", "pause-before-switchover", "dirty-bitmaps",
    "postcopy-blocktime", "late-block-activate", "x-ignore-shared",
    "validate-uuid", "background-snapshot", "zero-copy-send",
    "postcopy-preempt", "switchover-ack", "dirty-limit", "mapped-ram", NULL,
};

static bool in_list(const char *const *list, const char *name)
{
    for (; *list; list++) {
        if (!strcmp(*list, name)) {
            return true;
        }
    }
    return false;
}

static json_t *cap_entry(const char *name, bool state)
{
    return json_pack("{s:s, s:b}", "capability", name, "state", state);
}

json_t *qmp_caps_query(QmpMachine *m)
{
    json_t *a = json_array();
    json_array_append_new(a, cap_entry("events", m->events));
    json_array_append_new(a, cap_entry("multifd", m->multifd));
    for (const char *const *n = rf_params_cap_names(); *n; n++) {
        json_array_append_new(a, cap_entry(*n,
                                           rf_params_get_cap(m->params, *n)));
    }
    return qmp_return(a);
}

bool qmp_cap_known(const char *name)
{
    return !strcmp(name, "events") || !strcmp(name, "multifd") ||
           in_list(rf_params_cap_names(), name) ||
           in_list(qemu_only_caps, name);
}

/* Checks one {"capability": NAME, "state": BOOL} element.  @return NULL
 * or the error reply. */
static json_t *check_cap(json_t *e, size_t i, const char **name, bool *on)
{
    if (!json_is_object(e)) {
        return qmp_error("GenericError", "Invalid parameter type for "
                         "'capabilities[%zu]', expected: object", i);
    }
    json_t *c = json_object_get(e, "capability");
    json_t *s = json_object_get(e, "state");
    const char *key;
    json_t *v;
    json_object_foreach(e, key, v) {
        if (strcmp(key, "capability") && strcmp(key, "state")) {
            return qmp_error("GenericError", "Parameter 'capabilities[%zu].%s'"
                             " is unexpected", i, key);
        }
    }
    if (!c) {
        return qmp_error("GenericError", "Parameter 'capabilities[%zu]."
                         "capability' is missing", i);
    }
    if (!json_is_string(c)) {
        return qmp_error("GenericError", "Invalid parameter type for "
                         "'capabilities[%zu].capability', expected: string",
                         i);
    }
    if (!s) {
        return qmp_error("GenericError", "Parameter 'capabilities[%zu].state'"
                         " is missing", i);
    }
    if (!json_is_boolean(s)) {
        return qmp_error("GenericError", "Invalid parameter type for "
                         "'capabilities[%zu].state', expected: boolean", i);
    }
    *name = json_string_value(c);
    *on = json_is_true(s);
    bool ours = !strcmp(*name, "events") || !strcmp(*name, "multifd") ||
                in_list(rf_params_cap_names(), *name);
    if (ours) {
        return NULL;
    }
    if (!qmp_cap_known(*name)) {
        /* Sic: QEMU names the member without its path here. */
        return qmp_error("GenericError", "Parameter 'capability' does not "
                         "accept value '%s'", *name);
    }
    return *on ? qmp_error("GenericError", "Capability '%s' is not supported "
                           "by ramflow", *name)
               : NULL;
}

json_t *qmp_caps_set(QmpMachine *m, json_t *args)
{
    json_t *caps = json_object_get(args, "capabilities");
    if (!caps) {
        return qmp_error("GenericError",
                         "Parameter 'capabilities' is missing");
    }
    if (!json_is_array(caps)) {
        return qmp_error("GenericError", "Invalid parameter type for "
                         "'capabilities', expected: array");
    }
    size_t i;
    json_t *e;
    json_array_foreach(caps, i, e) {
        const char *name;
        bool on;
        json_t *err = check_cap(e, i, &name, &on);
        if (err) {
            return err;
        }
    }
    if (qmp_machine_migrating(m)) {
        return qmp_error("GenericError",
                         "There's a migration process in progress");
    }
    json_array_foreach(caps, i, e) {
        const char *name = json_string_value(json_object_get(e, "capability"));
        bool on = json_is_true(json_object_get(e, "state"));
        if (!strcmp(name, "events")) {
            m->events = on;
        } else if (!strcmp(name, "multifd")) {
            m->multifd = on;
        } else if (in_list(rf_params_cap_names(), name)) {
            rf_params_set_cap(m->params, name, on, NULL);
        }
    }
    return qmp_return(NULL);
}
