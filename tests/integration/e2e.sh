#!/usr/bin/env bash
# End-to-end migration between two processes with --verify, while a thread
# writes the source: e2e.sh METHOD CHANNELS [SIZE] [TRANSPORT] [ARGS...]
# ARGS are parameters given to both sides (the destination checks that
# method and channel count match what it was told).
. "$(dirname "$0")/lib.sh"
method=$1 channels=$2 size=${3:-64M} transport=${4:-tcp}
shift 4 2>/dev/null || shift $#
extra=("$@")
"$RAMFLOW" gen-image --size "$size" --seed 7 "$T/src" || fail "gen-image"
case $transport in
    tcp) LISTEN=tcp:127.0.0.1:0 ;;
    tcp6) LISTEN="tcp:[::1]:0" ;;
    unix) LISTEN=unix:$T/sock ;;
esac
start_incoming dst --memory "$T/dst" --json \
    --multifd-compression "$method" --multifd-channels "$channels" "${extra[@]}"
"$RAMFLOW" migrate --memory "$T/src" --multifd-compression "$method" \
    --multifd-channels "$channels" --verify --json \
    --simulate-writes 3000 "${extra[@]}" "$DST_URI" >"$T/src.json" 2>"$T/src.err" \
    || { cat "$T/src.err" "$T/dst.err" >&2; fail "migrate failed"; }
wait_exit "$DST_PID" || { cat "$T/dst.err" >&2; fail "incoming failed"; }
expect_in "$T/src.json" '"verified": true'
expect_in "$T/src.json" '"status": "completed"'
expect_in "$T/dst.out" '"status": "completed"'
expect_in "$T/src.json" "\"method\": \"$method\""
expect_in "$T/src.json" "\"channels\": $channels"
# The source is paused after a successful migration: files must be equal.
cmp -s "$T/src" "$T/dst" || fail "destination file differs from the source"
echo "ok: $method x$channels over $transport ${extra[*]}, $(grep -o '"rounds": [0-9]*' "$T/src.json")"
