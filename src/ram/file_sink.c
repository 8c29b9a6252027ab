/*
 * ramflow - the file RAM sink: the destination writes each block into a
 * file (or /dev/shm object).
 *
 * Nothing is opened, created or truncated before prepare(), which the
 * engine calls only once the peer passed the handshake; and prepare()
 * itself touches no file before it has checked the whole layout: the
 * sizes announced against the ":SIZE" of the specs, that every existing
 * target is a regular file, and that every file system has room for its
 * blocks (less a reserve, space_check()).
 *
 * Default mode, no half-written files: each block is received into a new
 * file created beside its target (same directory, O_EXCL, named
 * ".NAME.ramflow-XXXXXX", with the target's mode if it exists, else
 * 0600), sized there (fresh zero pages: a zero page received needs no
 * write, sink_zeroed) and mapped shared.  finish(ok = true) renames each over
 * its target (rename(2): a reader sees the old file or the whole new
 * one).  finish(false), or free() without a successful finish, unlinks
 * them: the targets keep their old contents and size, and a target that
 * did not exist is not created.  A symlinked target is resolved first, so
 * the file it points to is replaced, not the link.  Limits: with several
 * blocks the renames are one after the other, not one atomic step; a
 * rename that fails (the directory changed under us) keeps that block's
 * complete temporary file; the target's owner is not copied; and nothing
 * is synced to disk (no msync/fsync: the kernel writes back), so the
 * rename is atomic for processes, not across a power loss.
 *
 * With RF_FILE_SINK_REUSE, prepare() opens existing regular files as they
 * are, in place: never created, truncated or pre-faulted, and refused
 * (checked with stat before any open for writing) unless a file's size
 * equals its block's.  Their old contents need no clearing: round 1 sends
 * every page, and a zero page received over non-zero memory is written
 * as zeros.  After a failed or cancelled migration their contents are
 * undefined (partly old, partly new), as with the region sink.
 *
 * In both modes each file stays open beside its mapping and the engine
 * writes the received pages with pwrite(2) on it (sink_fd): the mapping
 * is for the caller and for --verify, and no page of it is faulted in on
 * the way, which on a host that shadows page tables is what the receive
 * side spent most of its time on (RfRamSinkOps.fd).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "ram/file_ram.h"
#include "ram/layout.h"

/* Room kept free on a target's file system: 1/64 of it, at most 64 MiB
 * (enough for the rest of the system on a small tmpfs, not a waste on a
 * big disk). */
#define SPACE_RESERVE_MAX (64ull << 20)
#define SPACE_RESERVE_DIV 64u

typedef struct SinkSpec {
    char name[RF_BLOCK_NAME_MAX + 1];
    const char *path; /* points into spec */
    uint64_t want;    /* ":SIZE" of the spec, 0 = any */
    const char *spec; /* our copy of the caller's spec, ":SIZE" cut off */
} SinkSpec;

typedef struct SinkBlock {
    char name[RF_BLOCK_NAME_MAX + 1]; /* the source's */
    uint8_t *host;
    int fd;        /* the file mapped at host, or -1 */
    uint64_t size;
    const SinkSpec *spec;
    char *target;  /* the path to write, symlinks resolved (default) */
    char *tmp;     /* the file received into, until renamed or unlinked */
    bool exists;   /* the target existed at prepare */
    mode_t mode;   /* its permission bits */
    dev_t dev;     /* the file system the data goes to */
    uint64_t used; /* bytes the data occupies there already (reuse) */
} SinkBlock;

typedef struct FileSink {
    RfRamSink base; /* first: the ops table */
    unsigned nspecs;
    SinkSpec specs[RF_MAX_BLOCKS];
    char **spec_copies;
    bool prepared;  /* files were opened or created */
    bool committed; /* finish(true) renamed them */
    unsigned n;
    SinkBlock blk[RF_MAX_BLOCKS];
    bool reuse;              /* RF_FILE_SINK_REUSE */
} FileSink;

static unsigned long long ull(uint64_t v)
{
    return (unsigned long long)v;
}

/* ---- checks before anything is touched ------------------------------ */

/* Each block's announced size against its spec's ":SIZE". */
static bool check_expected(const FileSink *fs, RfError **errp)
{
    for (unsigned i = 0; i < fs->n; i++) {
        const SinkBlock *b = &fs->blk[i];
        if (b->spec->want && b->spec->want != b->size) {
            rf_error_set(errp, RF_ERR_MISMATCH, "block '%s' is %llu bytes "
                         "at the source but --memory '%s' expects %llu "
                         "bytes", b->name, ull(b->size),
                         b->spec->path, ull(b->spec->want));
            return false;
        }
    }
    return true;
}

static const char *file_kind(mode_t m)
{
    return S_ISDIR(m) ? "directory" : S_ISCHR(m) || S_ISBLK(m) ? "device"
           : S_ISFIFO(m) ? "FIFO" : S_ISSOCK(m) ? "socket" : "special file";
}

/* Reuse mode: the file must exist, be regular and have the block's size;
 * its data stays on its own file system. */
static bool inspect_reuse(SinkBlock *b, RfError **errp)
{
    const char *name = b->name, *path = b->spec->path;
    struct stat st;
    if (stat(path, &st) < 0) {
        rf_error_set(errp, RF_ERR_IO, "block '%s': cannot open '%s': %s",
                     name, path, strerror(errno));
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        rf_error_set(errp, RF_ERR_IO, "block '%s': '%s' is a %s, not a "
                     "regular file", name, path, file_kind(st.st_mode));
        return false;
    }
    if ((uint64_t)st.st_size != b->size) {
        rf_error_set(errp, RF_ERR_MISMATCH, "block '%s' is %llu bytes at "
                     "the source but file '%s' here is %llu bytes (a reused "
                     "file keeps its size)", name, ull(b->size), path,
                     ull((uint64_t)st.st_size));
        return false;
    }
    b->exists = true;
    b->dev = st.st_dev;
    b->used = (uint64_t)st.st_blocks * 512;
    return true;
}

/* Default mode: resolves a symlinked target (the file it names is the one
 * to replace) and refuses anything but a regular file or nothing. */
static bool inspect_target(SinkBlock *b, RfError **errp)
{
    const char *name = b->name, *path = b->spec->path;
    struct stat st;
    bool link = lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
    b->target = link ? realpath(path, NULL) : strdup(path);
    if (!b->target) {
        rf_error_set(errp, RF_ERR_IO, "block '%s': cannot resolve '%s': %s",
                     name, path, strerror(errno));
        return false;
    }
    b->exists = stat(b->target, &st) == 0;
    if (!b->exists && errno != ENOENT) {
        rf_error_set(errp, RF_ERR_IO, "block '%s': cannot stat '%s': %s",
                     name, path, strerror(errno));
        return false;
    }
    if (b->exists && !S_ISREG(st.st_mode)) {
        rf_error_set(errp, RF_ERR_IO, "block '%s': '%s' is a %s, not a "
                     "regular file: refusing to replace it", name, path,
                     file_kind(st.st_mode));
        return false;
    }
    b->mode = b->exists ? st.st_mode & 07777 : 0600;
    /* The new file goes to the directory's file system. */
    char *dir = strdup(b->target);
    bool ok = dir && stat(dirname(dir), &st) == 0;
    if (!ok) {
        rf_error_set(errp, RF_ERR_IO, "block '%s': no directory for '%s': "
                     "%s", name, path, dir ? strerror(errno) : "out of "
                     "memory");
    }
    free(dir);
    b->dev = st.st_dev;
    b->used = 0; /* the old file stays until the rename */
    return ok;
}

/* Fails if the blocks on one file system need more than it has free, less
 * a reserve (a block needs its size less what its file already occupies):
 * checked before any file is created or sized, because a full tmpfs would
 * otherwise fail only at the first write into the mapping, with SIGBUS,
 * and an absurd layout (16 TiB) must be refused before anything is
 * touched. */
static bool space_check(const FileSink *fs, RfError **errp)
{
    for (unsigned i = 0; i < fs->n; i++) {
        const SinkBlock *b = &fs->blk[i];
        uint64_t need = 0;
        for (unsigned k = 0; k < fs->n; k++) {
            const SinkBlock *o = &fs->blk[k];
            uint64_t more = o->used < o->size ? o->size - o->used : 0;
            if (o->dev == b->dev) {
                need = more > UINT64_MAX - need ? UINT64_MAX : need + more;
            }
        }
        struct statvfs sv;
        char *dir = strdup(fs->reuse ? b->spec->path : b->target);
        bool known = dir && statvfs(fs->reuse ? dir : dirname(dir), &sv) == 0;
        free(dir);
        if (need == 0 || !known) {
            continue; /* nothing to add, or no answer: the writes tell */
        }
        uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
        uint64_t reserve = (uint64_t)sv.f_blocks * sv.f_frsize /
                           SPACE_RESERVE_DIV;
        reserve = reserve < SPACE_RESERVE_MAX ? reserve : SPACE_RESERVE_MAX;
        uint64_t usable = avail > reserve ? avail - reserve : 0;
        if (need > usable) {
            rf_error_set(errp, RF_ERR_IO, "block '%s' (%llu bytes): '%s' "
                         "needs %llu bytes (with the other blocks on its "
                         "file system) but only %llu are free beyond a "
                         "reserve of %llu", b->name, ull(b->size),
                         b->spec->path, ull(need), ull(usable),
                         ull(reserve));
            return false;
        }
    }
    return true;
}

/* Every check of prepare() that touches nothing. */
static bool check_blocks(FileSink *fs, RfError **errp)
{
    if (!check_expected(fs, errp)) {
        return false;
    }
    for (unsigned i = 0; i < fs->n; i++) {
        SinkBlock *b = &fs->blk[i];
        if (!(fs->reuse ? inspect_reuse(b, errp) : inspect_target(b, errp))) {
            return false;
        }
    }
    return space_check(fs, errp);
}

/* ---- opening, creating, committing ---------------------------------- */

/* Maps fd shared as b's memory, and keeps it (or closes it on failure):
 * the receivers write through it (RfRamSinkOps.fd). */
static bool map_block(SinkBlock *b, int fd, const char *path, RfError **errp)
{
    void *p = mmap(NULL, (size_t)b->size, PROT_READ | PROT_WRITE,
                   MAP_SHARED, fd, 0);
    int err = errno;
    if (p == MAP_FAILED) {
        close(fd);
        rf_error_set(errp, RF_ERR_IO, "block '%s': mmap of '%s' (%llu "
                     "bytes): %s", b->name, path, ull(b->size),
                     strerror(err));
        return false;
    }
    b->host = p;
    b->fd = fd;
    return true;
}

/* Reuse mode: opens the existing file, checking again that it is the
 * regular file of the right size that inspect_reuse() saw. */
static bool open_reuse(SinkBlock *b, RfError **errp)
{
    const char *path = b->spec->path;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size != b->size) {
        rf_error_set(errp, RF_ERR_IO, "block '%s': cannot open '%s' (%llu "
                     "bytes): %s", b->name, path, ull(b->size),
                     fd < 0 ? strerror(errno) : "it changed since checked");
        if (fd >= 0) {
            close(fd);
        }
        return false;
    }
    return map_block(b, fd, path, errp);
}

/* Default mode: creates the temporary file beside the target, with the
 * target's mode, sized to fresh zero bytes. */
static bool create_temp(SinkBlock *b, RfError **errp)
{
    char *d = strdup(b->target), *n = strdup(b->target);
    size_t cap = strlen(b->target) + 32;
    b->tmp = malloc(cap);
    if (!d || !n || !b->tmp) {
        free(d);
        free(n);
        rf_error_set(errp, RF_ERR_GENERIC, "block '%s': out of memory",
                     b->name);
        return false;
    }
    snprintf(b->tmp, cap, "%s/.%.200s.ramflow-XXXXXX", dirname(d),
             basename(n));
    free(d);
    free(n);
    int fd = mkostemp(b->tmp, O_CLOEXEC);
    if (fd < 0) {
        rf_error_set(errp, RF_ERR_IO, "block '%s': cannot create a file "
                     "beside '%s': %s", b->name, b->target,
                     strerror(errno));
        free(b->tmp);
        b->tmp = NULL;
        return false;
    }
    if (fchmod(fd, b->mode) < 0 || ftruncate(fd, (off_t)b->size) < 0) {
        rf_error_set(errp, RF_ERR_IO, "block '%s': cannot size '%s' to "
                     "%llu bytes: %s", b->name, b->tmp, ull(b->size),
                     strerror(errno));
        close(fd);
        return false; /* release_blocks() unlinks it */
    }
    return map_block(b, fd, b->tmp, errp);
}

/* Unlinks the temporary files not renamed: the targets stay as they
 * were. */
static void discard_temps(FileSink *fs)
{
    for (unsigned i = 0; i < fs->n; i++) {
        if (fs->blk[i].tmp) {
            unlink(fs->blk[i].tmp);
            free(fs->blk[i].tmp);
            fs->blk[i].tmp = NULL;
        }
    }
}

/* Renames each temporary file over its target.  One that fails keeps its
 * temporary file (it holds the complete block). */
static void commit_temps(FileSink *fs)
{
    for (unsigned i = 0; i < fs->n; i++) {
        SinkBlock *b = &fs->blk[i];
        if (b->tmp) {
            (void)rename(b->tmp, b->target);
            free(b->tmp);
            b->tmp = NULL;
        }
    }
    fs->committed = true;
}

/* Undoes a prepare(): unmaps, discards temporary files, forgets the
 * targets. */
static void release_blocks(FileSink *fs)
{
    for (unsigned i = 0; i < fs->n; i++) {
        SinkBlock *b = &fs->blk[i];
        if (b->host) {
            munmap(b->host, b->size);
            b->host = NULL;
        }
        if (b->fd >= 0) {
            close(b->fd);
            b->fd = -1;
        }
    }
    if (!fs->committed) {
        discard_temps(fs);
    }
    for (unsigned i = 0; i < fs->n; i++) {
        free(fs->blk[i].target);
        fs->blk[i].target = NULL;
    }
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
    release_blocks(fs); /* a refused layout before this one */
    memset(fs->blk, 0, sizeof(fs->blk));
    fs->n = n;
    for (unsigned i = 0; i < n; i++) {
        fs->blk[i].fd = -1;
        fs->blk[i].spec = &fs->specs[match[i]];
        fs->blk[i].size = layout[i].size;
        memcpy(fs->blk[i].name, layout[i].name, sizeof(fs->blk[i].name));
    }
    if (!check_blocks(fs, errp)) {
        return false; /* nothing touched: another layout may follow */
    }
    fs->prepared = true;
    for (unsigned i = 0; i < n; i++) {
        if (!(fs->reuse ? open_reuse(&fs->blk[i], errp)
                        : create_temp(&fs->blk[i], errp))) {
            release_blocks(fs); /* the files made so far go */
            return false;
        }
    }
    /* Nothing is pre-faulted: the receivers write through each file's
     * descriptor (sink_fd), so the mapping's pages are never touched on
     * the way.  Pre-faulting the mapping (MADV_POPULATE_WRITE, or
     * _READ for a reused file) only cost CPU then: 1 GiB `none`, cold,
     * 0.90 s with it against 0.70 s without (docs/benchmarks.md). */
    return true;
}

static uint8_t *sink_host(RfRamSink *s, unsigned i)
{
    FileSink *fs = (FileSink *)s;
    return fs->prepared && i < fs->n ? fs->blk[i].host : NULL;
}

/* Nothing is pre-faulted (see sink_prepare): memory is warm only when it
 * existed before the migration, a reused file. */
static bool sink_wait_ready(RfRamSink *s)
{
    FileSink *fs = (FileSink *)s;
    return fs->prepared && fs->reuse;
}

static int sink_fd(RfRamSink *s, unsigned i, uint64_t *offset)
{
    FileSink *fs = (FileSink *)s;
    *offset = 0;
    return fs->prepared && i < fs->n ? fs->blk[i].fd : -1;
}

/* A file created for this migration is all zero; a reused one is not. */
static bool sink_zeroed(RfRamSink *s, unsigned i)
{
    FileSink *fs = (FileSink *)s;
    return fs->prepared && i < fs->n && !fs->reuse;
}

/* Success puts the received files in place; failure leaves the targets
 * as they were (the kernel writes the data back either way). */
static void sink_finish(RfRamSink *s, bool ok)
{
    FileSink *fs = (FileSink *)s;
    if (ok && fs->prepared && !fs->committed) {
        commit_temps(fs);
    } else if (!ok && !fs->committed) {
        discard_temps(fs);
    }
}

static void sink_free(RfRamSink *s)
{
    FileSink *fs = (FileSink *)s;
    release_blocks(fs);
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
    .fd = sink_fd,
    .zeroed = sink_zeroed,
};

/* Cuts a ":SIZE" off spec if the part after its last ':' parses as a size
 * (the syntax of every ramflow size), so that paths with ':' still work.
 * @return false with an RF_ERR_PARAM error for a size that is not a
 * non-zero multiple of RF_PAGE_SIZE. */
static bool spec_cut_size(char *spec, uint64_t *want, RfError **errp)
{
    char *colon = strrchr(spec, ':');
    *want = 0;
    if (!colon) {
        return true;
    }
    RfParams *p = rf_params_new();
    char text[32];
    bool is_size = p && rf_params_set(p, "max-bandwidth", colon + 1, NULL) &&
                   rf_params_get(p, "max-bandwidth", text, sizeof(text),
                                 NULL);
    rf_params_free(p);
    if (!is_size) {
        return true; /* part of the path */
    }
    *want = strtoull(text, NULL, 10);
    if (*want == 0 || *want % RF_PAGE_SIZE) {
        rf_error_set(errp, RF_ERR_PARAM, "memory spec '%s': size '%s' is "
                     "not a non-zero multiple of %u bytes", spec, colon + 1,
                     RF_PAGE_SIZE);
        return false;
    }
    *colon = '\0';
    return true;
}

/* Parses spec i into fs->specs[i], refusing a name or path used by an
 * earlier one. */
static bool spec_add(FileSink *fs, unsigned i, const char *spec,
                     RfError **errp)
{
    SinkSpec *sp = &fs->specs[i];
    if (!(fs->spec_copies[i] = strdup(spec))) {
        rf_error_set(errp, RF_ERR_GENERIC, "memory: out of memory");
        return false;
    }
    sp->spec = fs->spec_copies[i];
    if (!spec_cut_size(fs->spec_copies[i], &sp->want, errp) ||
        !rf_ram_spec_parse(sp->spec, sp->name, &sp->path, errp)) {
        return false;
    }
    for (unsigned k = 0; k < i; k++) {
        const char *clash = strcmp(fs->specs[k].name, sp->name) == 0
                                ? "block name"
                                : strcmp(fs->specs[k].path, sp->path) == 0
                                      ? "path" : NULL;
        if (clash) {
            rf_error_set(errp, RF_ERR_PARAM, "memory spec '%s': %s already "
                         "used by '%s'", sp->spec, clash, fs->specs[k].spec);
            return false;
        }
    }
    return true;
}

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
    /* Only parsed here: no file is opened before prepare(). */
    for (unsigned i = 0; i < n; i++) {
        fs->nspecs = i + 1;
        if (!spec_add(fs, i, specs[i], errp)) {
            sink_free(&fs->base);
            return NULL;
        }
    }
    return &fs->base;
}
