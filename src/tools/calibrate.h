/*
 * ramflow - single-thread calibration of a compression method: ratio and
 * MB/s through the method's own send and receive paths, the ones the
 * channels use.  `ramflow codec --bench` and `ramflow bench` report it and
 * derive CPU bounds from it.
 */
#ifndef RF_TOOLS_CALIBRATE_H
#define RF_TOOLS_CALIBRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "compress/method.h"

typedef struct RfCalibration {
    uint64_t input_bytes;     /* page bytes run through the method */
    uint64_t payload_bytes;   /* what the sender produced */
    uint64_t packets, raw_packets;
    double ratio;             /* input / payload */
    double compress_mbps;     /* 10^6 input bytes per second of `clock` */
    double decompress_mbps;
    char detail[160];         /* the method's describe() */
} RfCalibration;

/* Runs `size` bytes at `data` (whole pages) through ops at `level` in
 * packets of up to 128 pages: `repeat` passes of compression, then
 * `repeat` of decompression (raw packets cost the copy a channel makes),
 * keeping each direction's fastest pass, timed with `clock` (e.g.
 * CLOCK_THREAD_CPUTIME_ID).  Checks that the result equals the input.
 * @return false with an error if the method fails or the round trip
 * differs. */
bool rf_method_calibrate(const RfMethodOps *ops, int level,
                         const uint8_t *data, size_t size, unsigned repeat,
                         clockid_t clock, RfCalibration *out,
                         RfError **errp);

#endif
