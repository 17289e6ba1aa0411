#!/usr/bin/env bash
# tests/python.sh: the Python module's tests (python/tests, run by pytest on
# Debian's python3) against $BUILD/liblethe.so (make python). Prints
# pytest's own report (failures, errors and skips listed: -rfEs), each skip
# again as "  SKIP where: why", then pytest's summary line turned into the
# "N passed, N failed, N skipped" line tests/run.sh reads: failed counts
# pytest's failures and errors, skipped its skips and expected failures
# (xfail), passed its passes (and xpasses).
# With no summary line (pytest crashed) it prints none, so that run.sh
# counts the suite as failed; the exit status is pytest's.
#
#   tests/python.sh [PYTEST ARGS...]
#   BUILD=build-x tests/python.sh      another build folder's library
#   LETHE_PYTHON=...                   another interpreter (default /usr/bin/python3)
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${LETHE_PYTHON:-/usr/bin/python3}
export LETHE_LIBRARY=${LETHE_LIBRARY:-$PWD/$BUILD/liblethe.so}
export PYTHONDONTWRITEBYTECODE=1

if [ ! -f "$LETHE_LIBRARY" ]; then
    echo "not ok python: $LETHE_LIBRARY is missing (make python)"
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi
if ! "$PY" -c 'import pytest' 2>/dev/null; then
    echo "not ok python: $PY cannot import pytest (apt-get install python3-pytest)"
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$PY" -m pytest -rfEs -p no:cacheprovider python/tests "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# each skip and its reason, in the form run.sh shows ("  SKIP where: why")
sed -nE 's/^SKIPPED \[[0-9]+\] ([^ ]+): (.*)$/  SKIP \1: \2/p' "$log"

# pytest's last line: "[=== ]1 failed, 58 passed, 2 skipped, 1 warning in 3.21s[ ===]"
line=$(grep -E '^(=+ )?[0-9]+ [a-z]+.* in [0-9.]+s( \([0-9:]+\))?( =+)?$' "$log" | tail -n 1)
[ -n "$line" ] || exit "$rc"
count() { # count WORD-REGEX: the sum of "N WORD" in the summary line
    echo "$line" | grep -oE "(^|[ ,=])[0-9]+ ($1)\b" | grep -oE '[0-9]+' |
        awk '{ s += $1 } END { print s + 0 }'
}
passed=$(($(count passed) + $(count xpassed)))
failed=$(($(count failed) + $(count 'errors?')))
skipped=$(($(count skipped) + $(count xfailed)))
echo "$passed passed, $failed failed, $skipped skipped"
exit "$rc"
