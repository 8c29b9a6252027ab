#!/usr/bin/env bash
# Downtime benchmark of the live test VM (issue: live migration):
# a 1 GiB guest writing 10,000 pages/s, migrated over loopback with 4 zstd
# channels, N times (default 10).  Prints each run and the median and worst
# downtime and total time, and how many runs stayed under downtime-limit.
#
#   bench/downtime.sh [RUNS] [extra ramflow guest options...]
set -u
cd "$(dirname "$0")/.."
RAMFLOW=${RAMFLOW:-build/src/control/ramflow}
runs=${1:-10}; shift || true
limit=300
tmp=$(mktemp -d /dev/shm/ramflow-downtime.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
[ -x "$RAMFLOW" ] || { echo "build first (make build)"; exit 1; }
printf '%-4s %-12s %-14s %-14s %-7s %s\n' run downtime_ms expected_ms total_s rounds guest
for i in $(seq "$runs"); do
    rm -f "$tmp/uri"
    "$RAMFLOW" incoming --guest --listen tcp:127.0.0.1:0 --uri-file "$tmp/uri" \
        --json --quiet >"$tmp/dst.json" 2>"$tmp/dst.err" &
    dst=$!
    while [ ! -s "$tmp/uri" ]; do sleep 0.05; done
    "$RAMFLOW" guest --memory-size 1G --dirty-rate 10000 \
        --multifd-compression zstd --multifd-channels 4 \
        --downtime-limit "$limit" --json --quiet "$@" "$(cat "$tmp/uri")" \
        >"$tmp/src.json" 2>"$tmp/src.err" || { cat "$tmp/src.err"; exit 1; }
    wait "$dst" || { cat "$tmp/dst.err"; exit 1; }
    grep -q "pattern check passed" "$tmp/dst.err" || { cat "$tmp/dst.err"; exit 1; }
    d=$(grep -o '"downtime_ms": [0-9.]*' "$tmp/src.json" | awk '{print $2}')
    e=$(grep -o '"expected_downtime_ms": [0-9.]*' "$tmp/src.json" | awk '{print $2}')
    t=$(grep -o '"total_time_s": [0-9.]*' "$tmp/src.json" | awk '{print $2}')
    r=$(grep -o '"rounds": [0-9]*' "$tmp/src.json" | awk '{print $2}')
    g=$(grep -o 'source: .*' "$tmp/src.err" | head -1)
    printf '%-4s %-12.1f %-14.1f %-14.3f %-7s %s\n' "$i" "$d" "$e" "$t" "$r" "$g"
    echo "$d $t" >>"$tmp/all"
done
# median and worst of one column of $tmp/all (1 = downtime, 2 = total)
stat() { awk -v c="$1" '{print $c}' "$tmp/all" | sort -g | awk '
    { v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "median %.3f, worst %.3f", m, v[NR] }'; }
under=$(awk -v l="$limit" '$1 < l' "$tmp/all" | wc -l)
echo "downtime (ms): $(stat 1); $under of $runs runs under $limit ms"
echo "total time (s): $(stat 2)"
