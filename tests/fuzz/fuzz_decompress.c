/*
 * libFuzzer harness for the receivers of every method this build has:
 * none, zlib, zstd and qatzip (its ISA-L software path; the hardware path
 * is libqatzip's own decoder, which this harness cannot load).
 *
 * Byte 0 selects everything: bit 7 the mode, bits 0-6 = v with
 * method = v % M (M methods in the order none, zlib, zstd, qatzip, those
 * not built left out), destination layout = (v / M) & 1 (contiguous or
 * scattered in reverse order), page count = 1 + q * 127 / qmax with
 * q = v / (2 M), qmax = 127 / (2 M) (1..128).
 *
 * Mode 0: the rest of the input is the payload, handed to recv through a
 * reader exactly as a channel would.
 * Mode 1: the rest is f = in[1] & 15, then f pairs (position, xor mask),
 * then text that is repeated to fill the pages.  The pages are compressed
 * by the method's own sender, the f corruptions are applied to the
 * payload, and it goes to recv: with f = 0 the pages must come back
 * exactly.  This reaches deep into the decoders, where random bytes
 * mostly stop at the header.
 *
 * Either way recv must succeed or fail with an error, and must never
 * write outside the destination pages: they sit between canary pages,
 * checked after every call (libzstd and libdeflate are not instrumented,
 * so ASan alone would not see their writes), before a guard page.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "compress/method.h"
#ifdef RF_HAVE_QATZIP
#include "compress/qatzip/qatzip.h"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PG RF_PAGE_SIZE
#define MAXP RF_PACKET_MAX_PAGES
#define SLOTS (2 * MAXP + 1) /* inner slots: pages and canaries */

#define MAXM 4
static const char *const names[MAXM] = {"none", "zlib", "zstd", "qatzip"};

typedef struct Fuzz {
    int nm; /* methods built, in ops[0..nm) */
    const RfMethodOps *ops[MAXM];
    void *send[MAXM], *recv[MAXM];
    uint8_t *arena;   /* guard, SLOTS inner slots, guard */
    uint8_t *canary;  /* one page of the canary pattern */
    uint8_t *plain;   /* mode 1: the pages sent */
    uint8_t *payload; /* mode 1: the corrupted payload */
} Fuzz;

static Fuzz fz;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_decompress: %s\n", what);
    abort();
}

static void fuzz_init(void)
{
    RfError *err = NULL;
#ifdef RF_HAVE_QATZIP
    setenv(RF_QATZIP_LIB_ENV, "", 1); /* qatzip: the software path */
#endif
    for (int k = 0; k < MAXM; k++) {
        const RfMethodOps *ops = rf_method_find(names[k]);
        if (!ops) {
            continue; /* not built */
        }
        int m = fz.nm++;
        fz.ops[m] = ops;
        if (!ops->send_setup(&fz.send[m], ops->level_default, &err)
            || !ops->recv_setup(&fz.recv[m], &err)) {
            die(rf_error_msg(err));
        }
    }
    if (fz.nm < 1) {
        die("no method built");
    }
    fz.arena = mmap(NULL, (SLOTS + 2) * PG, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (fz.arena == MAP_FAILED) {
        die("mmap");
    }
    mprotect(fz.arena, PG, PROT_NONE);
    mprotect(fz.arena + (SLOTS + 1) * PG, PG, PROT_NONE);
    fz.canary = malloc(PG);
    fz.plain = malloc(MAXP * PG);
    fz.payload = malloc(MAXP * PG);
    if (!fz.canary || !fz.plain || !fz.payload) {
        die("out of memory");
    }
    for (size_t i = 0; i < PG; i++) {
        fz.canary[i] = (uint8_t)(0xa5 ^ (i * 13));
    }
}

static uint8_t *slot(size_t s)
{
    return fz.arena + (1 + s) * PG;
}

/* The layout ends at the last inner slot, right before the end guard:
 * C P P .. P C (contiguous) or C P C P .. P C (scattered, pages in
 * reverse order).  Only the slots it spans are filled and checked, so a
 * small packet costs little; a write past them hits the guard page. */
static size_t layout(uint8_t **pages, uint32_t n, bool scattered,
                     bool *is_page)
{
    size_t span = scattered ? 2 * (size_t)n + 1 : (size_t)n + 2;
    size_t first = SLOTS - span;
    memset(is_page, 0, SLOTS);
    for (uint32_t i = 0; i < n; i++) {
        size_t s = first + (scattered ? 2 * (size_t)(n - 1 - i) + 1 : 1 + i);
        pages[i] = slot(s);
        is_page[s] = true;
    }
    for (size_t s = first; s < SLOTS; s++) {
        if (!is_page[s]) {
            memcpy(slot(s), fz.canary, PG);
        }
    }
    return first;
}

static void check_canaries(const bool *is_page, size_t first)
{
    for (size_t s = first; s < SLOTS; s++) {
        if (!is_page[s] && memcmp(slot(s), fz.canary, PG) != 0) {
            die("a write outside the destination pages");
        }
    }
}

typedef struct Reader {
    const uint8_t *p;
    size_t left;
} Reader;

static bool reader(void *ctx, const struct iovec *iov, int iovcnt,
                   RfError **errp)
{
    Reader *r = ctx;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > r->left) {
            rf_error_set(errp, RF_ERR_IO, "fuzz input ends early");
            return false;
        }
        memcpy(iov[i].iov_base, r->p, iov[i].iov_len);
        r->p += iov[i].iov_len;
        r->left -= iov[i].iov_len;
    }
    return true;
}

/* Mode 1: compresses pages made of the input's text and corrupts the
 * payload.  @return the payload length, or 0 to skip (raw packet). */
static size_t make_payload(int m, uint32_t n, const uint8_t *in,
                           size_t len, bool *intact)
{
    unsigned f = len ? in[0] & 15 : 0;
    if (len < 1 + 2 * (size_t)f + 1) {
        return 0;
    }
    const uint8_t *flips = in + 1, *text = in + 1 + 2 * f;
    size_t tlen = len - 1 - 2 * f;
    size_t total = (size_t)n * PG, have = tlen < total ? tlen : total;
    memcpy(fz.plain, text, have);
    while (have < total) { /* repeat by doubling */
        size_t c = have < total - have ? have : total - have;
        memcpy(fz.plain + have, fz.plain, c);
        have += c;
    }
    uint8_t *pages[MAXP];
    for (uint32_t i = 0; i < n; i++) {
        pages[i] = fz.plain + (size_t)i * PG;
    }
    RfPageList pl = {.pages = pages, .npages = n};
    RfSendPayload out;
    RfError *err = NULL;
    if (!fz.ops[m]->send_prepare(fz.send[m], &pl, &out, &err)) {
        die(rf_error_msg(err));
    }
    if (out.raw) {
        return 0; /* the channel reads raw packets itself */
    }
    size_t o = 0;
    for (int i = 0; i < out.iovcnt; i++) {
        memcpy(fz.payload + o, out.iov[i].iov_base, out.iov[i].iov_len);
        o += out.iov[i].iov_len;
    }
    for (unsigned k = 0; k < f; k++) {
        fz.payload[flips[2 * k] * o / 256] ^= flips[2 * k + 1];
    }
    *intact = true;
    for (unsigned k = 0; k < f; k++) {
        *intact = *intact && flips[2 * k + 1] == 0;
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fz.arena) {
        fuzz_init();
    }
    if (size < 1) {
        return 0;
    }
    bool mode1 = data[0] & 0x80;
    unsigned v = data[0] & 0x7f;
    unsigned nm = (unsigned)fz.nm, qmax = 127 / (2 * nm);
    int m = (int)(v % nm);
    bool scattered = (v / nm) & 1;
    uint32_t n = 1 + (v / (2 * nm)) * (MAXP - 1) / qmax;

    const uint8_t *payload = data + 1;
    size_t len = size - 1;
    bool intact = false;
    if (mode1) {
        len = make_payload(m, n, data + 1, size - 1, &intact);
        if (len == 0) {
            return 0;
        }
        payload = fz.payload;
    }
    if (len > UINT32_MAX || len > fz.ops[m]->max_payload(n)) {
        return 0; /* the channel rejects it from the header alone */
    }

    uint8_t *pages[MAXP];
    bool is_page[SLOTS];
    size_t first = layout(pages, n, scattered, is_page);
    Reader rd = {.p = payload, .left = len};
    RfRecvPayload in = {.len = (uint32_t)len, .pages = pages, .npages = n,
                        .read = reader, .read_ctx = &rd};
    RfError *err = NULL;
    bool ok = fz.ops[m]->recv(fz.recv[m], &in, &err);
    if (ok != (err == NULL)) {
        die("recv result and error disagree");
    }
    rf_error_free(err);
    check_canaries(is_page, first);
    if (mode1 && intact) {
        if (!ok) {
            die("an intact payload from the sender was refused");
        }
        for (uint32_t i = 0; i < n; i++) {
            if (memcmp(pages[i], fz.plain + (size_t)i * PG, PG) != 0) {
                die("an intact payload decoded to other pages");
            }
        }
    }
    return 0;
}
