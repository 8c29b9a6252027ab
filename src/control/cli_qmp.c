/*
 * ramflow - running a process under the monitors: `incoming --qmp`,
 * `guest --qmp` and `serve` wait for QMP / human-monitor commands
 * (docs/qmp.md) instead of migrating once and exiting.
 */
#include <stdio.h>

#include "control/cli.h"
#include "control/qmp.h"

int rf_cli_qmp_run(const QmpCliOptions *o, QmpMachine *m)
{
    RfError *err = NULL;
    m->uri_file = o->uri_file;
    m->quiet = o->quiet;
    QmpServer *s = m->params ? qmp_server_new(o->qmp_addr, o->hmp_addr, m,
                                              &err)
                             : NULL;
    if (!m->params) {
        rf_error_set(&err, RF_ERR_GENERIC, "out of memory");
    }
    bool ok = s != NULL;
    /* A first action (--listen, a guest URI) starts as if a client had
     * asked for it. */
    if (ok && o->start_uri) {
        ok = m->role == QMP_ROLE_DEST
                 ? qmp_machine_incoming(m, o->start_uri, &err)
                 : qmp_machine_migrate(m, o->start_uri, &err);
    }
    int rc = ok ? qmp_server_run(s) : rf_cli_fail(NULL, err);
    /* The migration's last callbacks still post to the server: end it
     * first. */
    qmp_machine_destroy(m);
    qmp_server_free(s);
    return rc;
}
