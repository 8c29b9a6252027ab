# Shared helpers for the integration tests (sourced).  Each test runs in
# its own temporary folder (memory files in /dev/shm) that is removed on
# exit, and kills whatever it started.
set -u
RAMFLOW=${RAMFLOW:?RAMFLOW must point at the ramflow binary}
T=$(mktemp -d /dev/shm/ramflow-test.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# start_incoming NAME [ARGS...]: starts a destination in the background on
# an ephemeral loopback port; sets DST_PID and DST_URI.
start_incoming() {
    local name=$1; shift
    rm -f "$T/$name.uri"
    "$RAMFLOW" incoming --listen "${LISTEN:-tcp:127.0.0.1:0}" \
        --uri-file "$T/$name.uri" "$@" >"$T/$name.out" 2>"$T/$name.err" &
    DST_PID=$!
    PIDS+=("$DST_PID")
    for _ in $(seq 200); do
        [ -s "$T/$name.uri" ] && break
        kill -0 "$DST_PID" 2>/dev/null || break
        sleep 0.05
    done
    [ -s "$T/$name.uri" ] || { cat "$T/$name.err" >&2; fail "destination did not start"; }
    DST_URI=$(cat "$T/$name.uri")
}

# wait_migrating PID: waits (at most 60 s) until process PID holds three
# sockets: the listener or main channel and at least one data channel,
# i.e. the handshake is over and pages can flow.  A test that interrupts a
# migration waits for this instead of sleeping and hoping it has begun.
wait_migrating() {
    local pid=$1 n
    for _ in $(seq 1200); do
        kill -0 "$pid" 2>/dev/null || fail "process $pid ended before the migration was under way"
        n=$(find "/proc/$pid/fd" -lname 'socket:*' 2>/dev/null | wc -l)
        [ "$n" -ge 3 ] && return 0
        sleep 0.05
    done
    fail "no migration under way in process $pid after 60 s"
}

# expect_in FILE TEXT: FILE must contain TEXT.
expect_in() {
    grep -qF -- "$2" "$1" || { echo "--- $1:" >&2; cat "$1" >&2; fail "expected '$2' in $1"; }
}

# wait_exit PID [SECONDS]: waits for process PID to end, at most SECONDS
# (default 120), and returns its exit status.  A process that is still
# running then is killed and the test fails naming it: no test waits for
# ever on a process that should have ended.
wait_exit() {
    local pid=$1 limit=${2:-120} i
    for ((i = 0; i < limit * 20; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        fail "process $pid ($(caller 0 | cut -d' ' -f2)) still running after ${limit} s"
    fi
    wait "$pid"
}
