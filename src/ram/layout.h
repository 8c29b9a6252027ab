/*
 * ramflow - checking block lists, private to src/ram: the regions a caller
 * gives a region source or sink, a source's blocks, the layout a sink
 * receives from the source, and matching that layout to a sink's own named
 * entries.
 */
#ifndef RF_RAM_LAYOUT_H
#define RF_RAM_LAYOUT_H

#include <stdbool.h>

#include "ram/ram.h"

/* Checks the caller's n regions (1 to RF_MAX_BLOCKS; page-aligned non-NULL
 * addresses, sizes non-zero multiples of RF_PAGE_SIZE, names 1-255 bytes or
 * NULL for "region<i>", unique, no two ranges overlapping) and fills
 * out[0..n) with their names, addresses and sizes.
 * @return false with an RF_ERR_PARAM error naming the region. */
bool rf_regions_check(const RfRegion *regions, unsigned n, RfRamBlock *out,
                      RfError **errp);

/* Checks a list of n blocks: 1 to RF_MAX_BLOCKS, with non-empty
 * NUL-terminated unique names and sizes that are non-zero multiples of
 * RF_PAGE_SIZE (hosts are not looked at).  @return false with an error of
 * `kind` starting with `what` ("source layout: block 'ram' has size..."). */
bool rf_blocks_check(const RfRamBlock *blocks, unsigned n, RfErrorKind kind,
                     const char *what, RfError **errp);

/* rf_blocks_check() of a layout that came off the wire, with
 * RF_ERR_PROTOCOL errors. */
bool rf_layout_check(const RfRamBlock *layout, unsigned n, RfError **errp);

/* Matches each of the n layout blocks to one of a sink's `count` entries
 * (names[k] is entry k's name): the entry with the block's name, or the
 * only entry when both sides have exactly one.  Fills match[0..n).
 * @return false with an RF_ERR_MISMATCH error "block 'X' from the source
 * has no <what> here (blocks here: 'a', 'b')". */
bool rf_layout_match(const RfRamBlock *layout, unsigned n,
                     const char *const *names, unsigned count,
                     const char *what, unsigned *match, RfError **errp);

#endif /* RF_RAM_LAYOUT_H */
