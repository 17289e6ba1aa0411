#!/usr/bin/env bash
# Run every test: the unit and parity tests (build/tests/test_*), the CLI
# tests (tests/cli/*.sh), the Python module's tests (python/tests, against
# build/liblethe.so, built here), the fuzz corpus replay (plain, and with
# every allocation failing in turn), then the unit tests, CLI tests and
# replay again built with ASan+UBSan, the threaded tests built with TSan,
# and a short libFuzzer run. Exits non-zero if anything failed.
#
#   tests/run.sh            everything
#   tests/run.sh --fast     without the sanitizer, TSan and libFuzzer steps
#   tests/run.sh --python   only the Python tests (and the build of liblethe.so)
#
# Every suite (one test binary, CLI script, corpus replay or libFuzzer run)
# prints "N passed, N failed, N skipped"; this script prints that line per
# suite, then the totals by kind, each in its own unit (C test functions,
# CLI checks, Python tests, fuzz inputs, libFuzzer targets), then the wall time, and
# last "suites: N passed, N failed, N skipped" (a suite fails if any of its
# checks failed, it crashed, timed out or printed no summary; it is skipped
# if it skipped everything; a build that fails counts as a failed suite).
#
# Each suite runs under coreutils timeout; a suite that overruns is killed
# and counted as failed, by name. The limits, in seconds, by kind (the
# environment variable sets one kind; LETHE_TEST_TIMEOUT sets them all):
#   LETHE_TIMEOUT_UNIT=600     C tests      LETHE_TIMEOUT_SAN=1800   under ASan
#   LETHE_TIMEOUT_CLI=1200     CLI scripts  LETHE_TIMEOUT_TSAN=900   under TSan
#   LETHE_TIMEOUT_FUZZ=300     replays      LETHE_TIMEOUT_BUILD=1800 builds
#   LETHE_TIMEOUT_PYTHON=600   the Python tests (one pytest run)
#   LETHE_TIMEOUT_LIBFUZZER=1200 (the libFuzzer build and run)
set -uo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
fast=0 only=""
[ "${1:-}" = "--fast" ] && fast=1
[ "${1:-}" = "--python" ] && fast=1 only=python
run_start=$(date +%s)
export LETHE_MODELS=${LETHE_MODELS:-$PWD/models}
# The shared test data, found as tests/test.h finds it, named once so that
# the shell tests see the same folder as the C tests.
if [ -z "${LETHE_TEST_DATA:-}" ]; then
    for d in ../shared/data ../../shared/data; do
        if [ -d "$d" ]; then
            LETHE_TEST_DATA=$(cd "$d" && pwd)
            export LETHE_TEST_DATA
            break
        fi
    done
fi
# With the reference harness installed, the detector parity test also runs
# face-api.js live on every anchor (not only the committed fixture).
if [ -f tools/ref/node_modules/@vladmandic/face-api/package.json ] && command -v node >/dev/null; then
    export LETHE_REF=${LETHE_REF:-1}
fi

# limit KIND DEFAULT: the timeout in seconds for a kind of suite
limit() {
    local var="LETHE_TIMEOUT_$1"
    echo "${LETHE_TEST_TIMEOUT:-${!var:-$2}}"
}

# Totals: by kind (in that kind's unit), and suites.
declare -A kind_pass kind_fail kind_skip
kinds=()
suite_pass=0 suite_fail=0 suite_skip=0
log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT

add_kind() { # add_kind KIND P F S
    if [ -z "${kind_pass[$1]+x}" ]; then
        kinds+=("$1")
        kind_pass[$1]=0 kind_fail[$1]=0 kind_skip[$1]=0
    fi
    kind_pass[$1]=$((kind_pass[$1] + $2))
    kind_fail[$1]=$((kind_fail[$1] + $3))
    kind_skip[$1]=$((kind_skip[$1] + $4))
}

# tally KIND P F S: one suite's counts into its kind's and the suites' totals
tally() {
    add_kind "$1" "$2" "$3" "$4"
    if [ "$3" != 0 ]; then
        suite_fail=$((suite_fail + 1))
    elif [ "$2" = 0 ] && [ "$4" != 0 ]; then
        suite_skip=$((suite_skip + 1))
    else
        suite_pass=$((suite_pass + 1))
    fi
}

# run KIND SECONDS NAME CMD...: run a suite under a timeout, read its summary
# line, add it to the totals of its kind and to the suites.
run() {
    local kind=$1 secs=$2 name=$3; shift 3
    local log
    log="$log_dir/$(echo "$name" | tr -c 'A-Za-z0-9_.+-' '_').log"
    local start=$SECONDS
    timeout --kill-after=20 "$secs" "$@" >"$log" 2>&1
    local rc=$?
    local line verdict=""
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ $rc = 124 ] || [ $rc = 137 ]; then
        verdict="TIMED OUT after ${secs}s"
        echo "--- $name timed out after ${secs}s (killed); its last lines:"; tail -n 15 "$log"
    elif [ -z "$line" ]; then
        verdict="printed no summary (exit $rc)"
        echo "--- $name printed no summary (exit $rc):"; tail -n 30 "$log"
    elif [ $rc -ne 0 ] && echo "$line" | grep -q ' 0 failed'; then
        verdict="exited $rc"
        echo "--- $name exited $rc, claiming no failure:"; tail -n 30 "$log"
    fi
    local p=0 f=0 s=0
    if [ -n "$line" ]; then
        p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
        f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
        s=$(echo "$line" | grep -oE '[0-9]+ skipped' | awk '{print $1}')
        s=${s:-0}
    fi
    [ -n "$verdict" ] && [ "$f" = 0 ] && f=1 # the crash or timeout itself
    if [ -n "${RUN_RESULT:-}" ]; then
        printf '%s\t%s\t%s\t%s\n' "$kind" "$p" "$f" "$s" >"$RUN_RESULT"
    else
        tally "$kind" "$p" "$f" "$s"
    fi
    printf '%-34s %s (%ds)%s\n' "$name" "${line:-no summary}" $((SECONDS - start)) \
        "${verdict:+  $verdict}"
    if [ "$f" != 0 ]; then grep -E 'FAIL|not ok|ERROR|error' "$log" | head -n 20; fi
    grep -E 'Sanitizer|runtime error' "$log" | grep -v '^ *#' | sort | uniq -c | head -n 10
    grep -E '^  SKIP' "$log" | head -n 10
}

# Lanes: suites that run one process at a time (the CLI scripts, the C
# tests, the replays) leave a core idle on a 2-core machine, so `lane`
# starts up to LETHE_TEST_JOBS (default: the number of cores, at most 4)
# suites at once. Each one's report is kept and printed, and counted, in
# the order they were started, when `drain` waits for them. The threaded
# suites (TSan) and libFuzzer run alone.
jobs=${LETHE_TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
[ "$jobs" -gt 4 ] && jobs=4
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1
lanes=() lane_seq=0
# lane ARGS...: run ARGS as `run` does, beside others
lane() {
    if [ "$jobs" = 1 ]; then run "$@"; return; fi
    local out="$log_dir/lane.$lane_seq"
    lane_seq=$((lane_seq + 1))
    ( RUN_RESULT="$out.res" run "$@" >"$out.txt" 2>&1 ) &
    lanes+=("$!:$out")
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
}
# drain: wait for every lane, print its report, count it
drain() {
    local l pid out k p f s
    for l in "${lanes[@]}"; do
        pid=${l%%:*} out=${l#*:}
        wait "$pid"
        cat "$out.txt"
        if IFS=$'\t' read -r k p f s <"$out.res" 2>/dev/null; then
            tally "$k" "$p" "$f" "$s"
        else
            echo "--- a suite's lane ended without a result (${out##*/})"
            tally "lanes" 0 1 0
        fi
    done
    lanes=()
}

# build NAME SECONDS CMD...: a build step; its failure counts as a failed suite
build() {
    local name=$1 secs=$2; shift 2
    local start=$SECONDS log
    log="$log_dir/build-$(echo "$name" | tr -c 'A-Za-z0-9_.+-' '_').log"
    echo "building $name ..."
    timeout --kill-after=20 "$secs" "$@" >"$log" 2>&1
    local rc=$?
    if [ $rc = 0 ]; then
        printf '%-34s built (%ds)\n' "build/$name" $((SECONDS - start))
        return 0
    fi
    [ $rc = 124 ] && echo "--- build $name timed out after ${secs}s"
    tail -n 30 "$log"
    echo "--- build $name failed (exit $rc)"
    suite_fail=$((suite_fail + 1))
    add_kind "builds" 0 1 0
    return 1
}

# replay KIND PREFIX DIR_OF_REPLAYER [--alloc-fail]: every committed corpus
replay() {
    local kind=$1 prefix=$2 bin=$3; shift 3
    [ -x "$bin" ] && [ -d tests/fuzz/corpus ] || return 0
    for d in tests/fuzz/corpus/*/; do
        local target
        target=$(basename "$d")
        lane "$kind" "$(limit FUZZ 300)" "$prefix/$target" "$bin" "$@" "$target" "$d"
    done
    drain
}

# --- the plain build ---------------------------------------------------
if [ -z "$only" ]; then
    for t in "$BUILD"/tests/test_*; do
        [ -x "$t" ] || continue
        lane "C test functions" "$(limit UNIT 600)" "$(basename "$t")" "$t"
    done
    for t in tests/cli/*.sh; do
        [ -f "$t" ] || continue
        lane "CLI checks" "$(limit CLI 1200)" "cli/$(basename "$t" .sh)" bash "$t" "$BUILD/lethe"
    done
    drain
fi
# The Python module over the shared library (not in `make all`: it compiles
# the library a second time, with -fPIC), pytest's summary as its counts.
if build "liblethe.so (make python)" "$(limit BUILD 1800)" make -s -j2 BUILD="$BUILD" python; then
    run "Python tests" "$(limit PYTHON 600)" "python (pytest python/tests)" \
        env BUILD="$BUILD" bash tests/python.sh
fi
if [ -z "$only" ]; then
    run "source checks" "$(limit CLI 1200)" "fnlen (functions over 80 lines)" bash tests/fnlen.sh
    run "source checks" "$(limit CLI 1200)" "api_coverage (public functions no C test calls)" \
        bash tests/api_coverage.sh
    replay "fuzz inputs" "fuzz-replay" "$BUILD/tests/fuzz_replay"
    replay "fuzz inputs, every allocation failing in turn" "fuzz-replay-alloc-fail" \
        "$BUILD/tests/fuzz_replay" --alloc-fail
fi

if [ $fast = 0 ]; then
    # --- ASan + UBSan --------------------------------------------------
    if build "ASan+UBSan (build-san/)" "$(limit BUILD 1800)" \
        make -s -j2 BUILD=build-san SAN=1 OPT=-O1 tests cli; then
        export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
        export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
        for t in build-san/tests/test_*; do
            [ -x "$t" ] || continue
            LETHE_TEST_SAN=1 lane "C test functions under ASan+UBSan" "$(limit SAN 1800)" \
                "san/$(basename "$t")" "$t"
        done
        for t in tests/cli/*.sh; do
            [ -f "$t" ] || continue
            LETHE_TEST_SAN=1 lane "CLI checks under ASan+UBSan" "$(limit SAN 1800)" \
                "san/cli/$(basename "$t" .sh)" bash "$t" build-san/lethe
        done
        drain
        replay "fuzz inputs under ASan+UBSan" "san/fuzz-replay" build-san/tests/fuzz_replay
        replay "fuzz inputs under ASan+UBSan, every allocation failing in turn" \
            "san/fuzz-replay-alloc-fail" build-san/tests/fuzz_replay --alloc-fail
        unset ASAN_OPTIONS UBSAN_OPTIONS
    fi

    # --- ThreadSanitizer: the tests that run threads -------------------
    # Only the tests whose threads matter (the nn pool; one engine used from
    # several threads and its pooled analysis; threaded index search; the
    # detector nets shared by threads; the store's concurrent search; a
    # shared store handle's searches beside ingest and forget):
    # TSan makes the numeric tests 5 to 15 times slower. setarch -R turns
    # address randomisation off for the test, as TSan's memory layout needs
    # on kernels with more mmap randomness than it expects.
    if build "TSan (build-tsan/)" "$(limit BUILD 1800)" make -s -j2 tsan; then
        export TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1"
        norand=()
        setarch "$(uname -m)" -R true 2>/dev/null && norand=(setarch "$(uname -m)" -R)
        tsan() { # tsan NAME TESTS...
            local bin=$1; shift
            [ -x "build-tsan/tests/$bin" ] || { echo "--- build-tsan/tests/$bin missing"; return; }
            run "C test functions under TSan" "$(limit TSAN 900)" "tsan/$bin${1:+ ($*)}" \
                "${norand[@]}" "build-tsan/tests/$bin" "$@"
        }
        tsan test_nn test_pool test_conv_odd_shapes test_dwconv_odd_shapes test_alloc_failure
        tsan test_engine test_chips_batch_and_threads test_faces_photo
        tsan test_detect concurrent
        tsan test_index
        tsan test_store
        tsan test_concurrency
        tsan test_analyze test_batch_order_and_errors test_batch_cancel_and_args \
            test_errmsg_per_thread test_one_call_many_threads
        unset TSAN_OPTIONS
    fi

    # --- libFuzzer ------------------------------------------------------
    if [ -x tests/fuzz/build.sh ] && command -v clang >/dev/null; then
        run "libFuzzer targets" "$(limit LIBFUZZER 1200)" "fuzz/libfuzzer" \
            tests/fuzz/build.sh --run "${LETHE_FUZZ_SECONDS:-20}"
    fi
fi

echo
for k in "${kinds[@]}"; do
    printf '%-66s %d passed, %d failed, %d skipped\n' "$k:" "${kind_pass[$k]}" \
        "${kind_fail[$k]}" "${kind_skip[$k]}"
done
wall=$(($(date +%s) - run_start))
printf 'wall time: %dm %02ds (%d s)\n' $((wall / 60)) $((wall % 60)) "$wall"
echo "suites are test binaries, CLI scripts, the pytest run, corpus replays and libFuzzer runs (a failed build counts as a failed suite):"
echo "suites: $suite_pass passed, $suite_fail failed, $suite_skip skipped"
[ "$suite_fail" = 0 ]
