#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzzing build for SECONDS each:
#   tests/fuzz/run.sh BUILD SECONDS [TARGET...]
# (make check-fuzz: 12 s each; make fuzz: an hour each).  Each target
# starts from its committed seeds (tests/fuzz/corpus/TARGET), seeds freshly
# written by gen_seeds (BUILD/fuzz-seeds/TARGET: they follow the current
# formats) and what earlier runs found (BUILD/fuzz-corpus/TARGET, where new
# inputs go: the repository is never written).  A crash, leak, timeout
# (an input running longer than FUZZ_TIMEOUT s, default 30: a hang) or
# out-of-memory fails the run; the input is kept in BUILD/fuzz-artifacts/.
# Prints the exec count of each target at the end.
set -u
build=$1 seconds=$2
shift 2
src=$(cd "$(dirname "$0")" && pwd)
timeout_s=${FUZZ_TIMEOUT:-30}
bin=$build/tests/fuzz
mkdir -p "$build/fuzz-corpus" "$build/fuzz-artifacts"
rm -rf "$build/fuzz-seeds"
"$bin/gen_seeds" "$build/fuzz-seeds" || { echo "FAIL: gen_seeds"; exit 1; }

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in "$bin"/fuzz_*; do
    [ -f "$f" ] && [ -x "$f" ] && targets+=("$(basename "$f")")
  done
fi

summary=()
rc=0
for t in "${targets[@]}"; do
  work=$build/fuzz-corpus/$t
  mkdir -p "$work"
  dirs=("$work")
  for d in "$src/corpus/$t" "$build/fuzz-seeds/$t"; do
    [ -d "$d" ] && dirs+=("$d")
  done
  extra=()
  [ -f "$src/$t.dict" ] && extra+=("-dict=$src/$t.dict")
  log=$bin/$t.log
  start=$(date +%s)
  "$bin/$t" "${dirs[@]}" "${extra[@]}" -max_total_time="$seconds" \
      -timeout="$timeout_s" -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$build/fuzz-artifacts/$t-" >"$log" 2>&1
  status=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" |
         grep -o '[0-9]*$')
  [ -n "$runs" ] || runs=$(grep -o '^#[0-9]*' "$log" | tail -n 1 | tr -d '#')
  took=$(( $(date +%s) - start ))
  corpus=$(find "$work" -type f | wc -l)
  if [ $status -ne 0 ]; then
    grep -v '^ *#[0-9]* 0x' "$log" | tail -n 40
    echo "FAIL: $t (exit $status; log $log; input kept in $build/fuzz-artifacts/)"
    summary+=("$(printf '%-16s %10s execs in %5s s  FAILED' "$t" "${runs:-?}" "$took")")
    rc=1
    break
  fi
  echo "fuzz $t: ${runs:-?} execs in $took s, no crash, leak or hang"
  summary+=("$(printf '%-16s %10s execs in %5s s  %5s inputs in its corpus' "$t" "${runs:-?}" "$took" "$corpus")")
done
echo "--- fuzz summary (${seconds} s per target)"
printf '%s\n' "${summary[@]}"
exit $rc
