/*
 * ramflow - the candidates of 'auto' (multifd-auto-methods): which
 * methods and levels the selector may choose from.
 */
#include <stdio.h>
#include <string.h>

#include "channel/autosel.h"
#include "compress/method.h"
#include "engine/params.h"

/* Adds method m at `level` unless the destination lacks it or the list
 * is full. */
static void add_cand(RfAutoConfig *cfg, const RfMethodOps *m, int level,
                     uint32_t dst_mask)
{
    if (!cfg || cfg->ncands == RF_AUTO_MAX_CANDS ||
        !(dst_mask & (1u << m->id))) {
        return;
    }
    for (unsigned i = 0; i < cfg->ncands; i++) {
        if (cfg->cands[i].method == m && cfg->cands[i].level == level) {
            return; /* listed twice */
        }
    }
    RfAutoCand *c = &cfg->cands[cfg->ncands++];
    c->method = m;
    c->level = level;
    if (m->level_param) {
        snprintf(c->name, sizeof(c->name), "%s-%d", m->name, level);
    } else {
        snprintf(c->name, sizeof(c->name), "%s", m->name);
    }
}

bool rf_auto_candidates(const RfParams *p, uint32_t dst_mask,
                        RfAutoConfig *cfg, RfError **errp)
{
    bool is_default = strcmp(p->multifd_auto_methods,
                             RF_AUTO_METHODS_DEFAULT) == 0;
    char list[sizeof(p->multifd_auto_methods)];
    snprintf(list, sizeof(list), "%s", p->multifd_auto_methods);
    if (cfg) {
        memset(cfg, 0, sizeof(*cfg));
        /* none is always a candidate: incompressible data and fast links
         * need it, and every destination decodes it. */
        add_cand(cfg, rf_method_find("none"), 0, dst_mask | 1u);
    }
    const RfMethodOps *zstd = NULL;
    char *save = NULL;
    for (char *item = strtok_r(list, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        const RfMethodOps *m = rf_method_find(item);
        if (!m) {
            if (is_default && rf_method_known(item)) {
                continue; /* not built: the default does without it */
            }
            rf_error_set(errp, RF_ERR_PARAM, "multifd-auto-methods: %s "
                         "method '%s'", rf_method_known(item)
                             ? "this ramflow was built without" : "unknown",
                         item);
            return false;
        }
        if (strcmp(m->name, "zstd") == 0) {
            zstd = m;
            add_cand(cfg, m, 1, dst_mask); /* 2 and 3 come last */
        } else {
            add_cand(cfg, m, m->level_param
                                 ? rf_params_level(p, m->level_param) : 0,
                     dst_mask);
        }
    }
    /* The slower levels after every method's cheapest: the selector
     * samples candidates in this order. */
    for (int level = 2; zstd && level <= 3; level++) {
        add_cand(cfg, zstd, level, dst_mask);
    }
    return true;
}
