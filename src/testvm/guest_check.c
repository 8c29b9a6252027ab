/*
 * ramflow - the test VM's pattern checker: after a migration each vCPU's
 * range must hold equal bytes except at most one place where a byte is
 * exactly one less (mod 256) than the one before (guest.h).
 */
#include <stdio.h>

#include "testvm/guest_internal.h"

bool rf_guest_check_pattern(RfGuest *g, char *summary, size_t cap,
                            RfError **errp)
{
    if (!g->mem.host || !g->n) {
        rf_error_set(errp, RF_ERR_GENERIC, "pattern check: the guest has "
                     "no %s", g->mem.host ? "vCPUs" : "RAM");
        return false;
    }
    rf_guest_pause(g);
    unsigned breaks_total = 0, checked = 0;
    for (unsigned i = 0; i < g->n; i++) {
        const RfGuestVcpuPlan *p = &g->plan[i];
        if (p->idle || p->end_page <= p->first_page) {
            continue;
        }
        checked++;
        const uint8_t *m = g->mem.host;
        unsigned breaks = 0;
        uint8_t prev = m[p->first_page * RF_PAGE_SIZE];
        for (uint64_t pg = p->first_page + 1; pg < p->end_page; pg++) {
            uint8_t b = m[pg * RF_PAGE_SIZE];
            if (b == prev) {
                continue;
            }
            if (b != (uint8_t)(prev - 1) || ++breaks > 1) {
                rf_error_set(errp, RF_ERR_VERIFY, "pattern check: vCPU %u, "
                             "page %llu (offset 0x%llx): byte %u after %u "
                             "%s", i, (unsigned long long)pg,
                             (unsigned long long)(pg * RF_PAGE_SIZE), b,
                             prev, b == (uint8_t)(prev - 1)
                                       ? "is a second discontinuity"
                                       : "(each page must equal the one "
                                         "before or be one less, once)");
                return false;
            }
            prev = b;
        }
        breaks_total += breaks;
    }
    if (summary && cap) {
        snprintf(summary, cap, "pattern ok: %u vCPU range%s checked, %u "
                 "mid-pass stop%s, %llu passes", checked,
                 checked == 1 ? "" : "s", breaks_total,
                 breaks_total == 1 ? "" : "s",
                 (unsigned long long)rf_guest_passes(g));
    }
    return true;
}
