/*
 * ramflow - QMP framing: a client's byte stream cut into JSON texts, and
 * the reply, error and event objects QEMU sends.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "control/qmp.h"

void qmp_reader_init(QmpReader *r)
{
    memset(r, 0, sizeof(*r));
}

void qmp_reader_free(QmpReader *r)
{
    free(r->buf);
    memset(r, 0, sizeof(*r));
}

bool qmp_reader_feed(QmpReader *r, const char *data, size_t n)
{
    /* One message may be QMP_MAX_MESSAGE; a little slack lets the scanner
     * see it end before refusing. */
    if (r->len + n > QMP_MAX_MESSAGE + 65536) {
        return false;
    }
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n) {
            cap *= 2;
        }
        char *b = realloc(r->buf, cap);
        if (!b) {
            return false;
        }
        r->buf = b;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, data, n);
    r->len += n;
    return true;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Hands out buf[0, end) and keeps the rest for the next call. */
static QmpReadResult take(QmpReader *r, size_t end, char **out,
                          size_t *outlen)
{
    char *msg = malloc(end + 1);
    if (!msg) {
        return QMP_READ_TOO_BIG;
    }
    memcpy(msg, r->buf, end);
    msg[end] = '\0';
    memmove(r->buf, r->buf + end, r->len - end);
    r->len -= end;
    r->scan = 0;
    r->depth = 0;
    r->in_string = r->escape = r->started = false;
    *out = msg;
    *outlen = end;
    return QMP_READ_MESSAGE;
}

/* Scans from where the last call stopped, so a message that arrives a
 * byte at a time costs linear time. */
QmpReadResult qmp_reader_next(QmpReader *r, char **out, size_t *outlen)
{
    if (!r->started) {
        size_t skip = 0;
        while (skip < r->len && is_space(r->buf[skip])) {
            skip++;
        }
        memmove(r->buf, r->buf + skip, r->len - skip);
        r->len -= skip;
        if (r->len == 0) {
            return QMP_READ_NONE;
        }
        r->started = true;
        r->scan = 0;
    }
    char first = r->buf[0];
    bool nested = first == '{' || first == '[';
    bool string = first == '"';
    if (!nested && !string) {
        /* A scalar or a stray bracket: up to white space or a bracket. */
        if (first == '}' || first == ']') {
            return take(r, 1, out, outlen);
        }
        for (size_t i = r->scan ? r->scan : 1; i < r->len; i++) {
            char c = r->buf[i];
            if (is_space(c) || c == '{' || c == '[' || c == '}' ||
                c == ']' || c == '"') {
                return take(r, i, out, outlen);
            }
            r->scan = i + 1;
        }
    } else {
        for (size_t i = r->scan; i < r->len; i++) {
            char c = r->buf[i];
            r->scan = i + 1;
            if (r->in_string) {
                if (r->escape) {
                    r->escape = false;
                } else if (c == '\\') {
                    r->escape = true;
                } else if (c == '"') {
                    r->in_string = false;
                    if (string) {
                        return take(r, i + 1, out, outlen);
                    }
                }
                continue;
            }
            if (c == '"') {
                r->in_string = true;
            } else if (c == '{' || c == '[') {
                r->depth++;
            } else if (c == '}' || c == ']') {
                if (--r->depth == 0) {
                    return take(r, i + 1, out, outlen);
                }
            }
        }
    }
    return r->len > QMP_MAX_MESSAGE ? QMP_READ_TOO_BIG : QMP_READ_NONE;
}

json_t *qmp_error(const char *cls, const char *fmt, ...)
{
    char desc[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(desc, sizeof(desc), fmt, ap);
    va_end(ap);
    return json_pack("{s:{s:s, s:s}}", "error", "class", cls, "desc", desc);
}

json_t *qmp_return(json_t *value)
{
    json_t *o = json_object();
    json_object_set_new(o, "return", value ? value : json_object());
    return o;
}

json_t *qmp_event(const char *name, json_t *data)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    json_t *o = json_pack("{s:s, s:{s:I, s:I}}", "event", name, "timestamp",
                          "seconds", (json_int_t)tv.tv_sec, "microseconds",
                          (json_int_t)tv.tv_usec);
    if (data) {
        json_object_set_new(o, "data", data);
    }
    return o;
}
