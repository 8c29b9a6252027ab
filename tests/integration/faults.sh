#!/usr/bin/env bash
# Faults: a destination killed mid-migration, a source killed mid-migration
# and a stalled destination each end in a clean error, never a hang, and
# the source's memory is left untouched.
. "$(dirname "$0")/lib.sh"
"$RAMFLOW" gen-image --size 64M --seed 3 "$T/src" || fail "gen-image"
before=$(md5sum <"$T/src")

# 1. destination killed: the source fails cleanly.
start_incoming d1 --memory "$T/d1"
"$RAMFLOW" migrate --memory "$T/src" --max-bandwidth 16M --timeout 3000 \
    --quiet "$DST_URI" >/dev/null 2>"$T/s1.err" &
SRC=$!; PIDS+=("$SRC")
wait_migrating "$DST_PID"
kill -9 "$DST_PID"
set +e; timeout 20 tail --pid="$SRC" -f /dev/null; wait "$SRC"; rc=$?
[ "$rc" = 1 ] || { cat "$T/s1.err"; fail "source exit $rc after destination was killed"; }
expect_in "$T/s1.err" "ramflow: migration failed"
grep -qE "connection|closed|reset|broken pipe|Broken pipe" "$T/s1.err" || { cat "$T/s1.err"; fail "no connection error"; }
[ "$(md5sum <"$T/src")" = "$before" ] || fail "source memory changed"

# 2. source killed: the destination fails cleanly, naming a channel or the
#    main channel.
start_incoming d2 --memory "$T/d2" --timeout 3000
"$RAMFLOW" migrate --memory "$T/src" --max-bandwidth 16M --quiet "$DST_URI" \
    >/dev/null 2>&1 &
SRC=$!; PIDS+=("$SRC")
wait_migrating "$DST_PID"
kill -9 "$SRC"
set +e; timeout 20 tail --pid="$DST_PID" -f /dev/null; wait "$DST_PID"; rc=$?
[ "$rc" = 1 ] || { cat "$T/d2.err"; fail "destination exit $rc after source was killed"; }
expect_in "$T/d2.err" "incoming migration failed"
grep -qE "channel" "$T/d2.err" || { cat "$T/d2.err"; fail "error does not name the channel"; }

# 3. destination stalls (SIGSTOP): the source notices within its timeout.
start_incoming d3 --memory "$T/d3"
"$RAMFLOW" migrate --memory "$T/src" --timeout 1500 --max-bandwidth 16M --quiet "$DST_URI" \
    >/dev/null 2>"$T/s3.err" &
SRC=$!; PIDS+=("$SRC")
wait_migrating "$DST_PID"
kill -STOP "$DST_PID"
set +e; timeout 30 tail --pid="$SRC" -f /dev/null; wait "$SRC"; rc=$?
kill -CONT "$DST_PID" 2>/dev/null
if [ "$rc" = 0 ]; then
    echo "note: migration finished before the stall took effect"
else
    [ "$rc" = 1 ] || fail "stalled destination: exit $rc"
    grep -qE "stalled|timed out|timeout" "$T/s3.err" || { cat "$T/s3.err"; fail "no stall error"; }
fi
[ "$(md5sum <"$T/src")" = "$before" ] || fail "source memory changed"
echo "ok: faults end in clean errors"
