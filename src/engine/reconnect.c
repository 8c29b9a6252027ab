/*
 * ramflow - the source's half of a data channel reconnect (capability
 * 'reconnect', docs/protocol.md 5.1): a new connection to the same
 * address, the channel's hello and binding as the first time with the
 * next generation, then the destination's RESUME saying where to
 * continue.  Runs on the channel's thread; everything it reads was set up
 * before the channels started.
 */
#include <string.h>

#include "engine/engine.h"

RfConn *rf_engine_rejoin(void *ctx, unsigned ch, uint32_t gen,
                         atomic_int *cancel, uint64_t *next_seq,
                         RfError **errp)
{
    const RfRejoin *r = ctx;
    RfConn *c = rf_secure_connect(r->secure, r->uri, r->timeout_ms, cancel,
                                  errp);
    if (!c || !rf_engine_conn_setup(c, r->timeout_ms, cancel,
                                    r->keepalive_s, r->user_timeout_ms,
                                    errp)) {
        rf_conn_close(c);
        return NULL;
    }
    uint8_t hello[RF_CHAN_OPEN_MAX + RF_CHAN_GEN_SIZE];
    memcpy(hello, r->hello[ch], r->hello_len);
    rf_wire_chan_gen_encode(gen, hello + r->hello_len);
    uint8_t resume[RF_RESUME_SIZE];
    bool ok = rf_conn_send(c, hello, r->hello_len + RF_CHAN_GEN_SIZE, errp);
    if (ok) {
        rf_conn_frame_begin(c);
        ok = rf_conn_recv(c, resume, sizeof(resume), errp);
        rf_conn_frame_end(c);
    }
    if (ok && !rf_wire_resume_decode(resume, next_seq, errp)) {
        ok = false;
    }
    if (!ok) {
        rf_conn_close(c);
        return NULL;
    }
    return c;
}
