/*
 * ramflow - the test VM (guest.h): the guest object and its life.
 * Checks the configuration, creates guest RAM and fills it (imagegen: the
 * generated mix or the fill files), creates a back end (AUTO: KVM,
 * falling back to threads, with the reason kept), splits the pages between
 * the vCPUs, starts them, and passes pause, resume, throttle and the
 * counters through to the back end (guest_backend.h): kvm_guest.c or
 * thread_guest.c.  Also the description string and teardown.
 *
 * The rest of the part both back ends share, one file per job (sharing
 * guest_internal.h):
 *   guest_mem.c    guest RAM: one memfd mapped MAP_SHARED, the pattern
 *                  bytes reset
 *   guest_ram.c    the RAM source and sink over that memory
 *   guest_state.c  the state blob (docs/testvm.md): framing and parsing
 *   guest_check.c  the pattern checker
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testvm/guest_internal.h"
#include "tools/imagegen.h"

/* ---- creation ------------------------------------------------------- */

static unsigned fill_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 8 ? 8 : (unsigned)n;
}

/* Splits the pages past the reserved ones evenly between the vCPUs. */
static void make_plan(RfGuest *g, unsigned n, bool idle)
{
    uint64_t first = RF_GUEST_RESERVED_PAGES;
    uint64_t avail = g->mem.size / RF_PAGE_SIZE - first;
    g->n = n;
    for (unsigned i = 0; i < n; i++) {
        uint64_t share = idle ? 0 : avail / n + (i < avail % n ? 1 : 0);
        g->plan[i].first_page = first;
        g->plan[i].end_page = first + share;
        g->plan[i].idle = idle;
        g->plan[i].passes = 0;
        first += share;
    }
}

static RfGuest *guest_alloc(void)
{
    RfGuest *g = calloc(1, sizeof(*g));
    if (!g) {
        return NULL;
    }
    g->mem.fd = -1;
    g->src.base.ops = &guest_source_ops;
    g->src.g = g;
    g->sink.base.ops = &guest_sink_ops;
    g->sink.g = g;
    return g;
}

bool guest_backend_create(RfGuest *g, RfGuestKind kind, RfError **errp)
{
    if (kind == RF_GUEST_KVM || kind == RF_GUEST_AUTO) {
        RfError *kerr = NULL;
        g->be = rf_guest_kvm_ops.create(&g->mem, &kerr);
        if (g->be) {
            g->ops = &rf_guest_kvm_ops;
            return true;
        }
        if (kind == RF_GUEST_KVM) {
            rf_error_propagate(errp, kerr);
            rf_error_prefix(errp, "KVM guest");
            return false;
        }
        snprintf(g->fallback, sizeof(g->fallback), "%s",
                 rf_error_msg(kerr));
        rf_error_free(kerr);
    }
    g->be = rf_guest_thread_ops.create(&g->mem, errp);
    if (!g->be) {
        rf_error_prefix(errp, "thread guest");
        return false;
    }
    g->ops = &rf_guest_thread_ops;
    return true;
}

static bool check_config(const RfGuestConfig *cfg, RfError **errp)
{
    if (cfg->mem_size < (1u << 20) || cfg->mem_size % RF_PAGE_SIZE ||
        cfg->mem_size > (uint64_t)SIZE_MAX) {
        rf_error_set(errp, RF_ERR_PARAM, "guest memory size %llu bytes: "
                     "must be a multiple of %u and at least 1 MiB",
                     (unsigned long long)cfg->mem_size, RF_PAGE_SIZE);
        return false;
    }
    if (cfg->vcpus < 1 || cfg->vcpus > RF_GUEST_MAX_VCPUS) {
        rf_error_set(errp, RF_ERR_PARAM, "guest vCPUs %u: 1-%u allowed",
                     cfg->vcpus, RF_GUEST_MAX_VCPUS);
        return false;
    }
    if (cfg->kind != RF_GUEST_AUTO && cfg->kind != RF_GUEST_KVM &&
        cfg->kind != RF_GUEST_THREAD) {
        rf_error_set(errp, RF_ERR_PARAM, "guest kind %d unknown",
                     (int)cfg->kind);
        return false;
    }
    return true;
}

/* Starts the vCPUs on the chosen back end; with AUTO, a KVM VM that was
 * created but cannot run its vCPUs falls back to threads too. */
static bool start_vcpus(RfGuest *g, RfGuestKind kind, RfError **errp)
{
    RfError *kerr = NULL;
    if (g->ops->start(g->be, g->plan, g->n, g->dirty_rate,
                      g->ops == &rf_guest_kvm_ops && kind == RF_GUEST_AUTO
                          ? &kerr : errp)) {
        return true;
    }
    if (!kerr) {
        return false;
    }
    g->ops->destroy(g->be);
    g->be = NULL;
    snprintf(g->fallback, sizeof(g->fallback), "KVM vCPUs: %s",
             rf_error_msg(kerr));
    rf_error_free(kerr);
    guest_pattern_reset(g);
    g->be = rf_guest_thread_ops.create(&g->mem, errp);
    if (!g->be) {
        rf_error_prefix(errp, "thread guest");
        return false;
    }
    g->ops = &rf_guest_thread_ops;
    return g->ops->start(g->be, g->plan, g->n, g->dirty_rate, errp);
}

RfGuest *rf_guest_start(const RfGuestConfig *cfg, RfError **errp)
{
    if (!check_config(cfg, errp)) {
        return NULL;
    }
    RfGuest *g = guest_alloc();
    if (!g) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest: out of memory");
        return NULL;
    }
    g->dirty_rate = cfg->dirty_rate;
    if (!guest_mem_create(g, cfg->mem_size, errp)) {
        goto fail;
    }
    if (cfg->fill_path) {
        if (!rf_image_fill_from_path(g->mem.host, g->mem.size,
                                     cfg->fill_path, errp)) {
            goto fail;
        }
    } else if (!rf_image_generate(g->mem.host, g->mem.size, cfg->seed,
                                  fill_threads(), errp)) {
        goto fail;
    }
    guest_pattern_reset(g);
    make_plan(g, cfg->vcpus, cfg->idle);
    if (!guest_backend_create(g, cfg->kind, errp) ||
        !start_vcpus(g, cfg->kind, errp)) {
        goto fail;
    }
    g->running = true;
    return g;

fail:
    rf_guest_free(g);
    return NULL;
}

RfGuest *rf_guest_new_incoming(RfGuestKind kind, RfError **errp)
{
    if (kind != RF_GUEST_AUTO && kind != RF_GUEST_KVM &&
        kind != RF_GUEST_THREAD) {
        rf_error_set(errp, RF_ERR_PARAM, "guest kind %d unknown", (int)kind);
        return NULL;
    }
    RfGuest *g = guest_alloc();
    if (!g) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest: out of memory");
        return NULL;
    }
    g->incoming = true;
    g->want = kind;
    return g;
}

void rf_guest_set_max_ram(RfGuest *g, uint64_t max_bytes)
{
    g->max_ram = max_bytes;
}

RfRamSource *rf_guest_ram_source(RfGuest *g)
{
    return &g->src.base;
}

RfRamSink *rf_guest_ram_sink(RfGuest *g)
{
    return &g->sink.base;
}

void rf_guest_pause(RfGuest *g)
{
    if (g->be && g->n) {
        g->ops->pause(g->be);
    }
    g->running = false;
}

void rf_guest_resume(RfGuest *g)
{
    if (g->be && g->n) {
        g->ops->resume(g->be);
        g->running = true;
    }
}

void rf_guest_throttle(RfGuest *g, unsigned pct)
{
    g->throttle = pct > 99 ? 99 : pct;
    if (g->be) {
        g->ops->throttle(g->be, g->throttle);
    }
}

uint64_t rf_guest_passes(RfGuest *g)
{
    return g->be && g->n ? g->ops->passes(g->be) : 0;
}

void rf_guest_hook_pause(void *opaque)
{
    rf_guest_pause(opaque);
}

void rf_guest_hook_resume(void *opaque)
{
    rf_guest_resume(opaque);
}

const char *rf_guest_describe(RfGuest *g)
{
    const char *detail = g->be ? g->ops->describe(g->be) : "no VM yet";
    char mem[64];
    if (g->mem.host) {
        snprintf(mem, sizeof(mem), "%llu MiB",
                 (unsigned long long)(g->mem.size >> 20));
    } else {
        snprintf(mem, sizeof(mem), "no RAM yet");
    }
    char why[360] = "";
    if (g->fallback[0]) {
        snprintf(why, sizeof(why), " (%s)", g->fallback);
    }
    snprintf(g->desc, sizeof(g->desc), "%s guest%s, %u vCPU%s%s, %s; %s",
             !g->be ? "no" : g->ops == &rf_guest_kvm_ops ? "KVM" : "thread",
             why, g->n, g->n == 1 ? "" : "s",
             g->n && g->plan[0].idle ? " (idle)" : "", mem, detail);
    return g->desc;
}

void rf_guest_free(RfGuest *g)
{
    if (!g) {
        return;
    }
    guest_sink_wait_ready(&g->sink.base);
    if (g->be) {
        g->ops->destroy(g->be);
    }
    guest_mem_free(g);
    free(g);
}
