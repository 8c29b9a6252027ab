/*
 * ramflow bench - the grid: one section per --data item x --guest mode,
 * each a whole link x method x channels matrix (bench_matrix.c) with its
 * own calibration on its own data, then the tables that span them all
 * (bench_compare.c).
 *
 * A single section (no --data/--guest lists) writes exactly what the
 * bench always wrote, in the results folder itself.  Several sections
 * each get a sub-folder NN-DATA-GUEST (results.md, results.json,
 * chart.svg, raw/), and the results folder gets the grid's results.md
 * (every section's tables, then the auto comparison and the CPU budget
 * over the whole grid; also on stdout) and results.json ("sections" and
 * "auto_comparison", "cpu_budget").  One bench.log for the whole grid.
 * Sections run data outer, guest inner; a section whose data was already
 * calibrated (the other guest mode) reuses that calibration and the raw
 * TCP figures of its links.
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench/bench_common.h"
#include "control/cli.h"

/* A section's own files: its tables, its auto comparison and budget. */
static void section_markdown(FILE *f, RfBench *b)
{
    rf_bench_print_markdown(f, b);
    fprintf(f, "\n");
    rf_bench_print_compare(f, &b, 1);
    rf_bench_print_budget(f, &b, 1);
}

/* results.md (also on stdout when to_stdout), results.json and
 * chart.svg of one section, in its out_dir. */
static int write_section(RfBench *b, bool to_stdout)
{
    char path[PATH_MAX + 32];
    int status = RF_EXIT_OK;
    snprintf(path, sizeof(path), "%s/results.md", b->cfg.out_dir);
    FILE *f = fopen(path, "w");
    if (f) {
        section_markdown(f, b);
        fclose(f);
    } else {
        rf_bench_say(b, "%s: %s", path, strerror(errno));
        status = RF_EXIT_FAIL;
    }
    if (to_stdout) {
        section_markdown(stdout, b);
        fflush(stdout);
    }
    snprintf(path, sizeof(path), "%s/results.json", b->cfg.out_dir);
    RfError *err = NULL;
    if (!rf_bench_write_json(b, path, &err)) {
        rf_bench_say(b, "%s", rf_error_msg(err));
        rf_error_free(err);
        status = RF_EXIT_FAIL;
    }
    char why[256] = "";
    if (!rf_bench_write_chart(b, why, sizeof(why))) {
        rf_bench_say(b, "no chart: %s", why);
    }
    char qwhy[256] = "";
    bool qchart = !why[0] && b->cfg.compare_qemu &&
                  rf_bench_write_qemu_chart(b, qwhy, sizeof(qwhy));
    if (qwhy[0]) {
        rf_bench_say(b, "no QEMU chart: %s", qwhy);
    }
    if (to_stdout) {
        rf_bench_say(b, "results in %s (results.md, results.json%s%s, "
            "bench.log, raw/)", b->cfg.out_dir, why[0] ? "" : ", chart.svg",
            qchart ? ", chart-qemu.svg" : "");
    }
    return status;
}

/* The grid's own results.md (and stdout) and results.json. */
static int write_grid(RfBench *top, RfBench *const *secs, unsigned n,
                      const char *const *dirs)
{
    char path[PATH_MAX + 32];
    int status = RF_EXIT_OK;
    snprintf(path, sizeof(path), "%s/results.md", top->cfg.out_dir);
    FILE *f = fopen(path, "w");
    FILE *outs[2] = {f, stdout};
    if (!f) {
        rf_bench_say(top, "%s: %s", path, strerror(errno));
        status = RF_EXIT_FAIL;
    }
    for (int o = 0; o < 2; o++) {
        if (!outs[o]) {
            continue;
        }
        fprintf(outs[o], "# ramflow bench grid: %u sections (data x "
                "guest), each a link x method x channels matrix\n\n", n);
        for (unsigned s = 0; s < n; s++) {
            char name[96];
            fprintf(outs[o], "# Section %u/%u: %s (folder %s)\n\n", s + 1,
                    n, rf_bench_section_name(secs[s], name, sizeof(name)),
                    dirs[s]);
            rf_bench_print_markdown(outs[o], secs[s]);
            fprintf(outs[o], "\n");
        }
        fprintf(outs[o], "# The whole grid\n\n");
        rf_bench_print_compare(outs[o], secs, n);
        rf_bench_print_budget(outs[o], secs, n);
        fflush(outs[o]);
    }
    if (f) {
        fclose(f);
    }
    json_t *arr = json_array();
    for (unsigned s = 0; s < n; s++) {
        const RfBenchConfig *c = &secs[s]->cfg;
        json_array_append_new(arr, json_pack(
            "{s:s, s:s, s:s, s:o}", "data", c->data_name,
            "guest", c->live ? "live" : "idle", "folder", dirs[s],
            "results", rf_bench_json(secs[s])));
    }
    json_t *o = json_pack("{s:o}", "sections", arr);
    json_t *cmp = rf_bench_compare_json(secs, n);
    json_t *budget = rf_bench_budget_json(secs, n);
    if (o && cmp) {
        json_object_set_new(o, "auto_comparison", cmp);
    }
    if (o && budget) {
        json_object_set_new(o, "cpu_budget", budget);
    }
    snprintf(path, sizeof(path), "%s/results.json", top->cfg.out_dir);
    if (!o || json_dump_file(o, path, JSON_INDENT(2)) != 0) {
        rf_bench_say(top, "cannot write %s", path);
        status = RF_EXIT_FAIL;
    }
    json_decref(o);
    rf_bench_say(top, "grid results in %s (results.md, results.json, bench.log; "
        "one folder per section)", top->cfg.out_dir);
    return status;
}

/* "01-zero-idle": the section's folder name (path characters other
 * than letters, digits, '.', '-' and '_' become '_'). */
static void section_folder(unsigned k, const char *data, bool live,
                           char *buf, size_t cap)
{
    snprintf(buf, cap, "%02u-%s-%s", k + 1, data, live ? "live" : "idle");
    for (char *p = buf; *p; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' ||
                  *p == '_';
        *p = ok ? *p : '_';
    }
}

/* The fill of every data item, before any migration: a missing corpus
 * stops the bench here, with its message. */
static bool prepare_data(RfBench *b, RfBenchDims *dims)
{
    for (unsigned i = 0; i < dims->ndata && !rf_cli_cancel; i++) {
        RfError *err = NULL;
        if (!rf_bench_data_prepare(&dims->data[i], b->cfg.mem_size, b->log,
                                   &err)) {
            rf_bench_say(b, "%s", rf_error_msg(err));
            rf_error_free(err);
            return false;
        }
        char desc[PATH_MAX + 160];
        rf_bench_say(b, "data %s: %s", dims->data[i].name,
            rf_bench_data_describe(&dims->data[i], desc, sizeof(desc)));
    }
    return !rf_cli_cancel;
}

static void section_config(RfBench *sec, const RfBenchData *d, bool live)
{
    sec->cfg.fill = d->path[0] ? d->path : NULL;
    sec->cfg.data_name = d->name;
    sec->cfg.live = live;
}

/* Several sections, each in its folder.  @return the worst status. */
static int run_grid(RfBench *b, RfBenchDims *dims)
{
    unsigned n = dims->ndata * dims->nguests;
    RfBench **secs = calloc(n, sizeof(*secs));
    char (*dirs)[64] = calloc(n, sizeof(*dirs));
    const char **dir_names = calloc(n, sizeof(*dir_names));
    int status = RF_EXIT_OK;
    unsigned ran = 0;
    if (!secs || !dirs || !dir_names) {
        rf_bench_say(b, "out of memory");
        free(secs);
        free(dirs);
        free(dir_names);
        return RF_EXIT_FAIL;
    }
    rf_bench_say(b, "grid: %u data x %u guest mode%s = %u sections of %u rows "
        "each", dims->ndata, dims->nguests, dims->nguests == 1 ? "" : "s",
        n, rf_bench_per_link(&b->cfg) * b->cfg.nlinks);
    for (unsigned k = 0; k < n && !rf_cli_cancel; k++) {
        const RfBenchData *d = &dims->data[k / dims->nguests];
        bool live = dims->live[k % dims->nguests];
        RfBench *sec = calloc(1, sizeof(*sec));
        if (!sec) {
            status = RF_EXIT_FAIL;
            break;
        }
        secs[ran++] = sec;
        sec->cfg = b->cfg;
        section_config(sec, d, live);
        sec->log = b->log;
        sec->shared_log = true;
        section_folder(k, d->name, live, dirs[k], sizeof(dirs[k]));
        dir_names[k] = dirs[k];
        char *sub = sec->cfg.out_dir, raw[sizeof(sec->cfg.out_dir) + 8];
        size_t cap = sizeof(sec->cfg.out_dir);
        bool fits = snprintf(sub, cap, "%s/%s", b->cfg.out_dir, dirs[k]) <
                        (int)cap &&
                    snprintf(raw, sizeof(raw), "%s/raw", sub) <
                        (int)sizeof(raw);
        if (!fits || (mkdir(sub, 0755) < 0 && errno != EEXIST) ||
            (mkdir(raw, 0755) < 0 && errno != EEXIST)) {
            rf_bench_say(b, "%s: %s", sub, fits ? strerror(errno) : "path too long");
            status = RF_EXIT_FAIL;
            break;
        }
        snprintf(sec->prefix, sizeof(sec->prefix), "[section %u/%u %s, %s]",
                 k + 1, n, d->name, live ? "live" : "idle");
        /* The other guest mode of the same data: same calibration. */
        if (k % dims->nguests && secs[k - 1]->calib.cores > 0) {
            sec->calib = secs[k - 1]->calib;
            sec->cfg.reuse_calib = true;
        }
        rf_bench_say(b, "section %u/%u: data %s, guest %s, in %s", k + 1, n,
            d->name, live ? "live" : "idle", sub);
        int st = rf_bench_run_matrix(sec);
        if (sec->rows) {
            int out = write_section(sec, false);
            st = st == RF_EXIT_OK ? out : st;
        }
        status = st == 130 ? 130 : status == RF_EXIT_OK ? st : status;
        if (st == 130) {
            break;
        }
    }
    if (ran) {
        int out = write_grid(b, secs, ran, dir_names);
        status = status == RF_EXIT_OK ? out : status;
    }
    for (unsigned k = 0; k < ran; k++) {
        free(secs[k]->rows);
        free(secs[k]);
    }
    free(secs);
    free(dirs);
    free(dir_names);
    return status;
}

int rf_bench_run_sections(RfBench *b, RfBenchDims *dims)
{
    if (dims->ndata == 0) {
        /* --fill PATH or the generated mix, as before --data. */
        RfBenchData *d = &dims->data[dims->ndata++];
        rf_bench_parse_data(b->cfg.fill ? b->cfg.fill : "generated", d);
    }
    if (dims->nguests == 0) {
        dims->live[dims->nguests++] = b->cfg.live;
    }
    if (!prepare_data(b, dims)) {
        rf_bench_data_cleanup();
        return rf_cli_cancel ? 130 : RF_EXIT_FAIL;
    }
    int status;
    if (dims->ndata * dims->nguests == 1) {
        section_config(b, &dims->data[0], dims->live[0]);
        status = rf_bench_run_matrix(b);
        if (b->rows) {
            int out = write_section(b, true);
            status = status == RF_EXIT_OK ? out : status;
        }
    } else {
        status = run_grid(b, dims);
    }
    rf_bench_data_cleanup();
    return status;
}
