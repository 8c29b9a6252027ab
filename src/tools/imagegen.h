/*
 * ramflow - synthetic RAM images for demos, tests and benchmarks.
 *
 * rf_image_generate() fills memory with a deterministic mix of pages that
 * look like a guest's RAM to a compressor: zero pages, text, machine code
 * and pointer tables, structured data, and incompressible (already
 * compressed) data, decided per 64 KiB region with runs of one kind, as in
 * real memory.  rf_image_fill_from_files() and rf_image_fill_from_path()
 * repeat real files instead (the Silesia corpus for the benchmark).
 */
#ifndef RF_TOOLS_IMAGEGEN_H
#define RF_TOOLS_IMAGEGEN_H

#include <stdbool.h>
#include <stdint.h>

#include "ramflow/error.h"

/*! rf_image_generate() :
 *  Fills `size` bytes at dst (a multiple of 4096) with about 20% zero
 *  pages, 30% text-like, 25% code-like, 15% structured data and 10%
 *  random pages.  The contents depend only on `seed` and `size`, never on
 *  `threads` (the number of threads to fill with; 0 means 1; a thread
 *  that cannot start has its share filled by the caller's thread).
 *  @return true, or false with an RF_ERR_PARAM error for a bad size. */
bool rf_image_generate(uint8_t *dst, uint64_t size, uint64_t seed,
                       unsigned threads, RfError **errp);

/*! rf_image_fill_from_files() :
 *  Fills `size` bytes at dst (a multiple of 4096) with the contents of the
 *  n files, concatenated in order and repeated until dst is full.
 *  @return true, or false with an error naming the file that could not be
 *  read, or saying that all files are empty. */
bool rf_image_fill_from_files(uint8_t *dst, uint64_t size,
                              const char *const *paths, unsigned n,
                              RfError **errp);

/*! rf_image_fill_from_path() :
 *  As rf_image_fill_from_files(), from a file, or from the regular files
 *  of a folder in name order (hidden files skipped): what --fill takes
 *  (the test VM, `ramflow bench`).
 *  @return true, or false with an error naming the path or the file. */
bool rf_image_fill_from_path(uint8_t *dst, uint64_t size, const char *path,
                             RfError **errp);

/* The zero-heavy image: of every RF_IMAGE_ZERO_GROUP pages, the first
 * RF_IMAGE_ZERO_RUN are zero pages (80%), the rest the generated mix's
 * pages at the same place (themselves about 20% zero). */
#define RF_IMAGE_ZERO_GROUP 80u
#define RF_IMAGE_ZERO_RUN 64u

/*! rf_image_generate_random() :
 *  Fills `size` bytes at dst (a multiple of 4096) with pseudo-random bytes
 *  (splitmix64 of seed and offset): incompressible pages.
 *  @return true, or false with an RF_ERR_PARAM error for a bad size. */
bool rf_image_generate_random(uint8_t *dst, uint64_t size, uint64_t seed,
                              RfError **errp);

/*! rf_image_generate_zero_heavy() :
 *  The generated mix of rf_image_generate(dst, size, seed, threads) with
 *  the first RF_IMAGE_ZERO_RUN pages of every RF_IMAGE_ZERO_GROUP zeroed:
 *  80% zero pages in runs of 256 KiB, plus the mix's own zero pages in
 *  the rest (about 84% in all).
 *  @return true, or false with an RF_ERR_PARAM error for a bad size. */
bool rf_image_generate_zero_heavy(uint8_t *dst, uint64_t size,
                                  uint64_t seed, unsigned threads,
                                  RfError **errp);

#endif /* RF_TOOLS_IMAGEGEN_H */
