/*
 * ramflow - moving pages between a buffer and a file with pread/pwrite,
 * one call per run of consecutive pages.  Used where RAM is a file (the
 * file source, the file sink, a VMM's memfd): on a host that shadows page
 * tables the first touch of each page through a mapping faults, and the
 * kernel's copy does not (docs/design.md, "Destination memory").
 */
#ifndef RF_UTIL_PAGE_IO_H
#define RF_UTIL_PAGE_IO_H

#include <stdbool.h>
#include <stdint.h>

/* Where a page transfer failed. */
typedef struct RfPageIoFail {
    int err;        /* errno of the call (EIO: a write wrote nothing) */
    uint32_t page;  /* first page of the run that failed */
    uint32_t npages; /* its length */
} RfPageIoFail;

/* Reads (write false) or writes n pages between buf, where page i is at
 * buf + i * RF_PAGE_SIZE, and file fd, where page i is at base +
 * idx[i] * RF_PAGE_SIZE.  Short transfers and EINTR are resumed; a read
 * past the end of the file gives zeros, as a mapping would.
 * @return true, or false with *fail filled. */
bool rf_page_io(int fd, uint64_t base, const uint32_t *idx, uint32_t n,
                uint8_t *buf, bool write, RfPageIoFail *fail);

#endif
