/*
 * ramflow - live migration of virtual machine memory over parallel channels.
 *
 * Introduction
 *
 * ramflow moves the RAM of a (running) virtual machine from a source process
 * to a destination process, over one main (control) channel and
 * `multifd-channels` data channels (TCP or Unix sockets).  Pages travel in
 * packets of up to 128 pages of one RAM block; zero pages travel as offsets
 * only; the rest is compressed by a pluggable method (none, zlib, zstd,
 * qatzip).  Migration runs in rounds: round 1 sends every page, later rounds
 * send the pages dirtied since, and a final round runs with the source
 * paused.  A sync point between rounds guarantees that the destination never
 * applies an older copy of a page after a newer one.
 *
 * Using the library
 *
 *   source:       RfRamSource *src = rf_file_source_open(...);
 *                 rf_migrate("tcp:host:port", src, &params, &opts, &rep, &err);
 *   destination:  RfRamSink *sink = rf_file_sink_new(...);
 *                 rf_incoming("tcp:0.0.0.0:port", sink, &iopts, &rep, &err);
 *
 * Both calls block until the migration ends.  Errors are returned as RfError
 * values (see ramflow/error.h).  The library never prints.
 *
 * Thread safety: rf_ram_source_mark_dirty() may be called from any thread at
 * any time while a migration runs; everything else is called from one
 * thread per migration.
 */
#ifndef RAMFLOW_H
#define RAMFLOW_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ramflow/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RAMFLOW_VERSION_STRING "0.1.0"

/*! RF_PAGE_SIZE : the page size of every RAM block, in bytes. */
#define RF_PAGE_SIZE 4096u
/*! RF_PACKET_MAX_PAGES : the most pages one packet carries (512 KiB). */
#define RF_PACKET_MAX_PAGES 128u
/*! RF_BLOCK_NAME_MAX : the longest RAM block name, in bytes. */
#define RF_BLOCK_NAME_MAX 255u
/*! RF_MAX_BLOCKS : the most RAM blocks one migration carries. */
#define RF_MAX_BLOCKS 64u
/*! RF_METHOD_NAME_MAX : the longest compression method name. */
#define RF_METHOD_NAME_MAX 15u

/* ======================================================================
 *  Parameters
 * ====================================================================== */

/*! RfParams :
 *  The migration parameters, with QEMU's names, ranges and defaults.  Fill
 *  with rf_params_init(), change with rf_params_set(), check with
 *  rf_params_check() before use (rf_migrate() checks again). */
typedef struct RfParams {
    unsigned multifd_channels;   /* multifd-channels, 1-255, default 2 */
    char multifd_compression[RF_METHOD_NAME_MAX + 1]; /* default "none" */
    int multifd_zlib_level;      /* multifd-zlib-level, 0-9, default 1 */
    int multifd_zstd_level;      /* multifd-zstd-level, 0-20, default 1 */
    int multifd_qatzip_level;    /* multifd-qatzip-level, 1-9, default 1 */
    uint64_t max_bandwidth;      /* max-bandwidth, bytes/s, 0 = unlimited */
    uint64_t downtime_limit;     /* downtime-limit, ms, 0-2000000, def 300 */
    unsigned max_rounds;         /* max-rounds, 1-10000, default 30: the final
                                    round starts after this many rounds even
                                    if the estimate never fits downtime-limit */
} RfParams;

/*! rf_params_init() : fills *p with the defaults. */
void rf_params_init(RfParams *p);

/*! rf_params_set() :
 *  Sets parameter `name` (QEMU spelling, e.g. "multifd-zstd-level") from its
 *  text form.  Sizes accept K/M/G suffixes (powers of 1024).
 *  @return true on success; false with an RF_ERR_PARAM error naming the
 *  parameter and its allowed range (or the known names) otherwise. */
bool rf_params_set(RfParams *p, const char *name, const char *value,
                   RfError **errp);

/*! rf_params_check() :
 *  Checks every field's range and that the compression method is known and
 *  built in.  @return true if all are valid, else false with an
 *  RF_ERR_PARAM error naming the first bad parameter. */
bool rf_params_check(const RfParams *p, RfError **errp);

/*! rf_params_names() :
 *  @return a NULL-terminated list of every parameter name. */
const char *const *rf_params_names(void);

/*! rf_method_names() :
 *  @return a NULL-terminated list of the compression methods this build
 *  supports, in registry order. */
const char *const *rf_method_names(void);

/* ======================================================================
 *  RAM sources (the source side) and sinks (the destination side)
 * ====================================================================== */

typedef struct RfRamSource RfRamSource;
typedef struct RfRamSink RfRamSink;

/*! rf_file_source_open() :
 *  Opens a RAM source whose blocks are files or shared-memory objects
 *  (e.g. /dev/shm/NAME), mapped shared.  Each spec is "PATH" or
 *  "NAME=PATH"; without NAME the block is named after the file's basename.
 *  Every file's size must be a non-zero multiple of RF_PAGE_SIZE.
 *  Dirty pages are those reported through rf_ram_source_mark_dirty().
 *  @return the source, or NULL with an error naming the file. */
RfRamSource *rf_file_source_open(const char *const *specs, unsigned n,
                                 RfError **errp);

/*! RfRegion : one memory region of this process, for
 *  rf_region_source_open(). */
typedef struct RfRegion {
    const char *name;  /* block name, 1-255 bytes; NULL = "region<i>" */
    void *addr;        /* page-aligned */
    uint64_t size;     /* bytes, a non-zero multiple of RF_PAGE_SIZE */
} RfRegion;

/*! rf_region_source_open() :
 *  Opens a RAM source over memory regions of this process (page-aligned
 *  addr, size a non-zero multiple of RF_PAGE_SIZE, names unique and 1-255
 *  bytes; a NULL name becomes "region<i>").  Writes are tracked by
 *  userfaultfd write protection (async WP + PAGEMAP_SCAN, falling back to
 *  synchronous WP faults; force_sync forces the latter) from the
 *  migration's start; pages marked with rf_ram_source_mark_dirty() count
 *  too.  The memory stays owned by the caller and must outlive the source.
 *  @return the source, or NULL with an error naming the region on bad
 *  input or if userfaultfd is unavailable. */
RfRamSource *rf_region_source_open(const RfRegion *regions, unsigned n,
                                   bool force_sync, RfError **errp);

/*! rf_ram_source_describe() :
 *  @return a one-line description of how the source tracks writes (e.g.
 *  "userfaultfd async WP + PAGEMAP_SCAN", or "explicit marks" for a source
 *  that only knows rf_ram_source_mark_dirty()), never NULL. */
const char *rf_ram_source_describe(const RfRamSource *src);

/*! rf_ram_source_mark_dirty() :
 *  Marks the pages covering [offset, offset + len) of block `block` dirty,
 *  so the next round sends them again.  Call it after writing the memory.
 *  Safe from any thread; out-of-range parts are ignored. */
void rf_ram_source_mark_dirty(RfRamSource *src, unsigned block,
                              uint64_t offset, uint64_t len);

/*! rf_ram_source_block_count() : @return the number of blocks. */
unsigned rf_ram_source_block_count(const RfRamSource *src);

/*! rf_ram_source_block() :
 *  Gives block i's name, size in bytes and mapped address.
 *  @return false if i is out of range. */
bool rf_ram_source_block(const RfRamSource *src, unsigned i,
                         const char **name, uint64_t *size, uint8_t **host);

/*! rf_ram_source_free() : unmaps and frees; NULL is allowed. */
void rf_ram_source_free(RfRamSource *src);

/*! rf_file_sink_new() :
 *  A destination that writes each incoming block into a file, created or
 *  truncated to the block's size when the source's layout arrives.  Specs
 *  are "PATH" or "NAME=PATH"; a block matches the spec with its name, or
 *  the only spec when both sides have exactly one block.
 *  @return the sink, or NULL with an error. */
RfRamSink *rf_file_sink_new(const char *const *specs, unsigned n,
                            RfError **errp);

/*! rf_ram_sink_free() : unmaps and frees; NULL is allowed. */
void rf_ram_sink_free(RfRamSink *sink);

/* ======================================================================
 *  Reports and progress
 * ====================================================================== */

/*! RfProgress : a snapshot passed to the progress hook about 4 times/s. */
typedef struct RfProgress {
    unsigned round;            /* 1-based round being sent */
    uint64_t total_bytes;      /* RAM size */
    uint64_t sent_pages;       /* pages handed to channels so far */
    uint64_t remaining_pages;  /* dirty pages not yet sent this round */
    uint64_t wire_bytes;       /* bytes written on all channels */
    double elapsed_s;
    double throughput_bps;     /* wire bits/s over the last interval */
} RfProgress;

/*! RfReport : what a migration did.  Filled by rf_migrate() (both sides'
 *  figures; recv_cpu_pct comes from the destination) and rf_incoming(). */
typedef struct RfReport {
    char method[RF_METHOD_NAME_MAX + 1];
    char method_detail[128];   /* e.g. the back end a method used */
    char peer_method_detail[128];
    unsigned channels;
    unsigned rounds;
    double total_time_s;       /* handshake to completion */
    double setup_time_s;       /* handshake and channel set-up */
    double downtime_ms;        /* source paused to completion */
    uint64_t ram_bytes;        /* size of all blocks */
    uint64_t pages_sent;       /* normal + zero pages, all rounds */
    uint64_t normal_pages;
    uint64_t zero_pages;
    uint64_t raw_packets;      /* packets sent uncompressed (no gain) */
    uint64_t packets;
    uint64_t payload_bytes;    /* page data after compression */
    uint64_t wire_bytes;       /* all bytes on all channels */
    double throughput_mbps;    /* wire Mbit/s over total time */
    double pages_per_s;
    double compression_ratio;  /* normal page bytes / payload bytes */
    double send_cpu_pct;       /* source process, 100 = one core */
    double recv_cpu_pct;       /* destination process, 100 = one core */
    bool verified;             /* --verify ran and every digest matched */
    bool converged;            /* final round started within downtime */
    bool dest_memory_warm;     /* destination RAM was pre-faulted */
    double dirty_pages_rate;   /* pages/s dirtied, measured at the last sync */
    double expected_downtime_ms; /* estimate when the final round began */
    double dest_downtime_ms;   /* destination: STATE/END received to done */
    unsigned throttle_pct;     /* auto-converge throttle reached, 0-99 */
    uint64_t state_bytes;      /* device state sent on the main channel */
} RfReport;

/* ======================================================================
 *  Running a migration
 * ====================================================================== */

/*! RfMigrateOptions : source-side options besides the parameters. */
typedef struct RfMigrateOptions {
    bool verify;                 /* compare block digests at the end */
    unsigned timeout_ms;         /* peer silence before failing; 0 = 30000 */
    volatile sig_atomic_t *cancel; /* set non-zero to cancel; may be NULL */
    /* Called about 4 times a second from the migration thread. */
    void (*progress)(const RfProgress *p, void *opaque);
    /* Called before each round's dirty sync (round is 1-based); tests use
     * it to rewrite pages every round. */
    void (*round_start)(unsigned round, void *opaque);
    /* Called to stop and restart whatever writes the source's memory, for
     * the final round and after a failure.  May be NULL. */
    void (*pause)(void *opaque);
    void (*resume)(void *opaque);
    /* Called once while paused, after the last dirty sync: the device
     * state (e.g. vCPU registers) to send to the destination, malloc'd
     * (the engine frees it), at most 1 MiB.  May be NULL: no state. */
    bool (*save_state)(void *opaque, uint8_t **buf, size_t *len,
                       RfError **errp);
    /* Auto-converge (QEMU's capability, off by default): while a round
     * does not converge, the engine raises the throttle (20%, then +10%
     * per round up to 99%) through this hook; 0 when done. */
    bool auto_converge;
    void (*throttle)(unsigned pct, void *opaque);
    void *opaque;
} RfMigrateOptions;

/*! RfIncomingOptions : destination-side options. */
typedef struct RfIncomingOptions {
    /* Expected method; empty = accept the source's choice. */
    char expect_method[RF_METHOD_NAME_MAX + 1];
    unsigned expect_channels;    /* 0 = accept the source's count */
    unsigned timeout_ms;         /* 0 = 30000 */
    volatile sig_atomic_t *cancel;
    /* Called once the socket listens, with the actual URI (port 0 is
     * replaced by the port chosen). */
    void (*listening)(const char *uri, void *opaque);
    /* Called with the source's device state (STATE message), before
     * COMPLETE is sent; failing it fails the migration.  May be NULL:
     * then a STATE message is refused. */
    bool (*load_state)(void *opaque, const uint8_t *buf, size_t len,
                       RfError **errp);
    void *opaque;
} RfIncomingOptions;

/*! rf_migrate() :
 *  Migrates src to the destination listening at uri ("tcp:HOST:PORT",
 *  "tcp:[V6ADDR]:PORT" or "unix:PATH").  Blocks until done.
 *  On failure or cancel, src's memory is untouched and its writers resumed.
 *  @return true on success, false with an error (the destination's own
 *  error message when it refused or failed). */
bool rf_migrate(const char *uri, RfRamSource *src, const RfParams *params,
                const RfMigrateOptions *opts, RfReport *report,
                RfError **errp);

/*! rf_incoming() :
 *  Listens at uri, accepts one migration and writes it into sink.
 *  @return true when the source completed, false with an error naming the
 *  channel and field for bad input. */
bool rf_incoming(const char *uri, RfRamSink *sink,
                 const RfIncomingOptions *opts, RfReport *report,
                 RfError **errp);

#ifdef __cplusplus
}
#endif
#endif /* RAMFLOW_H */
