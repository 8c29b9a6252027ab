/*
 * ramflow - capability negotiation (docs/protocol.md section 4.10).
 *
 * The source offers the capabilities it implements and names those it
 * requires; the destination takes the intersection with its own, or
 * refuses naming what is missing on which side.  Unknown bits a newer
 * peer offers fall out of the intersection by themselves; only an unknown
 * bit that a peer requires stops the migration, and the refusal names it
 * by number.  Nothing here does I/O.
 */
#include "wire/wire.h"

#include <stdio.h>
#include <string.h>

#include "ramflow/error.h"

/* Names are part of the protocol's messages and documentation: a bit
 * keeps its name forever. */
static const char *const cap_names[64] = {
    [RF_CAP_ROUND_ACK] = "round-ack",
    [RF_CAP_DEVICE_STATE] = "device-state",
    [RF_CAP_VERIFY] = "verify",
    [RF_CAP_RAW_PACKETS] = "raw-packets",
    [RF_CAP_ZERO_PAGES] = "zero-pages",
    [RF_CAP_FINAL_SYNC] = "final-sync",
    [RF_CAP_CRC32C] = "crc32c",
    [RF_CAP_PACKET_METHOD] = "packet-method",
    [RF_CAP_TLS_BINDING] = "tls-binding",
    [RF_CAP_RECONNECT] = "reconnect",
};

const char *rf_wire_cap_name(unsigned bit)
{
    return bit < 64 ? cap_names[bit] : NULL;
}

size_t rf_wire_caps_format(uint64_t caps, char *out, size_t cap)
{
    size_t len = 0;
    if (cap) {
        out[0] = '\0';
    }
    for (unsigned bit = 0; bit < 64; bit++) {
        if (!(caps & RF_CAP(bit))) {
            continue;
        }
        const char *name = rf_wire_cap_name(bit);
        const char *sep = len ? ", " : "";
        char item[64];
        int n = name ? snprintf(item, sizeof(item), "%scapability '%s'",
                                sep, name)
                     : snprintf(item, sizeof(item),
                                "%sunknown capability bit %u", sep, bit);
        /* item always fits: the longest name is far below 40 bytes. */
        if (len < cap) {
            snprintf(out + len, cap - len, "%s", item);
        }
        len += (size_t)n;
    }
    return len;
}

/* Appends "<side> lacks <caps> required by the <other>" to buf. */
static void append_missing(char *buf, size_t cap, const char *side,
                           uint64_t missing, const char *other)
{
    size_t used = strlen(buf);
    if (used) {
        used += (size_t)snprintf(buf + used, cap - used, "; ");
    }
    if (used >= cap) {
        return;
    }
    used += (size_t)snprintf(buf + used, cap - used, "%s lacks ", side);
    if (used >= cap) {
        return;
    }
    used += rf_wire_caps_format(missing, buf + used, cap - used);
    if (used >= cap) {
        return;
    }
    snprintf(buf + used, cap - used, " required by the %s", other);
}

bool rf_wire_caps_negotiate(uint64_t src_supported, uint64_t src_required,
                            uint64_t dst_supported, uint64_t dst_required,
                            uint64_t *negotiated, RfError **errp)
{
    if (dst_required & ~dst_supported) {
        char list[1024];
        rf_wire_caps_format(dst_required & ~dst_supported, list,
                            sizeof(list));
        rf_error_set(errp, RF_ERR_PARAM,
                     "the destination requires %s but does not support it",
                     list);
        return false;
    }
    if (src_required & ~src_supported) {
        /* The HELLO decoder refuses this already. */
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "HELLO field 'caps_required': 0x%016llx has bits "
                     "outside 'caps_supported' 0x%016llx",
                     (unsigned long long)src_required,
                     (unsigned long long)src_supported);
        return false;
    }
    uint64_t dst_lacks = src_required & ~dst_supported;
    uint64_t src_lacks = dst_required & ~src_supported;
    if (dst_lacks || src_lacks) {
        /* 64 named items at most: a few KiB at worst. */
        char msg[4096] = "";
        if (dst_lacks) {
            append_missing(msg, sizeof(msg), "destination", dst_lacks,
                           "source");
        }
        if (src_lacks) {
            append_missing(msg, sizeof(msg), "source", src_lacks,
                           "destination");
        }
        rf_error_set(errp, RF_ERR_MISMATCH, "%s", msg);
        return false;
    }
    *negotiated = src_supported & dst_supported;
    return true;
}

bool rf_wire_caps_check_accept(uint64_t src_supported, uint64_t src_required,
                               uint64_t negotiated, RfError **errp)
{
    char list[4096];
    if (negotiated & ~src_supported) {
        rf_wire_caps_format(negotiated & ~src_supported, list, sizeof(list));
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "ACCEPT field 'caps': 0x%016llx names %s, which the "
                     "source did not offer",
                     (unsigned long long)negotiated, list);
        return false;
    }
    if (src_required & ~negotiated) {
        rf_wire_caps_format(src_required & ~negotiated, list, sizeof(list));
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "ACCEPT field 'caps': 0x%016llx lacks %s required by "
                     "the source (the destination should have refused)",
                     (unsigned long long)negotiated, list);
        return false;
    }
    return true;
}
