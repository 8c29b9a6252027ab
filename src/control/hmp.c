/*
 * ramflow - the human monitor: QEMU's HMP migration commands, each turned
 * into the QMP command it stands for (qmp_execute) and the reply printed
 * as QEMU's monitor prints it.  One parser for both monitors: HMP can do
 * nothing QMP cannot.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/cli.h"
#include "control/qmp.h"

#define MAX_WORDS 8

/* Prints an error reply as QEMU's monitor does ("Error: ..."); @return
 * whether the reply was a success. */
static bool print_reply(FILE *f, json_t *reply)
{
    json_t *e = json_object_get(reply, "error");
    if (e) {
        fprintf(f, "Error: %s\n",
                json_string_value(json_object_get(e, "desc")));
    }
    return e == NULL;
}

/* Runs a QMP command, prints an error if any; @return the reply's
 * "return" (a new reference) or NULL. */
static json_t *run(FILE *f, QmpMachine *m, const char *name, json_t *args)
{
    json_t *reply = qmp_execute(m, name, args);
    json_decref(args);
    json_t *ret = NULL;
    if (print_reply(f, reply)) {
        ret = json_incref(json_object_get(reply, "return"));
    }
    json_decref(reply);
    return ret;
}

static void done(FILE *f, QmpMachine *m, const char *name, json_t *args)
{
    json_decref(run(f, m, name, args));
}

/* A parameter's value in HMP text, typed as query-migrate-parameters
 * reports it: sizes take K/M/G/T, booleans on/off. */
static json_t *typed_value(FILE *f, QmpMachine *m, const char *name,
                           const char *text)
{
    json_t *params = run(f, m, "query-migrate-parameters", NULL);
    json_t *cur = json_object_get(params, name);
    json_t *v = NULL;
    uint64_t n;
    if (json_is_integer(cur)) {
        if (rf_cli_parse_size(text, &n)) {
            v = json_integer((json_int_t)n);
        } else {
            fprintf(f, "Error: Parameter '%s' expects uint64\n", name);
        }
    } else if (json_is_boolean(cur)) {
        bool on = !strcmp(text, "on") || !strcmp(text, "true");
        if (on || !strcmp(text, "off") || !strcmp(text, "false")) {
            v = json_boolean(on);
        } else {
            fprintf(f, "Error: Parameter '%s' expects 'on' or 'off'\n", name);
        }
    } else if (cur) {
        v = json_string(text);
    } else {
        fprintf(f, "Error: invalid parameter value: %s\n", name);
    }
    json_decref(params);
    return v;
}

static void info_migrate(FILE *f, QmpMachine *m)
{
    json_t *i = run(f, m, "query-migrate", NULL);
    const char *st = json_string_value(json_object_get(i, "status"));
    fprintf(f, "Status: \t\t%s\n", st ? st : "none");
    json_t *ram = json_object_get(i, "ram");
#define I(o, k) ((long long)json_integer_value(json_object_get(o, k)))
    if (json_object_get(i, "total-time")) {
        fprintf(f, "Time (ms): \t\ttotal=%lld, setup=%lld", I(i, "total-time"),
                I(i, "setup-time"));
        if (json_object_get(i, "downtime")) {
            fprintf(f, ", down=%lld", I(i, "downtime"));
        }
        if (json_object_get(i, "expected-downtime")) {
            fprintf(f, ", exp_down=%lld", I(i, "expected-downtime"));
        }
        fprintf(f, "\n");
    }
    if (ram) {
        fprintf(f, "RAM info:\n");
        fprintf(f, "  Throughput (Mbps): \t%.2f\n",
                json_real_value(json_object_get(ram, "mbps")));
        fprintf(f, "  Sizes: \t\tpagesize=%lld, total=%lld\n",
                I(ram, "page-size"), I(ram, "total"));
        fprintf(f, "  Transfers: \t\ttransferred=%lld, remain=%lld\n",
                I(ram, "transferred"), I(ram, "remaining"));
        fprintf(f, "    Channels: \t\tprecopy=%lld, multifd=%lld, "
                "postcopy=0\n", I(ram, "precopy-bytes"),
                I(ram, "multifd-bytes"));
        fprintf(f, "    Page Types: \tnormal=%lld, zero=%lld\n",
                I(ram, "normal"), I(ram, "duplicate"));
        fprintf(f, "  Page Rates (pps): \ttransfer=%lld, dirty=%lld\n",
                I(ram, "pages-per-second"), I(ram, "dirty-pages-rate"));
        fprintf(f, "  Others: \t\tdirty_syncs=%lld\n",
                I(ram, "dirty-sync-count"));
    }
#undef I
    const char *err = json_string_value(json_object_get(i, "error-desc"));
    if (err) {
        fprintf(f, "Error: \t\t\t%s\n", err);
    }
    json_decref(i);
}

/* "name: value" lines, as QEMU's info migrate_parameters. */
static void info_params(FILE *f, QmpMachine *m)
{
    json_t *p = run(f, m, "query-migrate-parameters", NULL);
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v) {
        if (json_is_integer(v)) {
            fprintf(f, "%s: %lld\n", k, (long long)json_integer_value(v));
        } else if (json_is_boolean(v)) {
            fprintf(f, "%s: %s\n", k, json_is_true(v) ? "on" : "off");
        } else {
            fprintf(f, "%s: '%s'\n", k, json_string_value(v));
        }
    }
    json_decref(p);
}

static void info_caps(FILE *f, QmpMachine *m)
{
    json_t *c = run(f, m, "query-migrate-capabilities", NULL);
    size_t i;
    json_t *e;
    json_array_foreach(c, i, e) {
        fprintf(f, "%s: %s\n",
                json_string_value(json_object_get(e, "capability")),
                json_is_true(json_object_get(e, "state")) ? "on" : "off");
    }
    json_decref(c);
}

static void info_status(FILE *f, QmpMachine *m)
{
    json_t *s = run(f, m, "query-status", NULL);
    const char *st = json_string_value(json_object_get(s, "status"));
    if (json_is_true(json_object_get(s, "running"))) {
        fprintf(f, "VM status: running\n");
    } else if (st && strcmp(st, "paused") != 0) {
        fprintf(f, "VM status: paused (%s)\n", st);
    } else {
        fprintf(f, "VM status: paused\n");
    }
    json_decref(s);
}

static const char help_text[] =
    "cont -- resume emulation\n"
    "info migrate -- show migration status\n"
    "info migrate_capabilities -- show current migration capabilities\n"
    "info migrate_parameters -- show current migration parameters\n"
    "info status -- show the current VM status (running|paused)\n"
    "info version -- show the version of QEMU\n"
    "migrate [-d] uri -- migrate to URI (using -d to not wait for "
    "completion)\n"
    "migrate_cancel -- cancel the current VM migration\n"
    "migrate_incoming uri -- Continue an incoming migration from an "
    "-incoming defer\n"
    "migrate_set_capability capability state -- Enable/Disable the usage "
    "of a capability for migration\n"
    "migrate_set_parameter parameter value -- Set the parameter for "
    "migration\n"
    "quit|q -- quit the emulator\n"
    "stop|s -- stop emulation\n";

static void info(FILE *f, QmpMachine *m, const char *what)
{
    if (!what) {
        fprintf(f, "info: missing argument\n");
    } else if (!strcmp(what, "migrate")) {
        info_migrate(f, m);
    } else if (!strcmp(what, "migrate_parameters")) {
        info_params(f, m);
    } else if (!strcmp(what, "migrate_capabilities")) {
        info_caps(f, m);
    } else if (!strcmp(what, "status")) {
        info_status(f, m);
    } else if (!strcmp(what, "version")) {
        fprintf(f, "%d.%d.%d (ramflow %s)\n", QMP_QEMU_MAJOR, QMP_QEMU_MINOR,
                QMP_QEMU_MICRO, RAMFLOW_VERSION_STRING);
    } else {
        fprintf(f, "unknown info command: '%s'\n", what);
    }
}

/* `migrate [-d] URI`: without -d, the monitor waits for the end (*wait),
 * as QEMU's does; through human-monitor-command (wait NULL) it returns at
 * once. */
static void migrate(FILE *f, QmpMachine *m, char **w, int n, bool *wait)
{
    bool detach = n > 1 && !strcmp(w[1], "-d");
    const char *uri = w[detach ? 2 : 1];
    if (!uri) {
        fprintf(f, "migrate: missing argument 'uri'\n");
        return;
    }
    json_t *r = run(f, m, "migrate", json_pack("{s:s}", "uri", uri));
    if (r && !detach && wait) {
        *wait = true;
    }
    json_decref(r);
}

char *hmp_execute(QmpMachine *m, const char *line, bool *wait)
{
    char *copy = strdup(line);
    char *w[MAX_WORDS + 1] = {NULL};
    int n = 0;
    for (char *save, *t = copy ? strtok_r(copy, " \t\r\n", &save) : NULL;
         t && n < MAX_WORDS; t = strtok_r(NULL, " \t\r\n", &save)) {
        w[n++] = t;
    }
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f) {
        free(copy);
        return NULL;
    }
    const char *c = n ? w[0] : "";
    if (!n) {
        /* an empty line */
    } else if (!strcmp(c, "help") || !strcmp(c, "?")) {
        fputs(help_text, f);
    } else if (!strcmp(c, "info")) {
        info(f, m, w[1]);
    } else if (!strcmp(c, "migrate_set_parameter") && n == 3) {
        json_t *v = typed_value(f, m, w[1], w[2]);
        if (v) {
            json_t *args = json_object();
            json_object_set_new(args, w[1], v);
            done(f, m, "migrate-set-parameters", args);
        }
    } else if (!strcmp(c, "migrate_set_capability") && n == 3) {
        bool on = !strcmp(w[2], "on") || !strcmp(w[2], "true");
        if (!on && strcmp(w[2], "off") && strcmp(w[2], "false")) {
            fprintf(f, "Expected 'on' or 'off'\nTry \"help "
                    "migrate_set_capability\" for more information\n");
        } else if (!qmp_cap_known(w[1])) {
            /* QEMU's HMP parses the name itself, with its own words. */
            fprintf(f, "Error: invalid parameter value: %s\n", w[1]);
        } else {
            done(f, m, "migrate-set-capabilities",
                 json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability",
                           w[1], "state", on));
        }
    } else if (!strcmp(c, "migrate")) {
        migrate(f, m, w, n, wait);
    } else if (!strcmp(c, "migrate_incoming") && n == 2) {
        done(f, m, "migrate-incoming", json_pack("{s:s}", "uri", w[1]));
    } else if (!strcmp(c, "migrate_cancel")) {
        done(f, m, "migrate_cancel", NULL);
    } else if (!strcmp(c, "stop") || !strcmp(c, "s")) {
        done(f, m, "stop", NULL);
    } else if (!strcmp(c, "cont") || !strcmp(c, "c")) {
        done(f, m, "cont", NULL);
    } else if (!strcmp(c, "quit") || !strcmp(c, "q")) {
        done(f, m, "quit", NULL);
    } else if (!strncmp(c, "migrate", 7)) {
        fprintf(f, "%s: wrong number of arguments (see 'help')\n", c);
    } else {
        fprintf(f, "unknown command: '%s'\n", c);
    }
    fclose(f);
    free(copy);
    return out;
}

char *hmp_migration_ended(QmpMachine *m)
{
    json_t *i = qmp_execute(m, "query-migrate", NULL);
    json_t *r = json_object_get(i, "return");
    const char *st = json_string_value(json_object_get(r, "status"));
    const char *err = json_string_value(json_object_get(r, "error-desc"));
    char *out = NULL;
    if (st && !strcmp(st, "completed")) {
        out = strdup("");
    } else if (asprintf(&out, "Error: migration %s%s%s\n", st ? st : "ended",
                        err ? ": " : "", err ? err : "") < 0) {
        out = NULL;
    }
    json_decref(i);
    return out;
}
