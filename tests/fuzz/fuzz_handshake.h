/*
 * The input layout of fuzz_handshake, shared with the seed generator
 * (gen_seeds.c) so that both agree on it.
 *
 *   byte 0     options (FH_OPT_*)
 *   then       the main channel's bytes, and up to FH_MAX_DATA data
 *              channels' bytes, each stream introduced by FH_SEP
 *
 * i.e. opt | main | SEP | data 0 | SEP | data 1 | SEP | data 2.  A
 * separator rather than a header of lengths: a mutation that inserts or
 * removes bytes in one stream then leaves the others where they were.
 */
#ifndef RF_FUZZ_HANDSHAKE_H
#define RF_FUZZ_HANDSHAKE_H

#define FH_SEP "~RF~"
#define FH_SEP_LEN 4u
#define FH_MAX_DATA 3u

/* Options byte. */
#define FH_OPT_LOAD_STATE 0x01u    /* a load_state hook (accepts) */
#define FH_OPT_STATE_REFUSE 0x02u  /* ... that refuses every state */
#define FH_OPT_EXPECT_METHOD 0x04u /* the destination expects "none" */
#define FH_OPT_EXPECT_CHANS 0x08u  /* expects as many channels as streams */
#define FH_OPT_MAX_MEMORY 0x10u    /* max-memory: FH_MAX_MEMORY bytes */

/* The destination's memory: two regions, each between guard pages. */
#define FH_RAM_NAME "pc.ram"
#define FH_RAM_PAGES 64u
#define FH_ROM_NAME "vga.rom"
#define FH_ROM_PAGES 4u
#define FH_MAX_MEMORY (16u * 4096u)

#endif
