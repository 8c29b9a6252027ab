# shellcheck shell=bash
# bench/lib/util.sh - logging, argument helpers, process and file cleanup
# for bench/run.sh.  Sourced, not run.

# Progress lines go to stderr so that stdout carries only the table.
rf_log() {
    printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

rf_die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}

# Background processes this script started (by pid) and scratch files to
# delete on exit; the EXIT/INT/TERM traps use them.
RF_PIDS=()
RF_FILES=()

rf_track_pid() { RF_PIDS+=("$1"); }
rf_track_file() { RF_FILES+=("$1"); }

# Forgets a pid once it has been waited for, so that cleanup never
# signals a recycled pid.
rf_untrack_pid() {
    local keep=() p
    for p in "${RF_PIDS[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    RF_PIDS=("${keep[@]}")
}

rf_cleanup() {
    local p
    for p in "${RF_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${RF_PIDS[@]}"; do
        wait "$p" 2>/dev/null
    done
    RF_PIDS=()
    if [ "${#RF_FILES[@]}" -gt 0 ]; then
        rm -f -- "${RF_FILES[@]}"
    fi
}

# Parses SIZE[K|M|G] (powers of 1024) into bytes.
rf_parse_size() {
    local s=$1 n unit
    n=${s%[KkMmGg]}
    unit=${s#"$n"}
    [[ $n =~ ^[0-9]+$ ]] || return 1
    case $unit in
        "") echo "$n" ;;
        [Kk]) echo $((n << 10)) ;;
        [Mm]) echo $((n << 20)) ;;
        [Gg]) echo $((n << 30)) ;;
        *) return 1 ;;
    esac
}

# Waits until FILE is non-empty (the destination writes its URI there once
# listening), giving up after SECONDS or when PID exits.
rf_wait_file() {
    local file=$1 secs=$2 pid=$3 i
    for ((i = 0; i < secs * 20; i++)); do
        [ -s "$file" ] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# Waits until something listens on TCP PORT on loopback.
rf_wait_listen() {
    local port=$1 secs=$2 pid=$3 i
    for ((i = 0; i < secs * 20; i++)); do
        if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# A free TCP port on loopback (best effort; bind races are reported by the
# caller's own listen failure).
rf_free_port() {
    local port i
    for ((i = 0; i < 50; i++)); do
        port=$((20000 + RANDOM % 30000))
        if ! ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

# Prints "busy idle" jiffies summed over all CPUs (/proc/stat), for the
# machine-wide CPU use around a run: other processes on the same two cores
# lower every result, and this is how a reader can tell.
rf_cpu_jiffies() {
    awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6; exit}' \
        /proc/stat
}

# rf_cpu_pct "BUSY0 IDLE0" "BUSY1 IDLE1": machine CPU% between two samples,
# 100 = one core.
rf_cpu_pct() {
    local b0 i0 b1 i1
    read -r b0 i0 <<<"$1"
    read -r b1 i1 <<<"$2"
    awk -v b="$((b1 - b0))" -v i="$((i1 - i0))" -v n="$(nproc)" \
        'BEGIN {printf "%.0f", (b + i > 0) ? 100 * n * b / (b + i) : 0}'
}

# rf_wait_idle MAX_S PCT: waits until the whole machine used less than PCT
# CPU% (100 = one core) over one second, for at most MAX_S seconds, so that
# a run does not start while other work holds the cores.  @return 1 when
# it gave up (the run then goes ahead; the machine CPU% column shows it).
rf_wait_idle() {
    local max=$1 pct=$2 start=$SECONDS a b u
    while :; do
        a=$(rf_cpu_jiffies)
        sleep 1
        b=$(rf_cpu_jiffies)
        u=$(rf_cpu_pct "$a" "$b")
        [ "$u" -lt "$pct" ] && return 0
        [ $((SECONDS - start)) -lt "$max" ] || return 1
    done
}
