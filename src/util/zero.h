/* ramflow - fast test for an all-zero page. */
#ifndef RF_UTIL_ZERO_H
#define RF_UTIL_ZERO_H

#include <stdbool.h>
#include <stddef.h>

/* @return true if the RF_PAGE_SIZE bytes at p are all zero.  Vectorised
 * (SSE2 on x86-64, 8 lanes of 64 bits elsewhere) with an early exit every
 * 256 bytes, since most non-zero pages differ early. */
bool rf_page_is_zero(const void *p);

#endif
