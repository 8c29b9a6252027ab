/*
 * ramflow bench - file mode (--dest-memory): the RAM image both tools
 * send, the destination's file of one run (warm: existing and populated;
 * cold: fresh), and the check that the destination got the image's
 * bytes.  Everything lives in one scratch folder, on hugetlbfs where the
 * host has huge pages and one is mounted, else in /dev/shm; the folder is
 * removed at exit (also after Ctrl-C, which ends the bench through its
 * normal path), and folders of earlier benches that were killed are
 * removed at the start.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "bench/bench_common.h"
#include "tools/imagegen.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define SCRATCH_PREFIX "ramflow-bench-"

static char scratch_dir[PATH_MAX - 64];

/* Calls fn(path, name) for each entry of dir whose name starts with
 * prefix (hidden entries, "." and ".." skipped). */
static void each_entry(const char *dir, const char *prefix,
                       void (*fn)(const char *path, const char *name))
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' ||
            strncmp(e->d_name, prefix, strlen(prefix)) != 0) {
            continue;
        }
        char p[PATH_MAX];
        if (snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) <
            (int)sizeof(p)) {
            fn(p, e->d_name);
        }
    }
    if (d) {
        closedir(d);
    }
}

static void unlink_entry(const char *path, const char *name)
{
    (void)name;
    unlink(path);
}

/* Removes the files of dir and dir itself. */
static void remove_dir(const char *dir)
{
    each_entry(dir, "", unlink_entry);
    rmdir(dir);
}

void rf_bench_image_cleanup(void)
{
    if (scratch_dir[0]) {
        remove_dir(scratch_dir);
        scratch_dir[0] = '\0';
    }
}

/* A scratch folder of a bench whose process is gone (killed with
 * SIGKILL): its images would hold the memory for good. */
static void remove_if_stale(const char *path, const char *name)
{
    char *end;
    long pid = strtol(name + strlen(SCRATCH_PREFIX), &end, 10);
    if (!*end && pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
        remove_dir(path);
    }
}

/* Huge pages: HugePages_Total of /proc/meminfo and a hugetlbfs mount.
 * @return the mount point with room for twice size, or NULL with the
 * reason in note. */
static const char *hugetlbfs_dir(uint64_t size, char *note, size_t cap)
{
    static char mnt[PATH_MAX];
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    long total = 0;
    while (f && fgets(line, sizeof(line), f)) {
        sscanf(line, "HugePages_Total: %ld", &total);
    }
    if (f) {
        fclose(f);
    }
    if (total <= 0) {
        snprintf(note, cap, "the host has no huge pages (HugePages_Total "
                 "0): memory on /dev/shm (tmpfs, 4 KiB pages)");
        return NULL;
    }
    f = fopen("/proc/mounts", "r");
    char dev[64], dir[PATH_MAX], type[32];
    mnt[0] = '\0';
    while (f && fscanf(f, "%63s %4095s %31s %*[^\n]", dev, dir, type) == 3) {
        if (!strcmp(type, "hugetlbfs")) {
            snprintf(mnt, sizeof(mnt), "%s", dir);
            break;
        }
    }
    if (f) {
        fclose(f);
    }
    struct statvfs sv;
    if (!mnt[0] || statvfs(mnt, &sv) != 0) {
        snprintf(note, cap, "the host has %ld huge pages but no hugetlbfs "
                 "mount: memory on /dev/shm (tmpfs)", total);
        return NULL;
    }
    if ((uint64_t)sv.f_bavail * sv.f_frsize < 2 * size) {
        snprintf(note, cap, "hugetlbfs at %s has too few free huge pages "
                 "for two images: memory on /dev/shm (tmpfs)", mnt);
        return NULL;
    }
    snprintf(note, cap, "memory on hugetlbfs (%s, %lu KiB pages)", mnt,
             (unsigned long)(sv.f_bsize / 1024));
    return mnt;
}

/* Maps path: create, a new file of size, read-write; else an existing
 * one, read-only, that must have the size.  @return the mapping or NULL
 * with an error. */
static uint8_t *map_file(const char *path, uint64_t size, bool create,
                         RfError **errp)
{
    int fd = create ? open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
                           0600)
                    : open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    const char *fail = NULL;
    if (fd < 0 || (create && ftruncate(fd, (off_t)size) != 0) ||
        (!create && fstat(fd, &st) != 0)) {
        fail = strerror(errno);
    } else if (!create && (uint64_t)st.st_size != size) {
        rf_error_set(errp, RF_ERR_IO, "%s is %llu bytes, the image %llu",
                     path, (unsigned long long)st.st_size,
                     (unsigned long long)size);
        close(fd);
        return NULL;
    }
    void *p = MAP_FAILED;
    if (!fail) {
        p = mmap(NULL, size, create ? PROT_READ | PROT_WRITE : PROT_READ,
                 MAP_SHARED, fd, 0);
        fail = p == MAP_FAILED ? strerror(errno) : NULL;
    }
    if (fd >= 0) {
        close(fd);
    }
    if (fail) {
        rf_error_set(errp, RF_ERR_IO, "cannot %s %s: %s",
                     create ? "create" : "open", path, fail);
        return NULL;
    }
    return p;
}

bool rf_bench_image_make(RfBenchConfig *cfg, RfError **errp)
{
    const char *huge = hugetlbfs_dir(cfg->mem_size, cfg->huge_note,
                                     sizeof(cfg->huge_note));
    const char *parent = huge ? huge : "/dev/shm";
    each_entry(parent, SCRATCH_PREFIX, remove_if_stale);
    snprintf(cfg->scratch, sizeof(cfg->scratch), "%s/" SCRATCH_PREFIX "%d",
             parent, (int)getpid());
    if (mkdir(cfg->scratch, 0700) < 0 && errno != EEXIST) {
        rf_error_set(errp, RF_ERR_IO, "cannot create %s: %s", cfg->scratch,
                     strerror(errno));
        return false;
    }
    snprintf(scratch_dir, sizeof(scratch_dir), "%s", cfg->scratch);
    static bool registered;
    if (!registered) {
        atexit(rf_bench_image_cleanup);
        registered = true;
    }
    snprintf(cfg->image, sizeof(cfg->image), "%s/source.img", cfg->scratch);
    uint8_t *p = map_file(cfg->image, cfg->mem_size, true, errp);
    if (!p) {
        return false;
    }
    bool ok = cfg->fill
        ? rf_image_fill_from_path(p, cfg->mem_size, cfg->fill, errp)
        : rf_image_generate(p, cfg->mem_size, 1, 2, errp);
    munmap(p, cfg->mem_size);
    return ok;
}

bool rf_bench_dest_prepare(const RfBenchConfig *cfg, RfBenchDest d,
                           const char *path, RfError **errp)
{
    if (unlink(path) < 0 && errno != ENOENT) {
        rf_error_set(errp, RF_ERR_IO, "cannot remove %s: %s", path,
                     strerror(errno));
        return false;
    }
    if (d == RF_BENCH_DEST_COLD) {
        return true;
    }
    /* Warm: every page allocated and written once, as a destination VM's
     * RAM that exists already (QEMU's prealloc=on does the same). */
    uint8_t *p = map_file(path, cfg->mem_size, true, errp);
    if (!p) {
        return false;
    }
    if (madvise(p, cfg->mem_size, MADV_POPULATE_WRITE) != 0) {
        for (uint64_t off = 0; off < cfg->mem_size; off += RF_PAGE_SIZE) {
            p[off] = 0;
        }
    }
    munmap(p, cfg->mem_size);
    return true;
}

bool rf_bench_dest_equal(const RfBenchConfig *cfg, const char *path,
                         RfError **errp)
{
    uint64_t size = cfg->mem_size;
    const uint8_t *a = map_file(cfg->image, size, false, errp);
    const uint8_t *b = a ? map_file(path, size, false, errp) : NULL;
    bool same = a && b;
    for (uint64_t off = 0; same && off < size; off += RF_PAGE_SIZE) {
        if (memcmp(a + off, b + off, RF_PAGE_SIZE) != 0) {
            rf_error_set(errp, RF_ERR_IO, "the destination's memory differs "
                         "from the image at byte %llu",
                         (unsigned long long)off);
            same = false;
        }
    }
    if (a) {
        munmap((void *)a, size);
    }
    if (b) {
        munmap((void *)b, size);
    }
    return same;
}
