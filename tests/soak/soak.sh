#!/usr/bin/env bash
# make soak: runs the soak program (tests/soak/soak.c) and judges it.
#   tests/soak/soak.sh PATH/TO/soak [soak options]
# Defaults: 50 cycles of a 64 MiB, 2-vCPU thread guest dirtying 5000
# pages/s, 2 channels, zstd (SOAK_ARGS adds or overrides options).  The
# program itself fails on a failed migration, a broken pattern, a
# descriptor count that differs at the end or a heap that grows; built
# with ASan, LeakSanitizer fails either node at its exit on a leak.  The
# log is kept beside the program (soak.log).
set -u
bin=$1
shift
log=$(dirname "$bin")/soak.log
# A small quarantine: ASan otherwise keeps up to 256 MiB of freed memory
# (zstd contexts, each cycle) in RSS, which would hide a real growth.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
case $ASAN_OPTIONS in
  *detect_leaks=1*) ;;
  *) ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=1" ;;
esac
case $ASAN_OPTIONS in
  *quarantine_size_mb*) ;;
  *) ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=1:thread_local_quarantine_size_kb=64" ;;
esac
start=$(date +%s)
# shellcheck disable=SC2086
"$bin" --cycles 50 --memory-size 64 ${SOAK_ARGS:-} "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
took=$(( $(date +%s) - start ))
if grep -q "LeakSanitizer\|AddressSanitizer\|runtime error" "$log"; then
  echo "soak: FAILED: sanitizer report above (log $log)"
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  echo "soak: FAILED (exit $rc) after $took s (log $log)"
  exit 1
fi
echo "soak: passed in $took s: $(grep -c '^cycle ' "$log") cycles, no leak (LeakSanitizer), descriptors, heap and RSS steady (log $log)"
