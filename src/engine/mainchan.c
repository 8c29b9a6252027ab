/* ramflow - framed messages on the main (control) channel. */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

static const char *msg_name(unsigned type)
{
    static const char *names[] = {"INVALID", "HELLO", "ACCEPT", "ERROR",
                                  "ROUND", "END", "COMPLETE", "STATE",
                                  "ROUND_ACK", "STATS"};
    return type <= RF_MSG_MAX ? names[type] : "unknown";
}

const char *rf_msg_tls_hint(const uint8_t raw[2])
{
    /* A TLS record: content type handshake (22) or alert (21), then
     * major version 3. */
    if ((raw[0] == 22 || raw[0] == 21) && raw[1] == 3) {
        return " (the peer speaks TLS: give both sides tls-creds or "
               "tls-psk)";
    }
    return "";
}

bool rf_msg_send(RfConn *c, RfMsgType type, const void *payload,
                 uint32_t len, RfError **errp)
{
    uint8_t hdr[RF_MSG_HDR_SIZE];
    rf_wire_msg_hdr_encode(hdr, (uint16_t)type, len);
    struct iovec iov[2] = {{hdr, sizeof(hdr)}, {(void *)payload, len}};
    return rf_conn_sendv(c, iov, len ? 2 : 1, errp);
}

bool rf_engine_conn_setup(RfConn *c, unsigned timeout_ms, atomic_int *cancel,
                          unsigned keepalive_s, unsigned user_timeout_ms,
                          RfError **errp)
{
    c->timeout_ms = timeout_ms;
    c->cancel = cancel;
    if (!keepalive_s) {
        keepalive_s = timeout_ms >= 2000 ? timeout_ms / 2000 : 1;
    }
    if (!user_timeout_ms) {
        user_timeout_ms = timeout_ms;
    }
    return rf_conn_tcp_liveness(c, keepalive_s, user_timeout_ms, errp);
}

/* The ERROR message is a courtesy: a peer that stopped reading gets at
 * most this long, so a failure or cancel is not held up by it. */
#define ERROR_SEND_MS 1000u

void rf_msg_send_error(RfConn *c, const RfError *err)
{
    uint8_t buf[4200];
    size_t n = rf_wire_error_encode((uint32_t)rf_error_kind(err),
                                    rf_error_msg(err), buf, sizeof(buf));
    unsigned keep = c->timeout_ms;
    if (!keep || keep > ERROR_SEND_MS) {
        c->timeout_ms = ERROR_SEND_MS;
    }
    if (n) {
        rf_msg_send(c, RF_MSG_ERROR, buf, (uint32_t)n, NULL);
    }
    c->timeout_ms = keep;
}

static bool msg_recv_frame(RfConn *c, const char *peer, RfMsgHdr *hdr,
                           uint8_t *buf, size_t cap, RfError **errp);

bool rf_msg_ready(RfConn *c, int ms)
{
    return rf_conn_wait_readable(c, ms);
}

/* One deadline for header and payload: a peer trickling bytes cannot
 * hold the channel for longer than the stall limit. */
bool rf_msg_recv(RfConn *c, const char *peer, RfMsgHdr *hdr, uint8_t *buf,
                 size_t cap, RfError **errp)
{
    rf_conn_frame_begin(c);
    bool ok = msg_recv_frame(c, peer, hdr, buf, cap, errp);
    rf_conn_frame_end(c);
    return ok;
}

static bool msg_recv_frame(RfConn *c, const char *peer, RfMsgHdr *hdr,
                           uint8_t *buf, size_t cap, RfError **errp)
{
    uint8_t raw[RF_MSG_HDR_SIZE];
    if (!rf_conn_recv(c, raw, sizeof(raw), errp)) {
        rf_error_prefix(errp, "main channel");
        return false;
    }
    if (!rf_wire_msg_hdr_decode(raw, hdr, errp)) {
        rf_error_prefix(errp, "main channel%s", rf_msg_tls_hint(raw));
        return false;
    }
    if (hdr->length > cap) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "main channel: %s message of %u bytes, at most %zu "
                     "expected", msg_name(hdr->type), hdr->length, cap);
        return false;
    }
    if (!rf_conn_recv(c, buf, hdr->length, errp)) {
        rf_error_prefix(errp, "main channel");
        return false;
    }
    if (hdr->type == RF_MSG_ERROR) {
        uint32_t kind;
        char msg[4096];
        if (!rf_wire_error_decode(buf, hdr->length, &kind, msg, sizeof(msg),
                                  errp)) {
            rf_error_prefix(errp, "main channel: %s's ERROR message", peer);
            return false;
        }
        /* A newer peer's kind: keep its message, call it generic. */
        RfErrorKind k = rf_wire_error_kind(kind);
        if ((uint32_t)k != kind) {
            rf_error_set(errp, k, "%s reported: %s (error kind %u, unknown "
                         "to this version)", peer, msg, kind);
        } else {
            rf_error_set(errp, k, "%s reported: %s", peer, msg);
        }
        return false;
    }
    return true;
}

bool rf_msg_expect(RfConn *c, const char *peer, RfMsgType want, uint8_t *buf,
                   size_t cap, uint32_t *len, RfError **errp)
{
    RfMsgHdr hdr;
    if (!rf_msg_recv(c, peer, &hdr, buf, cap, errp)) {
        return false;
    }
    if (hdr.type != want) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "main channel: expected %s from the %s, got %s",
                     msg_name(want), peer, msg_name(hdr.type));
        return false;
    }
    *len = hdr.length;
    return true;
}

static RfError *peer_error(RfConn *c, const char *peer, int wait_ms);

RfError *rf_msg_peer_error(RfConn *c, const char *peer, int wait_ms)
{
    if (!c) {
        return NULL;
    }
    /* Each message (already on its way if ready) gets at most
     * ERROR_SEND_MS, so a failure path is never held for a timeout. */
    unsigned keep = c->timeout_ms;
    if (!keep || keep > ERROR_SEND_MS) {
        c->timeout_ms = ERROR_SEND_MS;
    }
    RfError *err = peer_error(c, peer, wait_ms);
    c->timeout_ms = keep;
    return err;
}

void rf_msg_explain_failure(RfConn *c, const char *peer, int wait_ms,
                            RfError **err)
{
    if (*err && rf_error_kind(*err) != RF_ERR_IO) {
        return;
    }
    /* An I/O error of ours: the reason, if the peer sent one, is already
     * queued before its close, so no wait for it. */
    RfError *reason = rf_msg_peer_error(c, peer, *err ? 0 : wait_ms);
    if (reason) {
        rf_error_free(*err);
        *err = reason;
    }
}

static RfError *peer_error(RfConn *c, const char *peer, int wait_ms)
{
    /* Progress messages (ROUND_ACK) may come first: skip a few. */
    for (int i = 0; i < 64 && rf_msg_ready(c, wait_ms); i++) {
        RfMsgHdr h;
        uint8_t buf[4200];
        RfError *err = NULL;
        if (rf_msg_recv(c, peer, &h, buf, sizeof(buf), &err)) {
            if (h.type == RF_MSG_ROUND_ACK || h.type == RF_MSG_STATS) {
                continue;
            }
            return NULL;
        }
        if (strstr(rf_error_msg(err), " reported: ")) {
            return err;
        }
        rf_error_free(err);
        return NULL;
    }
    return NULL;
}

bool rf_chan_binding(RfConn *main, const uint8_t session[16],
                     unsigned channel, uint8_t out[RF_CHAN_BINDING_SIZE],
                     RfError **errp)
{
    uint8_t ctx[18];
    memcpy(ctx, session, 16);
    ctx[16] = (uint8_t)(channel >> 8);
    ctx[17] = (uint8_t)channel;
    if (!rf_conn_export(main, RF_CHAN_BINDING_LABEL, ctx, sizeof(ctx), out,
                        RF_CHAN_BINDING_SIZE, errp)) {
        rf_error_prefix(errp, "data channel %u binding", channel);
        return false;
    }
    return true;
}
