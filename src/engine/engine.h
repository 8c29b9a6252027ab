/* ramflow - engine internals shared by the source and destination sides. */
#ifndef RF_ENGINE_ENGINE_H
#define RF_ENGINE_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "channel/transport.h"
#include "ramflow/ramflow.h"
#include "wire/wire.h"

#define RF_DEFAULT_TIMEOUT_MS 30000u

/* The level parameter value for a method (params.c). */
int rf_params_level(const RfParams *p, const char *level_param);

/* ---- main channel messages (mainchan.c) ------------------------------- */

/* Sends one framed message. */
bool rf_msg_send(RfConn *c, RfMsgType type, const void *payload,
                 uint32_t len, RfError **errp);
/* Sends an ERROR message carrying err's kind and text (best effort). */
void rf_msg_send_error(RfConn *c, const RfError *err);
/* Waits up to ms for the main channel to become readable (or closed).
 * @return true if a read would not block. */
bool rf_msg_ready(RfConn *c, int ms);
/* Reads one framed message into buf (cap >= RF_MSG_MAX_PAYLOAD is always
 * enough).  An ERROR message from the peer is turned into an error with
 * the peer's kind and "<peer> reported: <message>". */
bool rf_msg_recv(RfConn *c, const char *peer, RfMsgHdr *hdr, uint8_t *buf,
                 size_t cap, RfError **errp);
/* After a failure: waits up to wait_ms for the peer's ERROR message, which
 * usually explains the failure better than a reset connection.
 * @return that error ("<peer> reported: ..."), or NULL. */
RfError *rf_msg_peer_error(RfConn *c, const char *peer, int wait_ms);
/* Reads one message and checks it has type `want`. */
bool rf_msg_expect(RfConn *c, const char *peer, RfMsgType want, uint8_t *buf,
                   size_t cap, uint32_t *len, RfError **errp);

#endif
