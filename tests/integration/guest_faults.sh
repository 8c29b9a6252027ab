#!/usr/bin/env bash
# The test VM under faults: guest_faults.sh KIND
# 1. a guest dirtying faster than max-bandwidth allows ends, either by
#    converging with auto-converge or with a clear non-convergence report;
# 2. cancel (SIGINT) and 3. a killed destination leave the source guest
#    running with its memory pattern intact; the destination tears down.
. "$(dirname "$0")/lib.sh"
kind=$1

# 1a. no auto-converge: stops after max-rounds, says it did not converge.
start_incoming d1 --guest --kind "$kind" --quiet
timeout 120 "$RAMFLOW" guest --kind "$kind" --memory-size 64M \
    --max-bandwidth 32M --max-rounds 3 --downtime-limit 1 --quiet \
    "$DST_URI" >"$T/s1.out" 2>"$T/s1.err" \
    || { cat "$T/s1.err" "$T/d1.err"; fail "non-converging migration failed"; }
wait_exit "$DST_PID" || fail "destination of the non-converging migration failed"
expect_in "$T/s1.out" "did not converge: stopped at max-rounds"

# 1b. auto-converge: the throttle rises and the migration completes.
start_incoming d2 --guest --kind "$kind" --quiet
timeout 120 "$RAMFLOW" guest --kind "$kind" --memory-size 64M \
    --max-bandwidth 32M --max-rounds 12 --downtime-limit 50 \
    --auto-converge --quiet "$DST_URI" >"$T/s2.out" 2>"$T/s2.err" \
    || { cat "$T/s2.err" "$T/d2.err"; fail "auto-converge migration failed"; }
wait_exit "$DST_PID" || fail "destination of the auto-converge migration failed"
expect_in "$T/s2.out" "auto-converge      vCPUs throttled up to"

# 2. cancel with SIGINT mid-migration.
start_incoming d3 --guest --kind "$kind" --quiet
"$RAMFLOW" guest --kind "$kind" --memory-size 256M --max-bandwidth 32M \
    --quiet "$DST_URI" >"$T/s3.out" 2>"$T/s3.err" &
SRC=$!; PIDS+=("$SRC")
wait_migrating "$DST_PID"
kill -INT "$SRC"
timeout 60 tail --pid="$SRC" -f /dev/null; wait "$SRC"; rc=$?
[ "$rc" = 1 ] || { cat "$T/s3.err"; fail "cancelled source exited $rc"; }
expect_in "$T/s3.err" "migration cancelled"
expect_in "$T/s3.err" "source guest kept running after the failure"
expect_in "$T/s3.err" "memory pattern intact"
timeout 60 tail --pid="$DST_PID" -f /dev/null; wait_exit "$DST_PID"; rc=$?
[ "$rc" = 1 ] || fail "destination exit $rc after cancel"
expect_in "$T/d3.err" "cancelled"

# 3. destination killed mid-migration.
start_incoming d4 --guest --kind "$kind" --quiet
"$RAMFLOW" guest --kind "$kind" --memory-size 256M --max-bandwidth 32M \
    --timeout 3000 --quiet "$DST_URI" >"$T/s4.out" 2>"$T/s4.err" &
SRC=$!; PIDS+=("$SRC")
wait_migrating "$DST_PID"
kill -9 "$DST_PID"
timeout 60 tail --pid="$SRC" -f /dev/null; wait "$SRC"; rc=$?
[ "$rc" = 1 ] || { cat "$T/s4.err"; fail "source exited $rc after the destination died"; }
expect_in "$T/s4.err" "source guest kept running after the failure"
expect_in "$T/s4.err" "memory pattern intact"
echo "ok: non-convergence reported, auto-converge converged, cancel and failure left the source guest running ($kind)"
