#!/usr/bin/env bash
# bench/run.sh - ramflow's migration benchmark (issue 2, "Speed").
#
# Migrates an image filled with the Silesia corpus, repeated, over loopback
# for each method and channel count, and compares every run with its bound,
# measured in the same run on the same data:
#   none        wire throughput / iperf3 loopback with as many streams
#   compressed  RAM bytes/s / CPU bound, where the CPU bound for a machine
#               whose two cores run both source and destination is
#               2 / (1/compress_Bps + 1/decompress_Bps), single-thread
#               speeds from `ramflow codec --bench` at the same level.
# See bench/README.md.  Prints progress on stderr and the table on stdout;
# writes the table, the calibration and every raw JSON report to --out.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib/util.sh
. "$HERE/lib/util.sh"
# shellcheck source=bench/lib/corpus.sh
. "$HERE/lib/corpus.sh"

SIZE=2G
METHODS="none zlib zstd qatzip"
CHANNELS="1 4 8"
OUT=""
LEVEL=1
REPEAT=3
SETTLE=3
IPERF_SECONDS=5
IDLE_WAIT=120
IDLE_PCT=15
TIMEOUT=600
SAMPLE_MB=""
CHECK=1
TARGET=85
RAMFLOW=${RAMFLOW:-$REPO/build/src/control/ramflow}
SILESIA=${SILESIA_DIR:-$REPO/../shared/corpus/silesia}
SHM=/dev/shm/ramflow-bench

usage() {
    cat <<EOF
usage: bench/run.sh [options]
  --size SIZE         image size, K/M/G suffixes (default $SIZE)
  --methods "M ..."   methods (default "$METHODS")
  --channels "N ..."  multifd-channels values (default "$CHANNELS")
  --level L           compression level of every compressed method, for
                      the migrations and the calibration (default $LEVEL)
  --repeat R          migrations per row; the row shows the fastest (other
                      work on the machine only slows runs down), all runs
                      are kept (default $REPEAT)
  --out DIR           results folder (default bench/results/DATE-TIME)
  --sample-mb N       codec calibration sample: the first N MiB of the
                      image (default: one whole period of the corpus)
  --settle S          seconds to wait after removing the destination file,
                      so that its memory really is cold (default $SETTLE)
  --iperf-seconds S   length of each iperf3 run (default $IPERF_SECONDS)
  --idle-wait S       before each measurement, wait up to S s for the machine
                      to be idle (under $IDLE_PCT% CPU over 1 s); 0 = do not
                      wait (default $IDLE_WAIT)
  --timeout S         limit per process (default $TIMEOUT)
  --no-check          skip comparing destination and source after each run
  --ramflow PATH      binary (default \$RAMFLOW or build/src/control/ramflow)
Environment: SILESIA_DIR (default ../shared/corpus/silesia), RAMFLOW.
EOF
}

while [ $# -gt 0 ]; do
    opt=$1
    val=""
    case $opt in
        --*=*) val=${opt#*=}; opt=${opt%%=*} ;;
        --no-check|-h|--help) ;;
        --*) [ $# -ge 2 ] || rf_die "$opt needs a value"; val=$2; shift ;;
    esac
    shift
    case $opt in
        --size) SIZE=$val ;;
        --methods) METHODS=$val ;;
        --channels) CHANNELS=$val ;;
        --level) LEVEL=$val ;;
        --repeat) REPEAT=$val ;;
        --out) OUT=$val ;;
        --sample-mb) SAMPLE_MB=$val ;;
        --settle) SETTLE=$val ;;
        --iperf-seconds) IPERF_SECONDS=$val ;;
        --idle-wait) IDLE_WAIT=$val ;;
        --timeout) TIMEOUT=$val ;;
        --no-check) CHECK=0 ;;
        --ramflow) RAMFLOW=$val ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done

SIZE_BYTES=$(rf_parse_size "$SIZE") || rf_die "--size: bad value '$SIZE'"
for v in REPEAT SETTLE IPERF_SECONDS TIMEOUT LEVEL IDLE_WAIT; do
    opt=${v,,}
    [[ ${!v} =~ ^[0-9]+$ ]] || rf_die "--${opt//_/-}: not a number: '${!v}'"
done
[ "$REPEAT" -ge 1 ] || rf_die "--repeat: at least 1"
for n in $CHANNELS; do
    if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 255 ]; then
        rf_die "--channels: '$n' is not in 1..255"
    fi
done
for t in jq iperf3 xz sha256sum ss awk timeout cmp; do
    command -v "$t" >/dev/null || rf_die "'$t' is not installed"
done
[ -x "$RAMFLOW" ] || rf_die "no ramflow binary at $RAMFLOW (run make build)"
RAMFLOW=$(cd "$(dirname "$RAMFLOW")" && pwd)/$(basename "$RAMFLOW")

level_opt() {
    case $1 in
        none) ;;
        *) echo "--multifd-$1-level $LEVEL" ;;
    esac
}

# Waits (--idle-wait) for other work on the machine to stop before a
# measurement; says so when it gives up.
idle_gate() {
    [ "$IDLE_WAIT" -gt 0 ] || return 0
    if ! rf_wait_idle "$IDLE_WAIT" "$IDLE_PCT"; then
        rf_log "warning: machine still busy after $IDLE_WAIT s; measuring" \
               "$1 anyway"
    fi
}

# What the destination's memory is before it starts: its file was
# removed SETTLE seconds earlier; after about 2 s the host has taken the
# freed memory back (cold), before that it is still backed (reused).
if [ "$SETTLE" -ge 2 ]; then DEST_START=cold; else DEST_START=reused; fi

[ -n "$OUT" ] || OUT=$REPO/bench/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT/raw" || rf_die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)

SRC_IMG=$SHM/src.img
DST_IMG=$SHM/dst.img
URI_FILE=$SHM/dst.uri
rf_track_file "$SRC_IMG"
rf_track_file "$DST_IMG"
rf_track_file "$URI_FILE"
rf_track_file "$URI_FILE.tmp"
trap rf_cleanup EXIT
trap 'rf_log "interrupted, cleaning up"; exit 130' INT TERM HUP

# --- 1. corpus and image ----------------------------------------------
mkdir -p "$SHM"
rf_corpus_prepare "$SILESIA" "$SHM/silesia"
rf_log "corpus: ${#RF_CORPUS_FILES[@]} files, $RF_CORPUS_BYTES bytes," \
       "$RF_CORPUS_VERIFIED"
rm -f "$SRC_IMG" "$DST_IMG"
need=$((2 * SIZE_BYTES + (256 << 20)))
avail=$(df --output=avail -B1 /dev/shm | tail -1)
[ "$avail" -ge "$need" ] ||
    rf_die "/dev/shm has $avail bytes free, needs $need (two images)"
fills=()
for f in "${RF_CORPUS_FILES[@]}"; do
    fills+=(--fill "$f")
done
rf_log "building the $SIZE source image $SRC_IMG"
"$RAMFLOW" gen-image --size "$SIZE" "${fills[@]}" "$SRC_IMG" ||
    rf_die "gen-image failed"

# --- machine description ----------------------------------------------
{
    echo "date: $(date -u +'%Y-%m-%d %H:%M UTC')"
    echo "cpu: $(lscpu | awk -F: '/^Model name/ {gsub(/^ +/, "", $2);
        print $2}'), $(nproc) cores"
    echo "hypervisor: $(lscpu | awk -F: '/^Hypervisor vendor/ {
        gsub(/^ +/, "", $2); print $2}')"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' \
        /proc/meminfo)"
    echo "kernel: $(uname -r)"
    echo "os: $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "ramflow: $("$RAMFLOW" version 2>/dev/null | head -1)," \
         "git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(
         git -C "$REPO" diff --quiet HEAD 2>/dev/null ||
         echo ' + local changes')"
    echo "image: $SIZE ($SIZE_BYTES bytes) of ${#RF_CORPUS_FILES[@]}" \
         "Silesia members ($RF_CORPUS_BYTES bytes, $RF_CORPUS_VERIFIED)" \
         "repeated"
    echo "iperf3: $(iperf3 --version | head -1)"
    echo "load average at start: $(cut -d" " -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"

load1=$(cut -d" " -f1 /proc/loadavg)
if awk -v l="$load1" 'BEGIN {exit !(l > 1.0)}'; then
    rf_log "warning: load average $load1: other processes share the cores;" \
           "expect low figures (see the machine CPU% column)"
fi

# --- 2. calibration -----------------------------------------------------
if [ -z "$SAMPLE_MB" ]; then
    SAMPLE_MB=$(((RF_CORPUS_BYTES + (1 << 20) - 1) >> 20))
fi
[ "$SAMPLE_MB" -le $((SIZE_BYTES >> 20)) ] || SAMPLE_MB=$((SIZE_BYTES >> 20))
declare -A BOUND IPERF
# Every calibration runs several times and keeps its best figure, as the
# migrations keep their fastest run: other work on the machine only ever
# makes a measurement worse, for bounds and runs alike.
printf 'method\tlevel\tratio\tcomp_MBps\tdecomp_MBps\tbound_MBps\n' \
    >"$OUT/calibration.tsv"
declare -A CAL_BEST
# calibrate_codec METHOD FIRST: --repeat runs of `codec --bench`, numbered
# from FIRST; keeps the best "bound ratio compress decompress" in
# CAL_BEST[METHOD].  Called before and after the method's migrations, so
# that the bound is measured as close as possible to them.
calibrate_codec() {
    local m=$1 first=$2 r log pid rc line b0 r0 c0 d0
    for ((r = first; r < first + REPEAT; r++)); do
        idle_gate "codec $m"
        rf_log "calibrating $m level $LEVEL on the first $SAMPLE_MB MiB" \
               "(run $r)"
        log=$OUT/codec-$m-$r
        "$RAMFLOW" codec --bench "$SRC_IMG" -m "$m" -l "$LEVEL" \
            --max-mb "$SAMPLE_MB" >"$log.txt" 2>"$log.err" &
        pid=$!
        rf_track_pid "$pid"
        wait "$pid"
        rc=$?
        rf_untrack_pid "$pid"
        # "bound ratio compress decompress" of this run
        line=$(awk -v m="$m" '$1 == m && $5 > 0 {
                   printf "%.1f %s %s %s\n", 2 / (1 / $4 + 1 / $5), $3,
                          $4, $5}' "$log.txt")
        if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
            rf_log "codec --bench $m failed: $(tail -1 "$log.err")"
            continue
        fi
        read -r b0 r0 c0 d0 <<<"$line"
        rf_log "$m: compress $c0 MB/s, decompress $d0 MB/s, ratio $r0" \
               "-> bound $b0 MB/s"
        CAL_BEST[$m]=$(printf '%s\n%s\n' "${CAL_BEST[$m]:-}" "$line" |
                       sort -gr | head -1)
    done
}

# Sets BOUND[METHOD] from the best calibration and records it.
finish_bound() {
    local m=$1 bound ratio c d
    [ -n "${CAL_BEST[$m]:-}" ] || return 0
    read -r bound ratio c d <<<"${CAL_BEST[$m]}"
    BOUND[$m]=$bound
    rf_log "$m: CPU bound $bound MB/s (best of $((2 * REPEAT)) runs)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$m" "$LEVEL" "$ratio" "$c" "$d" \
        "$bound" >>"$OUT/calibration.tsv"
}

if [[ " $METHODS " == *" none "* ]]; then
    printf 'streams\tMbit_s\n' >"$OUT/iperf3.tsv"
    for n in $(tr ' ' '\n' <<<"$CHANNELS" | sort -nu); do
        for ((r = 1; r <= REPEAT; r++)); do
            port=$(rf_free_port) || rf_die "no free port for iperf3"
            log=$OUT/iperf3-$n-$r
            iperf3 -s -1 -p "$port" >"$log-server.log" 2>&1 &
            spid=$!
            rf_track_pid "$spid"
            rf_wait_listen "$port" 10 "$spid" ||
                rf_die "iperf3 -s did not start"
            idle_gate "iperf3 -P $n"
            iperf3 -c 127.0.0.1 -p "$port" -P "$n" -t "$IPERF_SECONDS" -J \
                >"$log.json" 2>"$log.err" &
            cpid=$!
            rf_track_pid "$cpid"
            wait "$cpid"
            rf_untrack_pid "$cpid"
            wait "$spid"
            rf_untrack_pid "$spid"
            v=$(jq -r '.end.sum_received.bits_per_second / 1e6 |
                . * 10 | round / 10' "$log.json" 2>/dev/null)
            [[ $v =~ ^[0-9.]+$ ]] || rf_die "iperf3 -P $n failed"
            rf_log "iperf3 loopback, $n stream(s), $IPERF_SECONDS s:" \
                   "$v Mbit/s ($r of $REPEAT)"
            if [ -z "${IPERF[$n]:-}" ] ||
               awk -v a="$v" -v b="${IPERF[$n]}" 'BEGIN {exit !(a > b)}'
            then
                IPERF[$n]=$v
            fi
        done
        printf '%s\t%s\n' "$n" "${IPERF[$n]}" >>"$OUT/iperf3.tsv"
    done
fi

# --- 3. migrations ------------------------------------------------------
# Runs one migration into a fresh destination; the reports go to
# $OUT/raw/NAME-{src,dst}.json.  @return 0 when both sides completed and
# (unless --no-check) the destination equals the source.
migrate_once() {
    local m=$1 n=$2 name=$3 dpid spid src_rc dst_rc i
    local src_json=$OUT/raw/$name-src.json dst_json=$OUT/raw/$name-dst.json
    rm -f "$DST_IMG" "$URI_FILE" "$URI_FILE.tmp"
    sleep "$SETTLE"
    idle_gate "$name"
    timeout "$TIMEOUT" "$RAMFLOW" incoming --listen tcp:127.0.0.1:0 \
        --uri-file "$URI_FILE" --memory "$DST_IMG" --json \
        >"$dst_json" 2>"$OUT/raw/$name-dst.err" &
    dpid=$!
    rf_track_pid "$dpid"
    if ! rf_wait_file "$URI_FILE" 20 "$dpid"; then
        rf_log "$name: the destination did not start listening"
        return 1
    fi
    local cpu0 cpu1
    cpu0=$(rf_cpu_jiffies)
    # shellcheck disable=SC2046
    timeout "$TIMEOUT" "$RAMFLOW" migrate --memory "$SRC_IMG" \
        --multifd-compression "$m" --multifd-channels "$n" \
        $(level_opt "$m") --json --quiet "$(cat "$URI_FILE")" \
        >"$src_json" 2>"$OUT/raw/$name-src.err" &
    spid=$!
    rf_track_pid "$spid"
    wait "$spid"
    src_rc=$?
    cpu1=$(rf_cpu_jiffies)
    rf_cpu_pct "$cpu0" "$cpu1" >"$OUT/raw/$name-machine-cpu.txt"
    rf_untrack_pid "$spid"
    if [ "$src_rc" -ne 0 ]; then
        # The source may have failed before it connected: give the
        # destination 5 s to notice, then stop it.
        for ((i = 0; i < 50; i++)); do
            kill -0 "$dpid" 2>/dev/null || break
            sleep 0.1
        done
        kill -TERM "$dpid" 2>/dev/null
    fi
    wait "$dpid"
    dst_rc=$?
    rf_untrack_pid "$dpid"
    if [ "$src_rc" -ne 0 ] || [ "$dst_rc" -ne 0 ] ||
       [ "$(jq -r .status "$src_json" 2>/dev/null)" != completed ]; then
        rf_log "$name: FAILED (source exit $src_rc, destination exit" \
               "$dst_rc): $(tail -1 "$OUT/raw/$name-src.err")"
        return 1
    fi
    if [ "$CHECK" = 1 ] && ! cmp -s "$SRC_IMG" "$DST_IMG"; then
        rf_log "$name: FAILED: the destination differs from the source"
        return 1
    fi
    return 0
}

# One progress line per finished migration.
SUMMARY='"\(.total_time_s * 1000 | round / 1000) s, '
SUMMARY+='\(.throughput_mbps | round) Mbit/s on the wire, '
SUMMARY+='ratio \(.compression_ratio * 100 | round / 100), destination '
SUMMARY+='\(if .dest_memory_warm then "pre-faulted its RAM (warm)" '
SUMMARY+='else "did not pre-fault its RAM (cold)" end)"'

ROWS=$OUT/rows.tsv
{
    printf 'method\tchannels\ttime_s\twire_mbps\tram_MBps\tpages_s\tratio'
    printf '\tsend_cpu\trecv_cpu\tmachine_cpu\tdest_warm\tbound\tbound_unit'
    printf '\tfraction\tsource_json\n'
} >"$ROWS"
failed=0
for m in $METHODS; do
    [ "$m" = none ] || calibrate_codec "$m" 1
    kept=()
    for n in $CHANNELS; do
        runs=()
        for ((r = 1; r <= REPEAT; r++)); do
            name=$m-${n}ch
            [ "$REPEAT" -gt 1 ] && name=$name-r$r
            rf_log "migrating: $m, $n channel(s)$(
                [ "$REPEAT" -gt 1 ] && echo ", run $r of $REPEAT")"
            if migrate_once "$m" "$n" "$name"; then
                runs+=("$OUT/raw/$name-src.json")
                rf_log "$name: $(jq -r "$SUMMARY" "$OUT/raw/$name-src.json")"
            fi
        done
        if [ "${#runs[@]}" -eq 0 ]; then
            kept+=("FAILED $n")
            continue
        fi
        # The fastest run stands for the row: other work on the machine
        # can only slow a run down.
        med=$(for f in "${runs[@]}"; do
                  printf '%s\t%s\n' "$(jq .total_time_s "$f")" "$f"
              done | sort -g | head -1 | cut -f2)
        kept+=("$med")
    done
    if [ "$m" != none ]; then
        calibrate_codec "$m" $((REPEAT + 1))
        finish_bound "$m"
    fi
    for med in "${kept[@]}"; do
        if [ "${med#FAILED }" != "$med" ]; then
            failed=$((failed + 1))
            printf '%s\t%s\tFAILED\n' "$m" "${med#FAILED }" >>"$ROWS"
            continue
        fi
        n=$(jq .channels "$med")
        if [ "$m" = none ]; then
            bound=${IPERF[$n]:-}
            unit=Mbit/s
        else
            bound=${BOUND[$m]:-}
            unit=MB/s
        fi
        mcpu=$(cat "${med%-src.json}-machine-cpu.txt" 2>/dev/null)
        jq -r --arg bound "$bound" --arg unit "$unit" --arg f "$med" \
            --arg mcpu "${mcpu:-}" --arg start "$DEST_START" '
            (.ram_bytes / .total_time_s / 1e6) as $ram |
            [.method, .channels, .total_time_s, .throughput_mbps, $ram,
             .pages_per_s, .compression_ratio, .send_cpu_pct,
             .recv_cpu_pct, $mcpu, $start + (if .dest_memory_warm then
             ", pre-faulted" else ", not pre-faulted" end), $bound, $unit,
             (if $bound == "" then ""
              elif $unit == "Mbit/s" then .throughput_mbps /
                  ($bound | tonumber)
              else $ram / ($bound | tonumber) end),
             ($f | split("/") | last)] | @tsv' "$med" >>"$ROWS"
    done
done

# --- 4. the table -------------------------------------------------------
echo "load average at end: $(cut -d" " -f1-3 /proc/loadavg)" \
    >>"$OUT/machine.txt"
TABLE=$OUT/results.md
{
    echo "### ramflow migration benchmark, $(head -1 "$OUT/machine.txt" |
        cut -d' ' -f2-)"
    echo
    sed 's/^/- /' "$OUT/machine.txt" | tail -n +2
    echo "- destination: its /dev/shm file removed and ${SETTLE} s waited" \
         "before every run, so its memory starts $DEST_START; \"dest RAM\"" \
         "adds whether it pre-faulted that memory during the handshake" \
         "(from the report's dest_memory_warm)"
    echo "- one loopback migration per row$( [ "$REPEAT" -gt 1 ] &&
         echo " (the fastest of $REPEAT)"), level $LEVEL for" \
         "compressed methods, destination compared with the source" \
         "$( [ "$CHECK" = 1 ] && echo "after each run (cmp): equal" ||
         echo ": not checked (--no-check)")"
    echo "- send/recv CPU%: the source/destination process (100 = one" \
         "core); machine CPU%: every process on the machine during the" \
         "migration (200 = both cores), from /proc/stat; RAM MB/s ="\
         "image bytes / total time"
    echo
    awk -F'\t' -v target="$TARGET" '
        NR == 1 {
            print "| method | channels | time (s) | wire Mbit/s |" \
                  " RAM MB/s | pages/s | ratio | send CPU% | recv CPU% |" \
                  " machine CPU% | dest RAM | bound | of bound |" \
                  " >= " target "% |"
            print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|" \
                  "---:|---:|---|"
            next
        }
        $3 == "FAILED" {
            printf "| %s | %s | failed ||||||||||||\n", $1, $2
            next
        }
        {
            bound = $12 == "" ? "n/a" : \
                ($13 == "Mbit/s" ? "iperf3 " $12 " Mbit/s" \
                                 : "CPU " $12 " MB/s")
            frac = $14 == "" ? "n/a" : sprintf("%.1f%%", 100 * $14)
            met = $14 == "" ? "n/a" : \
                (100 * $14 >= target ? "yes" : "**no**")
            printf "| %s | %d | %.2f | %.0f | %.0f | %.0f | %.2f |" \
                   " %.0f | %.0f | %s | %s | %s | %s | %s |\n",
                   $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, bound,
                   frac, met
        }' "$ROWS"
    if [ "$(wc -l <"$OUT/calibration.tsv")" -gt 1 ]; then
        echo
        echo "CPU bounds: \`ramflow codec --bench\` on the first" \
             "$SAMPLE_MB MiB of the image, one thread, CPU time, best of" \
             "$((2 * REPEAT)) runs (half just before the method's" \
             "migrations, half just after); bound = 2 / (1/compress +" \
             "1/decompress)."
        echo
        awk -F'\t' 'NR == 1 {
                print "| method | level | ratio | compress MB/s |" \
                      " decompress MB/s | CPU bound MB/s |"
                print "|---|---:|---:|---:|---:|---:|"
                next
            }
            {printf "| %s | %s | %.3f | %.1f | %.1f | %.1f |\n",
                    $1, $2, $3, $4, $5, $6}' "$OUT/calibration.tsv"
    fi
    if [ -f "$OUT/iperf3.tsv" ]; then
        echo
        streams=$(awk -F'\t' 'NR > 1 {
            printf "%s%s stream%s %.0f Mbit/s", (NR > 2 ? ", " : ""), $1,
                   ($1 > 1 ? "s" : ""), $2}' "$OUT/iperf3.tsv")
        echo "iperf3 over loopback (127.0.0.1, ${IPERF_SECONDS} s," \
             "received, best of $REPEAT): $streams."
    fi
} >"$TABLE"

# Empty stderr captures say nothing; keep the folder readable.
find "$OUT" -type f -empty \( -name "*.err" -o -name "*.log" \) -delete

cat "$TABLE"
rf_log "results in $OUT"
[ "$failed" -eq 0 ] || { rf_log "$failed row(s) failed"; exit 1; }
exit 0
