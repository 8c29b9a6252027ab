/*
 * ramflow - the test VM's RAM source and sink: the engine's view of guest
 * RAM.  The source ORs the pages marked dirty by host-side writes into
 * the back end's own dirty sync; the sink creates RAM and the back end
 * when the source's layout arrives and pre-faults RAM on a thread.
 */
#include <stdio.h>
#include <string.h>

#include "ram/file_ram.h"
#include "testvm/guest_internal.h"

/* ---- the RAM source ------------------------------------------------- */

static RfGuest *src_guest(RfRamSource *s)
{
    return ((GuestSource *)s)->g;
}

static unsigned src_block_count(RfRamSource *s)
{
    return src_guest(s)->mem.host ? 1 : 0;
}

static const RfRamBlock *src_block(RfRamSource *s, unsigned i)
{
    RfGuest *g = src_guest(s);
    return i == 0 && g->mem.host ? &g->block : NULL;
}

static bool src_dirty_start(RfRamSource *s, RfError **errp)
{
    RfGuest *g = src_guest(s);
    if (!g->be) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest: no VM to track");
        return false;
    }
    rf_dirty_bitmap_clear(&g->src.marks);
    if (!g->ops->dirty_start(g->be, errp)) {
        return false;
    }
    g->src.tracking = true;
    return true;
}

static bool src_dirty_sync(RfRamSource *s, unsigned block, uint64_t *bitmap,
                           RfError **errp)
{
    RfGuest *g = src_guest(s);
    if (block != 0 || !g->mem.host) {
        rf_error_set(errp, RF_ERR_PARAM, "dirty sync: block %u out of range "
                     "(the guest has 1)", block);
        return false;
    }
    if (!g->src.tracking) {
        rf_error_set(errp, RF_ERR_GENERIC, "dirty sync: tracking was not "
                     "started");
        return false;
    }
    rf_dirty_bitmap_take(&g->src.marks, bitmap);
    return g->ops->dirty_sync(g->be, bitmap, errp);
}

static void src_dirty_stop(RfRamSource *s)
{
    RfGuest *g = src_guest(s);
    if (g->src.tracking) {
        g->ops->dirty_stop(g->be);
        g->src.tracking = false;
    }
}

static void src_mark_dirty(RfRamSource *s, unsigned block, uint64_t offset,
                           uint64_t len)
{
    RfGuest *g = src_guest(s);
    if (block != 0 || len == 0 || offset >= g->mem.size) {
        return;
    }
    uint64_t end = g->mem.size - offset < len ? g->mem.size : offset + len;
    uint64_t first = offset / RF_PAGE_SIZE;
    rf_dirty_bitmap_mark(&g->src.marks, first,
                         (end - 1) / RF_PAGE_SIZE - first + 1);
}

static const char *src_describe(RfRamSource *s)
{
    RfGuest *g = src_guest(s);
    return g->be ? g->ops->describe(g->be) : "no VM";
}

static void src_free(RfRamSource *s)
{
    (void)s; /* owned by the guest: rf_guest_free releases it */
}

/* Guest RAM is a memfd: the channels read it with pread, as they would a
 * VMM's (RfRamSourceOps.fd). */
static int src_fd(RfRamSource *s, unsigned i, uint64_t *offset)
{
    RfGuest *g = src_guest(s);
    *offset = 0;
    return i == 0 && g->mem.host ? g->mem.fd : -1;
}

const RfRamSourceOps guest_source_ops = {
    .name = "guest",
    .block_count = src_block_count,
    .block = src_block,
    .dirty_start = src_dirty_start,
    .dirty_sync = src_dirty_sync,
    .dirty_stop = src_dirty_stop,
    .mark_dirty = src_mark_dirty,
    .free = src_free,
    .describe = src_describe,
    .fd = src_fd,
};

/* ---- the RAM sink --------------------------------------------------- */

/* Pre-faults RAM on two threads while the data comes, for the vCPUs
 * that run on it afterwards (rf_prefault_start blocks the process's
 * signals in them).  They run SCHED_IDLE: on a host short of CPU the
 * receivers come first (an idle 192 MiB zero-heavy guest, loopback,
 * both ends on 2 cores whose first touch runs at 440 MB/s: the pre-fault
 * took 1.2 cores of the 0.12 s migration, 0.10 s with it idle).  Without
 * a pre-fault the migration still works: no error. */
static void prefault_start(RfGuest *g)
{
    RfPrefaultRange r = {g->mem.host, g->mem.size};
    g->sink.prefault = rf_prefault_start(&r, 1, 2, true, NULL);
    g->sink.prefaulted = g->sink.prefault != NULL;
}

/* Memory kept for the rest of the system: 1/16 of MemAvailable, at most
 * 256 MiB. */
#define RAM_RESERVE_MAX (256ull << 20)
#define RAM_RESERVE_DIV 16u

/* MemAvailable of /proc/meminfo in bytes.  @return false if unknown. */
static bool mem_available(uint64_t *bytes)
{
    FILE *f = fopen("/proc/meminfo", "re");
    if (!f) {
        return false;
    }
    char line[128];
    unsigned long long kib = 0;
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        found = sscanf(line, "MemAvailable: %llu kB", &kib) == 1;
    }
    fclose(f);
    *bytes = (uint64_t)kib * 1024;
    return found;
}

/* Refuses a RAM size over the sink's limit or over what the host has
 * available: checked before anything is created or faulted in, so a
 * peer cannot make the destination swap or meet the OOM killer. */
static bool ram_size_check(const RfGuest *g, uint64_t size, RfError **errp)
{
    if (g->max_ram && size > g->max_ram) {
        rf_error_set(errp, RF_ERR_MISMATCH, "guest sink: the source "
                     "announces %llu bytes of RAM, the limit here is %llu",
                     (unsigned long long)size,
                     (unsigned long long)g->max_ram);
        return false;
    }
    uint64_t avail;
    if (!mem_available(&avail)) {
        return true; /* no /proc: the limit above is all we have */
    }
    uint64_t reserve = avail / RAM_RESERVE_DIV;
    reserve = reserve < RAM_RESERVE_MAX ? reserve : RAM_RESERVE_MAX;
    if (size > avail - reserve) {
        rf_error_set(errp, RF_ERR_MISMATCH, "guest sink: the source "
                     "announces %llu bytes of RAM, the limit here is %llu "
                     "(MemAvailable %llu less a reserve of %llu)",
                     (unsigned long long)size,
                     (unsigned long long)(avail - reserve),
                     (unsigned long long)avail,
                     (unsigned long long)reserve);
        return false;
    }
    return true;
}

static bool sink_prepare(RfRamSink *s, const RfRamBlock *layout, unsigned n,
                         RfError **errp)
{
    RfGuest *g = ((GuestSink *)s)->g;
    if (g->mem.host) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest sink: prepare called "
                     "twice");
        return false;
    }
    if (n != 1) {
        rf_error_set(errp, RF_ERR_MISMATCH, "guest sink: the source has %u "
                     "RAM blocks, the test guest takes exactly 1 ('%s')", n,
                     RF_GUEST_BLOCK_NAME);
        return false;
    }
    if (!memchr(layout[0].name, '\0', sizeof(layout[0].name)) ||
        strcmp(layout[0].name, RF_GUEST_BLOCK_NAME) != 0) {
        rf_error_set(errp, RF_ERR_MISMATCH, "guest sink: the source's block "
                     "is '%.*s', the test guest takes '%s'",
                     (int)sizeof(layout[0].name), layout[0].name,
                     RF_GUEST_BLOCK_NAME);
        return false;
    }
    uint64_t size = layout[0].size;
    if (size < (1u << 20) || size % RF_PAGE_SIZE || size > (uint64_t)SIZE_MAX) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "guest sink: block '%s' has "
                     "size %llu bytes; must be a multiple of %u, at least "
                     "1 MiB", RF_GUEST_BLOCK_NAME, (unsigned long long)size,
                     RF_PAGE_SIZE);
        return false;
    }
    if (!ram_size_check(g, size, errp)) {
        return false;
    }
    if (!guest_mem_create(g, size, errp) ||
        !guest_backend_create(g, g->want, errp)) {
        guest_mem_free(g);
        return false;
    }
    prefault_start(g);
    return true;
}

static uint8_t *sink_host(RfRamSink *s, unsigned i)
{
    RfGuest *g = ((GuestSink *)s)->g;
    return i == 0 ? g->mem.host : NULL;
}

/* The receivers write the new memfd with pwrite (RfRamSinkOps.fd); it
 * was created for this migration and nothing writes it before the
 * migration's pages (the KVM boot pages are written at start, after
 * it), so it starts all zero.  The pre-fault thread above still runs:
 * it is for the guest, which runs on this memory afterwards. */
static int sink_fd(RfRamSink *s, unsigned i, uint64_t *offset)
{
    RfGuest *g = ((GuestSink *)s)->g;
    *offset = 0;
    return i == 0 && g->mem.host ? g->mem.fd : -1;
}

static bool sink_zeroed(RfRamSink *s, unsigned i)
{
    return i == 0 && ((GuestSink *)s)->g->mem.host;
}

/* Called once every page has landed: the pre-fault's remainder would
 * only fault in pages nothing wrote, which the guest faults in on use
 * anyway, so it is stopped (after its current chunk) rather than waited
 * for.  Waiting for all of it made the destination's downtime the
 * pre-fault's remainder: 50-200 ms for an idle 192 MiB guest on a host
 * whose first touch runs at 440 MB/s, 6-8 ms without it. */
bool guest_sink_wait_ready(RfRamSink *s)
{
    GuestSink *gs = (GuestSink *)s;
    if (gs->prefault) {
        rf_prefault_finish_cpu(gs->prefault, true, &s->prefault_cpu_s);
        gs->prefault = NULL;
    }
    return gs->prefaulted;
}

static void sink_finish(RfRamSink *s, bool ok)
{
    RfGuest *g = ((GuestSink *)s)->g;
    guest_sink_wait_ready(s);
    if (!ok && g->be) {
        /* A failed migration: tear the VM down, keep the (dead) object. */
        g->ops->destroy(g->be);
        g->be = NULL;
        g->n = 0;
        g->running = false;
    }
}

static void sink_free(RfRamSink *s)
{
    guest_sink_wait_ready(s); /* owned by the guest otherwise */
}

const RfRamSinkOps guest_sink_ops = {
    .name = "guest",
    .prepare = sink_prepare,
    .host = sink_host,
    .wait_ready = guest_sink_wait_ready,
    .finish = sink_finish,
    .free = sink_free,
    .fd = sink_fd,
    .zeroed = sink_zeroed,
};
