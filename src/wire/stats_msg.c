/*
 * ramflow - the destination's STATS message (docs/protocol.md 4.11).
 *
 * With 'packet-method' the destination tells the source what its side
 * costs, so the source's 'auto' choice can weigh the destination's CPU
 * and decode rate as well as its own.  Fixed little-endian layout:
 * 69 bytes of figures, then nmethods records of 17 bytes.
 */
#include "wire/wire.h"

#include <string.h>

#include "ramflow/error.h"
#include "wire/bytes.h"

#define STATS_FIXED 69u
#define STATS_METHOD 17u

size_t rf_wire_stats_encode(const RfStats *st, uint8_t *out, size_t cap)
{
    if (st->nmethods > RF_STATS_MAX_METHODS ||
        cap < STATS_FIXED + (size_t)st->nmethods * STATS_METHOD) {
        return 0;
    }
    put_u64(out, st->wall_ns);
    put_u64(out + 8, st->cpu_ns);
    put_u64(out + 16, st->host_idle_ns);
    put_u64(out + 24, st->host_total_ns);
    put_u32(out + 32, st->ncpus);
    put_u32(out + 36, st->max_cpu_milli);
    put_u64(out + 40, st->recv_cpu_ns);
    put_u64(out + 48, st->recv_wait_ns);
    put_u64(out + 56, st->wire_bytes);
    put_u32(out + 64, st->running);
    out[68] = st->nmethods;
    uint8_t *p = out + STATS_FIXED;
    for (unsigned i = 0; i < st->nmethods; i++, p += STATS_METHOD) {
        p[0] = st->methods[i].method;
        put_u64(p + 1, st->methods[i].raw_bytes);
        put_u64(p + 9, st->methods[i].decode_ns);
    }
    return (size_t)(p - out);
}

bool rf_wire_stats_decode(const uint8_t *in, size_t len, RfStats *out,
                          RfError **errp)
{
    memset(out, 0, sizeof(*out));
    if (len < STATS_FIXED) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "STATS message of %zu bytes, at least %u expected", len,
                     STATS_FIXED);
        return false;
    }
    out->nmethods = in[68];
    if (out->nmethods > RF_STATS_MAX_METHODS ||
        len != STATS_FIXED + (size_t)out->nmethods * STATS_METHOD) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "STATS field 'nmethods': %u with %zu bytes, at most %u "
                     "methods of %u bytes each after %u", out->nmethods, len,
                     RF_STATS_MAX_METHODS, STATS_METHOD, STATS_FIXED);
        return false;
    }
    out->wall_ns = get_u64(in);
    out->cpu_ns = get_u64(in + 8);
    out->host_idle_ns = get_u64(in + 16);
    out->host_total_ns = get_u64(in + 24);
    out->ncpus = get_u32(in + 32);
    out->max_cpu_milli = get_u32(in + 36);
    out->recv_cpu_ns = get_u64(in + 40);
    out->recv_wait_ns = get_u64(in + 48);
    out->wire_bytes = get_u64(in + 56);
    out->running = get_u32(in + 64);
    uint32_t seen = 0;
    const uint8_t *p = in + STATS_FIXED;
    for (unsigned i = 0; i < out->nmethods; i++, p += STATS_METHOD) {
        uint8_t id = p[0];
        if (id >= 32 || (seen & (1u << id))) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "STATS method record %u: method %u %s", i, id,
                         id >= 32 ? "is above 31" : "listed twice");
            return false;
        }
        seen |= 1u << id;
        out->methods[i].method = id;
        out->methods[i].raw_bytes = get_u64(p + 1);
        out->methods[i].decode_ns = get_u64(p + 9);
    }
    return true;
}
