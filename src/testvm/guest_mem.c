/*
 * ramflow - the test VM's guest RAM: one memfd mapped MAP_SHARED once
 * (the block "pc.ram"), filled from files or a folder of files, and the
 * pattern bytes reset before the vCPUs start.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testvm/guest_internal.h"
#include "tools/imagegen.h"

bool guest_mem_create(RfGuest *g, uint64_t size, RfError **errp)
{
    int fd = memfd_create("ramflow-guest", MFD_CLOEXEC);
    if (fd < 0) {
        rf_error_set(errp, RF_ERR_IO, "guest RAM: memfd_create: %s",
                     strerror(errno));
        return false;
    }
    if (ftruncate(fd, (off_t)size) < 0) {
        rf_error_set(errp, RF_ERR_IO, "guest RAM: cannot size the memfd to "
                     "%llu bytes: %s", (unsigned long long)size,
                     strerror(errno));
        close(fd);
        return false;
    }
    void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   fd, 0);
    if (p == MAP_FAILED) {
        rf_error_set(errp, RF_ERR_IO, "guest RAM: mmap of %llu bytes: %s",
                     (unsigned long long)size, strerror(errno));
        close(fd);
        return false;
    }
    g->mem.fd = fd;
    g->mem.host = p;
    g->mem.size = size;
    snprintf(g->block.name, sizeof(g->block.name), "%s",
             RF_GUEST_BLOCK_NAME);
    g->block.size = size;
    g->block.host = p;
    if (!rf_dirty_bitmap_init(&g->src.marks, size / RF_PAGE_SIZE)) {
        rf_error_set(errp, RF_ERR_GENERIC, "guest RAM: out of memory for "
                     "the dirty bitmap");
        return false;
    }
    return true;
}

void guest_mem_free(RfGuest *g)
{
    if (g->mem.host) {
        munmap(g->mem.host, (size_t)g->mem.size);
    }
    if (g->mem.fd >= 0) {
        close(g->mem.fd);
    }
    rf_dirty_bitmap_destroy(&g->src.marks);
    g->mem.host = NULL;
    g->mem.fd = -1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Fills RAM from a file, or from the regular files of a folder in name
 * order (hidden files skipped), repeated. */
bool guest_fill_from_path(RfGuest *g, const char *path, RfError **errp)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        rf_error_set(errp, RF_ERR_IO, "fill '%s': %s", path,
                     strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        const char *one = path;
        return rf_image_fill_from_files(g->mem.host, g->mem.size, &one, 1,
                                        errp);
    }
    DIR *d = opendir(path);
    if (!d) {
        rf_error_set(errp, RF_ERR_IO, "fill folder '%s': %s", path,
                     strerror(errno));
        return false;
    }
    char **names = NULL;
    unsigned n = 0, cap = 0;
    bool ok = false;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') {
            continue;
        }
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        char *full = malloc(len);
        if (!full) {
            goto oom;
        }
        snprintf(full, len, "%s/%s", path, e->d_name);
        if (stat(full, &st) < 0 || !S_ISREG(st.st_mode)) {
            free(full);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof(*names));
            if (!nn) {
                free(full);
                goto oom;
            }
            names = nn;
        }
        names[n++] = full;
    }
    if (n == 0) {
        rf_error_set(errp, RF_ERR_PARAM, "fill folder '%s' has no regular "
                     "files", path);
        goto out;
    }
    qsort(names, n, sizeof(*names), cmp_str);
    ok = rf_image_fill_from_files(g->mem.host, g->mem.size,
                                  (const char *const *)names, n, errp);
    goto out;
oom:
    rf_error_set(errp, RF_ERR_GENERIC, "fill folder '%s': out of memory",
                 path);
out:
    for (unsigned i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
    closedir(d);
    return ok;
}

/* Clears the reserved pages and byte 0 of every other page: the pattern
 * starts from 0 everywhere (the fill keeps the other 4095 bytes). */
void guest_pattern_reset(RfGuest *g)
{
    uint64_t pages = g->mem.size / RF_PAGE_SIZE;
    memset(g->mem.host, 0, (size_t)RF_GUEST_RESERVED_PAGES * RF_PAGE_SIZE);
    for (uint64_t p = RF_GUEST_RESERVED_PAGES; p < pages; p++) {
        g->mem.host[p * RF_PAGE_SIZE] = 0;
    }
}
