/*
 * ramflow - `incoming --qmp` and `guest --qmp`: the process waits for QMP
 * commands (docs/qmp.md) instead of migrating once and exiting.
 */
#include <stdio.h>

#include "control/cli.h"
#include "control/qmp.h"

static int out_of_memory(QmpMachine *m)
{
    RfError *err = NULL;
    rf_error_set(&err, RF_ERR_GENERIC, "out of memory");
    qmp_machine_destroy(m);
    return rf_cli_fail(NULL, err);
}

/* Serves m until quit or a signal; an optional first action (--listen, a
 * guest URI) starts as if a client had asked for it. */
static int serve(QmpMachine *m, const QmpCliOptions *o, const char *start)
{
    RfError *err = NULL;
    QmpServer *s = qmp_server_new(o->qmp_addr, o->hmp_addr, m, &err);
    if (!s) {
        qmp_machine_destroy(m);
        return rf_cli_fail(NULL, err);
    }
    bool ok = true;
    if (start) {
        ok = m->role == QMP_ROLE_DEST ? qmp_machine_incoming(m, start, &err)
                                      : qmp_machine_migrate(m, start, &err);
    }
    int rc = ok ? qmp_server_run(s) : rf_cli_fail(NULL, err);
    /* The migration's last callbacks still post to the server: end it
     * first. */
    qmp_machine_destroy(m);
    qmp_server_free(s);
    return rc;
}

int rf_cli_qmp_incoming(const QmpCliOptions *o, RfParams *params,
                        RfGuest *guest, RfRamSink *sink)
{
    QmpMachine m;
    if (!qmp_machine_init(&m, QMP_ROLE_DEST, params)) {
        return out_of_memory(&m);
    }
    m.guest = guest;
    m.sink = sink;
    m.uri_file = o->uri_file;
    m.quiet = o->quiet;
    return serve(&m, o, o->listen_uri);
}

int rf_cli_qmp_source(const QmpCliOptions *o, RfParams *params,
                      RfGuest *guest, RfRamSource *src)
{
    QmpMachine m;
    if (!qmp_machine_init(&m, QMP_ROLE_SOURCE, params)) {
        return out_of_memory(&m);
    }
    m.guest = guest;
    m.src = src;
    m.vm_running = guest != NULL;
    m.quiet = o->quiet;
    return serve(&m, o, o->listen_uri);
}
