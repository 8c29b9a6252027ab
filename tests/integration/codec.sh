#!/usr/bin/env bash
# `ramflow codec`: every method round-trips stdin (whole pages or not);
# qatzip's output is plain gzip (`gzip -dc` gives the input back, as a
# QATzip library would); --bench prints a row per method and level.
. "$(dirname "$0")/lib.sh"
"$RAMFLOW" gen-image --size 3M --seed 11 "$T/img" || fail "gen-image"
head -c 1234567 "$T/img" >"$T/odd"          # not a whole number of pages
: >"$T/empty"
for m in $("$RAMFLOW" version | sed -n 's/^methods://p'); do
    for f in img odd empty; do
        "$RAMFLOW" codec -m "$m" <"$T/$f" >"$T/$f.$m" || fail "codec -m $m < $f"
        "$RAMFLOW" codec -d -m "$m" <"$T/$f.$m" >"$T/$f.$m.out" || fail "codec -d -m $m < $f"
        cmp -s "$T/$f" "$T/$f.$m.out" || fail "$m: $f does not round-trip"
    done
done
if "$RAMFLOW" version | grep -q qatzip; then
    for f in img odd; do
        gzip -dc <"$T/$f.qatzip" >"$T/$f.gunzip" || fail "gzip -dc rejects qatzip output"
        cmp -s "$T/$f" "$T/$f.gunzip" || fail "gzip -dc of qatzip output differs ($f)"
    done
    # The QZ extra field of the first member: FLG=FEXTRA, XLEN=12, 'QZ', 8.
    [ "$(head -c 16 "$T/img.qatzip" | od -An -tx1 | tr -d ' \n')" = \
      "1f8b08040000000000ff0c00515a0800" ] || fail "qatzip member header"
fi
# A corrupted stream is refused with a message, not a crash.
printf 'garbage that is not a stream' | "$RAMFLOW" codec -d -m zstd >/dev/null 2>"$T/err" \
    && fail "garbage decompressed"
[ -s "$T/err" ] || fail "no message for garbage input"
"$RAMFLOW" codec --bench "$T/img" -l 1 --max-mb 2 >"$T/bench" || fail "codec --bench"
for m in zlib zstd; do
    grep -qE "^$m +1 +[0-9.]+ +[0-9.>]+ +[0-9.>]+" "$T/bench" || { cat "$T/bench"; fail "no $m row"; }
done
echo "ok: codec round trips, gzip compatibility, bench table"
