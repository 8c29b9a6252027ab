/*
 * ramflow - the file RAM source: blocks are files or shared-memory
 * objects, mapped shared.
 *
 * Mapping: MAP_SHARED with PROT_READ|PROT_WRITE, so that a writer in the
 * same process (the tests, an embedding VMM) can use the host pointer
 * rf_ram_source_block() returns.  ramflow itself never writes source
 * memory.  A file this process may not write is mapped read-only, and so
 * is every file with RF_FILE_SOURCE_READ_ONLY (`ramflow migrate` without
 * a simulated writer): besides guaranteeing that a migration cannot
 * change the source, a read-only mapping is cheaper to read where the
 * host shadows page tables (docs/benchmarks.md: 1 GiB zstd, 0.88x time).
 * Each file also stays open: the channels read the pages they send with
 * pread on it (fs_fd), which is cheaper still than the first read of a
 * page through any mapping.
 *
 * Dirty tracking: the pages reported through rf_ram_source_mark_dirty(),
 * kept in one atomic bitmap per block (dirty_bitmap.h).
 *
 * The generic rf_ram_source_*() calls of the public API, which go through
 * the ops table, live here too.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ram/dirty_bitmap.h"
#include "ram/file_ram.h"

typedef struct FileBlock {
    RfRamBlock b;
    int fd; /* the file, kept open for fs_fd; -1 before it is opened */
    RfDirtyBitmap dirty;
} FileBlock;

typedef struct FileSource {
    RfRamSource base; /* first: the ops table */
    unsigned n;
    FileBlock blk[];
} FileSource;

bool rf_ram_spec_parse(const char *spec, char name[RF_BLOCK_NAME_MAX + 1],
                       const char **path, RfError **errp)
{
    const char *eq = strchr(spec, '='), *slash = strchr(spec, '/');
    const char *ns, *ne;
    if (eq && (!slash || eq < slash)) {
        ns = spec;
        ne = eq;
        *path = eq + 1;
    } else {
        *path = spec;
        ns = strrchr(spec, '/');
        ns = ns ? ns + 1 : spec;
        ne = ns + strlen(ns);
    }
    if (!**path) {
        rf_error_set(errp, RF_ERR_PARAM, "memory spec '%s': the path is "
                     "empty (expected PATH or NAME=PATH)", spec);
        return false;
    }
    size_t len = (size_t)(ne - ns);
    if (len == 0 || len > RF_BLOCK_NAME_MAX) {
        rf_error_set(errp, RF_ERR_PARAM, "memory spec '%s': the block name "
                     "is %s (1-%u bytes allowed; expected PATH or "
                     "NAME=PATH)", spec, len ? "too long" : "empty",
                     RF_BLOCK_NAME_MAX);
        return false;
    }
    memcpy(name, ns, len);
    name[len] = '\0';
    return true;
}

static unsigned fs_block_count(RfRamSource *s)
{
    return ((FileSource *)s)->n;
}

static const RfRamBlock *fs_block(RfRamSource *s, unsigned i)
{
    FileSource *fs = (FileSource *)s;
    return i < fs->n ? &fs->blk[i].b : NULL;
}

static bool fs_dirty_start(RfRamSource *s, RfError **errp)
{
    FileSource *fs = (FileSource *)s;
    (void)errp;
    for (unsigned i = 0; i < fs->n; i++) {
        rf_dirty_bitmap_clear(&fs->blk[i].dirty);
    }
    return true;
}

static bool fs_dirty_sync(RfRamSource *s, unsigned block, uint64_t *bitmap,
                          RfError **errp)
{
    FileSource *fs = (FileSource *)s;
    if (block >= fs->n) {
        rf_error_set(errp, RF_ERR_PARAM, "dirty sync: block %u out of range "
                     "(the source has %u)", block, fs->n);
        return false;
    }
    rf_dirty_bitmap_take(&fs->blk[block].dirty, bitmap);
    return true;
}

static void fs_dirty_stop(RfRamSource *s)
{
    (void)s; /* marking is a few atomic ORs; nothing to switch off */
}

static void fs_mark_dirty(RfRamSource *s, unsigned block, uint64_t offset,
                          uint64_t len)
{
    FileSource *fs = (FileSource *)s;
    if (block >= fs->n || len == 0 || offset >= fs->blk[block].b.size) {
        return;
    }
    uint64_t end = fs->blk[block].b.size - offset < len
                       ? fs->blk[block].b.size : offset + len;
    uint64_t first = offset / RF_PAGE_SIZE;
    uint64_t last = (end - 1) / RF_PAGE_SIZE;
    rf_dirty_bitmap_mark(&fs->blk[block].dirty, first, last - first + 1);
}

/* The channels read the pages they send with pread on it (see
 * RfRamSourceOps.fd): cheaper than a first read through the mapping. */
static int fs_fd(RfRamSource *s, unsigned i, uint64_t *offset)
{
    FileSource *fs = (FileSource *)s;
    *offset = 0;
    return i < fs->n ? fs->blk[i].fd : -1;
}

static void fs_free(RfRamSource *s)
{
    FileSource *fs = (FileSource *)s;
    for (unsigned i = 0; i < fs->n; i++) {
        if (fs->blk[i].b.host) {
            munmap(fs->blk[i].b.host, fs->blk[i].b.size);
        }
        if (fs->blk[i].fd >= 0) {
            close(fs->blk[i].fd);
        }
        rf_dirty_bitmap_destroy(&fs->blk[i].dirty);
    }
    free(fs);
}

static const RfRamSourceOps file_source_ops = {
    .name = "file",
    .block_count = fs_block_count,
    .block = fs_block,
    .dirty_start = fs_dirty_start,
    .dirty_sync = fs_dirty_sync,
    .dirty_stop = fs_dirty_stop,
    .mark_dirty = fs_mark_dirty,
    .free = fs_free,
    .fd = fs_fd,
};

/* Opens and maps one block's file into blk.  Falls back to a read-only
 * mapping for files this process may only read (a RAM snapshot). */
static bool map_block(FileBlock *blk, const char *path, bool read_only,
                      RfError **errp)
{
    int prot = PROT_READ | PROT_WRITE;
    int fd = -1;
    errno = EACCES;
    if (!read_only) {
        fd = open(path, O_RDWR | O_CLOEXEC);
    }
    if (fd < 0 && (errno == EACCES || errno == EROFS)) {
        prot = PROT_READ;
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) {
        rf_error_set(errp, RF_ERR_IO, "memory file '%s': %s", path,
                     strerror(errno));
        return false;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rf_error_set(errp, RF_ERR_IO, "memory file '%s': %s", path,
                     strerror(errno));
        close(fd);
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        rf_error_set(errp, RF_ERR_PARAM, "memory file '%s' is not a regular "
                     "file or shared-memory object", path);
        close(fd);
        return false;
    }
    if (st.st_size <= 0 || st.st_size % RF_PAGE_SIZE) {
        rf_error_set(errp, RF_ERR_PARAM, "memory file '%s' has size %lld "
                     "bytes: must be a non-zero multiple of %u", path,
                     (long long)st.st_size, RF_PAGE_SIZE);
        close(fd);
        return false;
    }
    void *p = mmap(NULL, (size_t)st.st_size, prot, MAP_SHARED, fd, 0);
    int err = errno;
    if (p == MAP_FAILED) {
        close(fd);
        rf_error_set(errp, RF_ERR_IO, "memory file '%s': mmap of %lld bytes: "
                     "%s", path, (long long)st.st_size, strerror(err));
        return false;
    }
    blk->b.host = p;
    blk->b.size = (uint64_t)st.st_size;
    blk->fd = fd;
    if (!rf_dirty_bitmap_init(&blk->dirty, blk->b.size / RF_PAGE_SIZE)) {
        rf_error_set(errp, RF_ERR_GENERIC, "memory file '%s': out of memory "
                     "for its dirty bitmap", path);
        return false;
    }
    return true;
}

RfRamSource *rf_file_source_open(const char *const *specs, unsigned n,
                                 RfError **errp)
{
    return rf_file_source_new(specs, n, 0, errp);
}

RfRamSource *rf_file_source_new(const char *const *specs, unsigned n,
                                unsigned flags, RfError **errp)
{
    if (flags & ~RF_FILE_SOURCE_READ_ONLY) {
        rf_error_set(errp, RF_ERR_PARAM, "memory: unknown file source "
                     "flags 0x%x", flags & ~RF_FILE_SOURCE_READ_ONLY);
        return NULL;
    }
    if (n < 1 || n > RF_MAX_BLOCKS) {
        rf_error_set(errp, RF_ERR_PARAM, "memory: got %u files, 1-%u "
                     "allowed", n, RF_MAX_BLOCKS);
        return NULL;
    }
    FileSource *fs = calloc(1, sizeof(*fs) + n * sizeof(fs->blk[0]));
    if (!fs) {
        rf_error_set(errp, RF_ERR_GENERIC, "memory: out of memory");
        return NULL;
    }
    fs->base.ops = &file_source_ops;
    for (unsigned i = 0; i < n; i++) {
        FileBlock *blk = &fs->blk[i];
        blk->fd = -1;
        const char *path;
        if (!rf_ram_spec_parse(specs[i], blk->b.name, &path, errp)) {
            goto fail;
        }
        for (unsigned k = 0; k < i; k++) {
            if (strcmp(fs->blk[k].b.name, blk->b.name) == 0) {
                rf_error_set(errp, RF_ERR_PARAM, "memory spec '%s': block "
                             "name '%s' is already used by '%s' (name "
                             "blocks with NAME=PATH)", specs[i],
                             blk->b.name, specs[k]);
                goto fail;
            }
        }
        fs->n = i + 1; /* fs_free releases what map_block did */
        if (!map_block(blk, path, flags & RF_FILE_SOURCE_READ_ONLY, errp)) {
            goto fail;
        }
    }
    return &fs->base;

fail:
    fs_free(&fs->base);
    return NULL;
}
