#!/usr/bin/env bash
# Network faults (issue 10): the destination in its own network namespace
# behind a veth pair shaped with tc netem (as `ramflow bench` builds its
# links, src/bench/bench_link.c), the source outside.  Each fault ends in
# bounded time in a completed, verified migration or a clean failure with
# a clear message; after a failure the source's file is intact, no
# destination file is left, and a retry succeeds.  Killed processes and a
# stalled destination without SIGCONT are faults.sh's and guest_faults.sh's.
# Skips (exit 77) only if a network namespace cannot be made.
. "$(dirname "$0")/lib.sh"
NS=rfnf-$$ VA=rfn$$a VB=rfn$$b
NET=198.18.$(($$ % 250)) SRC_IP= DST_IP=
teardown() { ip netns del "$NS" 2>/dev/null; ip link del "$VA" 2>/dev/null; cleanup; }
trap teardown EXIT
if ! ip netns add "$NS" 2>/dev/null; then
    echo "SKIP: cannot create a network namespace (needs root and CONFIG_NET_NS)"
    exit 77
fi
ip link add "$VA" type veth peer name "$VB" || fail "veth"
ip link set "$VB" netns "$NS" || fail "veth into $NS"
SRC_IP=$NET.1 DST_IP=$NET.2
ip addr add "$SRC_IP/30" dev "$VA" && ip link set "$VA" up || fail "veth up"
ip -n "$NS" addr add "$DST_IP/30" dev "$VB" && ip -n "$NS" link set "$VB" up &&
    ip -n "$NS" link set lo up || fail "veth up in $NS"
# shape QDISC...: the same root qdisc on both ends ("" = none).  netem
# where the kernel has it; this test's VM kernels may not (no sch_netem),
# and then loss is the link flapping and delay a deep tbf queue.
shape() {
    tc qdisc del dev "$VA" root 2>/dev/null
    ip netns exec "$NS" tc qdisc del dev "$VB" root 2>/dev/null
    [ $# = 0 ] && return 0
    tc qdisc add dev "$VA" root "$@" &&
        ip netns exec "$NS" tc qdisc add dev "$VB" root "$@"
}
HAVE_NETEM=0
shape netem delay 0ms 2>/dev/null && HAVE_NETEM=1
shape
echo "note: tc netem $([ $HAVE_NETEM = 1 ] && echo available || echo 'not in this kernel: loss = link flapping, delay = a 200 ms tbf queue')"
# link up|down: both ends of the veth (a pulled cable: packets go nowhere).
link() {
    ip link set "$VA" "$1" && ip -n "$NS" link set "$VB" "$1" || fail "link $1"
    [ "$1" = up ] && ip route replace "$NET.0/30" dev "$VA" src "$SRC_IP" 2>/dev/null
    return 0
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
SUMMARY=()

"$RAMFLOW" gen-image --size 32M --seed 9 "$T/src" || fail "gen-image"
before=$(md5sum <"$T/src")
mkdir -p "$T/out"

# dest NAME [ARGS]: a destination in the namespace; DST_PID, DST_URI.
dest() {
    local name=$1; shift
    rm -f "$T/$name.uri" "$T/out/$name"
    ip netns exec "$NS" "$RAMFLOW" incoming --listen "tcp:$DST_IP:0" \
        --insecure --memory "ram=$T/out/$name" --uri-file "$T/$name.uri" \
        --quiet "$@" >"$T/$name.out" 2>"$T/$name.err" &
    DST_PID=$!; PIDS+=("$DST_PID")
    for _ in $(seq 200); do
        [ -s "$T/$name.uri" ] && break
        sleep 0.05
    done
    [ -s "$T/$name.uri" ] || { cat "$T/$name.err"; fail "$name did not start"; }
    DST_URI=$(cat "$T/$name.uri")
}

# src NAME [ARGS]: the source, in the background; SRC_PID.
src() {
    local name=$1; shift
    "$RAMFLOW" migrate --memory "ram=$T/src" --verify --quiet "$@" \
        "$DST_URI" >"$T/$name.out" 2>"$T/$name.err" &
    SRC_PID=$!; PIDS+=("$SRC_PID")
}

# finish NAME LIMIT_S: waits for both ends (at most LIMIT_S from now);
# sets RC_S, RC_D and ELAPSED (ms).
finish() {
    local name=$1 limit=$2 t0
    t0=$(now_ms)
    for _ in $(seq $((limit * 20))); do
        kill -0 "$SRC_PID" 2>/dev/null || kill -0 "$DST_PID" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$SRC_PID" 2>/dev/null && { cat "$T/$name-s.err"; fail "$name: source still running after $limit s"; }
    kill -0 "$DST_PID" 2>/dev/null && { cat "$T/$name-d.err"; fail "$name: destination still running after $limit s"; }
    ELAPSED=$(($(now_ms) - t0))
    wait_exit "$SRC_PID"; RC_S=$?
    wait_exit "$DST_PID"; RC_D=$?
}

# check NAME: a completed migration is verified and whole; a failure is
# clean (exit 1 and a message on both sides), the source file is intact
# and no destination file is left.
check() {
    local name=$1 how
    [ "$(md5sum <"$T/src")" = "$before" ] || fail "$name: source file changed"
    if [ "$RC_S" = 0 ]; then
        [ "$RC_D" = 0 ] || { cat "$T/$name-d.err"; fail "$name: source completed, destination exit $RC_D"; }
        [ "$(md5sum <"$T/out/$name-d")" = "$before" ] || fail "$name: destination differs"
        how="completed, verified"
    else
        [ "$RC_S" = 1 ] && [ "$RC_D" = 1 ] || { cat "$T/$name-s.err" "$T/$name-d.err"; fail "$name: exits $RC_S/$RC_D"; }
        expect_in "$T/$name-s.err" "ramflow: migration failed:"
        expect_in "$T/$name-d.err" "ramflow: incoming migration failed:"
        [ ! -e "$T/out/$name-d" ] || fail "$name: destination file left after a failure"
        ls -a "$T/out" | grep -q '\.ramflow-' && fail "$name: temporary file left"
        how="clean failure: $(grep -m1 'failed' "$T/$name-s.err" | cut -c1-150)"
    fi
    SUMMARY+=("$name: $how; ended $ELAPSED ms after the fault")
    echo "ok: $name: $how ($ELAPSED ms after the fault)"
}

# retry NAME: a clean link and a migration that must complete.
retry() {
    shape
    dest "$1-d" --timeout 5000
    src "$1-s" --timeout 5000
    finish "$1" 60
    [ "$RC_S" = 0 ] && [ "$RC_D" = 0 ] || { cat "$T/$1-s.err" "$T/$1-d.err"; fail "$1: retry failed"; }
    [ "$(md5sum <"$T/out/$1-d")" = "$before" ] || fail "$1: retry differs"
}

# 1. link down for 1 s mid-round, 5 s timeout: TCP retransmits, the
#    migration completes.
dest down1-d --timeout 5000
src down1-s --timeout 5000 --max-bandwidth 8M
wait_migrating "$SRC_PID"
link down; sleep 1; link up
finish down1 60
[ "$RC_S" = 0 ] || { cat "$T/down1-s.err"; fail "down1: a 1 s outage failed the migration"; }
check down1

# 2. link down for longer than the 2 s timeout: both sides fail within
#    about the timeout (plus TCP_USER_TIMEOUT's detection), cleanly.
dest down9-d --timeout 2000
src down9-s --timeout 2000 --max-bandwidth 8M
wait_migrating "$SRC_PID"
link down
finish down9 15
[ "$RC_S" = 1 ] || fail "down9: the source did not fail"
check down9
link up
retry down9-retry

# 3. 10% loss: netem loss 10% both ways, or the link down 100 ms in
#    every second (10% of the time).  Slower; completes.
dest loss-d --timeout 10000
src loss-s --timeout 10000 --max-bandwidth 16M
if [ $HAVE_NETEM = 1 ]; then
    shape netem loss 10%
    finish loss 60
else
    wait_migrating "$SRC_PID"
    t0=$(now_ms)
    while kill -0 "$SRC_PID" 2>/dev/null; do
        link down; sleep 0.1; link up; sleep 0.9
    done
    finish loss 60
    ELAPSED=$(($(now_ms) - t0))
fi
check loss
[ "$RC_S" = 0 ] || retry loss-retry

# 4. 200 ms delay: netem delay 200ms each way, or a tbf queue holding
#    200 ms at 64 Mbit/s (the delay a full queue adds).  Completes.
if [ $HAVE_NETEM = 1 ]; then
    shape netem delay 200ms
else
    shape tbf rate 64mbit burst 64k latency 200ms
fi
dest delay-d --timeout 10000
src delay-s --timeout 10000
finish delay 60
check delay
[ "$RC_S" = 0 ] || retry delay-retry
shape

# 5. netem corrupt over TLS (PSK): TCP's checksum catches most flips,
#    TLS's MAC the rest: completion (verified) or a clean failure, never
#    silently different memory.
mkdir -p "$T/psk"
psktool -u qemu -p "$T/psk/keys.psk" >/dev/null 2>&1 ||
    printf 'qemu:%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$T/psk/keys.psk"
if [ $HAVE_NETEM = 1 ]; then
    shape netem corrupt 1%
    dest corrupt-d --timeout 5000 --tls-psk "$T/psk"
    src corrupt-s --timeout 5000 --tls-psk "$T/psk"
    finish corrupt 60
    check corrupt
    retry corrupt-retry
fi
# 5b. Corruption TCP cannot see: a proxy on the path flips one byte in
#     every 4 MiB after the handshake.  TLS's MAC must refuse the record.
dest flip-d --timeout 5000 --tls-psk "$T/psk"
python3 "$(dirname "$0")/flip_proxy.py" "$SRC_IP" "$DST_IP" "${DST_URI##*:}" \
    4194304 >"$T/proxy.out" 2>&1 &
PROXY=$!; PIDS+=("$PROXY")
for _ in $(seq 100); do [ -s "$T/proxy.out" ] && break; sleep 0.05; done
REAL_URI=$DST_URI DST_URI="tcp:$SRC_IP:$(head -1 "$T/proxy.out")"
src flip-s --timeout 5000 --tls-psk "$T/psk"
DST_URI=$REAL_URI
finish flip 60
check flip
[ "$RC_S" = 1 ] || fail "flip: corrupted records were not refused"
expect_in "$T/flip-d.err" "TLS receive failed"
kill "$PROXY"; wait "$PROXY" 2>/dev/null
retry flip-retry

# 6. destination stopped (SIGSTOP) for 5 s, within a 10 s timeout: the
#    migration resumes and completes.
dest stop5-d --timeout 10000
src stop5-s --timeout 10000 --max-bandwidth 8M
wait_migrating "$SRC_PID"
kill -STOP "$DST_PID"; sleep 5; kill -CONT "$DST_PID"
finish stop5 60
[ "$RC_S" = 0 ] || { cat "$T/stop5-s.err"; fail "stop5: a 5 s stop failed the migration"; }
check stop5

# 7. destination stopped for longer than the 2 s timeout, then continued:
#    the source fails within about the timeout; the continued destination
#    finds its peer gone and fails too.
dest stoplong-d --timeout 2000
src stoplong-s --timeout 2000 --max-bandwidth 8M
wait_migrating "$SRC_PID"
kill -STOP "$DST_PID"
t0=$(now_ms)
for _ in $(seq 300); do kill -0 "$SRC_PID" 2>/dev/null || break; sleep 0.05; done
src_ms=$(($(now_ms) - t0))
kill -CONT "$DST_PID"
finish stoplong 15
ELAPSED=$src_ms
[ "$RC_S" = 1 ] || fail "stoplong: the source did not fail"
check stoplong
retry stoplong-retry

# 8. one data connection closed under the source (ss -K): the channel
#    reconnects (multifd-reconnect-attempts, default 3) and the migration
#    completes verified; with attempts 0 (reconnect not offered), a clean
#    failure on both sides.
if ss -K dst 203.0.113.255 >/dev/null 2>&1 </dev/null; then
    for mode in on off; do
        extra=()
        [ $mode = off ] && extra=(--multifd-reconnect-attempts 0)
        dest ssk$mode-d --timeout 5000
        src ssk$mode-s --timeout 5000 --max-bandwidth 8M --multifd-channels 2 \
            "${extra[@]}"
        wait_migrating "$SRC_PID"
        # The source's last socket is a data channel (the main one opens first).
        fd=$(ls /proc/"$SRC_PID"/fd | sort -n | while read -r f; do
            readlink "/proc/$SRC_PID/fd/$f" | grep -q '^socket:' && echo "$f"; done | tail -1)
        ino=$(readlink "/proc/$SRC_PID/fd/$fd" | tr -dc 0-9)
        sport=$(ss -tne | awk -v i="ino:$ino" '$0 ~ i" " || $0 ~ i"$" {print $4}' | head -1)
        sport=${sport##*:}
        [ -n "$sport" ] || fail "ssk$mode: cannot find the data connection"
        ss -K src "$SRC_IP" sport = ":$sport" >/dev/null 2>&1 || fail "ss -K"
        finish ssk$mode 20
        check ssk$mode
        if [ $mode = on ]; then
            [ "$RC_S" = 0 ] || fail "ssk$mode: the killed channel did not reconnect"
        else
            [ "$RC_S" = 0 ] && echo "note: ssk$mode: the killed channel had nothing left to send"
            retry ssk$mode-retry
        fi
    done
else
    SUMMARY+=("ssk: not run: this kernel has no socket destroy (CONFIG_INET_DIAG_DESTROY)")
fi

printf '%s\n' "${SUMMARY[@]}"
echo "ok: network faults end in completed or cleanly failed migrations"
