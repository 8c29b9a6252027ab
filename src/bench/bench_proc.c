/*
 * ramflow bench - the source process's CPU from /proc, independently of
 * what the process reports about itself (--max-cpu: is the budget held?).
 *
 * bench_run.c samples utime + stime of /proc/PID/stat every 20 ms while
 * the source runs (a trace), and notes when its report appears; the
 * migration's span is then the last total_time_s seconds before the
 * report (the report's own "handshake to completion"), never earlier
 * than the source's "ramflow: source:" line (guest started and filled).
 * Cores = CPU-seconds over that span / its wall seconds.  Resolution:
 * the 20 ms sampling and the kernel's clock ticks (10 ms at USER_HZ 100).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench_common.h"

bool rf_bench_proc_cpu_s(pid_t pid, double *cpu_s)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return false;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and ')': fields count from the
     * last ')'.  After it: state ppid pgrp session tty_nr tpgid flags
     * minflt cminflt majflt cmajflt utime stime. */
    const char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    long hz = sysconf(_SC_CLK_TCK);
    if (!p || hz <= 0 ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu "
               "%llu", &ut, &st) != 2) {
        return false;
    }
    *cpu_s = (double)(ut + st) / (double)hz;
    return true;
}

void rf_bench_trace_add(RfBenchTrace *tr, double t, double cpu_s)
{
    if (tr->n == tr->cap) {
        size_t cap = tr->cap ? tr->cap * 2 : 1024;
        double *nt = realloc(tr->t, cap * sizeof(*nt));
        if (!nt) {
            return;
        }
        tr->t = nt;
        double *nc = realloc(tr->cpu, cap * sizeof(*nc));
        if (!nc) {
            return;
        }
        tr->cpu = nc;
        tr->cap = cap;
    }
    tr->t[tr->n] = t;
    tr->cpu[tr->n] = cpu_s;
    tr->n++;
}

void rf_bench_trace_free(RfBenchTrace *tr)
{
    free(tr->t);
    free(tr->cpu);
    memset(tr, 0, sizeof(*tr));
}
