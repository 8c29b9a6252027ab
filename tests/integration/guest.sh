#!/usr/bin/env bash
# Live migration of the test VM: guest.sh KIND METHOD CHANNELS [SIZE]
# KIND: auto (KVM where it works), thread (the fallback, forced).
# The destination resumes the guest, lets it run, and checks its memory
# pattern (at most one discontinuity per vCPU); --verify compares digests.
. "$(dirname "$0")/lib.sh"
kind=$1 method=$2 channels=$3 size=${4:-128M}
start_incoming dst --guest --kind "$kind" --json
# 20000 pages/s per guest keeps each run short and lets it converge; the
# unlimited writer is exercised by guest_faults.sh.
"$RAMFLOW" guest --kind "$kind" --memory-size "$size" --vcpus 2 \
    --dirty-rate 20000 --max-rounds 10 \
    --multifd-compression "$method" --multifd-channels "$channels" \
    --verify --json --quiet "$DST_URI" >"$T/src.json" 2>"$T/src.err" \
    || { cat "$T/src.err" "$T/dst.err" >&2; fail "guest migration failed"; }
wait_exit "$DST_PID" || { cat "$T/dst.out" "$T/dst.err" >&2; fail "destination failed"; }
expect_in "$T/src.json" '"verified": true'
expect_in "$T/src.json" '"status": "completed"'
expect_in "$T/dst.out" '"status": "completed"'
expect_in "$T/dst.err" "pattern check passed"
grep -q '"state_bytes": 0,' "$T/src.json" && fail "no vCPU state was sent"
echo "ok: $(grep -h 'source:' "$T/src.err")"
echo "ok: $(grep -h 'pattern check' "$T/dst.err")"
echo "ok: downtime $(grep -o '"downtime_ms": [0-9.]*' "$T/src.json"), $(grep -o '"rounds": [0-9]*' "$T/src.json")"
