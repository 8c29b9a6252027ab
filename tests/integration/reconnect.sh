#!/usr/bin/env bash
# Precopy channel recovery (issue 10, docs/protocol.md 5.1).  The source
# reaches the destination through cut_proxy.py, which resets one chosen
# connection (both sides, RST) after a byte count: deterministic, no
# sleep decides when.
#  1. a data channel cut mid-round (with writes running): the channel
#     reconnects and re-sends, --verify passes, the files are equal, both
#     reports count the reconnect; the time from the cut to the
#     replacement connection is printed;
#  2. one channel cut past round 1 (after a ROUND_ACK pruned its log);
#  3. attempts exhausted (the proxy resets every later connection): both
#     sides fail cleanly within seconds, the source names the channel and
#     the attempts, its memory unchanged;
#  4. multifd-reconnect-attempts 0 (capability not offered): a cut channel
#     fails the migration cleanly, as before;
#  5. the main channel cut: both sides fail cleanly, source memory intact;
#  6. cancel during a reconnect wait: SIGTERM ends the destination (waiting
#     for a replacement) and then the source (in its backoff) within 2 s;
#  7. over TLS (PSK): the replacement proves its binding to the main
#     channel's TLS session, and the migration completes verified;
#  8. a live test VM (thread guest): a data channel cut mid-migration, the
#     guest resumes on the destination with its pattern intact; and with
#     every reconnect refused, the source guest runs on, pattern intact;
#  9. auto over a slow path (the proxy paced): a channel cut early
#     reconnects and sweeps again with fresh compressor states.
. "$(dirname "$0")/lib.sh"
PROXY="$(dirname "$0")/cut_proxy.py"
SUMMARY=()

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# start_proxy CUT AFTER [--refuse]: a proxy in front of the destination;
# sets PROXY_URI and PROXY_LOG.
start_proxy() {
    PROXY_LOG=$T/proxy.$RANDOM.log
    python3 "$PROXY" "${DST_URI##*:}" "$@" >"$PROXY_LOG" 2>&1 &
    PIDS+=("$!")
    for _ in $(seq 200); do
        grep -q '^port ' "$PROXY_LOG" && break
        sleep 0.05
    done
    PROXY_URI=tcp:127.0.0.1:$(awk '/^port /{print $2}' "$PROXY_LOG")
    [ "$PROXY_URI" != tcp:127.0.0.1: ] || fail "proxy did not start"
}

# json_int FILE KEY: the integer value of "KEY" in a JSON report.
json_int() { grep -o "\"$2\": [0-9]*" "$1" | head -1 | grep -o '[0-9]*$'; }

"$RAMFLOW" gen-image --size 48M --seed 11 "$T/img" || fail "gen-image"

# --- 1. a data channel cut mid-round ------------------------------------
cp "$T/img" "$T/src"
start_incoming dst --memory "$T/dst" --json
# Connection 2 is the second data channel (0 is the main channel); 8 MiB
# into it is mid-round-1 (each of the 2 channels carries about 24 MiB).
start_proxy 2 8000000
t0=$(now_ms)
"$RAMFLOW" migrate --memory "$T/src" --verify --json \
    --multifd-reconnect-backoff 50 --simulate-writes 2000 "$PROXY_URI" \
    >"$T/src.json" 2>"$T/src.err" \
    || { cat "$T/src.err" "$T/dst.err" "$PROXY_LOG" >&2; fail "1: migrate failed"; }
t1=$(now_ms)
wait_exit "$DST_PID" 30 || { cat "$T/dst.err" >&2; fail "1: incoming failed"; }
expect_in "$T/src.json" '"verified": true'
expect_in "$T/src.json" '"status": "completed"'
expect_in "$T/dst.out" '"status": "completed"'
grep -q '^cut 2 ' "$PROXY_LOG" || { cat "$PROXY_LOG" >&2; fail "1: the proxy never cut"; }
cmp -s "$T/src" "$T/dst" || fail "1: destination file differs from the source"
n=$(json_int "$T/src.json" reconnects)
[ "${n:-0}" -ge 1 ] || { cat "$T/src.json" >&2; fail "1: source report counts no reconnect"; }
n=$(json_int "$T/dst.out" reconnects)
[ "${n:-0}" -ge 1 ] || { cat "$T/dst.out" >&2; fail "1: destination report counts no reconnect"; }
cut_at=$(awk '/^cut /{print $3}' "$PROXY_LOG")
back_at=$(awk '/^accept 3 /{print $3}' "$PROXY_LOG")
[ -n "$back_at" ] || { cat "$PROXY_LOG" >&2; fail "1: no replacement connection"; }
SUMMARY+=("data channel cut at 8 MB: reconnected $((back_at - cut_at)) ms after the cut (backoff 50 ms), migration $((t1 - t0)) ms, verified")

# --- 2. a cut in a later round ------------------------------------------
# Random pages (no zero page), so round 1 is exactly the 12288 pages of
# 48 MiB (50331648 bytes) plus about 0.1 MB of headers and indexes on the
# one channel, and 54 MB into it is round 2 or later.  What makes round 2
# large enough does not depend on the machine's speed: at 100 MB/s round 1
# lasts 0.5 s or more, in which the writer dirties thousands of pages
# (4 MB past round 1 needs 1000), and downtime-limit 0 with max-rounds
# keeps rounds going.
head -c 48M /dev/urandom >"$T/src"
start_incoming dst2 --memory "$T/dst2" --json
start_proxy 1 54000000
"$RAMFLOW" migrate --memory "$T/src" --verify --json --downtime-limit 0 \
    --multifd-channels 1 --max-rounds 6 --multifd-reconnect-backoff 20 \
    --max-bandwidth 100M --simulate-writes 20000 "$PROXY_URI" \
    >"$T/src2.json" 2>"$T/src2.err" \
    || { cat "$T/src2.err" "$T/dst2.err" "$PROXY_LOG" >&2; fail "2: migrate failed"; }
wait_exit "$DST_PID" 30 || { cat "$T/dst2.err" >&2; fail "2: incoming failed"; }
expect_in "$T/src2.json" '"verified": true'
grep -q '^cut 1 ' "$PROXY_LOG" || { cat "$PROXY_LOG" "$T/src2.json" >&2; fail "2: the proxy never cut"; }
cmp -s "$T/src" "$T/dst2" || fail "2: destination file differs from the source"
n=$(json_int "$T/src2.json" reconnects)
[ "${n:-0}" -ge 1 ] || fail "2: source report counts no reconnect"
SUMMARY+=("cut after round 1 of $(json_int "$T/src2.json" rounds) rounds: verified")

# --- 3. attempts exhausted ------------------------------------------------
cp "$T/img" "$T/src"
start_incoming dst3 --memory "$T/dst3" --json
start_proxy 1 8000000 --refuse
t0=$(now_ms)
"$RAMFLOW" migrate --memory "$T/src" --multifd-reconnect-attempts 2 \
    --multifd-reconnect-backoff 50 "$PROXY_URI" >"$T/src3.out" 2>"$T/src3.err"
rc=$?
t1=$(now_ms)
[ "$rc" = 1 ] || { cat "$T/src3.err" >&2; fail "3: source exit status $rc, expected 1"; }
expect_in "$T/src3.err" "channel 0: connection lost"
expect_in "$T/src3.err" "2 reconnect attempts failed"
[ $((t1 - t0)) -lt 15000 ] || fail "3: the source took $((t1 - t0)) ms to give up"
wait_exit "$DST_PID" 15
rc=$?
[ "$rc" = 1 ] || { cat "$T/dst3.err" >&2; fail "3: destination exit status $rc, expected 1"; }
expect_in "$T/dst3.err" "reconnect attempts failed"
[ "$(grep -c '^refuse ' "$PROXY_LOG")" = 2 ] || { cat "$PROXY_LOG" >&2; fail "3: expected 2 refused reconnects"; }
cmp -s "$T/src" "$T/img" || fail "3: the source's memory changed"
SUMMARY+=("attempts exhausted: both sides failed cleanly, source after $((t1 - t0)) ms")

# --- 4. reconnect off -------------------------------------------------------
start_incoming dst4 --memory "$T/dst4" --json
start_proxy 1 8000000
"$RAMFLOW" migrate --memory "$T/src" --multifd-reconnect-attempts 0 \
    "$PROXY_URI" >"$T/src4.out" 2>"$T/src4.err"
rc=$?
[ "$rc" = 1 ] || { cat "$T/src4.err" >&2; fail "4: source exit status $rc, expected 1"; }
# Either side's view may come first: the cut channel 0, or channel 1
# that the failing source closed.
expect_in "$T/src4.err" "channel "
wait_exit "$DST_PID" 15
[ $? = 1 ] || { cat "$T/dst4.err" >&2; fail "4: destination did not fail"; }
grep -q '^accept 3 ' "$PROXY_LOG" && fail "4: the source reconnected with attempts 0"
SUMMARY+=("attempts 0: a cut channel fails the migration cleanly")

# --- 5. main channel cut ------------------------------------------------------
cp "$T/img" "$T/src"
start_incoming dst5 --memory "$T/dst5" --json
# From the source the main channel carries HELLO (74 bytes with this
# layout), then 16 bytes of ROUND per round: cut it in the first ROUND.
start_proxy 0 80
t0=$(now_ms)
"$RAMFLOW" migrate --memory "$T/src" --downtime-limit 0 --max-rounds 4 \
    "$PROXY_URI" >"$T/src5.out" 2>"$T/src5.err"
rc=$?
t1=$(now_ms)
[ "$rc" = 1 ] || { expect_in "$T/src5.err" "main channel" "$PROXY_LOG" >&2; fail "5: source exit status $rc, expected 1"; }
expect_in "$T/src5.err" "main channel"
wait_exit "$DST_PID" 15
[ $? = 1 ] || { cat "$T/dst5.err" >&2; fail "5: destination did not fail"; }
grep -q '^cut 0 ' "$PROXY_LOG" || fail "5: the proxy never cut the main channel"
[ $((t1 - t0)) -lt 15000 ] || fail "5: the source took $((t1 - t0)) ms to fail"
cmp -s "$T/src" "$T/img" || fail "5: the source's memory changed"
SUMMARY+=("main channel cut: both sides failed cleanly in $((t1 - t0)) ms")

# --- 6. cancel while reconnecting ------------------------------------------
# term_within NAME PID: SIGTERM, then the exit must come within 2 s, as a
# clean failure (status 1); sets TERM_MS.
term_within() {
    local t0 t1 rc
    t0=$(now_ms)
    kill -TERM "$2"
    for _ in $(seq 300); do
        kill -0 "$2" 2>/dev/null || break
        [ "$(awk '{print $3}' "/proc/$2/stat" 2>/dev/null)" = Z ] && break
        sleep 0.01
    done
    t1=$(now_ms)
    wait "$2"; rc=$?
    [ $((t1 - t0)) -lt 2000 ] || fail "6: $1 took $((t1 - t0)) ms to end after SIGTERM"
    [ "$rc" = 1 ] || fail "6: $1 exit status $rc, expected 1"
    TERM_MS=$((t1 - t0))
}
cp "$T/img" "$T/src"
start_incoming dst6 --memory "$T/dst6" --json
start_proxy 1 8000000 --refuse
"$RAMFLOW" migrate --memory "$T/src" --multifd-reconnect-backoff 60000 \
    "$PROXY_URI" >"$T/src6.out" 2>"$T/src6.err" &
SRC_PID=$!
PIDS+=("$SRC_PID")
for _ in $(seq 400); do
    grep -q '^cut 1 ' "$PROXY_LOG" && break
    kill -0 "$SRC_PID" 2>/dev/null || break
    sleep 0.05
done
grep -q '^cut 1 ' "$PROXY_LOG" || { cat "$T/src6.err" >&2; fail "6: the proxy never cut"; }
# The cut channel's source thread now waits 60 s before its first attempt.
term_within destination "$DST_PID"
dms=$TERM_MS
term_within source "$SRC_PID"
sms=$TERM_MS
expect_in "$T/src6.err" "cancelled"
cmp -s "$T/src" "$T/img" || fail "6: the source's memory changed"
SUMMARY+=("SIGTERM while reconnecting: destination ended in $dms ms, source in $sms ms")

# --- 7. over TLS ---------------------------------------------------------------
mkdir -p "$T/psk" && chmod 700 "$T/psk"
echo "qemu:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    >"$T/psk/keys.psk" && chmod 600 "$T/psk/keys.psk"
cp "$T/img" "$T/src"
start_incoming dst7 --memory "$T/dst7" --json --tls-psk "$T/psk"
start_proxy 2 8000000
"$RAMFLOW" migrate --memory "$T/src" --verify --json --tls-psk "$T/psk" \
    --multifd-reconnect-backoff 50 "$PROXY_URI" \
    >"$T/src7.json" 2>"$T/src7.err" \
    || { cat "$T/src7.err" "$T/dst7.err" "$PROXY_LOG" >&2; fail "7: migrate failed"; }
wait_exit "$DST_PID" 30 || { cat "$T/dst7.err" >&2; fail "7: incoming failed"; }
expect_in "$T/src7.json" '"verified": true'
expect_in "$T/src7.json" '"security": "TLS'
grep -q '^cut 2 ' "$PROXY_LOG" || fail "7: the proxy never cut"
n=$(json_int "$T/dst7.out" reconnects)
[ "${n:-0}" -ge 1 ] || { cat "$T/dst7.out" >&2; fail "7: destination report counts no reconnect"; }
cmp -s "$T/src" "$T/dst7" || fail "7: destination file differs from the source"
SUMMARY+=("TLS (PSK): data channel cut and rebound to the session, verified")

# --- 8. a live test VM ------------------------------------------------------
start_incoming dst8 --guest --kind thread --json
start_proxy 2 8000000
"$RAMFLOW" guest --kind thread --memory-size 64M --vcpus 2 \
    --dirty-rate 20000 --max-rounds 10 --verify --json --quiet \
    --multifd-reconnect-backoff 50 "$PROXY_URI" >"$T/src8.json" 2>"$T/src8.err" \
    || { cat "$T/src8.err" "$T/dst8.err" "$PROXY_LOG" >&2; fail "8: guest migration failed"; }
wait_exit "$DST_PID" 30 || { cat "$T/dst8.err" >&2; fail "8: destination failed"; }
expect_in "$T/src8.json" '"verified": true'
expect_in "$T/dst8.err" "pattern check passed"
grep -q '^cut 2 ' "$PROXY_LOG" || fail "8: the proxy never cut"
n=$(json_int "$T/src8.json" reconnects)
[ "${n:-0}" -ge 1 ] || { cat "$T/src8.json" >&2; fail "8: source report counts no reconnect"; }
start_incoming dst9 --guest --kind thread --json
start_proxy 2 8000000 --refuse
"$RAMFLOW" guest --kind thread --memory-size 64M --vcpus 2 \
    --dirty-rate 20000 --max-rounds 10 --quiet \
    --multifd-reconnect-attempts 1 --multifd-reconnect-backoff 50 \
    "$PROXY_URI" >"$T/src9.out" 2>"$T/src9.err"
rc=$?
[ "$rc" = 1 ] || { cat "$T/src9.err" >&2; fail "8: refused guest source exit $rc, expected 1"; }
expect_in "$T/src9.err" "1 reconnect attempt failed"
expect_in "$T/src9.err" "source guest kept running after the failure"
expect_in "$T/src9.err" "memory pattern intact"
wait_exit "$DST_PID" 15
[ $? = 1 ] || { cat "$T/dst9.err" >&2; fail "8: destination did not fail"; }
SUMMARY+=("test VM: recovered and resumed with its pattern intact; refused: the source guest ran on, pattern intact")

# --- 9. auto: a channel's sweeps after its reconnect ------------------------
# The proxy relays 8 MB/s (a slow path: the source's writes are held
# back), so auto compresses and its channels sweep (compress a few pages
# with every candidate to price them) all through the migration; channel
# 0 is cut 1 MB in, early, and reconnects.  A reconnect drops the
# channel's compressor states; its next sweep must set them up again
# (before fb0098e it compressed with a NULL state: a crash).
cp "$T/img" "$T/src"
start_incoming dst10 --memory "$T/dst10" --json
start_proxy 1 1000000 --rate 8000000
"$RAMFLOW" migrate --memory "$T/src" --verify --json \
    --multifd-compression auto --multifd-reconnect-backoff 50 "$PROXY_URI" \
    >"$T/src10.json" 2>"$T/src10.err" \
    || { cat "$T/src10.err" "$T/dst10.err" "$PROXY_LOG" >&2; fail "9: auto migrate failed"; }
wait_exit "$DST_PID" 30 || { cat "$T/dst10.err" >&2; fail "9: incoming failed"; }
expect_in "$T/src10.json" '"verified": true'
grep -q '^cut 1 ' "$PROXY_LOG" || { cat "$PROXY_LOG" >&2; fail "9: the proxy never cut"; }
cmp -s "$T/src" "$T/dst10" || fail "9: destination file differs from the source"
n=$(json_int "$T/src10.json" reconnects)
[ "${n:-0}" -ge 1 ] || fail "9: source report counts no reconnect"
sweeps=$(jq -r '.auto.sweeps' "$T/src10.json")
[ "${sweeps:-0}" -ge 2 ] 2>/dev/null || { jq .auto "$T/src10.json" >&2; fail "9: auto swept ${sweeps:-no} times"; }
comp=$(jq -r '[.auto.rounds[].bytes | to_entries[] | select(.key != "none") | .value] | add // 0' "$T/src10.json")
[ "${comp:-0}" -gt 0 ] || { jq .auto "$T/src10.json" >&2; fail "9: auto never compressed on the slow path"; }
SUMMARY+=("auto on a slow path: channel 0 cut and reconnected, $sweeps sweeps, verified ($(jq -r .auto_summary "$T/src10.json"))")

for s in "${SUMMARY[@]}"; do echo "ok: $s"; done
