/*
 * ramflow - the monitors' server: the listeners (qmp_listen.c), the
 * clients (QMP and human), and the event queue, all on one thread (see
 * qmp.h).  A client that sends too
 * much, or reads too little, is dropped; nothing a client does reaches a
 * migration except through a command.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control/cli.h"
#include "control/qmp.h"

typedef struct Client {
    int fd, out_fd;  /* out_fd differs for stdio (0 in, 1 out) */
    QmpReader rd;
    char *out;
    size_t out_len, out_cap;
    QmpSession sess;
    bool closing;  /* drop once the output is flushed */
    bool hmp;      /* the human monitor: lines in, text out */
    bool waiting;  /* hmp: a blocking migrate runs; input waits */
    bool eof;      /* hmp: no more input; close once the lines ran */
    char *line;    /* hmp: the partial line */
    size_t line_len;
} Client;

typedef struct Listener {
    int fd;
    bool hmp;
    char unix_path[QMP_UNIX_PATH_MAX];
} Listener;

typedef struct Event {
    struct Event *next;
    char name[40];
    json_t *data;
} Event;

struct QmpServer {
    Listener ls[2];
    QmpMachine *m;
    Client *clients[QMP_MAX_CLIENTS];
    int wake[2];  /* event queue -> server thread */
    pthread_mutex_t lock;
    Event *head, *tail;
};

static Client *client_new(QmpServer *s, int fd, int out_fd, bool hmp);

/* Opens one listener (or, for the human monitor, stdio). */
static bool open_listener(QmpServer *s, Listener *l, const char *addr,
                          bool hmp, RfError **errp)
{
    const char *what = hmp ? "--monitor" : "--qmp";
    l->hmp = hmp;
    if (hmp && !strcmp(addr, "stdio")) {
        return client_new(s, 0, 1, true) != NULL;
    }
    l->fd = qmp_listen(addr, what, hmp ? "human monitor" : "QMP monitor",
                       l->unix_path, errp);
    return l->fd >= 0;
}

QmpServer *qmp_server_new(const char *qmp_addr, const char *hmp_addr,
                          QmpMachine *m, RfError **errp)
{
    QmpServer *s = calloc(1, sizeof(*s));
    if (!s) {
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory");
        return NULL;
    }
    s->m = m;
    s->wake[0] = s->wake[1] = -1;
    s->ls[0].fd = s->ls[1].fd = -1;
    pthread_mutex_init(&s->lock, NULL);
    if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        rf_error_set(errp, RF_ERR_IO, "pipe: %s", strerror(errno));
        qmp_server_free(s);
        return NULL;
    }
    if ((qmp_addr && !open_listener(s, &s->ls[0], qmp_addr, false, errp)) ||
        (hmp_addr && !open_listener(s, &s->ls[1], hmp_addr, true, errp))) {
        qmp_server_free(s);
        return NULL;
    }
    m->srv = s;
    return s;
}

void qmp_post_event(QmpServer *s, const char *name, json_t *data)
{
    Event *e = calloc(1, sizeof(*e));
    if (!e) {
        json_decref(data);
        return;
    }
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->data = data;
    pthread_mutex_lock(&s->lock);
    if (s->tail) {
        s->tail->next = e;
    } else {
        s->head = e;
    }
    s->tail = e;
    pthread_mutex_unlock(&s->lock);
    char b = 1;
    /* A full pipe already wakes the server: nothing lost. */
    if (write(s->wake[1], &b, 1) < 0) {
        (void)b;
    }
}

static void client_free(Client *c)
{
    if (c) {
        close(c->fd);
        qmp_reader_free(&c->rd);
        free(c->out);
        free(c->line);
        free(c);
    }
}

/* Writes what is buffered; @return false if the client is gone. */
static bool client_flush(Client *c)
{
    while (c->out_len) {
        ssize_t n = c->out_fd != c->fd
                        ? write(c->out_fd, c->out, c->out_len)
                        : send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
        if (n < 0) {
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        }
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
    }
    return true;
}

/* Queues text; a client that lets QMP_MAX_OUTPUT pile up is dropped. */
static void client_write(Client *c, const char *text, const char *end)
{
    size_t n = strlen(text), e = strlen(end);
    if (c->out_len + n + e > QMP_MAX_OUTPUT) {
        c->out_len = 0;
        c->closing = true;
        return;
    }
    if (c->out_len + n + e > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + n + e) {
            cap *= 2;
        }
        char *b = realloc(c->out, cap);
        if (!b) {
            c->closing = true;
            return;
        }
        c->out = b;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, text, n);
    memcpy(c->out + c->out_len + n, end, e);
    c->out_len += n + e;
}

/* Queues one JSON message (QEMU's separators, CRLF-terminated). */
static void client_send(Client *c, json_t *msg)
{
    char *text = json_dumps(msg, JSON_PRESERVE_ORDER);
    if (!text) {
        c->closing = true;
        return;
    }
    client_write(c, text, "\r\n");
    free(text);
}

#define HMP_PROMPT "(qemu) "

static json_t *greeting(void)
{
    return json_pack("{s:{s:{s:{s:i, s:i, s:i}, s:s}, s:[]}}", "QMP",
                     "version", "qemu", "micro", QMP_QEMU_MICRO, "minor",
                     QMP_QEMU_MINOR, "major", QMP_QEMU_MAJOR, "package",
                     "ramflow " RAMFLOW_VERSION_STRING, "capabilities");
}

/* A new client in a free slot, greeted; NULL (fd closed) when full. */
static Client *client_new(QmpServer *s, int fd, int out_fd, bool hmp)
{
    int slot = -1;
    for (int i = 0; i < QMP_MAX_CLIENTS && slot < 0; i++) {
        slot = s->clients[i] ? -1 : i;
    }
    Client *c = slot >= 0 ? calloc(1, sizeof(*c)) : NULL;
    if (!c) {
        close(fd); /* full: QEMU refuses further clients too */
        return NULL;
    }
    c->fd = fd;
    c->out_fd = out_fd;
    c->hmp = hmp;
    qmp_reader_init(&c->rd);
    if (hmp) {
        client_write(c, "ramflow " RAMFLOW_VERSION_STRING " monitor (QEMU's "
                     "migration commands) - type 'help' for more "
                     "information\n", HMP_PROMPT);
    } else {
        json_t *g = greeting();
        client_send(c, g);
        json_decref(g);
    }
    s->clients[slot] = c;
    return c;
}

static void accept_clients(QmpServer *s, Listener *l)
{
    for (;;) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            return;
        }
        client_new(s, fd, fd, l->hmp);
    }
}

/* Runs the complete lines a human-monitor client sent (none while a
 * blocking migrate runs: QEMU's monitor waits too). */
static void hmp_lines(QmpServer *s, Client *c)
{
    char *nl;
    while (!c->waiting && !atomic_load(&s->m->quit) &&
           (nl = memchr(c->line, '\n', c->line_len))) {
        *nl = '\0';
        bool wait = false;
        char *text = hmp_execute(s->m, c->line, &wait);
        size_t used = (size_t)(nl + 1 - c->line);
        memmove(c->line, nl + 1, c->line_len - used);
        c->line_len -= used;
        client_write(c, text ? text : "out of memory\n",
                     wait ? "" : HMP_PROMPT);
        free(text);
        c->waiting = wait;
    }
    if (c->eof && !c->waiting) {
        c->closing = true;
    }
}

static void hmp_input(QmpServer *s, Client *c, const char *buf, size_t n)
{
    if (c->line_len + n > QMP_MAX_MESSAGE) {
        client_write(c, "line too long\n", "");
        c->closing = true;
        return;
    }
    char *b = realloc(c->line, c->line_len + n + 1);
    if (!b) {
        c->closing = true;
        return;
    }
    c->line = b;
    memcpy(c->line + c->line_len, buf, n);
    c->line_len += n;
    hmp_lines(s, c);
}

/* Reads and answers what a client sent; marks it closing on EOF, error,
 * an oversized message or quit. */
static void client_input(QmpServer *s, Client *c)
{
    char buf[65536];
    ssize_t n = read(c->fd, buf, sizeof(buf)); /* a socket or stdin */
    if (n == 0 && c->hmp) {
        c->eof = true; /* a blocked migrate still answers */
        hmp_lines(s, c);
        return;
    }
    if (n == 0) {
        c->closing = true; /* what is queued still goes out */
        return;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        c->closing = true;
        c->out_len = 0;
        return;
    }
    if (n < 0) {
        return;
    }
    if (c->hmp) {
        hmp_input(s, c, buf, (size_t)n);
        return;
    }
    bool fed = qmp_reader_feed(&c->rd, buf, (size_t)n);
    for (;;) {
        char *msg;
        size_t len;
        QmpReadResult r = qmp_reader_next(&c->rd, &msg, &len);
        if (r == QMP_READ_NONE && fed) {
            return;
        }
        if (r != QMP_READ_MESSAGE) {
            json_t *e = qmp_error("GenericError", "JSON parse error, message "
                                  "exceeds %u bytes", QMP_MAX_MESSAGE);
            client_send(c, e);
            json_decref(e);
            c->closing = true;
            return;
        }
        json_t *reply = qmp_dispatch(s->m, &c->sess, msg, len);
        free(msg);
        if (reply) {
            client_send(c, reply);
            json_decref(reply);
        }
        if (atomic_load(&s->m->quit)) {
            return;
        }
    }
}

static void broadcast(QmpServer *s, json_t *msg)
{
    for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
        Client *c = s->clients[i];
        if (c && !c->hmp && c->sess.negotiated && !c->closing) {
            client_send(c, msg);
        }
    }
}

/* A migration ended: human-monitor clients blocked in `migrate` get its
 * outcome, their prompt, and their queued lines run. */
static void hmp_wake(QmpServer *s)
{
    for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
        Client *c = s->clients[i];
        if (c && c->waiting) {
            char *text = hmp_migration_ended(s->m);
            client_write(c, text ? text : "", HMP_PROMPT);
            free(text);
            c->waiting = false;
            hmp_lines(s, c);
        }
    }
}

/* Takes the queued events: the machine reacts first (a completed
 * migration resumes the destination's guest), then every client hears. */
static void drain_events(QmpServer *s)
{
    char b[256];
    while (read(s->wake[0], b, sizeof(b)) > 0) {
    }
    for (;;) {
        pthread_mutex_lock(&s->lock);
        Event *e = s->head;
        if (e) {
            s->head = e->next;
            if (!s->head) {
                s->tail = NULL;
            }
        }
        pthread_mutex_unlock(&s->lock);
        if (!e) {
            return;
        }
        qmp_machine_on_event(s->m, e->name, e->data);
        if (!qmp_machine_migrating(s->m)) {
            hmp_wake(s);
        }
        json_t *ev = qmp_event(e->name, e->data);
        if (s->m->events || strncmp(e->name, "MIGRATION", 9) != 0) {
            broadcast(s, ev);
        }
        json_decref(ev);
        free(e);
    }
}

/* After quit: the last replies and SHUTDOWN go out (a second at most). */
static void final_flush(QmpServer *s)
{
    json_t *ev = qmp_event("SHUTDOWN", json_pack("{s:b, s:s}", "guest", 0,
                                                 "reason", "host-qmp-quit"));
    broadcast(s, ev);
    json_decref(ev);
    for (int round = 0; round < 20; round++) {
        bool pending = false;
        for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
            Client *c = s->clients[i];
            if (c && c->out_len && client_flush(c) && c->out_len) {
                pending = true;
            }
        }
        if (!pending) {
            return;
        }
        poll(NULL, 0, 50);
    }
}

int qmp_server_run(QmpServer *s)
{
    struct pollfd pfd[QMP_MAX_CLIENTS + 3];
    int who[QMP_MAX_CLIENTS + 3];
    while (!atomic_load(&s->m->quit) && !atomic_load(&rf_cli_cancel)) {
        int n = 0;
        pfd[n++] = (struct pollfd){.fd = s->wake[0], .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = s->ls[0].fd, .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = s->ls[1].fd, .events = POLLIN};
        for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
            Client *c = s->clients[i];
            if (c) {
                who[n] = i;
                pfd[n++] = (struct pollfd){
                    .fd = c->fd,
                    .events = (c->closing || c->eof ? 0 : POLLIN) |
                              (c->out_len && c->out_fd == c->fd ? POLLOUT
                                                                : 0)};
            }
        }
        /* The timeout only bounds how late a signal is noticed. */
        if (poll(pfd, (nfds_t)n, 200) < 0 && errno != EINTR) {
            break;
        }
        if (pfd[0].revents) {
            drain_events(s);
        }
        for (int k = 3; k < n; k++) {
            Client *c = s->clients[who[k]];
            if (pfd[k].revents & POLLIN) {
                client_input(s, c);
            } else if ((pfd[k].revents & (POLLHUP | POLLERR)) && !c->eof) {
                c->closing = true;
                c->out_len = 0;
            }
        }
        for (int k = 1; k < 3; k++) {
            if (pfd[k].revents & POLLIN) {
                accept_clients(s, &s->ls[k - 1]);
            }
        }
        drain_events(s);
        for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
            Client *c = s->clients[i];
            if (!c) {
                continue;
            }
            bool alive = client_flush(c);
            if (!alive || (c->closing && c->out_len == 0)) {
                client_free(c);
                s->clients[i] = NULL;
            }
        }
    }
    if (atomic_load(&s->m->quit)) {
        final_flush(s);
    }
    return RF_EXIT_OK;
}

void qmp_server_free(QmpServer *s)
{
    if (!s) {
        return;
    }
    for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
        client_free(s->clients[i]);
    }
    while (s->head) {
        Event *e = s->head;
        s->head = e->next;
        json_decref(e->data);
        free(e);
    }
    for (int i = 0; i < 2; i++) {
        if (s->ls[i].fd >= 0) {
            close(s->ls[i].fd);
        }
        if (s->ls[i].unix_path[0]) {
            unlink(s->ls[i].unix_path);
        }
    }
    for (int i = 0; i < 2; i++) {
        if (s->wake[i] >= 0) {
            close(s->wake[i]);
        }
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
}
