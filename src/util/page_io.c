/* ramflow - pages to and from a file, one call per run. */
#include "util/page_io.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "ramflow/ramflow.h"

/* One run: len bytes at off, resumed after short transfers. */
static int run_io(int fd, uint8_t *buf, size_t len, off_t off, bool write)
{
    while (len) {
        ssize_t n = write ? pwrite(fd, buf, len, off)
                          : pread(fd, buf, len, off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n == 0 && !write) {
            memset(buf, 0, len);
            return 0;
        }
        if (n <= 0) {
            return n < 0 ? errno : EIO;
        }
        buf += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

bool rf_page_io(int fd, uint64_t base, const uint32_t *idx, uint32_t n,
                uint8_t *buf, bool write, RfPageIoFail *fail)
{
    for (uint32_t i = 0; i < n;) {
        uint32_t run = 1;
        while (i + run < n && idx[i + run] == idx[i] + run) {
            run++;
        }
        int err = run_io(fd, buf + (size_t)i * RF_PAGE_SIZE,
                         (size_t)run * RF_PAGE_SIZE,
                         (off_t)(base + (uint64_t)idx[i] * RF_PAGE_SIZE),
                         write);
        if (err) {
            *fail = (RfPageIoFail){err, idx[i], run};
            return false;
        }
        i += run;
    }
    return true;
}
