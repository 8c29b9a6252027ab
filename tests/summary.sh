#!/usr/bin/env bash
# Prints one closing line for `make check`: the test programs that passed
# and failed across the builds given (their meson-logs/testlog.json) and
# the fuzz runs, e.g. "check: 41 passed, 0 failed".
passed=0 failed=0 skipped=0
for b in "$@"; do
    log=$b/meson-logs/testlog.json
    [ -f "$log" ] || continue
    p=$(grep -c '"result": "OK"' "$log")
    f=$(grep -cE '"result": "(FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS)"' "$log")
    s=$(grep -c '"result": "SKIP"' "$log")
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
done
if [ "$skipped" -gt 0 ]; then
    echo "check: $passed passed, $failed failed, $skipped skipped"
else
    echo "check: $passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
