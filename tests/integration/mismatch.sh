#!/usr/bin/env bash
# A destination told to expect another method refuses; both sides report it.
. "$(dirname "$0")/lib.sh"
"$RAMFLOW" gen-image --size 4M "$T/src" || fail "gen-image"
start_incoming dst --memory "$T/dst" --multifd-compression zlib
set +e
"$RAMFLOW" migrate --memory "$T/src" --multifd-compression zstd "$DST_URI" \
    >/dev/null 2>"$T/src.err"
src_rc=$?
wait_exit "$DST_PID"; dst_rc=$?

[ "$src_rc" != 0 ] || fail "source succeeded"
[ "$dst_rc" != 0 ] || fail "destination succeeded"
expect_in "$T/src.err" "multifd-compression mismatch: the destination expects 'zlib', the source uses 'zstd'"
expect_in "$T/dst.err" "multifd-compression mismatch: the destination expects 'zlib', the source uses 'zstd'"
expect_in "$T/src.err" "destination reported"

# Same for the channel count.
start_incoming dst2 --memory "$T/dst" --multifd-channels 4
set +e
"$RAMFLOW" migrate --memory "$T/src" --multifd-channels 2 "$DST_URI" \
    >/dev/null 2>"$T/src2.err"
src_rc=$?
wait_exit "$DST_PID"; dst_rc=$?

[ "$src_rc" != 0 ] && [ "$dst_rc" != 0 ] || fail "channel mismatch accepted"
expect_in "$T/src2.err" "multifd-channels mismatch: the destination expects 4, the source uses 2"
expect_in "$T/dst2.err" "multifd-channels mismatch"

# A VM's source against a destination without a VM: refused at the
# handshake by capability, before the destination creates its memory.
rm -f "$T/dst"
start_incoming dst3 --memory "$T/dst"
set +e
"$RAMFLOW" guest --kind thread --memory-size 16M --vcpus 1 --quiet \
    "$DST_URI" >/dev/null 2>"$T/src3.err"
src_rc=$?
wait_exit "$DST_PID"; dst_rc=$?

[ "$src_rc" != 0 ] && [ "$dst_rc" != 0 ] || fail "device state accepted"
msg="handshake: destination lacks capability 'device-state' required by the source"
expect_in "$T/src3.err" "destination reported: $msg"
expect_in "$T/dst3.err" "$msg"
[ ! -e "$T/dst" ] || fail "the destination prepared memory before refusing"
echo "ok: mismatches refused on both sides"
