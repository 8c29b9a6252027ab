# shellcheck shell=bash
# bench/lib/corpus.sh - the Silesia corpus, decompressed once into a cache
# in /dev/shm and checked against the SHA-256 values of its SOURCES.md.
# Sourced by bench/run.sh (needs lib/util.sh).

# Prints "name sha256 bytes" for every row of the "## Files" table of
# SOURCES.md (the table of the members that are present).
rf_corpus_expected() {
    awk -F'|' '
        /^## / { in_files = ($0 ~ /^## Files/) ; next }
        in_files && NF >= 6 {
            name = $2; bytes = $3; sha = $5
            gsub(/[ ,]/, "", name); gsub(/[ ,]/, "", bytes)
            gsub(/ /, "", sha)
            if (length(sha) == 64 && sha !~ /[^0-9a-f]/ &&
                bytes ~ /^[0-9]+$/)
                print name, sha, bytes
        }' "$1"
}

# shellcheck disable=SC2034  # RF_CORPUS_VERIFIED is read by run.sh
# rf_corpus_prepare SRC_DIR CACHE_DIR
# Decompresses SRC_DIR/*.xz into CACHE_DIR (skipping members already
# there and verified), checks each member's SHA-256 once, and sets
# RF_CORPUS_FILES (the member paths, in name order) and RF_CORPUS_BYTES.
rf_corpus_prepare() {
    local src=$1 cache=$2 sums=$2/.verified expected="" xz name out
    local sha bytes got
    [ -d "$src" ] || rf_die "Silesia corpus not found in $src (set SILESIA_DIR)"
    compgen -G "$src/*.xz" >/dev/null || rf_die "no *.xz files in $src"
    RF_CORPUS_VERIFIED="SHA-256 checked against SOURCES.md"
    if [ -f "$src/SOURCES.md" ]; then
        expected=$(rf_corpus_expected "$src/SOURCES.md")
        [ -n "$expected" ] || rf_die "$src/SOURCES.md: no SHA-256 table found"
    else
        rf_log "warning: no $src/SOURCES.md: corpus members NOT verified"
        RF_CORPUS_VERIFIED="NOT verified (no SOURCES.md)"
    fi
    mkdir -p "$cache"
    touch "$sums"
    RF_CORPUS_FILES=()
    RF_CORPUS_BYTES=0
    for xz in "$src"/*.xz; do
        name=$(basename "$xz" .xz)
        out=$cache/$name
        sha=""
        bytes=""
        if [ -n "$expected" ]; then
            read -r _ sha bytes < <(awk -v n="$name" '$1 == n' <<<"$expected")
            [ -n "$sha" ] || rf_die "$name: not listed in $src/SOURCES.md"
        fi
        # Cached and verified earlier: same size and recorded checksum.
        if [ -f "$out" ] && { [ -z "$sha" ] ||
                { grep -qx "$sha  $name" "$sums" &&
                  [ "$(stat -c %s "$out")" = "$bytes" ]; }; }; then
            :
        else
            rf_log "decompressing $name"
            xz -dc "$xz" >"$out.tmp" || rf_die "xz -dc $xz failed"
            if [ -n "$sha" ]; then
                got=$(sha256sum "$out.tmp" | awk '{print $1}')
                if [ "$got" != "$sha" ]; then
                    rm -f "$out.tmp"
                    rf_die "$name: SHA-256 $got, SOURCES.md says $sha"
                fi
                echo "$sha  $name" >>"$sums"
                rf_log "$name: SHA-256 matches SOURCES.md"
            fi
            mv "$out.tmp" "$out"
        fi
        RF_CORPUS_FILES+=("$out")
        RF_CORPUS_BYTES=$((RF_CORPUS_BYTES + $(stat -c %s "$out")))
    done
}
