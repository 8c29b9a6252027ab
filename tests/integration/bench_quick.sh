#!/usr/bin/env bash
# Smoke test of `ramflow bench` (issue 5): never a timing, only shapes.
#  1. `bench --quick`: exit 0; the markdown table has upstream's columns
#     plus ratio, verified, bound, efficiency, one row per method x
#     channel count, every row verified; results.json parses (jq) and
#     agrees; the chart exists when gnuplot is installed.
#  2. `bench --tls --quick --methods none`: a plaintext and a "none + TLS"
#     row, both verified, the TLS row reporting TLS; the TLS cost table
#     with its row; the PSK the bench made (mode 0600); results.json's
#     tls_cost.  Then a TLS failure (the source asks for a PSK user the
#     bench's key file lacks): exit 1, the TLS row FAILED with the source's
#     error under Failures, the plaintext row still verified.
#  3. `bench --dest-memory warm,cold` (file mode) on a 16 MiB image: a
#     "none, warm" and a "none, cold" row, both verified (digests and the
#     destination's file against the image), results.json says so, and the
#     scratch folder in /dev/shm is gone afterwards.  `--compare qemu`
#     without QEMU in PATH: exit 1 and the message naming `make
#     bench-deps`; with a fake QEMU that fails to start: exit 1 and its
#     message under Failures; where QEMU is installed, one tiny compared
#     row.
#  4. Where network namespaces work (root, iproute2): one row over an
#     emulated 1gbit link, and an interrupted run (SIGINT) that must exit
#     130 and leave no namespace, veth or process behind.
. "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || fail "jq is not installed (Debian package jq)"

HEADER='| method | channels | time (s) | throughput (Mbit/s) | pages/s | send CPU% | recv CPU% | downtime (ms) | ratio | verified | bound (RAM MB/s) | efficiency | with first touch |'

# check_table FILE ROWS: the table header once per link, ROWS data rows
# (13 columns: 15 fields split on '|'), each verified (column 10).
ROW='NF == 15 && $2 ~ /^ [a-z]+ $/ && $3 ~ /^ [0-9]+ $/'
check_table() {
    local file=$1 rows=$2 n
    grep -qxF -- "$HEADER" "$file" || { cat "$file" >&2; fail "no table header in $file"; }
    n=$(awk -F'|' "$ROW"' { n++ } END { print n + 0 }' "$file")
    [ "$n" -eq "$rows" ] || { cat "$file" >&2; fail "$n table rows in $file, expected $rows"; }
    awk -F'|' "$ROW"' { if ($11 != " yes ") bad++ } END { exit bad > 0 }' \
        "$file" || { cat "$file" >&2; fail "a row of $file is not verified"; }
}

# The quick matrix: none and zstd (those built), channels 1 and 2.
methods=1
"$RAMFLOW" version | grep -q 'methods:.* zstd' && methods=2
rows=$((methods * 2))

"$RAMFLOW" bench --quick --out "$T/quick" >"$T/quick.md" 2>"$T/quick.err" ||
    { cat "$T/quick.err" >&2; fail "bench --quick failed"; }
check_table "$T/quick.md" "$rows"
expect_in "$T/quick.md" "### Calibration"
expect_in "$T/quick.md" "### Link: unlimited (loopback)"
cmp -s "$T/quick.md" "$T/quick/results.md" || fail "results.md differs from stdout"
jq -e --argjson rows "$rows" '
    (.rows | length) == $rows and all(.rows[]; .verified == true) and
    all(.rows[]; (.runs | length) == 1 and .runs[0].ok == true) and
    (.config.channels == [1, 2]) and (.config.memory_bytes == 67108864) and
    (.calibration.codecs | length) == ($rows / 2) and
    (.calibration.memcpy_MBps > 0) and (.machine.guest | length) > 0
    ' "$T/quick/results.json" >/dev/null ||
    fail "results.json does not parse or does not match the table"
if command -v gnuplot >/dev/null; then
    grep -q '<svg' "$T/quick/chart.svg" || fail "no SVG chart"
fi
echo "ok: bench --quick: $rows rows verified, JSON parses; $(grep -h 'guest:' "$T/quick.md")"

# --- --tls: plaintext and TLS rows, the TLS cost table ----------------------
TLS_ROW='NF == 15 && $2 == " none + TLS " && $3 == " 4 "'
COST_HEADER='| method | channels | plain time (s) | TLS time (s) | TLS/plain | plain send CPU% | TLS send CPU% | plain recv CPU% | TLS recv CPU% | verified | TLS mode |'
"$RAMFLOW" bench --tls --quick --methods none --memory-size 32M \
    --tcp-seconds 0 --out "$T/tls" >"$T/tls.md" 2>"$T/tls.err" ||
    { cat "$T/tls.err" >&2; fail "bench --tls --quick failed"; }
check_table "$T/tls.md" 1
awk -F'|' "$TLS_ROW"' && $11 == " yes " { n++ } END { exit n != 1 }' \
    "$T/tls.md" || { cat "$T/tls.md" >&2; fail "no verified 'none + TLS' row"; }
grep -qxF -- "$COST_HEADER" "$T/tls.md" || { cat "$T/tls.md" >&2; fail "no TLS cost table"; }
expect_in "$T/tls.md" "### TLS cost, link unlimited (loopback): plaintext and TLS start cold the same way"
awk -F'|' 'NF == 13 && $2 == " none " && $3 == " 4 " && $11 == " yes " &&
    $12 ~ /TLS/ { n++ } END { exit n != 1 }' "$T/tls.md" ||
    { cat "$T/tls.md" >&2; fail "the TLS cost table has no verified row with a TLS mode"; }
[ "$(stat -c %a "$T/tls/tls-psk/keys.psk")" = 600 ] || fail "keys.psk is not mode 0600"
grep -qE '^qemu:[0-9a-f]{64}$' "$T/tls/tls-psk/keys.psk" || fail "keys.psk is not qemu:HEX64"
jq -e '
    .config.tls == true and .config.channels == [4] and (.rows | length) == 2 and
    (.rows[0].tls == false and .rows[0].runs[0].security == "none") and
    (.rows[1].tls == true and (.rows[1].runs[0].security | test("^TLS 1.3 PSK, ")) and
     (.rows[1].runs[0].dest_security | test("^TLS 1.3 PSK, "))) and
    all(.rows[]; .verified == true) and (.tls_cost | length) == 1 and
    (.tls_cost[0].ratio > 0) and .tls_cost[0].verified == true and
    (.tls_cost[0].tls_mode | test("TLS$"))
    ' "$T/tls/results.json" >/dev/null ||
    fail "results.json does not have the TLS rows and cost"
echo "ok: bench --tls --quick: plaintext and TLS rows verified, cost table: $(awk -F'|' 'NF == 13 && $2 == " none " { print "TLS/plain" $6 "," $12 }' "$T/tls.md")"

# A TLS failure: the TLS row fails with the source's reason, like any row.
"$RAMFLOW" bench --tls --quick --methods none --memory-size 32M \
    --tcp-seconds 0 --tls-psk-username nobody --out "$T/tlsbad" \
    >"$T/tlsbad.md" 2>"$T/tlsbad.err"
rc=$?
[ "$rc" -eq 1 ] || { cat "$T/tlsbad.err" >&2; fail "bench with a failing TLS row exited $rc, expected 1"; }
check_table "$T/tlsbad.md" 1
awk -F'|' "$TLS_ROW"' && $4 == " FAILED " { n++ } END { exit n != 1 }' \
    "$T/tlsbad.md" || { cat "$T/tlsbad.md" >&2; fail "the TLS row is not FAILED"; }
expect_in "$T/tlsbad.md" "- unlimited none + TLS 4 ch run 1 failed: source: tls-psk:"
expect_in "$T/tlsbad.md" "no key for user 'nobody'"
echo "ok: a failing TLS row shows FAILED and the source's error"

# --- --dest-memory: warm and cold destination files -----------------------
DEST_ROW='NF == 15 && $3 == " 2 " && $11 == " yes "'
"$RAMFLOW" bench --quick --methods none --channels 2 --memory-size 16M \
    --dest-memory warm,cold --tcp-seconds 0 --out "$T/dest" \
    >"$T/dest.md" 2>"$T/dest.err" &
BENCH=$!
PIDS+=("$BENCH")
wait "$BENCH" || { cat "$T/dest.err" >&2; fail "bench --dest-memory warm,cold failed"; }
for mode in warm cold; do
    awk -F'|' "$DEST_ROW"' && $2 == " none, '"$mode"' " { n++ } END { exit n != 1 }' \
        "$T/dest.md" || { cat "$T/dest.md" >&2; fail "no verified 'none, $mode' row"; }
done
expect_in "$T/dest.md" "- file mode (--dest-memory): "
expect_in "$T/dest.err" "file mode: image /"
jq -e '
    .config.dest_memory == ["warm", "cold"] and (.rows | length) == 2 and
    ([.rows[].dest_memory] == ["warm", "cold"]) and
    all(.rows[]; .verified == true and .runs[0].verified == true)
    ' "$T/dest/results.json" >/dev/null ||
    fail "results.json does not have the warm and cold rows"
grep -q -- '--reuse-memory' "$T/dest/bench.log" || fail "the warm run did not use --reuse-memory"
[ ! -e "/dev/shm/ramflow-bench-$BENCH" ] || fail "/dev/shm/ramflow-bench-$BENCH was left behind"
echo "ok: bench --dest-memory warm,cold: both rows verified, scratch removed"

# --compare qemu without QEMU: a clear message, no results folder.
PATH=/nonexistent "$RAMFLOW" bench --quick --compare qemu --out "$T/noqemu" \
    >"$T/noqemu.md" 2>"$T/noqemu.err"
rc=$?
[ "$rc" -ne 0 ] || fail "bench --compare qemu without QEMU exited 0"
expect_in "$T/noqemu.err" "qemu-system-x86_64 is not installed; run \`make bench-deps\`"
[ ! -e "$T/noqemu" ] || fail "bench --compare qemu without QEMU made a results folder"
echo "ok: --compare qemu without QEMU: exit $rc, '$(head -n1 "$T/noqemu.err")'"

# A QEMU that fails to start: the row fails with QEMU's own message, the
# bench exits 1 and leaves nothing behind.
mkdir -p "$T/fakeqemu"
printf '%s\n' '#!/bin/sh' \
    '[ "$1" = --version ] && { echo "QEMU emulator version 99.0 (fake)"; exit 0; }' \
    'echo "qemu-system-x86_64: fake failure" >&2' 'exit 1' \
    >"$T/fakeqemu/qemu-system-x86_64"
chmod +x "$T/fakeqemu/qemu-system-x86_64"
PATH="$T/fakeqemu:$PATH" "$RAMFLOW" bench --quick --methods none --channels 1 \
    --memory-size 8M --dest-memory cold --compare qemu --tcp-seconds 0 \
    --out "$T/fakeq" >"$T/fakeq.md" 2>"$T/fakeq.err" &
BENCH=$!
PIDS+=("$BENCH")
wait "$BENCH"
rc=$?
[ "$rc" -eq 1 ] || { cat "$T/fakeq.err" >&2; fail "bench with a failing QEMU exited $rc, expected 1"; }
expect_in "$T/fakeq.md" "QEMU run 1 failed: QEMU destination exited (status 1): qemu-system-x86_64: fake failure"
# the accelerator named in the header follows /dev/kvm, as bench_qemu.c does
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then accel=kvm; else accel=tcg; fi
expect_in "$T/fakeq.md" "### ramflow vs QEMU 99.0 (fake) ($accel)"
[ ! -e "/dev/shm/ramflow-bench-$BENCH" ] || fail "/dev/shm/ramflow-bench-$BENCH was left behind"
echo "ok: a QEMU that fails to start: exit 1, its message under Failures"

if command -v qemu-system-x86_64 >/dev/null; then
    "$RAMFLOW" bench --quick --methods none --channels 2 --memory-size 16M \
        --dest-memory cold --compare qemu --tcp-seconds 0 --out "$T/qemu" \
        >"$T/qemu.md" 2>"$T/qemu.err" ||
        { cat "$T/qemu.err" >&2; fail "bench --compare qemu failed"; }
    expect_in "$T/qemu.md" "### ramflow vs QEMU "
    awk -F'|' 'NF == 12 && $2 == " none " && $3 == " 2 " && $4 == " cold " &&
        $11 == " yes " { n++ } END { exit n != 1 }' "$T/qemu.md" ||
        { cat "$T/qemu.md" >&2; fail "no verified row in the QEMU comparison"; }
    jq -e '.rows[0].qemu.verified == true and .rows[0].qemu.ratio > 0' \
        "$T/qemu/results.json" >/dev/null || fail "results.json has no QEMU figures"
    if command -v gnuplot >/dev/null; then
        [ -s "$T/qemu/chart-qemu.svg" ] || fail "--compare qemu drew no chart-qemu.svg"
        grep -qE '^"none 2ch cold" [0-9.]+ [0-9.]+ [0-9.]+ [0-9.]+$' \
            "$T/qemu/chart-qemu.dat" || fail "chart-qemu.dat has no row 'none 2ch cold'"
    fi
    for p in $(sed -n 's/^+ \[pid \([0-9]*\)\].*/\1/p' "$T/qemu/bench.log"); do
        kill -0 "$p" 2>/dev/null && fail "process $p was left after --compare qemu"
    done
    echo "ok: --compare qemu: $(grep -m1 '^### ramflow vs QEMU' "$T/qemu.md")"
else
    echo "ok: skipped the QEMU comparison run (qemu-system-x86_64 is not installed)"
fi

# --- emulated link and interruption (root and network namespaces) --------
probe=rfbench-probe-$$
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null ||
   ! ip netns add "$probe" 2>/dev/null; then
    echo "ok: skipped the emulated-link checks (needs root and network namespaces)"
    exit 0
fi
ip netns del "$probe"

# Namespaces of other bench runs on this machine are not ours to judge.
ns_before=$(ip netns list | awk '/^rfbench-/ {print $1}' | sort)
"$RAMFLOW" bench --quick --link 1gbit --methods none --channels 1 \
    --out "$T/link" >"$T/link.md" 2>"$T/link.err" ||
    { cat "$T/link.err" >&2; fail "bench over an emulated link failed"; }
check_table "$T/link.md" 1
expect_in "$T/link.md" "### Link: 1gbit (emulated"
expect_in "$T/link/bench.log" "tbf rate 1000000000bit"
ns_after=$(ip netns list | awk '/^rfbench-/ {print $1}' | sort)
new_ns=$(comm -13 <(printf '%s\n' "$ns_before") <(printf '%s\n' "$ns_after"))
[ -z "$new_ns" ] || fail "a namespace was left behind: $new_ns"
echo "ok: emulated 1gbit link, namespace removed"

# Interrupted while migrating over a slow link: exit 130, nothing left.
"$RAMFLOW" bench --quick --memory-size 512M --link 50mbit --methods none \
    --channels 1 --tcp-seconds 0.2 --out "$T/int" >"$T/int.md" 2>"$T/int.err" &
BENCH=$!
PIDS+=("$BENCH")
for _ in $(seq 200); do
    ls "$T"/int/raw/*-src.err >/dev/null 2>&1 && break
    kill -0 "$BENCH" 2>/dev/null || break
    sleep 0.1
done
ip netns list | grep -q "^rfbench-$BENCH" || fail "no namespace while running"
sleep 1
kill -INT "$BENCH"
wait "$BENCH"
rc=$?
[ "$rc" -eq 130 ] || { cat "$T/int.err" >&2; fail "interrupted bench exited $rc, expected 130"; }
ip netns list | grep -q "^rfbench-$BENCH" && fail "namespace left after SIGINT"
ip link show "rfb${BENCH}a" >/dev/null 2>&1 && fail "veth left after SIGINT"
for p in $(sed -n 's/^+ \[pid \([0-9]*\)\].*/\1/p' "$T/int/bench.log"); do
    kill -0 "$p" 2>/dev/null && fail "process $p was left after SIGINT"
done
grep -q '^+ \[pid [0-9]*\].* guest ' "$T/int/bench.log" || fail "no source process was logged"
expect_in "$T/int.err" "interrupted"
echo "ok: SIGINT during a run: exit 130, namespace, veth and processes gone"
