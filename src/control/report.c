/* ramflow - the final report, as text and as JSON (jansson). */
#include <jansson.h>

#include "control/cli.h"
#include "control/run.h"

static double pct(uint64_t part, uint64_t whole)
{
    return whole ? 100.0 * (double)part / (double)whole : 0;
}

void rf_report_print_text(FILE *f, const RfReport *r, bool source)
{
    fprintf(f, "ramflow %s report\n", source ? "migration" : "incoming");
    fprintf(f, "  method             %s%s%s%s\n", r->method,
            r->method_detail[0] ? " (" : "", r->method_detail,
            r->method_detail[0] ? ")" : "");
    if (source && r->auto_summary[0]) {
        fprintf(f, "  auto               %s\n", r->auto_summary);
    }
    if (source && r->peer_method_detail[0]) {
        fprintf(f, "  destination method %s\n", r->peer_method_detail);
    }
    fprintf(f, "  channels           %u\n", r->channels);
    fprintf(f, "  security           %s\n",
            r->security[0] ? r->security : "none");
    if (!source && r->rejected_connections) {
        fprintf(f, "  dropped            %u connection(s) that were not the "
                "source\n", r->rejected_connections);
    }
    if (r->reconnects) {
        fprintf(f, "  reconnects         %u broken data connection(s) "
                "replaced\n", r->reconnects);
    }
    fprintf(f, "  total time         %.3f s (setup %.3f s)\n",
            r->total_time_s, r->setup_time_s);
    if (source) {
        fprintf(f, "  rounds             %u (%s)\n", r->rounds,
                r->converged ? "converged within downtime-limit"
                             : "did not converge: stopped at max-rounds");
        fprintf(f, "  downtime           %.1f ms (expected %.1f ms)\n",
                r->downtime_ms, r->expected_downtime_ms);
        fprintf(f, "  dirty page rate    %.0f pages/s at the last sync\n",
                r->dirty_pages_rate);
        if (r->throttle_pct) {
            fprintf(f, "  auto-converge      vCPUs throttled up to %u%%\n",
                    r->throttle_pct);
        }
        if (r->state_bytes) {
            fprintf(f, "  device state       %llu bytes\n",
                    (unsigned long long)r->state_bytes);
        }
    } else {
        fprintf(f, "  rounds             %u\n", r->rounds);
        fprintf(f, "  downtime here      %.1f ms (END/STATE received to "
                "done)\n", r->dest_downtime_ms);
    }
    fprintf(f, "  throughput         %.1f Mbit/s on the wire\n",
            r->throughput_mbps);
    fprintf(f, "  pages per second   %.0f\n", r->pages_per_s);
    fprintf(f, "  RAM                %.1f MiB\n",
            (double)r->ram_bytes / (1 << 20));
    fprintf(f, "  transferred        %.1f MiB on the wire, %.1f MiB payload\n",
            (double)r->wire_bytes / (1 << 20),
            (double)r->payload_bytes / (1 << 20));
    fprintf(f, "  compression ratio  %.2f (normal page bytes / payload)\n",
            r->compression_ratio);
    fprintf(f, "  pages              %llu sent: %llu normal, %llu zero "
            "(%.1f%%)\n", (unsigned long long)r->pages_sent,
            (unsigned long long)r->normal_pages,
            (unsigned long long)r->zero_pages,
            pct(r->zero_pages, r->pages_sent));
    fprintf(f, "  packets            %llu (%llu sent raw: no gain)\n",
            (unsigned long long)r->packets,
            (unsigned long long)r->raw_packets);
    fprintf(f, "  %s CPU%%          %.1f (ramflow's threads: migration %.1f,"
            " channels %.1f, pre-fault %.1f; whole process %.1f; 100 = one "
            "core)\n", source ? "send" : "recv",
            source ? r->send_cpu_pct : r->recv_cpu_pct, r->cpu_migration_pct,
            r->cpu_channels_pct, r->cpu_prefault_pct, r->process_cpu_pct);
    if (source) {
        fprintf(f, "  recv CPU%%          %.1f (destination's ramflow "
                "threads)\n", r->recv_cpu_pct);
    }
    fprintf(f, "  destination RAM    %s\n",
            r->dest_memory_warm
                ? "resident first (pre-faulted from the handshake on, or "
                  "existing memory reused)"
                : "fresh, not pre-faulted (first touch during the "
                  "transfer)");
    if (source) {
        fprintf(f, "  verify             %s\n",
                r->verified ? "passed: every block's XXH3-128 digest matches"
                            : "not requested");
    }
}

int rf_report_print_json(FILE *f, const RfReport *r, bool source,
                         const char *status, const char *error)
{
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:i, s:i, s:f, s:f, s:f, s:I, s:I, s:I, s:I,"
        " s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:b, s:b, s:b}",
        "role", source ? "source" : "destination",
        "status", status,
        "method", r->method,
        "method_detail", r->method_detail,
        "channels", (int)r->channels,
        "rounds", (int)r->rounds,
        "total_time_s", r->total_time_s,
        "setup_time_s", r->setup_time_s,
        "downtime_ms", r->downtime_ms,
        "ram_bytes", (json_int_t)r->ram_bytes,
        "pages_sent", (json_int_t)r->pages_sent,
        "normal_pages", (json_int_t)r->normal_pages,
        "zero_pages", (json_int_t)r->zero_pages,
        "packets", (json_int_t)r->packets,
        "raw_packets", (json_int_t)r->raw_packets,
        "wire_bytes", (json_int_t)r->wire_bytes,
        "throughput_mbps", r->throughput_mbps,
        "pages_per_s", r->pages_per_s,
        "compression_ratio", r->compression_ratio,
        "send_cpu_pct", r->send_cpu_pct,
        "recv_cpu_pct", r->recv_cpu_pct,
        "verified", r->verified,
        "converged", r->converged,
        "dest_memory_warm", r->dest_memory_warm);
    if (!o) {
        return -1;
    }
    json_object_set_new(o, "cpu_migration_pct",
                        json_real(r->cpu_migration_pct));
    json_object_set_new(o, "cpu_channels_pct", json_real(r->cpu_channels_pct));
    json_object_set_new(o, "cpu_prefault_pct", json_real(r->cpu_prefault_pct));
    json_object_set_new(o, "process_cpu_pct", json_real(r->process_cpu_pct));
    json_object_set_new(o, "precopy_bytes",
                        json_integer((json_int_t)r->precopy_bytes));
    json_object_set_new(o, "payload_bytes",
                        json_integer((json_int_t)r->payload_bytes));
    json_object_set_new(o, "dirty_sync_count", json_integer(r->rounds));
    json_object_set_new(o, "dirty_pages_rate",
                        json_real(r->dirty_pages_rate));
    json_object_set_new(o, "expected_downtime_ms",
                        json_real(r->expected_downtime_ms));
    json_object_set_new(o, "dest_downtime_ms",
                        json_real(r->dest_downtime_ms));
    json_object_set_new(o, "throttle_pct", json_integer(r->throttle_pct));
    json_object_set_new(o, "state_bytes",
                        json_integer((json_int_t)r->state_bytes));
    json_object_set_new(o, "security",
                        json_string(r->security[0] ? r->security : "none"));
    json_object_set_new(o, "reconnects", json_integer(r->reconnects));
    if (!source) {
        json_object_set_new(o, "rejected_connections",
                            json_integer(r->rejected_connections));
    }
    if (source) {
        json_object_set_new(o, "peer_method_detail",
                            json_string(r->peer_method_detail));
        json_object_set_new(o, "auto_summary", json_string(r->auto_summary));
        json_t *a = rf_cli_auto_json() ? json_loads(rf_cli_auto_json(), 0,
                                                    NULL)
                                       : NULL;
        if (a) {
            json_object_set_new(o, "auto", a);
        }
    }
    if (error) {
        json_object_set_new(o, "error", json_string(error));
    }
    int rc = json_dumpf(o, f, JSON_INDENT(2) | JSON_SORT_KEYS);
    fputc('\n', f);
    json_decref(o);
    return rc;
}
