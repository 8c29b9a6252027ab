/*
 * ramflow - the file RAM sink: the destination writes each block into a
 * file (or /dev/shm object), created or truncated when the layout arrives.
 *
 * prepare() truncates every file to zero and back to the block's size, so
 * the memory starts as fresh zero pages (a zero page received needs no
 * write), maps it shared, and starts pre-faulting it in background
 * threads so that this runs during the handshake.  wait_ready() joins
 * them.  Files are left to the kernel to write back: no msync.
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

/* Creates b's file at `size` fresh zero bytes, maps it and reports the
 * file system it lives on in *dev. */
static bool create_block(SinkBlock *b, const char *name, uint64_t size,
                         dev_t *dev, RfError **errp)
{
    const char *path = b->spec->path;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
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
    if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)size) < 0) {
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

/* Fails if the blocks on one file system need more than it has free:
 * checked up front because a full tmpfs would otherwise fail only at the
 * first write into the mapping, with SIGBUS. */
static bool space_check(FileSink *fs, const dev_t *devs, RfError **errp)
{
    for (unsigned i = 0; i < fs->n; i++) {
        uint64_t need = 0;
        for (unsigned k = 0; k < fs->n; k++) {
            need += devs[k] == devs[i] ? fs->blk[k].size : 0;
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
    for (unsigned i = 0; i < n; i++) {
        fs->n = i + 1; /* free() unmaps what was mapped */
        if (!create_block(&fs->blk[i], layout[i].name, layout[i].size,
                          &devs[i], errp)) {
            return false;
        }
    }
    if (!space_check(fs, devs, errp)) {
        return false;
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

static bool sink_wait_ready(RfRamSink *s)
{
    FileSink *fs = (FileSink *)s;
    if (fs->prefault) {
        fs->warm = rf_prefault_finish(fs->prefault, false);
        fs->prefault = NULL;
    }
    return fs->warm;
}

static void sink_finish(RfRamSink *s, bool ok)
{
    FileSink *fs = (FileSink *)s;
    (void)ok; /* the files keep what arrived; the kernel writes them back */
    if (fs->prefault) {
        rf_prefault_finish(fs->prefault, true);
        fs->prefault = NULL;
    }
}

static void sink_free(RfRamSink *s)
{
    FileSink *fs = (FileSink *)s;
    if (fs->prefault) {
        rf_prefault_finish(fs->prefault, true);
    }
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
