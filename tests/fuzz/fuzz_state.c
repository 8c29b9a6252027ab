/*
 * libFuzzer harness for the test VM's STATE blob parser
 * (src/testvm/guest_state.c, rf_guest_load_state): the bytes a source's
 * STATE message carries, parsed on the destination before any back end
 * sees a record.
 *
 * Input: byte 0 holds options, the rest is the blob.
 *   bit 0: fix up the blob's total length (offset 56) and its XXH64 (the
 *          last 8 bytes) before loading, so mutations get past the
 *          checksum into the headers and records behind it.
 * The destination is a thread guest (no KVM needed) whose RAM came
 * through its sink as in a migration: FS_RAM bytes, the size the seed
 * blobs (gen_seeds.c) were saved from.  Every input must load or be
 * refused with an error; a guest that loaded a state has vCPUs and
 * cannot load another, so it is replaced by a fresh one.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "ram/ram.h"
#include "testvm/guest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FS_RAM (1u << 20) /* the guest's minimum */
#define FS_MAX (1u << 20) /* a STATE message's limit */
#define FS_OPT_FIXUP 0x01u

static RfGuest *guest;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_state: %s\n", what);
    abort();
}

/* A destination guest with its RAM, as after a migration's layout. */
static RfGuest *new_guest(void)
{
    RfError *err = NULL;
    RfGuest *g = rf_guest_new_incoming(RF_GUEST_THREAD, &err);
    if (!g) {
        die(rf_error_msg(err));
    }
    RfRamSink *sink = rf_guest_ram_sink(g);
    RfRamBlock layout;
    memset(&layout, 0, sizeof(layout));
    snprintf(layout.name, sizeof(layout.name), "%s", RF_GUEST_BLOCK_NAME);
    layout.size = FS_RAM;
    if (!sink->ops->prepare(sink, &layout, 1, &err)) {
        die(rf_error_msg(err));
    }
    rf_ram_sink_wait_ready(sink);
    rf_ram_sink_finish(sink, true);
    return g;
}

static void put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!guest) {
        guest = new_guest();
    }
    if (size < 1 || size - 1 > FS_MAX) {
        return 0;
    }
    size_t len = size - 1;
    /* An exact-size heap copy: ASan sees any read past the blob. */
    uint8_t *blob = malloc(len ? len : 1);
    if (!blob) {
        die("out of memory");
    }
    memcpy(blob, data + 1, len);
    if ((data[0] & FS_OPT_FIXUP) && len >= 64 + 8) {
        put_u64le(blob + 56, len);
        put_u64le(blob + len - 8, XXH64(blob, len - 8, 0));
    }
    RfError *err = NULL;
    bool ok = rf_guest_load_state(guest, blob, len, &err);
    free(blob);
    if (ok != (err == NULL)) {
        die("result and error disagree");
    }
    if (getenv("FUZZ_VERBOSE")) {
        fprintf(stderr, "fuzz_state: %s\n", ok ? "loaded" : rf_error_msg(err));
    }
    if (!ok) {
        if (strlen(rf_error_msg(err)) < 10) {
            die("a refusal without a message");
        }
        rf_error_free(err);
        return 0;
    }
    /* Loaded: the vCPUs exist (paused).  A second load must be refused,
     * then the guest is replaced for the next input. */
    if (rf_guest_load_state(guest, data + 1, len, &err)) {
        die("a second state loaded into the same guest");
    }
    rf_error_free(err);
    rf_guest_free(guest);
    guest = new_guest();
    return 0;
}
