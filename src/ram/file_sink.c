/*
 * ramflow - the file RAM sink: the destination writes each block into a
 * file (or /dev/shm object), created or truncated when the layout arrives.
 *
 * prepare() truncates every file to zero and back to the block's size, so
 * the memory starts as fresh zero pages (a zero page received needs no
 * write), maps it shared, and starts pre-faulting it in background
 * threads so that this runs during the handshake.  wait_ready() joins
 * them and keeps their CPU time (prefault_cpu_s).  Files are left to the
 * kernel to write back: no msync.
 *
 * With RF_FILE_SINK_REUSE, prepare() opens existing files as they are:
 * never created, truncated or pre-faulted, and refused unless a file's
 * size equals its block's.  Their old contents need no clearing: round 1
 * sends every page, and a zero page received over non-zero memory is
 * written as zeros.
 */
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "ram/file_ram.h"
#include "ram/layout.h"

typedef struct SinkSpec {
    char name[RF_BLOCK_NAME_MAX + 1];
    const char *path; /* points into spec */
    const char *spec; /* our copy of the caller's spec */
} SinkSpec;

typedef struct SinkBlock {
    uint8_t *host;
    uint64_t size;
    const SinkSpec *spec;
} SinkBlock;

typedef struct FileSink {
    RfRamSink base; /* first: the ops table */
    unsigned nspecs;
    SinkSpec specs[RF_MAX_BLOCKS];
    char **spec_copies;
    bool prepared;
    unsigned n;
    SinkBlock blk[RF_MAX_BLOCKS];
    RfPrefaultJob *prefault; /* running until wait_ready/finish/free */
    bool warm;               /* result of the finished pre-fault */
    bool reuse;              /* RF_FILE_SINK_REUSE */
} FileSink;

/* Opens b's file and maps it shared: by default created if missing and
 * truncated to `size` fresh zero bytes; with `reuse`, an existing file of
 * exactly `size` bytes, as it is.  Reports the file system it lives on in
 * *dev and the bytes it already occupies there in *used. */
static bool open_block(SinkBlock *b, const char *name, uint64_t size,
                       bool reuse, dev_t *dev, uint64_t *used,
                       RfError **errp)
{
    const char *path = b->spec->path;
    int fd = open(path, O_RDWR | O_CLOEXEC | (reuse ? 0 : O_CREAT), 0600);
    if (fd < 0) {
        rf_error_set(errp, RF_ERR_IO, "block '%s': cannot open '%s': %s",
                     name, path, strerror(errno));
        return false;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        rf_error_set(errp, RF_ERR_IO, "block '%s': '%s' is not a regular "
                     "file", name, path);
        close(fd);
        return false;
    }
    *dev = st.st_dev;
    *used = 0;
    if (reuse) {
        if ((uint64_t)st.st_size != size) {
            rf_error_set(errp, RF_ERR_MISMATCH, "block '%s' is %llu bytes "
                         "at the source but file '%s' here is %llu bytes "
                         "(a reused file keeps its size)", name,
                         (unsigned long long)size, path,
                         (unsigned long long)st.st_size);
            close(fd);
            return false;
        }
        *used = (uint64_t)st.st_blocks * 512;
    } else if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)size) < 0) {
        rf_error_set(errp, RF_ERR_IO, "block '%s': cannot size '%s' to %llu "
                     "bytes: %s", name, path, (unsigned long long)size,
                     strerror(errno));
        close(fd);
        return false;
    }
    void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   fd, 0);
    int err = errno;
    close(fd);
    if (p == MAP_FAILED) {
        rf_error_set(errp, RF_ERR_IO, "block '%s': mmap of '%s' (%llu "
                     "bytes): %s", name, path, (unsigned long long)size,
                     strerror(err));
        return false;
    }
    b->host = p;
    b->size = size;
    return true;
}

/* Fails if the blocks on one file system need more than it has free
 * (a block needs its size less what its file already occupies, used[]):
 * checked up front because a full tmpfs would otherwise fail only at the
 * first write into the mapping, with SIGBUS. */
static bool space_check(FileSink *fs, const dev_t *devs, const uint64_t *used,
                        RfError **errp)
{
    for (unsigned i = 0; i < fs->n; i++) {
        uint64_t need = 0;
        for (unsigned k = 0; k < fs->n; k++) {
            uint64_t size = fs->blk[k].size;
            uint64_t have = used[k] < size ? used[k] : size;
            need += devs[k] == devs[i] ? size - have : 0;
        }
        struct statvfs sv;
        if (statvfs(fs->blk[i].spec->path, &sv) < 0) {
            continue; /* no answer: let the writes tell */
        }
        uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
        if (need > avail) {
            rf_error_set(errp, RF_ERR_IO, "block '%s': '%s' needs %llu "
                         "bytes (with the other blocks on its file system) "
                         "but only %llu are free", fs->blk[i].spec->name,
                         fs->blk[i].spec->path, (unsigned long long)need,
                         (unsigned long long)avail);
            return false;
        }
    }
    return true;
}

static bool sink_prepare(RfRamSink *s, const RfRamBlock *layout, unsigned n,
                         RfError **errp)
{
    FileSink *fs = (FileSink *)s;
    if (fs->prepared) {
        rf_error_set(errp, RF_ERR_GENERIC, "file sink: prepare called twice");
        return false;
    }
    const char *names[RF_MAX_BLOCKS];
    unsigned match[RF_MAX_BLOCKS];
    for (unsigned k = 0; k < fs->nspecs; k++) {
        names[k] = fs->specs[k].name;
    }
    if (!rf_layout_check(layout, n, errp) ||
        !rf_layout_match(layout, n, names, fs->nspecs, "--memory NAME=PATH",
                         match, errp)) {
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        fs->blk[i].spec = &fs->specs[match[i]];
    }
    fs->prepared = true;
    dev_t devs[RF_MAX_BLOCKS];
    uint64_t used[RF_MAX_BLOCKS];
    for (unsigned i = 0; i < n; i++) {
        fs->n = i + 1; /* free() unmaps what was mapped */
        if (!open_block(&fs->blk[i], layout[i].name, layout[i].size,
                        fs->reuse, &devs[i], &used[i], errp)) {
            return false;
        }
    }
    if (!space_check(fs, devs, used, errp)) {
        return false;
    }
    if (fs->reuse) {
        return true; /* as they are: not even pre-faulted */
    }
    RfPrefaultRange ranges[RF_MAX_BLOCKS];
    for (unsigned i = 0; i < n; i++) {
        ranges[i].addr = fs->blk[i].host;
        ranges[i].len = fs->blk[i].size;
    }
    /* No thread is not fatal: memory just stays cold. */
    fs->prefault = rf_prefault_start(ranges, n,
                                     rf_prefault_default_threads(), NULL);
    return true;
}

static uint8_t *sink_host(RfRamSink *s, unsigned i)
{
    FileSink *fs = (FileSink *)s;
    return i < fs->n ? fs->blk[i].host : NULL;
}

/* Ends the pre-fault job, if one runs, and keeps the CPU time its threads
 * used for the engine's report. */
static void prefault_end(FileSink *fs, bool cancel)
{
    if (!fs->prefault) {
        return;
    }
    double cpu_s = 0;
    bool warm = rf_prefault_finish_cpu(fs->prefault, cancel, &cpu_s);
    fs->prefault = NULL;
    fs->base.prefault_cpu_s = cpu_s;
    if (!cancel) {
        fs->warm = warm;
    }
}

static bool sink_wait_ready(RfRamSink *s)
{
    FileSink *fs = (FileSink *)s;
    prefault_end(fs, false);
    return fs->warm;
}

static void sink_finish(RfRamSink *s, bool ok)
{
    (void)ok; /* the files keep what arrived; the kernel writes them back */
    prefault_end((FileSink *)s, true);
}

static void sink_free(RfRamSink *s)
{
    FileSink *fs = (FileSink *)s;
    prefault_end(fs, true);
    for (unsigned i = 0; i < fs->n; i++) {
        if (fs->blk[i].host) {
            munmap(fs->blk[i].host, fs->blk[i].size);
        }
    }
    for (unsigned i = 0; i < fs->nspecs; i++) {
        free(fs->spec_copies[i]);
    }
    free(fs->spec_copies);
    free(fs);
}

static const RfRamSinkOps file_sink_ops = {
    .name = "file",
    .prepare = sink_prepare,
    .host = sink_host,
    .wait_ready = sink_wait_ready,
    .finish = sink_finish,
    .free = sink_free,
};

RfRamSink *rf_file_sink_new(const char *const *specs, unsigned n,
                            unsigned flags, RfError **errp)
{
    if (n < 1 || n > RF_MAX_BLOCKS) {
        rf_error_set(errp, RF_ERR_PARAM, "memory: got %u files, 1-%u "
                     "allowed", n, RF_MAX_BLOCKS);
        return NULL;
    }
    FileSink *fs = calloc(1, sizeof(*fs));
    if (!fs || !(fs->spec_copies = calloc(n, sizeof(char *)))) {
        free(fs);
        rf_error_set(errp, RF_ERR_GENERIC, "memory: out of memory");
        return NULL;
    }
    fs->reuse = flags & RF_FILE_SINK_REUSE;
    fs->base.ops = &file_sink_ops;
    for (unsigned i = 0; i < n; i++) {
        SinkSpec *sp = &fs->specs[i];
        fs->nspecs = i + 1;
        if (!(fs->spec_copies[i] = strdup(specs[i]))) {
            rf_error_set(errp, RF_ERR_GENERIC, "memory: out of memory");
            goto fail;
        }
        sp->spec = fs->spec_copies[i];
        if (!rf_ram_spec_parse(sp->spec, sp->name, &sp->path, errp)) {
            goto fail;
        }
        for (unsigned k = 0; k < i; k++) {
            const char *clash = strcmp(fs->specs[k].name, sp->name) == 0
                                    ? "block name"
                                    : strcmp(fs->specs[k].path, sp->path)
                                          == 0 ? "path" : NULL;
            if (clash) {
                rf_error_set(errp, RF_ERR_PARAM, "memory spec '%s': %s "
                             "already used by '%s'", sp->spec, clash,
                             fs->specs[k].spec);
                goto fail;
            }
        }
    }
    return &fs->base;

fail:
    sink_free(&fs->base);
    return NULL;
}
