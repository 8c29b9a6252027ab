#!/usr/bin/env bash
# Invalid parameters are refused before anything starts: exit status 2 and
# a message naming the parameter and the allowed range.
. "$(dirname "$0")/lib.sh"
"$RAMFLOW" gen-image --size 1M "$T/src" || fail "gen-image"
check() { # check "EXPECTED TEXT" ARGS...
    local want=$1; shift
    set +e
    "$RAMFLOW" migrate --memory "$T/src" "$@" tcp:127.0.0.1:9 2>"$T/err"
    local rc=$?
    [ "$rc" = 2 ] || { cat "$T/err"; fail "$* exited $rc, expected 2"; }
    expect_in "$T/err" "$want"
}
check "multifd-channels: invalid value '0' (allowed: an integer 1 to 255)" --multifd-channels 0
check "multifd-channels: invalid value '256'" --multifd-channels 256
check "multifd-zlib-level: invalid value '10' (allowed: an integer 0 to 9)" --multifd-zlib-level 10
check "multifd-zstd-level: invalid value '21' (allowed: an integer 0 to 20)" --multifd-zstd-level 21
check "multifd-qatzip-level: invalid value '0' (allowed: an integer 1 to 9)" --multifd-qatzip-level 0
check "multifd-qatzip-level: invalid value '10'" --multifd-qatzip-level 10
check "downtime-limit: invalid value '2000001'" --downtime-limit 2000001
check "max-bandwidth: invalid value '-5'" --max-bandwidth -5
check "multifd-compression: unknown method 'lz5'" --multifd-compression lz5
check "multifd-channels: invalid value 'two'" --multifd-channels two
# Nothing may have been started: no connection was attempted (port 9 is
# the discard port; a connection attempt would fail with another error).
set +e
"$RAMFLOW" migrate --no-such-option x 2>"$T/err"; rc=$?

[ "$rc" = 2 ] || fail "unknown option exited $rc"
echo "ok: parameter validation"
