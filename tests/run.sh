#!/usr/bin/env bash
# Run every test: the unit and parity tests (build/tests/test_*), the CLI
# tests (tests/cli/*.sh), the fuzz corpus replay, then the unit tests again
# built with ASan+UBSan. Prints one "N passed, N failed, N skipped" line per
# suite and a total at the end; exits non-zero if anything failed.
#
#   tests/run.sh            everything
#   tests/run.sh --fast     skip the sanitizer rebuild
set -uo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
fast=0
[ "${1:-}" = "--fast" ] && fast=1
export LETHE_MODELS=${LETHE_MODELS:-$PWD/models}
# With the reference harness installed, the detector parity test also runs
# face-api.js live on every anchor (not only the committed fixture).
if [ -f tools/ref/node_modules/@vladmandic/face-api/package.json ] && command -v node >/dev/null; then
    export LETHE_REF=${LETHE_REF:-1}
fi

total_pass=0 total_fail=0 total_skip=0
log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT

# run NAME CMD...: run a suite, read its summary line, add it to the totals.
run() {
    local name=$1; shift
    local log="$log_dir/$(echo "$name" | tr '/ ' '__').log"
    local start=$SECONDS
    "$@" >"$log" 2>&1
    local rc=$?
    local line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        line="0 passed, 1 failed, 0 skipped"
        echo "--- $name printed no summary (exit $rc):"; tail -n 30 "$log"
    elif [ $rc -ne 0 ] && ! echo "$line" | grep -qv ' 0 failed'; then
        # exited non-zero yet claims no failure: count the crash
        line="$(echo "$line" | awk '{print $1}') passed, 1 failed, 0 skipped"
        echo "--- $name exited $rc:"; tail -n 30 "$log"
    fi
    local p f s
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | grep -oE '[0-9]+ skipped' | awk '{print $1}')
    s=${s:-0}
    total_pass=$((total_pass + p)); total_fail=$((total_fail + f)); total_skip=$((total_skip + s))
    printf '%-28s %s (%ds)\n' "$name" "$line" $((SECONDS - start))
    if [ "$f" != 0 ]; then grep -E 'FAIL|not ok|ERROR|error' "$log" | head -n 20; fi
    grep -E '^  SKIP' "$log" | head -n 10
}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    run "$(basename "$t")" "$t"
done
for t in tests/cli/*.sh; do
    [ -f "$t" ] || continue
    run "cli/$(basename "$t" .sh)" bash "$t" "$BUILD/lethe"
done
if [ -x "$BUILD/tests/fuzz_replay" ] && [ -d tests/fuzz/corpus ]; then
    for d in tests/fuzz/corpus/*/; do
        target=$(basename "$d")
        run "fuzz-replay/$target" "$BUILD/tests/fuzz_replay" "$target" "$d"
    done
fi

if [ $fast = 0 ]; then
    echo "building with ASan+UBSan (build-san/) ..."
    if make -s BUILD=build-san SAN=1 OPT=-O1 tests cli >"$log_dir/san-build.log" 2>&1; then
        export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
        export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
        for t in build-san/tests/test_*; do
            [ -x "$t" ] || continue
            LETHE_TEST_SAN=1 run "san/$(basename "$t")" "$t"
        done
        for t in tests/cli/*.sh; do
            [ -f "$t" ] || continue
            LETHE_TEST_SAN=1 run "san/cli/$(basename "$t" .sh)" bash "$t" build-san/lethe
        done
        if [ -d tests/fuzz/corpus ]; then
            for d in tests/fuzz/corpus/*/; do
                target=$(basename "$d")
                run "san/fuzz-replay/$target" build-san/tests/fuzz_replay "$target" "$d"
            done
        fi
    else
        tail -n 30 "$log_dir/san-build.log"
        total_fail=$((total_fail + 1))
        echo "sanitizer build failed"
    fi
    if [ -x tests/fuzz/build.sh ] && command -v clang >/dev/null; then
        run "fuzz/libfuzzer" tests/fuzz/build.sh --run "${LETHE_FUZZ_SECONDS:-20}"
    fi
fi

echo
echo "total: $total_pass passed, $total_fail failed, $total_skip skipped"
[ "$total_fail" = 0 ]
