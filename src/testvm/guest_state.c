/*
 * ramflow - the test VM's state blob (docs/testvm.md): the header, the
 * per-vCPU headers and the record lists around what the back ends save,
 * with a checksum; and its strict parsing on the destination before a
 * back end sees any record.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "testvm/guest_internal.h"
#include "wire/bytes.h"

#define STATE_MAGIC "RFGSTATE"
#define STATE_VERSION 1u
#define STATE_HEADER_SIZE 64u
#define STATE_VCPU_MAGIC 0x55504356u /* "VCPU" little-endian */
#define STATE_VCPU_HEADER_SIZE 40u
#define STATE_MAX_RECORDS 64u
#define STATE_MAX_RECORD (16u << 20)
#define STATE_NAME_LEN 16u

struct RfGuestStateOut {
    uint8_t *buf;
    size_t len, cap;
    size_t count_at;  /* where the current record count goes */
    uint32_t count;
};

static bool out_reserve(RfGuestStateOut *o, size_t more, RfError **errp)
{
    if (o->cap - o->len >= more) {
        return true;
    }
    size_t cap = o->cap ? o->cap : 4096;
    while (cap - o->len < more) {
        cap *= 2;
    }
    uint8_t *b = realloc(o->buf, cap);
    if (!b) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest state: out of memory "
                     "(%zu bytes)", cap);
        return false;
    }
    o->buf = b;
    o->cap = cap;
    return true;
}

bool rf_guest_state_put(RfGuestStateOut *out, uint32_t tag,
                        const void *data, size_t len, RfError **errp)
{
    if (len > STATE_MAX_RECORD) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest state: record 0x%04x is "
                     "%zu bytes, at most %u allowed", tag, len,
                     STATE_MAX_RECORD);
        return false;
    }
    if (out->count >= STATE_MAX_RECORDS) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest state: more than %u "
                     "records", STATE_MAX_RECORDS);
        return false;
    }
    size_t padded = (len + 7) & ~(size_t)7;
    if (!out_reserve(out, 8 + padded, errp)) {
        return false;
    }
    uint8_t *p = out->buf + out->len;
    put_u32(p, tag);
    put_u32(p + 4, (uint32_t)len);
    if (len) {
        memcpy(p + 8, data, len);
    }
    memset(p + 8 + len, 0, padded - len);
    out->len += 8 + padded;
    out->count++;
    return true;
}

/* Patches the record count of the section that just ended. */
static void out_end_section(RfGuestStateOut *o)
{
    put_u32(o->buf + o->count_at, o->count);
    o->count = 0;
}

bool rf_guest_save_state(RfGuest *g, uint8_t **buf, size_t *len,
                         RfError **errp)
{
    if (!g->be || !g->n) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest state: no vCPUs to save");
        return false;
    }
    rf_guest_pause(g);
    RfGuestStateOut o = { 0 };
    if (!out_reserve(&o, STATE_HEADER_SIZE, errp)) {
        return false;
    }
    uint8_t *h = o.buf;
    memset(h, 0, STATE_HEADER_SIZE);
    memcpy(h, STATE_MAGIC, 8);
    put_u32(h + 8, STATE_VERSION);
    put_u32(h + 12, STATE_HEADER_SIZE);
    snprintf((char *)h + 16, STATE_NAME_LEN, "%s", g->ops->name);
    put_u64(h + 32, g->mem.size);
    put_u32(h + 40, g->n);
    put_u64(h + 48, g->dirty_rate);
    o.len = STATE_HEADER_SIZE;
    o.count_at = 44;
    if (g->ops->save_vm && !g->ops->save_vm(g->be, &o, errp)) {
        goto fail;
    }
    out_end_section(&o);
    for (unsigned i = 0; i < g->n; i++) {
        if (!out_reserve(&o, STATE_VCPU_HEADER_SIZE, errp)) {
            goto fail;
        }
        uint8_t *v = o.buf + o.len;
        memset(v, 0, STATE_VCPU_HEADER_SIZE);
        put_u32(v, STATE_VCPU_MAGIC);
        put_u32(v + 4, i);
        put_u64(v + 8, g->plan[i].first_page);
        put_u64(v + 16, g->plan[i].end_page);
        put_u64(v + 24, g->ops->vcpu_passes(g->be, i));
        put_u32(v + 32, g->plan[i].idle ? 1u : 0u);
        o.count_at = o.len + 36;
        o.len += STATE_VCPU_HEADER_SIZE;
        if (!g->ops->save_vcpu(g->be, i, &o, errp)) {
            rf_error_prefix(errp, "saving vCPU %u", i);
            goto fail;
        }
        out_end_section(&o);
    }
    if (!out_reserve(&o, 8, errp)) {
        goto fail;
    }
    put_u64(o.buf + 56, o.len + 8);
    put_u64(o.buf + o.len, XXH64(o.buf, o.len, 0));
    o.len += 8;
    *buf = o.buf;
    *len = o.len;
    return true;

fail:
    free(o.buf);
    return false;
}

/* Parses one section's records: `count` of them from *pos. */
static bool parse_records(const uint8_t *buf, size_t end, size_t *pos,
                          uint32_t count, RfGuestRecord *rec,
                          const char *who, RfError **errp)
{
    if (count > STATE_MAX_RECORDS) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "guest state, %s: %u records, "
                     "at most %u allowed", who, count, STATE_MAX_RECORDS);
        return false;
    }
    for (uint32_t k = 0; k < count; k++) {
        if (end - *pos < 8) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "guest state, %s: record %u "
                         "header runs past the end (offset %zu)", who, k,
                         *pos);
            return false;
        }
        rec[k].tag = get_u32(buf + *pos);
        rec[k].len = get_u32(buf + *pos + 4);
        size_t padded = ((size_t)rec[k].len + 7) & ~(size_t)7;
        if (rec[k].len > STATE_MAX_RECORD || end - *pos - 8 < padded) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "guest state, %s: record %u "
                         "(tag 0x%04x) claims %u bytes, only %zu left", who,
                         k, rec[k].tag, rec[k].len, end - *pos - 8);
            return false;
        }
        rec[k].data = buf + *pos + 8;
        for (size_t b = rec[k].len; b < padded; b++) {
            if (rec[k].data[b]) {
                rf_error_set(errp, RF_ERR_PROTOCOL, "guest state, %s: record "
                             "%u (tag 0x%04x) has non-zero padding", who, k,
                             rec[k].tag);
                return false;
            }
        }
        *pos += 8 + padded;
    }
    return true;
}

/* Which back end a blob names, NULL if none we know. */
static const RfGuestBackendOps *ops_named(const char *name)
{
    if (strcmp(name, rf_guest_kvm_ops.name) == 0) {
        return &rf_guest_kvm_ops;
    }
    if (strcmp(name, rf_guest_thread_ops.name) == 0) {
        return &rf_guest_thread_ops;
    }
    return NULL;
}

/* Checks the blob's vCPU ranges against RAM: inside it, past the reserved
 * pages, disjoint, empty exactly when idle. */
static bool check_plan(const RfGuest *g, const RfGuestVcpuPlan *plan,
                       unsigned n, RfError **errp)
{
    uint64_t pages = g->mem.size / RF_PAGE_SIZE;
    for (unsigned i = 0; i < n; i++) {
        const RfGuestVcpuPlan *p = &plan[i];
        if (p->first_page < RF_GUEST_RESERVED_PAGES ||
            p->end_page > pages || p->first_page > p->end_page ||
            (p->idle != (p->first_page == p->end_page))) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: vCPU %u's "
                         "range pages %llu-%llu (%s) is invalid for %llu "
                         "pages of RAM (%u reserved)", i,
                         (unsigned long long)p->first_page,
                         (unsigned long long)p->end_page,
                         p->idle ? "idle" : "writing",
                         (unsigned long long)pages, RF_GUEST_RESERVED_PAGES);
            return false;
        }
        for (unsigned k = 0; k < i; k++) {
            if (p->first_page < plan[k].end_page &&
                plan[k].first_page < p->end_page) {
                rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: vCPU %u's "
                             "range overlaps vCPU %u's", i, k);
                return false;
            }
        }
    }
    return true;
}

bool rf_guest_load_state(RfGuest *g, const uint8_t *buf, size_t len,
                         RfError **errp)
{
    if (!g->mem.host || !g->be) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest state: no %s yet (the "
                     "layout must arrive first)", g->mem.host ? "VM" : "RAM");
        return false;
    }
    if (g->n) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest state: vCPUs exist "
                     "already");
        return false;
    }
    if (len < STATE_HEADER_SIZE + 8) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: %zu bytes, at "
                     "least %u expected", len, STATE_HEADER_SIZE + 8);
        return false;
    }
    if (memcmp(buf, STATE_MAGIC, 8) != 0) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: bad magic (not a "
                     "ramflow guest state)");
        return false;
    }
    uint32_t version = get_u32(buf + 8), hsize = get_u32(buf + 12);
    if (version != STATE_VERSION || hsize != STATE_HEADER_SIZE) {
        rf_error_set(errp, RF_ERR_MISMATCH, "guest state: version %u with a "
                     "%u-byte header; this build reads version %u (%u "
                     "bytes)", version, hsize, STATE_VERSION,
                     STATE_HEADER_SIZE);
        return false;
    }
    uint64_t total = get_u64(buf + 56);
    if (total != len) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: header says %llu "
                     "bytes, got %zu", (unsigned long long)total, len);
        return false;
    }
    uint64_t sum = get_u64(buf + len - 8), want = XXH64(buf, len - 8, 0);
    if (sum != want) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: checksum "
                     "0x%016llx, computed 0x%016llx: the state is corrupt",
                     (unsigned long long)sum, (unsigned long long)want);
        return false;
    }
    char name[STATE_NAME_LEN + 1];
    memcpy(name, buf + 16, STATE_NAME_LEN);
    name[STATE_NAME_LEN] = '\0';
    for (size_t k = strlen(name); k < STATE_NAME_LEN; k++) {
        if (name[k] || k == 0) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: the back-end "
                         "name field is empty or not NUL-padded");
            return false;
        }
    }
    const RfGuestBackendOps *ops = ops_named(name);
    if (!ops) {
        rf_error_set(errp, RF_ERR_MISMATCH, "guest state: back end '%s' "
                     "unknown (kvm or thread expected)", name);
        return false;
    }
    uint64_t mem_size = get_u64(buf + 32);
    if (mem_size != g->mem.size) {
        rf_error_set(errp, RF_ERR_MISMATCH, "guest state: RAM size %llu, "
                     "this guest has %llu", (unsigned long long)mem_size,
                     (unsigned long long)g->mem.size);
        return false;
    }
    uint32_t n = get_u32(buf + 40);
    if (n < 1 || n > RF_GUEST_MAX_VCPUS) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: %u vCPUs, 1-%u "
                     "allowed", n, RF_GUEST_MAX_VCPUS);
        return false;
    }
    uint64_t dirty_rate = get_u64(buf + 48);
    size_t end = len - 8, pos = STATE_HEADER_SIZE;

    bool ok = false;
    RfGuestRecord *rec = calloc((size_t)(n + 1) * STATE_MAX_RECORDS,
                                sizeof(*rec));
    RfGuestVcpuRecords *vr = calloc(n, sizeof(*vr));
    RfGuestVcpuPlan *plan = calloc(n, sizeof(*plan));
    if (!rec || !vr || !plan) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest state: out of memory");
        goto out;
    }
    RfGuestVcpuRecords vmr = { get_u32(buf + 44), rec };
    if (!parse_records(buf, end, &pos, vmr.n, rec, "VM", errp)) {
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        char who[24];
        snprintf(who, sizeof(who), "vCPU %u", i);
        if (end - pos < STATE_VCPU_HEADER_SIZE) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: %s header "
                         "runs past the end (offset %zu)", who, pos);
            goto out;
        }
        const uint8_t *v = buf + pos;
        uint32_t flags = get_u32(v + 32);
        if (get_u32(v) != STATE_VCPU_MAGIC || get_u32(v + 4) != i ||
            flags > 1) {
            rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: %s header at "
                         "offset %zu is bad (magic 0x%08x, index %u, flags "
                         "0x%x)", who, pos, get_u32(v), get_u32(v + 4),
                         flags);
            goto out;
        }
        plan[i].first_page = get_u64(v + 8);
        plan[i].end_page = get_u64(v + 16);
        plan[i].passes = get_u64(v + 24);
        plan[i].idle = flags & 1;
        vr[i].n = get_u32(v + 36);
        vr[i].rec = rec + (size_t)(i + 1) * STATE_MAX_RECORDS;
        pos += STATE_VCPU_HEADER_SIZE;
        if (!parse_records(buf, end, &pos, vr[i].n,
                           (RfGuestRecord *)vr[i].rec, who, errp)) {
            goto out;
        }
    }
    if (pos != end) {
        rf_error_set(errp, RF_ERR_PROTOCOL, "guest state: %zu stray bytes "
                     "after the last vCPU", end - pos);
        goto out;
    }
    if (!check_plan(g, plan, n, errp)) {
        goto out;
    }
    if (ops != g->ops) {
        /* An AUTO destination follows the source's back end. */
        if (g->want != RF_GUEST_AUTO) {
            rf_error_set(errp, RF_ERR_MISMATCH, "guest state: from a %s "
                         "guest, this one is a %s guest", ops->name,
                         g->ops->name);
            goto out;
        }
        void *be = ops->create(&g->mem, errp);
        if (!be) {
            rf_error_prefix(errp, "guest state from a %s guest", ops->name);
            goto out;
        }
        g->ops->destroy(g->be);
        g->ops = ops;
        g->be = be;
        g->fallback[0] = '\0';
    }
    if (!g->ops->load(g->be, &vmr, plan, vr, n, dirty_rate, errp)) {
        /* The back end may hold half-made vCPUs: start from a fresh VM so
         * that a correct state can still be loaded. */
        g->ops->destroy(g->be);
        g->be = g->ops->create(&g->mem, NULL);
        goto out;
    }
    memcpy(g->plan, plan, n * sizeof(*plan));
    g->n = n;
    g->dirty_rate = dirty_rate;
    if (g->throttle) {
        g->ops->throttle(g->be, g->throttle);
    }
    ok = true;
out:
    free(rec);
    free(vr);
    free(plan);
    return ok;
}

const RfGuestRecord *rf_guest_state_find(const RfGuestVcpuRecords *v,
                                         uint32_t tag)
{
    for (unsigned i = 0; i < v->n; i++) {
        if (v->rec[i].tag == tag) {
            return &v->rec[i];
        }
    }
    return NULL;
}
