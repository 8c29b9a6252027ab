#!/usr/bin/env bash
# The bench grid of issue 13 (ramflow bench --data/--guest/--max-cpu and
# the auto comparison): shapes only, never a timing.
#  1. Option errors: an unknown --data item, --fill with --data, --guest
#     with --idle, a bad --max-cpu, auto with --compare qemu: exit 2 and
#     a message; --data silesia without the corpus: exit 1 naming where it
#     looked and SILESIA_DIR.
#  2. A grid of two data kinds (zero, random) x idle, methods none and
#     auto, loopback, 16 MiB: one folder per section, the grid's
#     results.md and results.json; every none row verified; the zero
#     image has > 80% zero pages in the calibration sample, the random one
#     under 5% (only the guest's reserved pages); the comparison table has one row per cell with none as the best
#     fixed method; auto either works (exit 0) or, on an engine without
#     it, fails as an unknown method (exit 1) - the table is there either
#     way; the images folder in /dev/shm is gone afterwards.
#  3. --max-cpu 1.5: passed to both sides (bench.log), the CPU budget
#     table and cpu_budget in results.json; on an engine without the
#     option the runs fail naming it.
#  4. One section (--data zero --guest live): the live guest writes the
#     grid's 1000 pages/s, not flat out (it did before 2026-12-06).
#  5. --data silesia where the corpus is present: one verified row.
. "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || fail "jq is not installed (Debian package jq)"

SMALL=(--channels 1 --memory-size 16M --tcp-seconds 0 --calib-mb 4
       --idle-wait 0)

# --- 1. option errors -------------------------------------------------------
usage_error() { # EXPECTED-TEXT ARGS...
    local text=$1 rc; shift
    "$RAMFLOW" bench "$@" --out "$T/usage" >"$T/usage.out" 2>"$T/usage.err"
    rc=$?
    [ "$rc" -eq 2 ] || { cat "$T/usage.err" >&2; fail "bench $* exited $rc, expected 2"; }
    expect_in "$T/usage.err" "$text"
}
usage_error "'nosuch' is none of generated, random, zero, silesia" --data nosuch
usage_error "--fill and --data" --fill /dev/null --data zero
usage_error "--guest and --idle/--live" --guest idle,live --live
usage_error "--guest: invalid item 'busy'" --guest busy
usage_error "--max-cpu: invalid value '0'" --max-cpu 0
usage_error "--max-cpu: invalid value 'half'" --max-cpu half
usage_error "--methods auto does not go with --compare qemu" \
    --methods none,auto --compare qemu
usage_error "method 'none' listed twice" --methods none,none
echo "ok: option errors exit 2 with their message"

mkdir -p "$T/nocorpus"
SILESIA_DIR=$T/nocorpus "$RAMFLOW" bench --data silesia --methods none \
    "${SMALL[@]}" --out "$T/nosil" >"$T/nosil.md" 2>"$T/nosil.err"
rc=$?
[ "$rc" -eq 1 ] || { cat "$T/nosil.err" >&2; fail "--data silesia without a corpus exited $rc, expected 1"; }
expect_in "$T/nosil.err" "--data silesia: no Silesia corpus (*.xz members) in $T/nocorpus; set SILESIA_DIR"
echo "ok: --data silesia without the corpus: exit 1, '$(grep -m1 'Silesia' "$T/nosil.err")'"

# --- 2. a two-section grid with auto ----------------------------------------
"$RAMFLOW" bench --methods none,auto --data zero,random --guest idle \
    --short-runs 2 "${SMALL[@]}" --out "$T/grid" >"$T/grid.md" 2>"$T/grid.err" &
BENCH=$!
PIDS+=("$BENCH")
wait "$BENCH"
rc=$?
if [ "$rc" -eq 1 ]; then
    # An engine without auto: its rows fail as an unknown method, nothing
    # else does.
    expect_in "$T/grid.err" "unknown method 'auto'"
    n=$(grep -c 'run [12]: FAILED' "$T/grid.err")
    [ "$n" -eq 4 ] || { cat "$T/grid.err" >&2; fail "$n failed runs, expected 2 (auto's)"; }
    auto_state="fails as an unknown method (engine without auto)"
elif [ "$rc" -eq 0 ]; then
    auto_state="runs"
else
    cat "$T/grid.err" >&2
    fail "the grid exited $rc"
fi
for d in 01-zero-idle 02-random-idle; do
    [ -s "$T/grid/$d/results.md" ] && [ -s "$T/grid/$d/results.json" ] ||
        fail "no results in section folder $d"
done
expect_in "$T/grid.md" "# Section 1/2: zero, idle (folder 01-zero-idle)"
expect_in "$T/grid.md" "# Section 2/2: random, idle (folder 02-random-idle)"
expect_in "$T/grid.md" "### auto against the best fixed method of each cell"
cmp -s "$T/grid.md" "$T/grid/results.md" || fail "results.md differs from stdout"
# One comparison row per cell: link | data | guest | channels | best ...
for d in zero random; do
    awk -F'|' -v d=" $d " 'NF == 13 && $2 == " unlimited " && $3 == d &&
        $4 == " idle " && $5 == " 1 " && $6 == " none " { n++ }
        END { exit n != 1 }' "$T/grid.md" ||
        { cat "$T/grid.md" >&2; fail "no comparison row for $d with none as the best fixed method"; }
done
jq -e '
    (.sections | length) == 2 and
    ([.sections[].data] == ["zero", "random"]) and
    all(.sections[]; .guest == "idle") and
    all(.sections[].results.rows[]; .method != "none" or .verified == true) and
    (.sections[0].results.calibration.zero_fraction > 0.8) and
    (.sections[1].results.calibration.zero_fraction < 0.05) and
    (.auto_comparison.cells | length) == 2 and
    all(.auto_comparison.cells[]; .best_fixed == "none" and .best_time_s > 0) and
    (.auto_comparison.cells_counted + .auto_comparison.cells_left_out) == 2 and
    all(.auto_comparison.cells[];
        (.ratio == null and .ratio_interval90 == null and .verdict_sure == "-") or
        (.ratio_interval90[0] > 0 and .ratio_interval90[0] <= .ratio_interval90[1] and
         (.verdict_sure == "clear" or .verdict_sure == "noise"))) and
    all(.sections[].results.config; .repeat == 1 and .short_runs == 2) and
    all(.sections[].results.rows[]; (.runs | length) == 2)
    ' "$T/grid/results.json" >/dev/null ||
    fail "the grid's results.json does not have the sections and the comparison"
[ ! -e "/dev/shm/ramflow-benchdata-$BENCH" ] ||
    fail "/dev/shm/ramflow-benchdata-$BENCH was left behind"
# A 16 MiB migration is short: the rows got --short-runs 2 runs each, run 1
# of both rows before run 2 of either.
expect_in "$T/grid.err" "link unlimited: its fastest row takes under 1 s: 2 runs per row in all"
order=$(grep -o '\[section 1/2 zero, idle\] unlimited [a-z]* 1 ch run [0-9]' "$T/grid.err" |
        awk '{ printf "%s-%s ", $6, $10 }')
[ "$order" = "none-1 auto-1 none-2 auto-2 " ] ||
    fail "section 1's runs in the order '$order', expected interleaved"
echo "ok: grid zero,random x idle: 2 sections, comparison rows, 2 interleaved runs per short row, auto $auto_state"

# --- 3. --max-cpu -----------------------------------------------------------
"$RAMFLOW" bench --methods none --max-cpu 1.5 "${SMALL[@]}" \
    --out "$T/cpu" >"$T/cpu.md" 2>"$T/cpu.err"
rc=$?
expect_in "$T/cpu.md" "### CPU budget: --max-cpu 1.5 on both sides"
grep -q '^+ \[pid [0-9]*\].* incoming .*--max-cpu 1.5' "$T/cpu/bench.log" ||
    fail "the destination was not given --max-cpu"
jq -e '.cpu_budget.max_cpu == 1.5 and (.cpu_budget.rows | length) == 1 and
       .config.max_cpu == 1.5' "$T/cpu/results.json" >/dev/null ||
    fail "results.json has no cpu_budget"
if [ "$rc" -eq 0 ]; then
    grep -q '^+ \[pid [0-9]*\].* guest .*--max-cpu 1.5' "$T/cpu/bench.log" ||
        fail "the source was not given --max-cpu"
    jq -e '.cpu_budget.rows[0].verdict == "held" or
           .cpu_budget.rows[0].verdict == "EXCEEDED"' \
        "$T/cpu/results.json" >/dev/null || fail "no budget verdict"
    expect_in "$T/cpu.err" ", budget 1.5: "
    echo "ok: --max-cpu 1.5: passed on, $(grep -m1 -o 'source [0-9.]* cores, budget 1.5: [A-Za-z]*' "$T/cpu.err")"
else
    # The destination starts first and refuses it with its own message.
    expect_in "$T/cpu.md" "unrecognized option '--max-cpu'"
    echo "ok: --max-cpu 1.5: passed to the destination, which refuses it on this engine (exit $rc)"
fi

# --- 4. one live section: the grid's dirty rate ----------------------------
"$RAMFLOW" bench --methods none --data zero --guest live "${SMALL[@]}" \
    --out "$T/one" >"$T/one.md" 2>"$T/one.err" ||
    { cat "$T/one.err" >&2; fail "bench --data zero --guest live failed"; }
jq -e '.config.live == true and .config.dirty_rate == 1000 and
       .rows[0].verified == true' "$T/one/results.json" >/dev/null ||
    fail "one live section: not dirty rate 1000 or not verified ($(jq -c '.config | {live, dirty_rate}' "$T/one/results.json"))"
echo "ok: --data zero --guest live: the guest writes 1000 pages/s"

# --- 5. --data silesia -------------------------------------------------------
# The bench's own search: $SILESIA_DIR, else ../shared/corpus/silesia
# beside the current folder or the source tree.
"$RAMFLOW" bench --data silesia --methods none "${SMALL[@]}" \
    --out "$T/sil" >"$T/sil.md" 2>"$T/sil.err"
rc=$?
if [ "$rc" -ne 0 ] && grep -qF -- "--data silesia: no Silesia corpus" "$T/sil.err"; then
    echo "ok: skipped --data silesia (no corpus here: $(grep -m1 -o 'in .*; set' "$T/sil.err"))"
    exit 0
fi
[ "$rc" -eq 0 ] || { cat "$T/sil.err" >&2; fail "bench --data silesia failed"; }
jq -e '.config.data == "silesia" and .rows[0].verified == true and
       (.config.fill | test("ramflow-silesia"))' "$T/sil/results.json" \
    >/dev/null || fail "the silesia row is not verified"
expect_in "$T/sil.md" "filled with /dev/shm/ramflow-silesia"
echo "ok: --data silesia: row verified"
