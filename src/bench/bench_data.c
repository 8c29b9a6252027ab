/*
 * ramflow bench - the data dimension (--data): the fill the test VM gets
 * for each item, made before the first migration so that a missing piece
 * stops the bench at once.
 *
 *   generated  no fill: the guest's own generated mix (seed 1)
 *   random     /dev/shm/ramflow-benchdata-PID/random.img, --memory-size
 *              bytes of splitmix64 output: incompressible pages
 *   zero       /dev/shm/ramflow-benchdata-PID/zero.img: of every 80 pages
 *              the first 64 zero, the last 16 the generated mix (about
 *              84% zero pages in all)
 *   silesia    the Silesia members (*.xz of the corpus folder: $SILESIA_DIR,
 *              else ../shared/corpus/silesia from the current folder or
 *              from the source tree of this binary), decompressed once
 *              with xz into /dev/shm/ramflow-silesia and kept there for
 *              later benches; the guest repeats them in name order
 *   PATH       a file or folder, as --fill
 * The images folder is removed at exit; folders of killed benches are
 * removed at the next start.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench_common.h"
#include "tools/imagegen.h"

#define DATA_PREFIX "ramflow-benchdata-"
#define SILESIA_CACHE "/dev/shm/ramflow-silesia"

static char data_dir[PATH_MAX - 64];

/* Removes the regular files of dir and dir itself. */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char p[PATH_MAX];
        if (e->d_name[0] != '.' &&
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) <
                (int)sizeof(p)) {
            unlink(p);
        }
    }
    if (d) {
        closedir(d);
    }
    rmdir(dir);
}

void rf_bench_data_cleanup(void)
{
    if (data_dir[0]) {
        remove_dir(data_dir);
        data_dir[0] = '\0';
    }
}

/* Images folders of benches whose process is gone (SIGKILL). */
static void remove_stale(void)
{
    DIR *d = opendir("/dev/shm");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, DATA_PREFIX, strlen(DATA_PREFIX)) != 0) {
            continue;
        }
        char *end, p[PATH_MAX];
        long pid = strtol(e->d_name + strlen(DATA_PREFIX), &end, 10);
        if (!*end && pid > 0 && kill((pid_t)pid, 0) != 0 &&
            errno == ESRCH) {
            snprintf(p, sizeof(p), "/dev/shm/%s", e->d_name);
            remove_dir(p);
        }
    }
    if (d) {
        closedir(d);
    }
}

static bool make_data_dir(RfError **errp)
{
    if (data_dir[0]) {
        return true;
    }
    remove_stale();
    char dir[sizeof(data_dir)];
    snprintf(dir, sizeof(dir), "/dev/shm/" DATA_PREFIX "%d", (int)getpid());
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        rf_error_set(errp, RF_ERR_IO, "cannot create %s: %s", dir,
                     strerror(errno));
        return false;
    }
    snprintf(data_dir, sizeof(data_dir), "%s", dir);
    static bool registered;
    if (!registered) {
        atexit(rf_bench_data_cleanup);
        registered = true;
    }
    return true;
}

/* A random or zero-heavy image of size bytes in the images folder. */
static bool make_image(RfBenchData *d, uint64_t size, RfError **errp)
{
    if (!make_data_dir(errp)) {
        return false;
    }
    bool random = d->kind == RF_BENCH_DATA_RANDOM;
    snprintf(d->path, sizeof(d->path), "%s/%s.img", data_dir,
             random ? "random" : "zero");
    int fd = open(d->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
        rf_error_set(errp, RF_ERR_IO, "%s: %s", d->path, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return false;
    }
    uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                      0);
    close(fd);
    if (p == MAP_FAILED) {
        rf_error_set(errp, RF_ERR_IO, "%s: mmap: %s", d->path,
                     strerror(errno));
        return false;
    }
    bool ok = random ? rf_image_generate_random(p, size, 1, errp)
                     : rf_image_generate_zero_heavy(p, size, 1, 2, errp);
    munmap(p, size);
    return ok;
}

static bool has_xz(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool found = false;
    while (d && !found && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        found = e->d_name[0] != '.' && n > 3 &&
                !strcmp(e->d_name + n - 3, ".xz");
    }
    if (d) {
        closedir(d);
    }
    return found;
}

/* The corpus folder: $SILESIA_DIR, else ../shared/corpus/silesia from
 * the current folder, else from the source tree of this binary
 * (build/src/control/ramflow: the tree is three folders up, and the
 * corpus beside the tree).  The
 * places tried go into tried. */
static bool find_corpus(char *out, size_t cap, char *tried, size_t tcap)
{
    char cand[3][PATH_MAX];
    unsigned n = 0;
    const char *env = getenv("SILESIA_DIR");
    if (env && env[0]) {
        snprintf(cand[n++], PATH_MAX, "%s", env);
    } else {
        snprintf(cand[n++], PATH_MAX, "../shared/corpus/silesia");
        char exe[PATH_MAX];
        ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (len > 0) {
            exe[len] = '\0';
            for (int up = 0; up < 5; up++) {
                char *slash = strrchr(exe, '/');
                if (slash) {
                    *slash = '\0';
                }
            }
            snprintf(cand[n++], PATH_MAX, "%.*s/shared/corpus/silesia",
                     PATH_MAX - 32, exe);
        }
    }
    tried[0] = '\0';
    for (unsigned i = 0; i < n; i++) {
        if (has_xz(cand[i]) &&
            snprintf(out, cap, "%s", cand[i]) < (int)cap) {
            return true;
        }
        size_t k = strlen(tried);
        snprintf(tried + k, tcap - k, "%s%s", k ? ", " : "", cand[i]);
    }
    return false;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Decompresses one member into the cache, through a temporary name so
 * that a member present in the cache is always complete. */
static bool unpack_member(const char *xz, const char *out, FILE *log,
                          RfError **errp)
{
    char tmp[PATH_MAX + 24], err[PATH_MAX + 24];
    /* Per process: two benches may fill the shared cache at once. */
    snprintf(tmp, sizeof(tmp), "%s.tmp%d", out, (int)getpid());
    snprintf(err, sizeof(err), "%s.err%d", out, (int)getpid());
    const char *argv[] = {"xz", "-dc", xz, NULL};
    pid_t pid = rf_bench_spawn(log, argv, tmp, err);
    int st = 0;
    if (pid < 0) {
        rf_error_set(errp, RF_ERR_GENERIC, "cannot run xz (Debian package "
                     "xz-utils): %s", strerror(errno));
        return false;
    }
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    unlink(err);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || rename(tmp, out) < 0) {
        unlink(tmp);
        rf_error_set(errp, RF_ERR_IO, "xz -dc %s failed (exit status %d)",
                     xz, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        return false;
    }
    return true;
}

/* The Silesia members of the corpus folder, decompressed once into
 * SILESIA_CACHE (members already there are kept). */
static bool prepare_silesia(RfBenchData *d, FILE *log, RfError **errp)
{
    char corpus[PATH_MAX], tried[3 * PATH_MAX + 8];
    if (!find_corpus(corpus, sizeof(corpus), tried, sizeof(tried))) {
        rf_error_set(errp, RF_ERR_PARAM, "--data silesia: no Silesia corpus "
                     "(*.xz members) in %s; set SILESIA_DIR to the folder "
                     "that holds dickens.xz, mr.xz, ... or give the "
                     "decompressed files as --data PATH", tried);
        return false;
    }
    if (mkdir(SILESIA_CACHE, 0755) < 0 && errno != EEXIST) {
        rf_error_set(errp, RF_ERR_IO, "cannot create %s: %s", SILESIA_CACHE,
                     strerror(errno));
        return false;
    }
    DIR *dir = opendir(corpus);
    char *names[64];
    unsigned n = 0;
    struct dirent *e;
    while (dir && (e = readdir(dir)) && n < 64) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] != '.' && len > 3 &&
            !strcmp(e->d_name + len - 3, ".xz")) {
            names[n] = strndup(e->d_name, len - 3);
            n += names[n] != NULL;
        }
    }
    if (dir) {
        closedir(dir);
    }
    qsort(names, n, sizeof(names[0]), cmp_name);
    bool ok = true;
    for (unsigned i = 0; i < n; i++) {
        char xz[PATH_MAX + 80], out[PATH_MAX];
        struct stat st;
        snprintf(xz, sizeof(xz), "%s/%s.xz", corpus, names[i]);
        snprintf(out, sizeof(out), SILESIA_CACHE "/%s", names[i]);
        if (ok && stat(out, &st) != 0) {
            fprintf(stderr, "ramflow bench: decompressing Silesia member "
                    "%s into " SILESIA_CACHE "\n", names[i]);
            ok = unpack_member(xz, out, log, errp);
        }
        free(names[i]);
    }
    snprintf(d->path, sizeof(d->path), SILESIA_CACHE);
    return ok;
}

bool rf_bench_data_prepare(RfBenchData *d, uint64_t mem_size, FILE *log,
                           RfError **errp)
{
    switch (d->kind) {
    case RF_BENCH_DATA_GENERATED:
        d->path[0] = '\0';
        return true;
    case RF_BENCH_DATA_RANDOM:
    case RF_BENCH_DATA_ZERO:
        return make_image(d, mem_size, errp);
    case RF_BENCH_DATA_SILESIA:
        return prepare_silesia(d, log, errp);
    case RF_BENCH_DATA_PATH:
        if (access(d->path, R_OK) != 0) {
            rf_error_set(errp, RF_ERR_PARAM, "--data %s: %s (not generated, "
                         "random, zero or silesia either)", d->path,
                         strerror(errno));
            return false;
        }
        return true;
    }
    rf_error_set(errp, RF_ERR_PARAM, "--data: unknown kind");
    return false;
}

const char *rf_bench_data_describe(const RfBenchData *d, char *buf,
                                   size_t cap)
{
    switch (d->kind) {
    case RF_BENCH_DATA_GENERATED:
        snprintf(buf, cap, "the generated mix (seed 1)");
        break;
    case RF_BENCH_DATA_RANDOM:
        snprintf(buf, cap, "random pages (incompressible, %s)", d->path);
        break;
    case RF_BENCH_DATA_ZERO:
        snprintf(buf, cap, "zero-heavy: of every 80 pages 64 zero, 16 the "
                 "generated mix (about 84%% zero pages, %s)", d->path);
        break;
    case RF_BENCH_DATA_SILESIA:
        snprintf(buf, cap, "the Silesia members in %s, repeated", d->path);
        break;
    default:
        snprintf(buf, cap, "%s", d->path);
        break;
    }
    return buf;
}
