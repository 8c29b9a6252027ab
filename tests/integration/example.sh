#!/usr/bin/env bash
# The library as an integrator gets it (issue 8): `meson install` into a
# temporary prefix; the installed libramflow.so.1 exports only documented
# rf_ functions; examples/vmm.c, built out of tree against the installed
# library through pkg-config, live-migrates its memory between two
# instances, and the digests of both sides agree.
# Usage: example.sh BUILD_DIR SOURCE_DIR
set -u
BUILD=${1:?build dir}
SRC=${2:?source dir}
T=$(mktemp -d /tmp/ramflow-example.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

meson install -C "$BUILD" --destdir "$T/root" --no-rebuild >"$T/install.log" 2>&1 \
    || { cat "$T/install.log" >&2; fail "meson install"; }
PREFIX=$(meson introspect "$BUILD" --buildoptions |
         python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"][0])')
ROOT="$T/root$PREFIX"
PC=$(find "$ROOT" -name ramflow.pc | head -1)
[ -n "$PC" ] || fail "ramflow.pc not installed"
LIBSO=$(find "$ROOT" -name 'libramflow.so.1' | head -1)
[ -n "$LIBSO" ] || fail "libramflow.so.1 not installed"
[ -f "$ROOT/include/ramflow/ramflow.h" ] || fail "header not installed"
[ -x "$ROOT/bin/ramflow" ] || fail "ramflow command not installed"
readelf -d "$LIBSO" | grep -q 'SONAME.*libramflow.so.1' || fail "no soname libramflow.so.1"
readelf -d "$ROOT/bin/ramflow" | grep -q 'NEEDED.*libramflow.so.1' \
    || fail "the ramflow command does not link the shared library"
echo "installed: $LIBSO"

# Exported symbols: exactly the functions the public headers declare.
nm -D --defined-only "$LIBSO" | awk '$2 ~ /^[TWV]$/ {print $3}' | sort >"$T/exported"
grep -ohE '^RF_API [^(]*[ *](rf_[a-z0-9_]+)\(' "$ROOT/include/ramflow/"*.h |
    sed -E 's/.*[ *](rf_[a-z0-9_]+)\($/\1/' | sort -u >"$T/documented"
[ -s "$T/documented" ] || fail "no RF_API declarations found in the headers"
if ! diff -u "$T/documented" "$T/exported" >"$T/abi.diff"; then
    cat "$T/abi.diff" >&2
    fail "exported symbols differ from the documented API (- documented only, + exported only)"
fi
echo "ABI: $(wc -l <"$T/exported") exported symbols, all documented rf_ functions"

# The example, out of tree, against the installed library only.
export PKG_CONFIG_PATH="$(dirname "$PC")"
export PKG_CONFIG_SYSROOT_DIR=""
CFLAGS=$(pkg-config --define-variable=prefix="$ROOT" --cflags ramflow) || fail "pkg-config --cflags"
LIBS=$(pkg-config --define-variable=prefix="$ROOT" --libs ramflow) || fail "pkg-config --libs"
cp "$SRC/examples/vmm.c" "$T/vmm.c"
# A library built with sanitizers (make check's ASan build) needs their
# runtime first in the program that loads it.
SAN=""
readelf -d "$LIBSO" | grep -q 'NEEDED.*libasan' && SAN="-fsanitize=address,undefined"
readelf -d "$LIBSO" | grep -q 'NEEDED.*libtsan' && SAN="-fsanitize=thread"
(cd "$T" && cc -Wall -Wextra -Werror $SAN $CFLAGS vmm.c $LIBS -lpthread -o vmm) \
    || fail "building the example against the installed library"
export LD_LIBRARY_PATH="$(dirname "$LIBSO")"
ldd "$T/vmm" | grep -q "$(dirname "$LIBSO")/libramflow.so.1" \
    || fail "the example does not use the installed library"

"$T/vmm" incoming tcp:127.0.0.1:0 32M >"$T/dst.out" 2>"$T/dst.err" &
DPID=$!
PIDS+=("$DPID")
for _ in $(seq 200); do
    grep -q '^listening ' "$T/dst.out" 2>/dev/null && break
    kill -0 "$DPID" 2>/dev/null || break
    sleep 0.05
done
URI=$(sed -n 's/^listening //p' "$T/dst.out")
[ -n "$URI" ] || { cat "$T/dst.err" >&2; fail "example destination did not listen"; }
"$T/vmm" migrate "$URI" 32M >"$T/src.out" 2>"$T/src.err" \
    || { cat "$T/src.err" "$T/dst.err" >&2; fail "example source failed"; }
# At most 60 s (this script does not source lib.sh, whose wait_exit
# needs RAMFLOW).
for _ in $(seq 1200); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.05; done
kill -0 "$DPID" 2>/dev/null && fail "example destination still running after 60 s"
wait "$DPID" || { cat "$T/dst.err" >&2; fail "example destination failed"; }
grep -q 'status completed' "$T/src.err" || fail "no 'completed' status event on the source"
grep -q 'status device' "$T/src.err" || fail "no 'device' status event on the source"
S=$(sed -n 's/^digest //p' "$T/src.out")
D=$(sed -n 's/^digest //p' "$T/dst.out")
[ -n "$S" ] && [ "$S" = "$D" ] || fail "digests differ: source '$S', destination '$D'"
grep 'vmm: completed' "$T/src.err"
echo "PASS: example migrated 32 MiB through the installed library (digest $S)"
