/*
 * ramflow - the `codec` command: any compression method on a file.
 *
 *   ramflow codec [-m METHOD] [-l LEVEL] < in > out      compress
 *   ramflow codec -d [-m METHOD] < in > out              decompress
 *   ramflow codec --bench FILE [-m METHOD] [-l LEVEL] [--max-mb N]
 *                 [--repeat N] [--wall]
 *
 * Compression cuts the input into 512 KiB packets and runs each through
 * the method's own send path (RfMethodOps), so the output is what a
 * migration would send.  The output format (docs/qatzip.md, "ramflow
 * codec"):
 *   - qatzip: a plain concatenation of its gzip members, so that
 *     `ramflow codec -m qatzip < f | gzip -dc` gives back f;
 *   - other methods: the framing below.
 *       stream header, 8 bytes: "RFC1", method wire id (u8), level (i8),
 *         two zero bytes;
 *       per packet, 8 bytes: u32 LE ulen (1..524288 input bytes), u32 LE
 *         plen (payload bytes; bit 31 set = raw: the payload is the ulen
 *         input bytes), then the payload.  A compressed payload decodes to
 *         ceil(ulen / 4096) pages, the last one zero-padded; ulen bytes are
 *         kept;
 *       end marker: a packet header of eight zero bytes.
 * Decompression recognises the format from the first bytes.
 *
 * --bench prints, for every method and level (or those given), the
 * compression ratio and the single-thread MB/s of compression and of
 * decompression through the same send/recv paths, on at most --max-mb MiB
 * (default 32) of FILE, timed in thread CPU time (wall-clock with --wall),
 * the fastest of --repeat passes (default 1).
 */
#ifndef RF_CODEC_CODEC_H
#define RF_CODEC_CODEC_H

/* Runs `ramflow codec`; argv[0] is "codec".  Prints its own errors.
 * @return the exit status: 0 success, 1 failure, 2 usage error. */
int rf_cli_codec(int argc, char **argv);

#endif /* RF_CODEC_CODEC_H */
