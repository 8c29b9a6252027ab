/*
 * ramflow - the test VM's guest RAM: one memfd mapped MAP_SHARED once
 * (the block "pc.ram") with the source's mark_dirty bitmap, and the
 * pattern bytes reset before the vCPUs start.  guest.c fills it
 * (imagegen: the generated mix or the --fill files).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testvm/guest_internal.h"

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
