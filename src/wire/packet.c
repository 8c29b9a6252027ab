/*
 * ramflow - data-channel packets: the 40-byte header and the page indexes
 * that follow it (docs/protocol.md, "Packets").
 *
 * A receiving channel decodes every header with the limits it negotiated
 * before it reads a single payload byte, so a hostile or broken peer can
 * neither make it allocate, read past its buffers, nor write outside a
 * block.
 */
#include "wire/wire.h"

#include <stdlib.h>
#include <string.h>

#include "ramflow/error.h"
#include "wire/bytes.h"

/* Byte offsets of the header fields (docs/protocol.md). */
enum {
    PKT_OFF_MAGIC = 0,
    PKT_OFF_VERSION = 4,
    PKT_OFF_METHOD = 6,
    PKT_OFF_FLAGS = 7,
    PKT_OFF_BLOCK = 8,
    PKT_OFF_NORMAL = 12,
    PKT_OFF_ZERO = 14,
    PKT_OFF_PAYLOAD = 16,
    PKT_OFF_ROUND = 20,
    PKT_OFF_SEQ = 24,
    PKT_OFF_CRC = RF_PKT_CRC_OFFSET,
    PKT_OFF_RESERVED = 36, /* byte 36: level with 'packet-method' */
};

void rf_wire_packet_hdr_encode(const RfPacketHdr *h,
                               uint8_t out[RF_PKT_HDR_SIZE])
{
    put_u32(out + PKT_OFF_MAGIC, RF_PKT_MAGIC);
    put_u16(out + PKT_OFF_VERSION, h->version);
    out[PKT_OFF_METHOD] = h->method;
    out[PKT_OFF_FLAGS] = h->flags;
    put_u32(out + PKT_OFF_BLOCK, h->block);
    put_u16(out + PKT_OFF_NORMAL, h->normal);
    put_u16(out + PKT_OFF_ZERO, h->zero);
    put_u32(out + PKT_OFF_PAYLOAD, h->payload_size);
    put_u32(out + PKT_OFF_ROUND, h->round);
    put_u64(out + PKT_OFF_SEQ, h->seq);
    put_u32(out + PKT_OFF_CRC, h->crc);
    put_u32(out + PKT_OFF_RESERVED, h->level);
}

/* Checks the page counts and payload size of a packet that carries pages
 * (not a SYNC).  Split out to keep the header decoder readable. */
static bool check_page_packet(const RfPacketHdr *h, const RfPacketLimits *lim,
                              RfError **errp)
{
    if (h->block >= lim->nblocks) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet field 'block': %u, the layout has %u blocks "
                     "(0..%u allowed)", h->block, lim->nblocks,
                     lim->nblocks ? lim->nblocks - 1 : 0);
        return false;
    }
    if (h->normal > RF_PACKET_MAX_PAGES) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet field 'normal': %u pages, at most %u allowed",
                     h->normal, RF_PACKET_MAX_PAGES);
        return false;
    }
    if (h->zero > RF_PACKET_MAX_PAGES) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet field 'zero': %u pages, at most %u allowed",
                     h->zero, RF_PACKET_MAX_PAGES);
        return false;
    }
    uint32_t pages = (uint32_t)h->normal + h->zero;
    if (pages == 0 || pages > RF_PACKET_MAX_PAGES) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet fields 'normal' + 'zero': %u + %u = %u pages, "
                     "1..%u allowed", h->normal, h->zero, pages,
                     RF_PACKET_MAX_PAGES);
        return false;
    }
    if (pages > lim->block_pages[h->block]) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet fields 'normal' + 'zero': %u pages, block %u "
                     "has only %llu pages", pages, h->block,
                     (unsigned long long)lim->block_pages[h->block]);
        return false;
    }
    if (h->flags & RF_PKT_RAW) {
        uint32_t want = (uint32_t)h->normal * RF_PAGE_SIZE;
        if (h->payload_size != want) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "packet field 'payload_size': %u bytes in a RAW "
                         "packet of %u normal pages, must be exactly %u",
                         h->payload_size, h->normal, want);
            return false;
        }
        return true;
    }
    if (h->normal == 0 && h->payload_size != 0) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet field 'payload_size': %u bytes with no normal "
                     "pages, must be 0", h->payload_size);
        return false;
    }
    if (h->normal > 0 && h->payload_size == 0) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet field 'payload_size': 0 bytes for %u normal "
                     "pages, a compressed payload is never empty",
                     h->normal);
        return false;
    }
    if (h->normal > 0) {
        /* Without a method bound, nothing may be larger than raw pages. */
        size_t (*bound)(uint32_t) = lim->packet_method
                                        ? lim->max_payload_of[h->method]
                                        : lim->max_payload;
        size_t max = bound ? bound(h->normal)
                           : (size_t)h->normal * RF_PAGE_SIZE;
        if (h->payload_size > max) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "packet field 'payload_size': %u bytes for %u "
                         "normal pages, at most %zu allowed by the method",
                         h->payload_size, h->normal, max);
            return false;
        }
    }
    return true;
}

bool rf_wire_packet_hdr_decode(const uint8_t in[RF_PKT_HDR_SIZE],
                               const RfPacketLimits *lim, RfPacketHdr *out,
                               RfError **errp)
{
    uint32_t magic = get_u32(in + PKT_OFF_MAGIC);
    if (magic != RF_PKT_MAGIC) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet field 'magic': 0x%08x, expected 0x%08x "
                     "(\"RFPK\")", magic, RF_PKT_MAGIC);
        return false;
    }
    RfPacketHdr h = {
        .version = get_u16(in + PKT_OFF_VERSION),
        .method = in[PKT_OFF_METHOD],
        .flags = in[PKT_OFF_FLAGS],
        .block = get_u32(in + PKT_OFF_BLOCK),
        .normal = get_u16(in + PKT_OFF_NORMAL),
        .zero = get_u16(in + PKT_OFF_ZERO),
        .payload_size = get_u32(in + PKT_OFF_PAYLOAD),
        .round = get_u32(in + PKT_OFF_ROUND),
        .seq = get_u64(in + PKT_OFF_SEQ),
        .crc = get_u32(in + PKT_OFF_CRC),
    };
    uint32_t reserved = get_u32(in + PKT_OFF_RESERVED);

    if (h.version != RF_WIRE_VERSION) {
        rf_error_set(errp, RF_ERR_MISMATCH,
                     "packet field 'version': peer speaks wire version %u, "
                     "this build speaks version %u", h.version,
                     RF_WIRE_VERSION);
        return false;
    }
    if (lim->packet_method) {
        if (h.method >= 32 || !(lim->methods_mask & (1u << h.method))) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "packet field 'method': %u, not one of the methods "
                         "this destination decodes (mask 0x%x)", h.method,
                         lim->methods_mask);
            return false;
        }
        h.level = (uint8_t)reserved;
        reserved &= ~UINT32_C(0xff);
    } else if (h.method != lim->method) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet field 'method': %u, the session negotiated "
                     "method %u", h.method, lim->method);
        return false;
    }
    if (h.flags & ~RF_PKT_FLAGS_ALL) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet field 'flags': 0x%02x has unknown bits 0x%02x "
                     "(known: SYNC 0x01, RAW 0x02, FINAL 0x04)", h.flags,
                     h.flags & ~RF_PKT_FLAGS_ALL);
        return false;
    }
    if ((h.flags & RF_PKT_FINAL) && !(h.flags & RF_PKT_SYNC)) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet field 'flags': 0x%02x has FINAL without SYNC, "
                     "FINAL is only allowed on a SYNC packet", h.flags);
        return false;
    }
    if ((h.flags & RF_PKT_SYNC) && (h.flags & RF_PKT_RAW)) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet field 'flags': 0x%02x has RAW with SYNC, a "
                     "SYNC packet carries no payload", h.flags);
        return false;
    }
    if (reserved != 0) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet field 'reserved': 0x%08x, must be 0%s",
                     reserved, lim->packet_method
                                    ? " (but its low byte, the level)" : "");
        return false;
    }
    if (h.crc != 0 && !lim->crc) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet field 'crc': 0x%08x, must be 0 without "
                     "capability 'crc32c' negotiated", h.crc);
        return false;
    }
    if (h.flags & RF_PKT_SYNC) {
        if (h.block != 0 || h.normal != 0 || h.zero != 0 ||
            h.payload_size != 0) {
            const char *field = h.block ? "block"
                                : h.normal ? "normal"
                                : h.zero ? "zero" : "payload_size";
            uint32_t v = h.block ? h.block
                         : h.normal ? h.normal
                         : h.zero ? h.zero : h.payload_size;
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "packet field '%s': %u in a SYNC packet, must be 0",
                         field, v);
            return false;
        }
    } else if (!check_page_packet(&h, lim, errp)) {
        return false;
    }
    *out = h;
    return true;
}

size_t rf_wire_page_index_encode(const uint32_t *idx, uint32_t n,
                                 uint8_t *out)
{
    for (uint32_t i = 0; i < n; i++) {
        put_u32(out + 4 * (size_t)i, idx[i]);
    }
    return 4 * (size_t)n;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/*
 * Duplicate detection.  A sender lists the normal pages then the zero
 * pages, each group normally in ascending order, so the list is usually at
 * most two strictly ascending runs: then one linear merge finds any page
 * listed twice.  Anything else (a legal but unusual order) is sorted in a
 * stack copy, O(n log n) for n <= 128.  @return a duplicated page, or
 * UINT64_MAX when all are distinct.
 */
static uint64_t find_duplicate(const uint32_t *idx, uint32_t n)
{
    uint32_t split = 1; /* start of the second ascending run */
    while (split < n && idx[split] > idx[split - 1]) {
        split++;
    }
    uint32_t end = split + 1;
    while (end < n && idx[end] > idx[end - 1]) {
        end++;
    }
    if (split >= n || end >= n) {
        /* One or two strictly ascending runs: merge-compare them. */
        uint32_t i = 0, j = split;
        while (i < split && j < n) {
            if (idx[i] == idx[j]) {
                return idx[i];
            }
            if (idx[i] < idx[j]) {
                i++;
            } else {
                j++;
            }
        }
        return UINT64_MAX;
    }
    uint32_t copy[RF_PACKET_MAX_PAGES];
    memcpy(copy, idx, n * sizeof(copy[0]));
    qsort(copy, n, sizeof(copy[0]), cmp_u32);
    for (uint32_t i = 1; i < n; i++) {
        if (copy[i] == copy[i - 1]) {
            return copy[i];
        }
    }
    return UINT64_MAX;
}

bool rf_wire_page_index_decode(uint32_t *idx, uint32_t n,
                               uint64_t block_pages, RfError **errp)
{
    if (n > RF_PACKET_MAX_PAGES) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet page indexes: %u of them, at most %u allowed",
                     n, RF_PACKET_MAX_PAGES);
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t v = get_u32((const uint8_t *)&idx[i]);
        if (v >= block_pages) {
            rf_error_set(errp, RF_ERR_PROTOCOL,
                         "packet field 'page index' #%u: page %u, the block "
                         "has %llu pages (0..%llu allowed)", i, v,
                         (unsigned long long)block_pages,
                         (unsigned long long)(block_pages ? block_pages - 1
                                                          : 0));
            return false;
        }
        idx[i] = v;
    }
    uint64_t dup = find_duplicate(idx, n);
    if (dup != UINT64_MAX) {
        rf_error_set(errp, RF_ERR_PROTOCOL,
                     "packet field 'page index': page %llu listed twice in "
                     "one packet", (unsigned long long)dup);
        return false;
    }
    return true;
}
