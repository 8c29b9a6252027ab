#!/usr/bin/env bash
# QMP (issue 11): QEMU's migration-test sequence driven over QMP between
# two ramflow processes (test VMs) by a client written for QEMU's protocol
# (qmp_client.py), for none, zstd and qatzip, with and without TLS; error
# replies compared with QEMU 10's; bad input and 20 clients during a
# migration; cancel mid-migration; a raw line-oriented exchange with socat
# against a destination of memory files.  Every wait has a deadline.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tls_certs.sh"
PY="python3 $(dirname "$0")/qmp_client.py"
command -v socat >/dev/null || fail "socat not found (make deps installs it)"
GUEST=(--kind auto --memory-size 32M --vcpus 1 --dirty-rate 20000
       --max-rounds 10 --quiet)
methods=$("$RAMFLOW" version | sed -n 's/^methods://p')

# pair NAME: a source test VM and a destination waiting for
# migrate-incoming, each with a QMP socket $T/NAME-{src,dst}.sock.
pair() {
    "$RAMFLOW" guest --qmp "unix:$T/$1-src.sock" "${GUEST[@]}" \
        2>"$T/$1-src.err" &
    SRC_PID=$!
    "$RAMFLOW" incoming --qmp "unix:$T/$1-dst.sock" --guest --kind auto \
        --quiet 2>"$T/$1-dst.err" &
    DST_PID=$!
    PIDS+=("$SRC_PID" "$DST_PID")
}

# ended NAME: both processes of the pair exit 0 after quit.
ended() {
    wait_exit "$SRC_PID" 30 || { cat "$T/$1-src.err" >&2; fail "$1: source exit"; }
    wait_exit "$DST_PID" 30 || { cat "$T/$1-dst.err" >&2; fail "$1: destination exit"; }
}

mkcerts
for m in none zstd qatzip; do
    case " $methods " in *" $m "*) ;; *) echo "skip: $m not built"; continue;; esac
    for tls in plain tls; do
        pki=-; [ $tls = tls ] && pki=$T/pki
        pair "$m-$tls"
        $PY migrate "$T/$m-$tls-src.sock" "$T/$m-$tls-dst.sock" "$m" 4 \
            "$pki" "$T/$m-$tls.log" ||
            { cat "$T/$m-$tls.log" "$T/$m-$tls-src.err" "$T/$m-$tls-dst.err" >&2;
              fail "QMP migration $m $tls"; }
        ended "$m-$tls"
    done
done
echo "--- QMP transcript (none, plain):"
cat "$T/none-plain.log"

pair errors
$PY errors "$T/errors-src.sock" || fail "error replies"
$PY robust "$T/errors-src.sock" "$T/errors-dst.sock" ||
    { cat "$T/errors-src.err" "$T/errors-dst.err" >&2; fail "robustness"; }
ended errors

pair cancel
$PY cancel "$T/cancel-src.sock" "$T/cancel-dst.sock" ||
    { cat "$T/cancel-src.err" "$T/cancel-dst.err" >&2; fail "cancel"; }
ended cancel

# A plain line-oriented client: socat, against `incoming --qmp --listen`
# (listening at once, as QEMU's -incoming URI) into a memory file.
"$RAMFLOW" gen-image --size 16M --seed 3 "$T/img" || fail "gen-image"
"$RAMFLOW" incoming --qmp "unix:$T/raw.sock" --listen tcp:127.0.0.1:0 \
    --uri-file "$T/raw.uri" --memory "$T/out:16M" --quiet 2>"$T/raw.err" &
RAW_PID=$!
PIDS+=("$RAW_PID")
for _ in $(seq 400); do [ -s "$T/raw.uri" ] && break; sleep 0.05; done
[ -s "$T/raw.uri" ] || fail "incoming --qmp --listen did not listen"
"$RAMFLOW" migrate --memory "$T/img" --quiet "$(cat "$T/raw.uri")" \
    >/dev/null || fail "migrate into the QMP destination"
printf '%s\n' '{"execute": "query-status"}' \
    '{"execute": "qmp_capabilities"}' \
    '{"execute": "query-migrate", "id": "q1"}' \
    '{"execute": "migrate-incoming", "arguments": {"uri": "tcp:127.0.0.1:0"}}' \
    '{"execute": "quit"}' |
    timeout 20 socat - "UNIX-CONNECT:$T/raw.sock" >"$T/raw.out" ||
    fail "socat exchange"
cat "$T/raw.out"
expect_in "$T/raw.out" '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 10}, "package": "ramflow '
expect_in "$T/raw.out" '"desc": "Expecting capabilities negotiation with '"'"'qmp_capabilities'"'"'"'
expect_in "$T/raw.out" '"status": "completed"'
expect_in "$T/raw.out" '"id": "q1"'
expect_in "$T/raw.out" 'The incoming migration has already been started'
expect_in "$T/raw.out" '"event": "SHUTDOWN"'
wait_exit "$RAW_PID" 30 || fail "raw destination exit"
cmp "$T/img" "$T/out" || fail "the destination's file differs"
[ "$(stat -c %a "$T/errors-src.sock" 2>/dev/null || echo 600)" = 600 ] ||
    fail "QMP socket not 0600"
echo "ok: socat exchange; file identical"

# The human monitor (QEMU's HMP syntax) on a unix socket, fed by socat:
# a blocking `migrate` answers when the migration has ended.
"$RAMFLOW" incoming --monitor "unix:$T/hmp-dst.sock" --guest --kind auto \
    --listen tcp:127.0.0.1:0 --uri-file "$T/hmp.uri" --quiet 2>"$T/hmp-dst.err" &
DST_PID=$!
"$RAMFLOW" guest --monitor "unix:$T/hmp-src.sock" "${GUEST[@]}" \
    2>"$T/hmp-src.err" &
SRC_PID=$!
PIDS+=("$SRC_PID" "$DST_PID")
for _ in $(seq 400); do [ -s "$T/hmp.uri" ] && [ -S "$T/hmp-src.sock" ] && break; sleep 0.05; done
[ -s "$T/hmp.uri" ] && [ -S "$T/hmp-src.sock" ] || fail "HMP processes did not start"
printf '%s\n' 'migrate_set_parameter multifd-channels 3' \
    'migrate_set_parameter multifd-compression zstd' \
    'migrate_set_parameter max-bandwidth 1G' \
    'migrate_set_capability auto-converge on' 'migrate_set_capability foo on' \
    'info migrate_parameters' 'info migrate_capabilities' \
    "migrate $(cat "$T/hmp.uri")" 'info migrate' 'info status' 'bogus' 'quit' |
    timeout 60 socat -t 60 - "UNIX-CONNECT:$T/hmp-src.sock" >"$T/hmp-src.out" ||
    fail "HMP source exchange"
cat "$T/hmp-src.out"
expect_in "$T/hmp-src.out" "multifd-compression: 'zstd'"
expect_in "$T/hmp-src.out" "max-bandwidth: 1073741824"
expect_in "$T/hmp-src.out" "auto-converge: on"
expect_in "$T/hmp-src.out" "Error: invalid parameter value: foo"
expect_in "$T/hmp-src.out" "Status: 		completed"
expect_in "$T/hmp-src.out" "VM status: paused (postmigrate)"
expect_in "$T/hmp-src.out" "unknown command: 'bogus'"
wait_exit "$SRC_PID" 30 || fail "HMP source exit"
for _ in $(seq 200); do
    echo 'info status' | timeout 10 socat - "UNIX-CONNECT:$T/hmp-dst.sock" >"$T/hmp-dst.out"
    grep -q "VM status: running" "$T/hmp-dst.out" && break
    sleep 0.05
done
expect_in "$T/hmp-dst.out" "VM status: running"
printf 'info migrate\nquit\n' |
    timeout 20 socat - "UNIX-CONNECT:$T/hmp-dst.sock" >"$T/hmp-dst.out"
expect_in "$T/hmp-dst.out" "Status: 		completed"
wait_exit "$DST_PID" 30 || fail "HMP destination exit"
# --monitor stdio, as QEMU's -monitor stdio.
printf 'info status\nstop\ninfo status\ncont\ninfo status\nquit\n' |
    timeout 30 "$RAMFLOW" guest --monitor stdio "${GUEST[@]}" >"$T/stdio.out" ||
    fail "--monitor stdio"
expect_in "$T/stdio.out" "VM status: paused"
[ "$(grep -c 'VM status: running' "$T/stdio.out")" = 2 ] || fail "stdio: stop/cont"
echo "ok: human monitor over a socket and on stdio"

# ramflow serve: memory files sent by one, received by the other; the
# source's monitor on tcp: (port 0, announced on stderr).
"$RAMFLOW" serve --qmp tcp:127.0.0.1:0 --memory "$T/img" 2>"$T/serve-src.err" &
SRC_PID=$!
"$RAMFLOW" serve --qmp "unix:$T/serve-dst.sock" --memory "$T/out2:16M" \
    --quiet 2>"$T/serve-dst.err" &
DST_PID=$!
PIDS+=("$SRC_PID" "$DST_PID")
for _ in $(seq 400); do grep -q "QMP monitor on tcp:" "$T/serve-src.err" && break; sleep 0.05; done
QMP_TCP=$(sed -n 's/^ramflow: QMP monitor on //p' "$T/serve-src.err")
case "$QMP_TCP" in tcp:127.0.0.1:[0-9]*) ;; *) fail "serve: no tcp: monitor ($QMP_TCP)";; esac
$PY files "$QMP_TCP" "$T/serve-dst.sock" ||
    { cat "$T/serve-src.err" "$T/serve-dst.err" >&2; fail "serve"; }
wait_exit "$SRC_PID" 30 || fail "serve source exit"
wait_exit "$DST_PID" 30 || fail "serve destination exit"
cmp "$T/img" "$T/out2" || fail "serve: the received file differs"
# Nothing to receive into: refused with a message, the server stays up.
"$RAMFLOW" serve --qmp "unix:$T/empty.sock" 2>"$T/empty.err" &
EMPTY_PID=$!
PIDS+=("$EMPTY_PID")
for _ in $(seq 400); do [ -S "$T/empty.sock" ] && break; sleep 0.05; done
printf '%s\n' '{"execute": "qmp_capabilities"}' \
    '{"execute": "migrate-incoming", "arguments": {"uri": "tcp:127.0.0.1:0"}}' \
    '{"execute": "quit"}' |
    timeout 20 socat - "UNIX-CONNECT:$T/empty.sock" >"$T/empty.out"
expect_in "$T/empty.out" "ramflow serve holds no memory: start it with --memory FILE"
wait_exit "$EMPTY_PID" 30 || fail "empty serve exit"
echo "ok: ramflow serve (tcp: and unix: monitors)"
