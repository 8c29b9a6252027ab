/*
 * ramflow - a source channel's resend log (resend_log.h).
 */
#include "channel/resend_log.h"

#include <stdlib.h>
#include <string.h>

/* Grows *arr (elements of size sz) so that want fit; compacts first when
 * at least half of it is dead (before *head). */
static bool make_room(void **arr, size_t sz, size_t *head, size_t *count,
                      size_t *cap, size_t want)
{
    if (*count + want <= *cap) {
        return true;
    }
    if (*head && *head >= *count / 2) {
        memmove(*arr, (char *)*arr + *head * sz, (*count - *head) * sz);
        *count -= *head;
        *head = 0;
        if (*count + want <= *cap) {
            return true;
        }
    }
    size_t ncap = *cap ? *cap * 2 : 256;
    while (ncap < *count + want) {
        ncap *= 2;
    }
    void *p = realloc(*arr, ncap * sz);
    if (!p) {
        return false;
    }
    *arr = p;
    *cap = ncap;
    return true;
}

bool rf_resend_log_add(RfResendLog *l, uint64_t seq, uint32_t round,
                       uint32_t block, bool sync, bool final,
                       const uint32_t *idx, uint32_t n)
{
    size_t old_run_head = l->run_head;
    /* At most n runs; the pool may compact, which moves every run. */
    if (!make_room((void **)&l->runs, 2 * sizeof(uint32_t), &l->run_head,
                   &l->run_count, &l->run_cap, n)) {
        return false;
    }
    if (l->run_head != old_run_head) {
        for (size_t i = l->head; i < l->count; i++) {
            l->e[i].run -= old_run_head;
        }
    }
    if (!make_room((void **)&l->e, sizeof(RfLogEntry), &l->head, &l->count,
                   &l->cap, 1)) {
        return false;
    }
    RfLogEntry *e = &l->e[l->count++];
    *e = (RfLogEntry){.seq = seq, .round = round, .block = block,
                      .sync = sync, .final = final, .n = n,
                      .run = l->run_count};
    for (uint32_t i = 0; i < n; i++) {
        uint32_t *last = e->nruns ? &l->runs[2 * (l->run_count - 1)] : NULL;
        if (last && last[0] + last[1] == idx[i]) {
            last[1]++;
        } else {
            l->runs[2 * l->run_count] = idx[i];
            l->runs[2 * l->run_count + 1] = 1;
            l->run_count++;
            e->nruns++;
        }
    }
    return true;
}

void rf_resend_log_prune(RfResendLog *l, uint32_t acked_round)
{
    while (l->head < l->count && l->e[l->head].round <= acked_round) {
        l->run_head += l->e[l->head].nruns;
        l->head++;
    }
    if (l->head == l->count) {
        l->head = l->count = 0;
        l->run_head = l->run_count = 0;
    }
}

size_t rf_resend_log_len(const RfResendLog *l)
{
    return l->count - l->head;
}

const RfLogEntry *rf_resend_log_at(const RfResendLog *l, size_t i)
{
    return &l->e[l->head + i];
}

void rf_resend_log_pages(const RfResendLog *l, const RfLogEntry *e,
                         uint32_t *idx)
{
    uint32_t k = 0;
    for (uint32_t r = 0; r < e->nruns; r++) {
        const uint32_t *run = &l->runs[2 * (e->run + r)];
        for (uint32_t j = 0; j < run[1]; j++) {
            idx[k++] = run[0] + j;
        }
    }
}

void rf_resend_log_free(RfResendLog *l)
{
    free(l->e);
    free(l->runs);
    memset(l, 0, sizeof(*l));
}
