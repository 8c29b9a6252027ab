/*
 * ramflow bench - the decision data of `--multifd-compression auto` in a
 * source report, summed per cell.
 *
 * The source's JSON report carries, when the method is auto, a
 * top-level object
 *   "auto": {"rounds": [{"round": N, "bytes": {"none": B, "zstd-1": B},
 *                        "packets": {...}}, ...],
 *            "decisions": [{"t": S, "choice": "zstd-1", "channels": K,
 *                           "reason": "..."}, ...],
 *            "predicted_s": S, "actual_s": S}
 * Everything is read defensively: a report without it, or with members
 * missing or of another type, gives what it has (nothing is "-").
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "bench/bench_grid.h"

/* Adds bytes to a choice, adding the choice if new (dropped when the
 * table is full). */
static void add_choice(RfBenchAutoSum *a, const char *name, double bytes)
{
    unsigned i = 0;
    while (i < a->nchoices && strcmp(a->choice[i], name) != 0) {
        i++;
    }
    if (i == a->nchoices) {
        if (a->nchoices == RF_BENCH_AUTO_CHOICES) {
            return;
        }
        snprintf(a->choice[i], sizeof(a->choice[i]), "%s", name);
        a->bytes[i] = 0;
        a->nchoices++;
    }
    a->bytes[i] += bytes;
}

static void add_channels(RfBenchAutoSum *a, unsigned ch, double seconds)
{
    unsigned i = 0;
    while (i < a->nchan && a->chan[i] != ch) {
        i++;
    }
    if (i == a->nchan) {
        if (a->nchan == RF_BENCH_AUTO_CHANNELS) {
            return;
        }
        a->chan[i] = ch;
        a->chan_s[i] = 0;
        a->nchan++;
    }
    a->chan_s[i] += seconds;
}

/* A number (integer or real) >= 0, or -1. */
static double num_or(json_t *v)
{
    if (!json_is_number(v)) {
        return -1;
    }
    double x = json_number_value(v);
    return x >= 0 ? x : -1;
}

static void parse_rounds(json_t *rounds, RfBenchAutoSum *out)
{
    size_t i;
    json_t *r;
    json_array_foreach(rounds, i, r) {
        json_t *bytes = json_object_get(r, "bytes");
        const char *key;
        json_t *v;
        if (!json_is_object(bytes)) {
            continue;
        }
        json_object_foreach(bytes, key, v) {
            double b = num_or(v);
            if (b >= 0) {
                add_choice(out, key, b);
            }
        }
    }
}

/* Each decision's channel count holds from its "t" to the next
 * decision's (decisions in the order given; a later "t" that is not
 * later counts 0 s), the last one's until end_s when known. */
static void parse_decisions(json_t *decisions, double end_s,
                            RfBenchAutoSum *out)
{
    size_t n = json_array_size(decisions);
    for (size_t i = 0; i < n; i++) {
        json_t *d = json_array_get(decisions, i);
        if (!json_is_object(d)) {
            continue;
        }
        out->decisions++;
        double t = num_or(json_object_get(d, "t"));
        json_t *chv = json_object_get(d, "channels");
        if (t < 0 || !json_is_integer(chv) || json_integer_value(chv) < 1) {
            continue;
        }
        double next = end_s;
        if (i + 1 < n) {
            next = num_or(json_object_get(json_array_get(decisions, i + 1),
                                          "t"));
        }
        double held = next > t ? next - t : 0;
        add_channels(out, (unsigned)json_integer_value(chv), held);
    }
}

void rf_bench_auto_parse(json_t *report, RfBenchAutoSum *out)
{
    memset(out, 0, sizeof(*out));
    json_t *a = json_object_get(report, "auto");
    if (!json_is_object(a)) {
        return;
    }
    out->present = true;
    out->reports = 1;
    double predicted = num_or(json_object_get(a, "predicted_s"));
    double actual = num_or(json_object_get(a, "actual_s"));
    if (predicted >= 0 && actual > 0) {
        out->predicted_s = predicted;
        out->actual_s = actual;
        out->npredicted = 1;
    }
    json_t *rounds = json_object_get(a, "rounds");
    if (json_is_array(rounds)) {
        parse_rounds(rounds, out);
    }
    json_t *decisions = json_object_get(a, "decisions");
    if (json_is_array(decisions)) {
        parse_decisions(decisions, actual, out);
    }
}

void rf_bench_auto_merge(RfBenchAutoSum *acc, const RfBenchAutoSum *r)
{
    if (!r->present) {
        return;
    }
    acc->present = true;
    acc->reports += r->reports;
    acc->decisions += r->decisions;
    for (unsigned i = 0; i < r->nchoices; i++) {
        add_choice(acc, r->choice[i], r->bytes[i]);
    }
    for (unsigned i = 0; i < r->nchan; i++) {
        add_channels(acc, r->chan[i], r->chan_s[i]);
    }
    acc->predicted_s += r->predicted_s;
    acc->actual_s += r->actual_s;
    acc->npredicted += r->npredicted;
}

const char *rf_bench_auto_main(const RfBenchAutoSum *a, double *share)
{
    double total = 0;
    int best = -1;
    for (unsigned i = 0; i < a->nchoices; i++) {
        total += a->bytes[i];
        if (best < 0 || a->bytes[i] > a->bytes[best]) {
            best = (int)i;
        }
    }
    if (best < 0 || total <= 0) {
        *share = 0;
        return NULL;
    }
    *share = a->bytes[best] / total;
    return a->choice[best];
}

unsigned rf_bench_auto_main_channels(const RfBenchAutoSum *a)
{
    int best = -1;
    for (unsigned i = 0; i < a->nchan; i++) {
        if (best < 0 || a->chan_s[i] > a->chan_s[best]) {
            best = (int)i;
        }
    }
    return best < 0 ? 0 : a->chan[best];
}

void rf_bench_auto_describe(const RfBenchAutoSum *a, char *buf, size_t cap)
{
    if (!a->present) {
        snprintf(buf, cap, "-");
        return;
    }
    double share;
    const char *main = rf_bench_auto_main(a, &share);
    unsigned ch = rf_bench_auto_main_channels(a);
    size_t n = 0;
    buf[0] = '\0';
#define APPEND(...)                                                       \
    do {                                                                  \
        if (n < cap) {                                                    \
            int k = snprintf(buf + n, cap - n, __VA_ARGS__);              \
            n += k > 0 ? (size_t)k : 0;                                   \
        }                                                                 \
    } while (0)
    if (main) {
        APPEND("%s %.0f%%", main, 100 * share);
    } else {
        APPEND("no bytes");
    }
    if (ch) {
        APPEND(", %u ch", ch);
    }
    APPEND(", %u decision%s", a->decisions, a->decisions == 1 ? "" : "s");
    if (a->npredicted && a->actual_s > 0) {
        APPEND(", predicted/actual %.2f", a->predicted_s / a->actual_s);
    }
#undef APPEND
}
