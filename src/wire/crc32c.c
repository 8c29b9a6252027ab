/*
 * ramflow - the CRC32C of data packets (capability 'crc32c',
 * docs/protocol.md 4.10 and 6.1), with ISA-L's crc32_iscsi: it uses the
 * SSE4.2 crc32 instruction (or PCLMULQDQ folding) where the CPU has it,
 * so a packet's CRC costs a small fraction of copying it.
 */
#include "wire/wire.h"

#include <isa-l/crc.h>
#include <limits.h>
#include <string.h>

#include "wire/bytes.h"

#define CRC_INIT 0xFFFFFFFFu

uint32_t rf_wire_crc_update(uint32_t state, const void *buf, size_t len)
{
    /* crc32_iscsi takes an int length and a non-const pointer (it only
     * reads); feed it in chunks that fit. */
    const unsigned char *p = buf;
    while (len) {
        size_t n = len > (size_t)INT_MAX ? (size_t)INT_MAX : len;
        state = crc32_iscsi((unsigned char *)p, (int)n, state);
        p += n;
        len -= n;
    }
    return state;
}

uint32_t rf_wire_crc32c(const void *buf, size_t len)
{
    return rf_wire_crc_end(rf_wire_crc_update(CRC_INIT, buf, len));
}

uint32_t rf_wire_crc_begin(const uint8_t in[RF_PKT_HDR_SIZE])
{
    /* The header as sent, except its crc field, which counts as 0. */
    static const uint8_t zero[4];
    uint32_t s = rf_wire_crc_update(CRC_INIT, in, RF_PKT_CRC_OFFSET);
    s = rf_wire_crc_update(s, zero, sizeof(zero));
    return rf_wire_crc_update(s, in + RF_PKT_CRC_OFFSET + 4,
                              RF_PKT_HDR_SIZE - RF_PKT_CRC_OFFSET - 4);
}

void rf_wire_packet_set_crc(uint8_t out[RF_PKT_HDR_SIZE], uint32_t crc)
{
    put_u32(out + RF_PKT_CRC_OFFSET, crc);
}
