/*
 * ramflow - live migration of virtual machine memory over parallel channels.
 * Public API, version 1.  docs/api.md states the ABI policy.
 *
 * Introduction
 *
 * ramflow moves the RAM of a (running) virtual machine from a source process
 * to a destination process, over one main (control) channel and
 * `multifd-channels` data channels (TCP or Unix sockets).  Pages travel in
 * packets of up to 128 pages of one RAM block; zero pages travel as offsets
 * only; the rest is compressed by a pluggable method (none, zlib, zstd,
 * qatzip).  Migration runs in rounds ("passes"): round 1 sends every page,
 * later rounds send the pages dirtied since, and a final round runs with
 * the source paused.  A sync point between rounds guarantees that the
 * destination never applies an older copy of a page after a newer one.
 *
 * Using the library
 *
 *   RfParams *p = rf_params_new();
 *   rf_params_set(p, "multifd-channels", "4", &err);
 *   RfMigration *m = rf_migration_new(p, &err);
 *   rf_migration_set_callbacks(m, &callbacks, &err);     (optional)
 *   source:       RfRamSource *src = rf_region_source_open(...);
 *                 rf_migration_start_outgoing(m, src, "tcp:host:4444", 0,
 *                                             &err);
 *   destination:  RfRamSink *sink = rf_region_sink_new(...);
 *                 rf_migration_start_incoming(m, sink, "tcp:127.0.0.1:4444",
 *                                             0, &err);
 *   ...           rf_migration_query(m, &info); rf_migration_cancel(m);
 *   bool ok = rf_migration_wait(m, &err);
 *   rf_migration_report(m, &report);
 *   rf_migration_free(m); rf_ram_source_free(src); rf_params_free(p);
 *
 * Errors are returned as RfError values (see ramflow/error.h): a function
 * that can fail takes `RfError **errp` last and returns false or NULL.  The
 * library never prints and never installs signal handlers.
 *
 * Threads
 *
 * - Each migration runs on one migration thread: a thread the library
 *   starts (the default), or the caller's thread when it passes
 *   RF_START_BLOCKING to a start function (the call then returns when the
 *   migration has ended).  The migration thread starts the channel threads
 *   (one per data channel) and, on the destination, pre-fault threads.
 * - Every callback of RfCallbacks runs on the migration thread, never on a
 *   channel thread, and never concurrently with another callback of the
 *   same migration.  A callback must not block for long: the migration
 *   waits for it.  From a callback, the caller may call rf_migration_query,
 *   rf_migration_status, rf_migration_set_param, rf_migration_cancel and
 *   rf_ram_source_mark_dirty; it must not call rf_migration_wait or
 *   rf_migration_free on its own migration (that would deadlock).
 * - rf_migration_cancel() may be called from any thread at any time, and
 *   from a signal handler (it only stores to lock-free atomics; the
 *   migration notices within about 100 ms).  rf_migration_query(),
 *   rf_migration_status() and rf_migration_set_param() may be called from
 *   any thread at any time.
 *   rf_ram_source_mark_dirty() may be called from any thread.
 * - rf_migration_wait() and rf_migration_free() are called from one thread
 *   (not the migration thread).
 * - Several migrations may run at once in one process, each with its own
 *   handle, source or sink: the library has no global mutable state
 *   besides read-only tables built once (thread-safe).
 * - RfParams, RfRamSource and RfRamSink objects are not locked: use one
 *   from one thread at a time (a source or sink belongs to at most one
 *   running migration).
 *
 * Lifetimes
 *
 * - rf_migration_new() copies the parameters: the caller may free them at
 *   once.  Callbacks and their opaque pointer must stay valid until
 *   rf_migration_wait() has returned or rf_migration_free() was called.
 * - A source or sink passed to a start function is borrowed: it must
 *   outlive the migration (until rf_migration_wait() returned or the
 *   handle was freed) and is freed by the caller afterwards.
 * - Memory given to a region source or sink stays owned by the caller and
 *   must stay mapped until the source or sink is freed.
 * - Strings returned by the library (names, descriptions) are static or
 *   live as long as the object they describe.
 */
#ifndef RAMFLOW_H
#define RAMFLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ramflow/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 *  Version
 * ====================================================================== */

#define RAMFLOW_VERSION_MAJOR 1
#define RAMFLOW_VERSION_MINOR 3
#define RAMFLOW_VERSION_PATCH 0
/*! RAMFLOW_VERSION_NUMBER : MAJOR * 10000 + MINOR * 100 + PATCH. */
#define RAMFLOW_VERSION_NUMBER                                               \
    (RAMFLOW_VERSION_MAJOR * 10000 + RAMFLOW_VERSION_MINOR * 100 +           \
     RAMFLOW_VERSION_PATCH)
#define RAMFLOW_VERSION_STRING "1.2.0"

/*! rf_version_number() :
 *  @return the version of the library actually loaded, as
 *  RAMFLOW_VERSION_NUMBER (compare with the header's to detect a mismatch
 *  between the header compiled against and the library run with). */
RF_API unsigned rf_version_number(void);

/*! rf_version_string() : @return the loaded library's version as "MAJOR.MINOR.PATCH" (e.g. "1.1.0"). */
RF_API const char *rf_version_string(void);

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
 *  Parameters and capabilities
 * ====================================================================== */

/*! RfParams :
 *  An opaque set of migration parameters and capabilities, with QEMU's
 *  names, ranges and defaults:
 *
 *    multifd-channels       1-255                          default 2
 *    multifd-compression    none, zlib, zstd, qatzip       default none
 *    multifd-zlib-level     0-9                            default 1
 *    multifd-zstd-level     0-20                           default 1
 *    multifd-qatzip-level   1-9                            default 1
 *    max-bandwidth          bytes/s, 0 = unlimited         default 0
 *    downtime-limit         ms, 0-2000000                  default 300
 *    max-rounds             1-10000 (ramflow's own)        default 30
 *    timeout                ms a whole message (main-channel frame, data
 *                           packet) or connect may take, 100-3600000
 *                                                          default 30000
 *    tcp-keepalive          s of TCP silence before keepalive probes
 *                           (then every third of it, 3 probes), 0-32767,
 *                           0 = timeout / 2 (at least 1)   default 0
 *    tcp-user-timeout       ms unacknowledged data may wait before TCP
 *                           drops the connection (TCP_USER_TIMEOUT),
 *                           0-3600000, 0 = timeout          default 0
 *
 *  reconnect (since 1.2; docs/protocol.md 5.1):
 *
 *    multifd-reconnect-attempts  times a source data channel whose
 *                           connection broke reconnects and re-sends
 *                           what did not arrive, 0-100, 0 = never (a
 *                           broken channel fails the migration)
 *                                                          default 3
 *    multifd-reconnect-backoff   ms before the first attempt, doubled
 *                           before each next, 0-60000      default 200
 *
 *  security (since 1.1; docs/security.md), strings unless noted, "" =
 *  unset:
 *
 *    tls-creds        x509 directory in QEMU's tls-creds-x509 layout
 *                     (ca-cert.pem, [ca-crl.pem], server-cert.pem and
 *                     server-key.pem or client-cert.pem and client-key.pem)
 *    tls-psk          directory holding keys.psk ("user:hexkey" lines);
 *                     at most one of tls-creds and tls-psk.  With either,
 *                     every connection is TLS 1.3 and verified both ways.
 *    tls-psk-username source: the PSK identity          default "qemu"
 *    tls-hostname     source: the name the destination's certificate must
 *                     carry (default: the URI's host)
 *    tls-authz        destination: accepted client identities, ';'
 *                     separated (certificate DNs as GnuTLS writes them,
 *                     or PSK user names); unset = any verified peer
 *    tls-authz-file   destination: the same, one per line
 *    allow-peer       destination: "CIDR[,CIDR...]" allowed to connect
 *    insecure         on/off: a destination may listen in plaintext on an
 *                     address other hosts reach (refused otherwise)
 *                                                        default off
 *    max-memory       destination: largest total layout accepted, bytes
 *                     with K/M/G/T suffixes, 0 = the sink's own limit
 *
 *  integrity (docs/protocol.md 4.10 and 6.1):
 *
 *    crc32c           source, on/off: every data packet carries a CRC32C
 *                     that the destination checks before any of its bytes
 *                     reach guest memory; on, the source requires it (a
 *                     destination without it is refused at the
 *                     handshake); off, it neither offers nor requires it.
 *                     A destination always supports it.   default on
 *
 *  Credentials are loaded by the start functions: a missing or bad file
 *  fails the start.
 *
 *  and the boolean capabilities (rf_params_set_cap):
 *
 *    auto-converge   throttle the source's writers while rounds do not
 *                    converge (QEMU's capability; needs the throttle
 *                    callback)                               default off
 *    verify          compare every block's digest at the end (ramflow's
 *                    own)                                    default off
 *
 *  On a destination, multifd-compression and multifd-channels are
 *  expectations when set explicitly (rf_params_set): a source that uses
 *  anything else is refused.  Unset, the destination accepts the source's
 *  choice. */
typedef struct RfParams RfParams;

/*! rf_params_new() :
 *  @return a parameter set holding the defaults, or NULL if out of
 *  memory.  Free with rf_params_free(). */
RF_API RfParams *rf_params_new(void);

/*! rf_params_dup() : @return a copy of p, or NULL if out of memory. */
RF_API RfParams *rf_params_dup(const RfParams *p);

/*! rf_params_free() : frees p; NULL is allowed. */
RF_API void rf_params_free(RfParams *p);

/*! rf_params_set() :
 *  Sets parameter `name` (QEMU spelling, e.g. "multifd-zstd-level") from its
 *  text form.  Sizes accept K/M/G/T suffixes (powers of 1024).
 *  @return true on success; false with an RF_ERR_PARAM error naming the
 *  parameter and its allowed range (or the known names) otherwise. */
RF_API bool rf_params_set(RfParams *p, const char *name, const char *value,
                          RfError **errp);

/*! rf_params_get() :
 *  Writes parameter `name`'s value in text form (as rf_params_set takes
 *  it; sizes in bytes) into buf, NUL-terminated.
 *  @return false with an RF_ERR_PARAM error for an unknown name or a buf
 *  too small (64 bytes is always enough). */
RF_API bool rf_params_get(const RfParams *p, const char *name, char *buf,
                          size_t cap, RfError **errp);

/*! rf_params_set_level() :
 *  Sets the compression level of method `method` ("zlib", "zstd",
 *  "qatzip"), the same as setting "multifd-<method>-level".
 *  @return false with an RF_ERR_PARAM error if the method has no level or
 *  the level is out of its range. */
RF_API bool rf_params_set_level(RfParams *p, const char *method, int level,
                                RfError **errp);

/*! rf_params_get_level() :
 *  @return method's level, or -1 if the method is unknown or has none. */
RF_API int rf_params_get_level(const RfParams *p, const char *method);

/*! rf_params_set_cap() :
 *  Turns capability `name` ("auto-converge", "verify") on or off.
 *  @return false with an RF_ERR_PARAM error naming the known capabilities
 *  for an unknown name. */
RF_API bool rf_params_set_cap(RfParams *p, const char *name, bool on,
                              RfError **errp);

/*! rf_params_get_cap() :
 *  @return whether capability `name` is on (false for an unknown name). */
RF_API bool rf_params_get_cap(const RfParams *p, const char *name);

/*! rf_params_check() :
 *  Checks every parameter's range and that the compression method is
 *  known and built in.  @return true if all are valid, else false with
 *  an RF_ERR_PARAM error naming the first bad parameter. */
RF_API bool rf_params_check(const RfParams *p, RfError **errp);

/*! rf_params_names() :
 *  @return a NULL-terminated, static list of every parameter name. */
RF_API const char *const *rf_params_names(void);

/*! rf_params_cap_names() :
 *  @return a NULL-terminated, static list of every capability name. */
RF_API const char *const *rf_params_cap_names(void);

/*! rf_method_names() :
 *  @return a NULL-terminated, static list of the compression methods this
 *  build supports, in registry order. */
RF_API const char *const *rf_method_names(void);

/* ======================================================================
 *  RAM blocks, sources (the source side) and sinks (the destination side)
 * ====================================================================== */

typedef struct RfRamSource RfRamSource;
typedef struct RfRamSink RfRamSink;

/*! RfRamBlock : one named block of guest memory mapped in this process. */
typedef struct RfRamBlock {
    char name[RF_BLOCK_NAME_MAX + 1];
    uint64_t size;   /* bytes, a non-zero multiple of RF_PAGE_SIZE */
    uint8_t *host;   /* mapped address, page-aligned */
} RfRamBlock;

/*! RfRegion : one memory region of this process, for region sources and
 *  sinks. */
typedef struct RfRegion {
    const char *name;  /* block name, 1-255 bytes; NULL = "region<i>" */
    void *addr;        /* page-aligned */
    uint64_t size;     /* bytes, a non-zero multiple of RF_PAGE_SIZE */
} RfRegion;

/*! RfRamSourceOps :
 *  A custom RAM source, for a caller that keeps its guest memory its own
 *  way.  Set `size` to sizeof(RfRamSourceOps): a later library with more
 *  operations treats the missing ones as NULL.  All operations run on the
 *  migration thread, except mark_dirty (any thread).  `s` is the object
 *  rf_ram_source_new() returned; rf_ram_source_opaque(s) gives the
 *  caller's pointer. */
typedef struct RfRamSourceOps {
    size_t size;
    const char *name;  /* e.g. "my-vmm"; shown in reports */
    /* Number of blocks (1 to RF_MAX_BLOCKS); fixed for the source's
     * life. */
    unsigned (*block_count)(RfRamSource *s);
    /* Block i (name, size, host address); the pointer stays valid for the
     * source's life. */
    const RfRamBlock *(*block)(RfRamSource *s, unsigned i);
    /* Starts tracking writes; from now on dirty_sync reports them. */
    bool (*dirty_start)(RfRamSource *s, RfError **errp);
    /* ORs the pages written since the previous sync (or since dirty_start)
     * into bitmap (one bit per page: bit i%64 of word i/64) and forgets
     * them. */
    bool (*dirty_sync)(RfRamSource *s, unsigned block, uint64_t *bitmap,
                       RfError **errp);
    /* Stops tracking writes. */
    void (*dirty_stop)(RfRamSource *s);
    /* Marks pages dirty (rf_ram_source_mark_dirty); may be NULL. */
    void (*mark_dirty)(RfRamSource *s, unsigned block, uint64_t offset,
                       uint64_t len);
    /* Frees what the source holds (not the RfRamSource itself); may be
     * NULL. */
    void (*free)(RfRamSource *s);
    /* One line saying how writes are tracked; may be NULL. */
    const char *(*describe)(RfRamSource *s);
    /* Optional (may be NULL, or return -1): a file descriptor whose bytes
     * [*offset, *offset + block size) are block i's memory, the very pages
     * block() maps (a memory file, a VMM's memfd).  The channels then read
     * the pages they send with pread(2) instead of through the mapping:
     * where the host shadows page tables (a nested guest) the first read
     * of each page of a mapping costs a fault (docs/benchmarks.md).  A
     * page a guest writes during the read may arrive torn, as through the
     * mapping: dirty tracking sends it again.  The fd must stay open
     * until free. */
    int (*fd)(RfRamSource *s, unsigned i, uint64_t *offset);
} RfRamSourceOps;

/*! rf_ram_source_new() :
 *  Makes a source from the caller's operations (copied) and opaque
 *  pointer.  @return the source, or NULL with an error if a required
 *  operation (block_count, block, dirty_sync) is missing. */
RF_API RfRamSource *rf_ram_source_new(const RfRamSourceOps *ops,
                                      void *opaque, RfError **errp);

/*! rf_ram_source_opaque() : @return the opaque pointer given to
 *  rf_ram_source_new() (NULL for built-in sources). */
RF_API void *rf_ram_source_opaque(const RfRamSource *src);

/*! rf_file_source_open() :
 *  Opens a RAM source whose blocks are files or shared-memory objects
 *  (e.g. /dev/shm/NAME), mapped shared.  Each spec is "PATH" or
 *  "NAME=PATH"; without NAME the block is named after the file's basename.
 *  Every file's size must be a non-zero multiple of RF_PAGE_SIZE.
 *  Dirty pages are those reported through rf_ram_source_mark_dirty() or a
 *  dirty-log provider (rf_ram_source_set_dirty_log()).
 *  Files are mapped for reading and writing (so the caller may write
 *  guest memory through rf_ram_source_block()'s pointer), or read-only
 *  when this process may not write them; the channels read the pages
 *  they send from the files with pread(2) (RfRamSourceOps.fd).  Same as
 *  rf_file_source_new() with flags 0.
 *  @return the source, or NULL with an error naming the file. */
RF_API RfRamSource *rf_file_source_open(const char *const *specs, unsigned n,
                                        RfError **errp);

/*! RF_FILE_SOURCE_READ_ONLY : rf_file_source_new() flag: open and map
 *  every file read-only, also those this process could write.  A
 *  migration then cannot change the source's memory whatever happens,
 *  and reading it is cheaper where the host shadows page tables (a
 *  nested guest: 0.88x the time of a 1 GiB zstd migration,
 *  docs/benchmarks.md).  rf_ram_source_block()'s pointer must then not
 *  be written (SIGSEGV); report changes with rf_ram_source_mark_dirty()
 *  after writing the file some other way. */
#define RF_FILE_SOURCE_READ_ONLY 0x1u

/*! rf_file_source_new() :
 *  rf_file_source_open() with flags (RF_FILE_SOURCE_READ_ONLY, or 0).
 *  @return the source, or NULL with an error naming the file or the
 *  unknown flag. */
RF_API RfRamSource *rf_file_source_new(const char *const *specs, unsigned n,
                                       unsigned flags, RfError **errp);

/*! RF_REGION_UFFD_SYNC : rf_region_source_open() flag: track writes with
 *  synchronous userfaultfd write-protect faults even where the kernel has
 *  asynchronous ones (tests use it). */
#define RF_REGION_UFFD_SYNC 0x1u
/*! RF_REGION_NO_UFFD : rf_region_source_open() flag: do not use (or probe)
 *  userfaultfd; the caller tracks writes itself, with a dirty-log provider
 *  (rf_ram_source_set_dirty_log()) or rf_ram_source_mark_dirty(). */
#define RF_REGION_NO_UFFD 0x2u

/*! rf_region_source_open() :
 *  Opens a RAM source over memory regions of this process (page-aligned
 *  addr, size a non-zero multiple of RF_PAGE_SIZE, names unique and 1-255
 *  bytes; a NULL name becomes "region<i>").  Writes are tracked by
 *  userfaultfd write protection (async WP + PAGEMAP_SCAN, falling back to
 *  synchronous WP faults) from the migration's start, unless flags has
 *  RF_REGION_NO_UFFD or a dirty-log provider is set
 *  (rf_ram_source_set_dirty_log()); pages marked with
 *  rf_ram_source_mark_dirty() count too.  The memory stays owned by the
 *  caller and must outlive the source.
 *  @return the source, or NULL with an error naming the region on bad
 *  input, or saying why userfaultfd is unavailable (without
 *  RF_REGION_NO_UFFD). */
RF_API RfRamSource *rf_region_source_open(const RfRegion *regions,
                                          unsigned n, unsigned flags,
                                          RfError **errp);

/*! RfDirtyLog :
 *  A dirty-log provider: the caller, which already reads the guest's dirty
 *  pages (KVM_GET_DIRTY_LOG, a dirty ring, its own tracking), hands them
 *  to the engine at each sync instead of the source's own tracker.  Set
 *  `size` to sizeof(RfDirtyLog).  Callbacks run on the migration thread. */
typedef struct RfDirtyLog {
    size_t size;
    /* Starts logging (e.g. sets KVM_MEM_LOG_DIRTY_PAGES); may be NULL. */
    bool (*start)(void *opaque, RfError **errp);
    /* ORs into bitmap (one bit per page of block `block`, bit i%64 of word
     * i/64) every page written since the previous sync of that block (or
     * since start), and forgets them: KVM_GET_DIRTY_LOG's contract. */
    bool (*sync)(void *opaque, unsigned block, uint64_t *bitmap,
                 RfError **errp);
    /* Stops logging; may be NULL. */
    void (*stop)(void *opaque);
    void *opaque;
} RfDirtyLog;

/*! rf_ram_source_set_dirty_log() :
 *  Makes `log` (copied) the source's dirty tracker, replacing its own
 *  (userfaultfd for a region source); rf_ram_source_mark_dirty() still
 *  counts.  Call before the migration starts; NULL restores the source's
 *  own tracker.  @return false with an RF_ERR_PARAM error if log->sync is
 *  NULL or a migration is running on the source. */
RF_API bool rf_ram_source_set_dirty_log(RfRamSource *src,
                                        const RfDirtyLog *log,
                                        RfError **errp);

/*! rf_ram_source_describe() :
 *  @return a one-line description of how the source tracks writes (e.g.
 *  "userfaultfd async WP + PAGEMAP_SCAN", "dirty-log provider", or
 *  "explicit marks"), never NULL. */
RF_API const char *rf_ram_source_describe(const RfRamSource *src);

/*! rf_ram_source_mark_dirty() :
 *  Marks the pages covering [offset, offset + len) of block `block` dirty,
 *  so the next round sends them again.  Call it after writing the memory.
 *  Safe from any thread; out-of-range parts are ignored.  Built-in sources
 *  and any source with a dirty-log provider keep the marks; a custom source
 *  keeps them only if its ops have mark_dirty. */
RF_API void rf_ram_source_mark_dirty(RfRamSource *src, unsigned block,
                                     uint64_t offset, uint64_t len);

/*! rf_ram_source_block_count() : @return the number of blocks. */
RF_API unsigned rf_ram_source_block_count(const RfRamSource *src);

/*! rf_ram_source_block() :
 *  Gives block i's name, size in bytes and mapped address (each output
 *  may be NULL).  @return false if i is out of range. */
RF_API bool rf_ram_source_block(const RfRamSource *src, unsigned i,
                                const char **name, uint64_t *size,
                                uint8_t **host);

/*! rf_ram_source_free() : frees the source (unmapping what a built-in
 *  source mapped; a region source leaves the caller's memory alone);
 *  NULL is allowed. */
RF_API void rf_ram_source_free(RfRamSource *src);

/*! RfRamSinkOps :
 *  A custom RAM sink (destination memory).  Set `size` to
 *  sizeof(RfRamSinkOps).  All operations run on the migration thread. */
typedef struct RfRamSinkOps {
    size_t size;
    const char *name;
    /* The source's layout arrived (after the peer passed the handshake):
     * provide memory for the n blocks, or fail naming the block.  May
     * start pre-faulting in the background. */
    bool (*prepare)(RfRamSink *s, const RfRamBlock *layout, unsigned n,
                    RfError **errp);
    /* Host address of block i after prepare: the engine writes pages
     * there, and nowhere else. */
    uint8_t *(*host)(RfRamSink *s, unsigned i);
    /* Called once every page has landed, before the destination answers
     * COMPLETE: ends background pre-faulting.  Stop it rather than wait
     * for the rest, which only faults in pages nothing wrote: the
     * downtime includes whatever this call waits for.  @return true if
     * the memory was resident, or pre-faulted from before the data came
     * (the report's dest_memory_warm).  May be NULL. */
    bool (*wait_ready)(RfRamSink *s);
    /* The migration ended (ok = completed); flush or discard.  May be
     * NULL. */
    void (*finish)(RfRamSink *s, bool ok);
    /* Frees what the sink holds (not the RfRamSink itself); may be NULL. */
    void (*free)(RfRamSink *s);
    /* Optional (may be NULL, or return -1): a file descriptor whose bytes
     * [*offset, *offset + block size) are block i's memory, the very pages
     * host() maps (the file a file sink made, a VMM's memfd).  The engine
     * then writes received pages with pwrite(2) on it, and reads what it
     * must check with pread(2), instead of going through the mapping:
     * where the host shadows page tables (a nested guest) the first write
     * to each page of a mapping costs a fault, eight times the copy on
     * this project's machine (docs/benchmarks.md).  Called after prepare;
     * the fd must stay open until free. */
    int (*fd)(RfRamSink *s, unsigned i, uint64_t *offset);
    /* Optional (may be NULL): @return true if every byte of block i read
     * zero when prepare() returned (a fresh file, fresh anonymous
     * memory).  A zero page the migration has not yet written is then
     * neither read nor written. */
    bool (*zeroed)(RfRamSink *s, unsigned i);
} RfRamSinkOps;

/*! rf_ram_sink_new() :
 *  Makes a sink from the caller's operations (copied) and opaque pointer.
 *  @return the sink, or NULL with an error if prepare or host is
 *  missing. */
RF_API RfRamSink *rf_ram_sink_new(const RfRamSinkOps *ops, void *opaque,
                                  RfError **errp);

/*! rf_ram_sink_opaque() : @return the opaque pointer given to
 *  rf_ram_sink_new() (NULL for built-in sinks). */
RF_API void *rf_ram_sink_opaque(const RfRamSink *sink);

/*! RF_FILE_SINK_REUSE : rf_file_sink_new() flag: receive into the existing
 *  regular files in place: never created, truncated or resized, and
 *  never written but by the migration (which writes them with pwrite(2),
 *  like a created file; nothing is pre-faulted or dirtied besides); each
 *  file's size (checked with stat before it is opened for writing) and its ":SIZE", if given, must equal its block's size, else
 *  the migration is refused naming the block and both sizes.  After a
 *  failed or cancelled migration the files' contents are undefined (partly
 *  old, partly new). */
#define RF_FILE_SINK_REUSE 0x1u

/*! rf_file_sink_new() :
 *  A destination that writes each incoming block into a file.  Specs are
 *  "[NAME=]PATH[:SIZE]": a block matches the spec with its name, or the
 *  only spec when both sides have exactly one block; SIZE (K/M/G/T
 *  suffixes, powers of 1024), when given, is the size the block must have
 *  (the part after the last ':' is a size only if it parses as one).
 *  Nothing is opened or created here.  When the source's layout arrives
 *  (after the handshake passed), every block is checked before any file is
 *  touched: its size against SIZE, that an existing PATH is a regular
 *  file, and that each file system has room for its blocks less a reserve
 *  (1/64 of it, at most 64 MiB).  By default each block is then received
 *  into a new file beside PATH (".NAME.ramflow-XXXXXX", with PATH's mode,
 *  else 0600), written with pwrite(2) (not through its mapping), and
 *  renamed over PATH when the migration completes; a failed or cancelled
 *  migration removes it and leaves PATH as it was (or absent).  With RF_FILE_SINK_REUSE, see above.
 *  @return the sink, or NULL with an error naming the bad spec. */
RF_API RfRamSink *rf_file_sink_new(const char *const *specs, unsigned n,
                                   unsigned flags, RfError **errp);

/*! rf_region_sink_new() :
 *  A destination that receives into memory the caller has mapped (for
 *  instance a VMM's guest RAM, pre-allocated or on huge pages).  Blocks
 *  match regions by name, or the only region when both sides have exactly
 *  one block; sizes must be equal, else the migration is refused naming the
 *  block and both sizes.  The memory is never resized, remapped or
 *  pre-faulted, and no byte outside the regions is written.  After a
 *  failed or cancelled migration the regions' contents are undefined
 *  (partly old, partly new).
 *  @return the sink, or NULL with an error naming the bad region. */
RF_API RfRamSink *rf_region_sink_new(const RfRegion *regions, unsigned n,
                                     RfError **errp);

/*! rf_ram_sink_free() : frees the sink; NULL is allowed. */
RF_API void rf_ram_sink_free(RfRamSink *sink);

/* ======================================================================
 *  Migrations
 * ====================================================================== */

typedef struct RfMigration RfMigration;

/*! RfStatus : QEMU's migration statuses (query-migrate's "status"), with
 *  stable values. */
typedef enum RfStatus {
    RF_STATUS_NONE = 0,       /* not started */
    RF_STATUS_SETUP = 1,      /* connecting, handshake, channels */
    RF_STATUS_ACTIVE = 2,     /* rounds running */
    RF_STATUS_DEVICE = 3,     /* source paused: last round, device state */
    RF_STATUS_COMPLETED = 4,
    RF_STATUS_FAILED = 5,
    RF_STATUS_CANCELLING = 6, /* cancel requested, winding down */
    RF_STATUS_CANCELLED = 7,
} RfStatus;

/*! rf_status_name() :
 *  @return QEMU's name of the status ("setup", "active", "device",
 *  "completed", "failed", "cancelling", "cancelled", "none"). */
RF_API const char *rf_status_name(RfStatus status);

/*! RfProgress : a snapshot passed to the progress callback about four
 *  times a second, on both sides.  The library may add fields at the end:
 *  read only the ones your header has. */
typedef struct RfProgress {
    bool is_source;
    unsigned round;            /* 1-based round being sent or received */
    uint64_t total_bytes;      /* RAM size */
    uint64_t sent_pages;       /* source: pages handed to channels so far;
                                  destination: pages received */
    uint64_t remaining_pages;  /* source: dirty pages not yet sent this
                                  round; destination: 0 */
    uint64_t wire_bytes;       /* bytes on all channels */
    double elapsed_s;
    double throughput_bps;     /* wire bits/s over the last interval */
    /* since 1.3: source with multifd-compression 'auto', its current
     * choice and active channels ("zstd-1 x4"); NULL otherwise */
    const char *method;
} RfProgress;

/*! RfCallbacks :
 *  What the caller is told and asked during a migration.  Set `size` to
 *  sizeof(RfCallbacks) (RF_CALLBACKS_INIT does); every member may be
 *  NULL.  All run on the migration thread (see Threads above) with
 *  `opaque`. */
typedef struct RfCallbacks {
    size_t size;
    /* Every status change, in order (setup, active, device, then one of
     * completed, failed, cancelling -> cancelled). */
    void (*status)(RfMigration *m, RfStatus status, void *opaque);
    /* Source: before round `pass`'s dirty sync (a test may write pages
     * then).  Destination: when every channel has passed round `pass`. */
    void (*pass)(RfMigration *m, unsigned pass, void *opaque);
    /* About four times a second, on both sides. */
    void (*progress)(RfMigration *m, const RfProgress *p, void *opaque);
    /* Destination: the listener is ready at `uri` (port 0 resolved). */
    void (*listening)(RfMigration *m, const char *uri, void *opaque);
    /* Source: stop and restart whatever writes the source's memory (the
     * vCPUs), for the final round, and resume after a failure or cancel. */
    void (*pause)(void *opaque);
    void (*resume)(void *opaque);
    /* Source, once while paused after the last dirty sync: the device
     * state to send (malloc'd, the library frees it), at most 1 MiB.  NULL:
     * no device state. */
    bool (*save_state)(void *opaque, uint8_t **buf, size_t *len,
                       RfError **errp);
    /* Destination: the source's device state, before completion; failing
     * it fails the migration.  NULL: a source that sends state is
     * refused. */
    bool (*load_state)(void *opaque, const uint8_t *buf, size_t len,
                       RfError **errp);
    /* Source, with auto-converge: slow the writers to pct% (20, then +10
     * per non-converging round up to 99); 0 when done. */
    void (*throttle)(unsigned pct, void *opaque);
    void *opaque;
    /* since 1.1 -- Destination: a connection was dropped before it became
     * part of the migration (not an allowed peer, TLS handshake or
     * authorisation failed, no valid hello, a stray data channel), with
     * the peer's URI ("unknown" if it has none) and the reason.  Called on
     * the migration thread; the migration goes on. */
    void (*rejected)(RfMigration *m, const char *peer, const char *why,
                     void *opaque);
} RfCallbacks;

#define RF_CALLBACKS_INIT {.size = sizeof(RfCallbacks)}

/*! rf_migration_new() :
 *  Creates a migration handle with a copy of params (NULL = defaults),
 *  checked.  @return the handle, or NULL with an RF_ERR_PARAM error naming
 *  the bad parameter. */
RF_API RfMigration *rf_migration_new(const RfParams *params, RfError **errp);

/*! rf_migration_set_callbacks() :
 *  Sets the callbacks (copied).  Call before starting.
 *  @return false with an RF_ERR_PARAM error once started or if cb->size is
 *  0. */
RF_API bool rf_migration_set_callbacks(RfMigration *m, const RfCallbacks *cb,
                                       RfError **errp);

/*! RF_START_BLOCKING : run the migration on the calling thread; the start
 *  function returns when it has ended (true only if it completed). */
#define RF_START_BLOCKING 0x1u

/*! rf_migration_start_outgoing() :
 *  Starts migrating src to the destination listening at uri
 *  ("tcp:HOST:PORT", "tcp:[V6ADDR]:PORT" or "unix:PATH").  A handle is
 *  started once.  On failure or cancel, src's memory is untouched and its
 *  writers are resumed.
 *  @return true if the migration started (or, blocking, completed); false
 *  with an error otherwise. */
RF_API bool rf_migration_start_outgoing(RfMigration *m, RfRamSource *src,
                                        const char *uri, unsigned flags,
                                        RfError **errp);

/*! rf_migration_start_outgoing_fd() :
 *  As rf_migration_start_outgoing(), over an already-connected stream
 *  socket `fd` (TCP or Unix) as the main channel; the library owns fd
 *  from now on.  Data channels connect to fd's peer address. */
RF_API bool rf_migration_start_outgoing_fd(RfMigration *m, RfRamSource *src,
                                           int fd, unsigned flags,
                                           RfError **errp);

/*! rf_migration_start_incoming() :
 *  Listens at uri (port 0 picks a free port, told by the listening
 *  callback), accepts one migration and writes it into sink.  Nothing is
 *  written, sized or allocated for a peer before its handshake passed.
 *  @return true if started (or, blocking, completed); false with an
 *  error. */
RF_API bool rf_migration_start_incoming(RfMigration *m, RfRamSink *sink,
                                        const char *uri, unsigned flags,
                                        RfError **errp);

/*! rf_migration_start_incoming_fd() :
 *  As rf_migration_start_incoming(), on a listening socket listen_fd (the
 *  data channels, and the main channel unless conn_fd >= 0, are accepted
 *  there) and optionally an already-accepted main channel conn_fd (-1 for
 *  none).  The library owns both from now on. */
RF_API bool rf_migration_start_incoming_fd(RfMigration *m, RfRamSink *sink,
                                           int listen_fd, int conn_fd,
                                           unsigned flags, RfError **errp);

/*! rf_migration_cancel() :
 *  Asks the migration to stop.  Any thread, any state, async-signal-safe;
 *  returns at once.  The status goes to cancelling, then cancelled; the
 *  source VM is resumed with its memory intact.  No effect once ended. */
RF_API void rf_migration_cancel(RfMigration *m);

/*! rf_migration_set_param() :
 *  Changes a parameter.  Before the start, any parameter; while the
 *  migration runs, those QEMU allows (max-bandwidth, downtime-limit,
 *  max-rounds), taking effect at once (the next packet, the next round
 *  decision).  @return false with an RF_ERR_PARAM error for a bad value or
 *  a parameter that cannot change now. */
RF_API bool rf_migration_set_param(RfMigration *m, const char *name,
                                   const char *value, RfError **errp);

/*! rf_migration_status() : @return the current status. */
RF_API RfStatus rf_migration_status(const RfMigration *m);

/*! RfMigrationInfo :
 *  The figures of QEMU's query-migrate.  The caller sets `size` to
 *  sizeof(RfMigrationInfo) (RF_MIGRATION_INFO_INIT does); the library
 *  fills what fits. */
typedef struct RfMigrationInfo {
    size_t size;
    RfStatus status;
    bool is_source;
    unsigned pass;                 /* current round, 1-based; 0 before */
    uint64_t total_time_ms;        /* start to now, or to the end */
    uint64_t setup_time_ms;
    uint64_t downtime_ms;          /* after completion */
    uint64_t expected_downtime_ms; /* source: estimate at the last sync */
    /* ram */
    uint64_t ram_total;            /* bytes of all blocks */
    uint64_t ram_transferred;      /* bytes on all channels */
    uint64_t ram_remaining;        /* source: dirty bytes not sent yet */
    uint64_t ram_duplicate;        /* zero pages */
    uint64_t ram_normal;           /* non-zero pages */
    uint64_t ram_normal_bytes;
    double ram_mbps;               /* wire Mbit/s, last interval */
    double ram_pages_per_second;
    uint64_t dirty_sync_count;
    double dirty_pages_rate;       /* pages/s at the last sync */
    uint64_t precopy_bytes;        /* bytes sent before the pause */
    char error_desc[256];          /* failed: the error message */
} RfMigrationInfo;

#define RF_MIGRATION_INFO_INIT {.size = sizeof(RfMigrationInfo)}

/*! rf_migration_query() :
 *  Fills info (up to info->size bytes) with the migration's figures.  Any
 *  thread, any time; the figures are at most a quarter second old while
 *  the migration runs.  @return false if info->size is 0. */
RF_API bool rf_migration_query(const RfMigration *m, RfMigrationInfo *info);

/*! rf_migration_wait() :
 *  Blocks until the migration has ended.
 *  @return true if it completed; false with a copy of its error (also for
 *  a handle never started). */
RF_API bool rf_migration_wait(RfMigration *m, RfError **errp);

/*! RfReport :
 *  What a migration did, after it ended.  The caller sets `size`
 *  (RF_REPORT_INIT does); the library fills what fits.  CPU figures are
 *  per-cent of one core over the total time: the library's own threads by
 *  group, and the whole process separately (an embedding VMM's vCPU
 *  threads count only in the latter). */
typedef struct RfReport {
    size_t size;
    bool is_source;
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
    uint64_t precopy_bytes;    /* wire bytes before the pause */
    double throughput_mbps;    /* wire Mbit/s over total time */
    double pages_per_s;
    double compression_ratio;  /* normal page bytes / payload bytes */
    double send_cpu_pct;       /* source: ramflow's threads */
    double recv_cpu_pct;       /* destination: ramflow's threads */
    double cpu_migration_pct;  /* this side: the migration thread */
    double cpu_channels_pct;   /* this side: the channel threads */
    double cpu_prefault_pct;   /* this side: pre-fault threads */
    double process_cpu_pct;    /* this side: the whole process */
    bool verified;             /* verify ran and every digest matched */
    bool converged;            /* final round started within downtime */
    bool dest_memory_warm;     /* destination RAM was resident first
                                * (pre-faulted or reused) */
    double dirty_pages_rate;   /* pages/s dirtied, measured at the last sync */
    double expected_downtime_ms; /* estimate when the final round began */
    double dest_downtime_ms;   /* destination: STATE/END received to done */
    unsigned throttle_pct;     /* auto-converge throttle reached, 0-99 */
    uint64_t state_bytes;      /* device state sent on the main channel */
    /* since 1.1 */
    unsigned rejected_connections; /* destination: connections dropped
                                    * (peer filter, TLS, stray hellos) */
    char security[64];         /* "TLS 1.3 x509, user-space TLS", "none" */
    /* since 1.2 */
    unsigned reconnects;       /* broken data connections replaced
                                * (multifd-reconnect-attempts) */
    /* since 1.3 */
    char auto_summary[160];    /* source, 'auto': share of page data per
                                * choice and switches ("zstd-1 81%, none
                                * 19%; 3 switches"), or why it used a fixed
                                * method; "" otherwise */
} RfReport;

#define RF_REPORT_INIT {.size = sizeof(RfReport)}

/*! rf_migration_report() :
 *  Fills rep (up to rep->size bytes) once the migration has reached its
 *  final status: from the status callback of completed, failed or
 *  cancelled on (and so whenever rf_migration_query() shows one), before
 *  rf_migration_wait() returns.  The source's report also carries the
 *  destination's recv_cpu_pct.
 *  @return false if the migration has not reached its final status (or
 *  ended before its thread started) or rep->size is 0. */
RF_API bool rf_migration_report(const RfMigration *m, RfReport *rep);

/*! rf_migration_auto_json() :
 *  Since 1.3.  Once a source migration with multifd-compression 'auto'
 *  has ended, writes its decision log as one JSON object (candidates,
 *  per-round bytes and packets per choice, every decision with its time,
 *  reason, predicted and measured rate, the predicted and actual time;
 *  docs/methods.md) into buf, NUL-terminated, cut short if cap is too
 *  small.  buf may be NULL with cap 0 to learn the size.
 *  @return the length of the whole text (as snprintf), 0 if there is
 *  none (not 'auto', not ended, or a destination without per-packet
 *  methods). */
RF_API size_t rf_migration_auto_json(const RfMigration *m, char *buf,
                                     size_t cap);

/*! rf_migration_free() :
 *  Cancels the migration if it still runs, waits for its end, and frees
 *  the handle.  NULL is allowed.  Not from the migration's own callbacks. */
RF_API void rf_migration_free(RfMigration *m);

#ifdef __cplusplus
}
#endif
#endif /* RAMFLOW_H */
