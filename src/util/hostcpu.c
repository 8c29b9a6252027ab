/* ramflow - host CPU figures from /proc/stat (the first, "cpu" line). */
#include "util/hostcpu.h"

#include <stdio.h>
#include <unistd.h>

bool rf_host_cpu(uint64_t *idle_ns, uint64_t *total_ns)
{
    *idle_ns = *total_ns = 0;
    FILE *f = fopen("/proc/stat", "re");
    if (!f) {
        return false;
    }
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
                   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 4) {
        return false;
    }
    long hz = sysconf(_SC_CLK_TCK);
    double ns_per_tick = 1e9 / (double)(hz > 0 ? hz : 100);
    unsigned long long total = 0;
    for (int i = 0; i < n; i++) {
        total += v[i];
    }
    *idle_ns = (uint64_t)((double)(v[3] + (n > 4 ? v[4] : 0)) * ns_per_tick);
    *total_ns = (uint64_t)((double)total * ns_per_tick);
    return true;
}

unsigned rf_host_running(void)
{
    FILE *f = fopen("/proc/stat", "re");
    if (!f) {
        return 0;
    }
    char line[256];
    unsigned n = 0;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "procs_running %u", &n) == 1) {
            break;
        }
    }
    fclose(f);
    return n;
}

double rf_host_cores_available(double own, double idle_cores,
                               unsigned threads, unsigned running,
                               unsigned ncpus)
{
    double cores = own + (idle_cores > 0 ? idle_cores : 0);
    if (idle_cores < 0) {
        cores = ncpus;
    }
    double busy = threads < ncpus ? threads : ncpus;
    double fair = running > ncpus ? busy * ncpus / running : 0;
    if (cores < fair) {
        cores = fair;
    }
    return cores > ncpus ? ncpus : cores;
}

unsigned rf_host_ncpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}
