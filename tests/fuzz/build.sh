#!/usr/bin/env bash
# build.sh: build the libFuzzer targets (clang, ASan + UBSan) into build-fuzz/
# and optionally run each one for a while on a scratch copy of its corpus.
#
#   tests/fuzz/build.sh                 build build-fuzz/fuzz_<target> for every target
#   tests/fuzz/build.sh --run 30        ... then fuzz each target for 30 s
#   tests/fuzz/build.sh --run 300 image ... only the named target(s)
#
# Environment: CC (default clang), OUT (default build-fuzz), FUZZ_FLAGS (extra
# libFuzzer flags for --run), FUZZ_JOBS (targets fuzzed at once, default
# the number of cores).
#
# New inputs that libFuzzer finds go to build-fuzz/corpus/<target>/ (never
# into the committed corpus); crashes go to build-fuzz/artifacts/<target>/.
# Copy a crasher into tests/fuzz/corpus/<target>/ once it is fixed, so that
# `make test` replays it from then on. Exits non-zero if a run found a crash.
set -euo pipefail

cd "$(dirname "$0")/../.."

CC=${CC:-clang}
# make exports CC=cc; libFuzzer needs clang.
case "$CC" in cc | gcc | gcc-*) CC=clang ;; esac
OUT=${OUT:-build-fuzz}
RUN_SECONDS=
TARGETS=

while [ $# -gt 0 ]; do
    case "$1" in
    --run)
        [ $# -ge 2 ] || { echo "build.sh: --run needs a number of seconds" >&2; exit 2; }
        RUN_SECONDS=$2
        shift 2
        ;;
    -h | --help)
        sed -n '2,16p' "$0"
        exit 0
        ;;
    image | weights | manifest_csv | manifest_jsonl | policy | datasheet | receipt | index | \
        manifest_raw | queries | keyring | backup_json | log_head | request_json | http)
        TARGETS="$TARGETS $1"
        shift
        ;;
    *)
        echo "build.sh: unknown argument $1 (try --help)" >&2
        exit 2
        ;;
    esac
done
TARGETS=${TARGETS:-image weights manifest_csv manifest_jsonl policy datasheet receipt index manifest_raw queries keyring backup_json log_head request_json http}

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "build.sh: $CC not found; libFuzzer needs clang (apt-get install clang)" >&2
    exit 1
fi

# Only the library parts the targets reach are built: this keeps the build
# quick and independent of unrelated subsystems (add folders here when a
# target starts to need them).
SRC_DIRS="src/util src/image src/model src/policy src/manifest src/index"
# Single files from folders whose other files the targets do not need.
SRC_FILES="src/report/datasheet.c src/forget/receipt.c src/forget/keyring.c src/forget/backup_info.c src/store/head.c programs/serve_json.c"
# Linked but neither instrumented nor sanitized: the index target needs the
# thread pool and CPU detection of src/nn, which pull in every kernel, and
# ASan+UBSan on the SIMD kernels costs minutes of compiling (about 50 s for
# nn_int8_avx512.c alone, against 1.5 s plain) for code no target parses with.
PLAIN_DIRS="src/nn"
# shellcheck disable=SC2054  # the commas belong to -fsanitize=
CFLAGS=(-std=c11 -pthread -D_GNU_SOURCE -g -O1 -Iinclude -Isrc
        -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
        -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter)
LIBS=(-ljpeg -lpng -lwebp -lsodium -lz -lm -lpthread)

mkdir -p "$OUT/obj"

# compile LIST...: every file or folder's .c files into $OUT/obj (kept
# while newer than their sources), their objects appended to objs
compile() {
    local src_dir_or_file src obj flags srcs isa
    for src_dir_or_file in "$@"; do
        case "$src_dir_or_file" in
        *.c) srcs=("$src_dir_or_file") ;;
        *) srcs=("$src_dir_or_file"/*.c) ;;
        esac
        flags=("${CFLAGS[@]}" -fsanitize=fuzzer-no-link)
        case " $PLAIN_DIRS " in
        *" $src_dir_or_file "*) flags=(-std=c11 -pthread -D_GNU_SOURCE -g -O1 -Iinclude -Isrc) ;;
        esac
        for src in "${srcs[@]}"; do
            [ -e "$src" ] || continue
            obj="$OUT/obj/${src//\//_}"
            obj="${obj%.c}.o"
            case " ${objs[*]} " in *" $obj "*) continue ;; esac
            # Instrumented for coverage, but main() comes from libFuzzer.
            # SIMD kernels need their instruction sets (as in the Makefile);
            # they run only where the CPU has them.
            isa=()
            case "$src" in
            *_avx2.c) isa=(-mavx2 -mfma -mf16c) ;;
            *_avx512.c) isa=(-mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mavx512vnni
                             -mfma -mf16c) ;;
            esac
            if [ ! -e "$obj" ] || [ "$src" -nt "$obj" ] || [ "$0" -nt "$obj" ] ||
                [ -n "$(find include src programs -name '*.h' -newer "$obj" | head -n 1)" ]; then
                echo "  CC $src"
                "$CC" "${flags[@]}" "${isa[@]}" -c "$src" -o "$obj"
            fi
            objs+=("$obj")
        done
    done
}
objs=()
compile $SRC_DIRS $SRC_FILES $PLAIN_DIRS
rm -f "$OUT/liblethe-fuzz.a"
ar rcs "$OUT/liblethe-fuzz.a" "${objs[@]}"
# The http target is lethe serve itself: the whole library (the face
# models' code plain, as no face engine is loaded) and the program's files
# but its main.
if [[ " $TARGETS " == *" http "* ]]; then
    PLAIN_DIRS="$PLAIN_DIRS src/face"
    compile src/access src/forget src/requests src/store src/report src/face \
        $(ls programs/*.c | grep -v '^programs/lethe\.c$')
    rm -f "$OUT/liblethe-fuzz-all.a"
    ar rcs "$OUT/liblethe-fuzz-all.a" "${objs[@]}"
fi

for t in $TARGETS; do
    echo "  LINK $OUT/fuzz_$t"
    if [ "$t" = http ]; then
        "$CC" "${CFLAGS[@]}" -fsanitize=fuzzer -DLETHE_LIBFUZZER -DLETHE_FUZZ_TARGET="$t" \
            tests/fuzz/replay.c tests/fuzz/http.c "$OUT/liblethe-fuzz-all.a" "${LIBS[@]}" \
            -lsqlite3 -lmicrohttpd -o "$OUT/fuzz_$t"
        continue
    fi
    "$CC" "${CFLAGS[@]}" -fsanitize=fuzzer -DLETHE_LIBFUZZER -DLETHE_FUZZ_TARGET="$t" \
        tests/fuzz/replay.c tests/fuzz/targets.c "$OUT/liblethe-fuzz.a" "${LIBS[@]}" \
        -o "$OUT/fuzz_$t"
done

[ -n "$RUN_SECONDS" ] || exit 0

# fuzz_one TARGET: fuzz one target for RUN_SECONDS; its output goes to
# $OUT/logs/TARGET.log, its verdict to TARGET.ok or TARGET.failed there
fuzz_one() {
    local t=$1 corpus="$OUT/corpus/$1" artifacts="$OUT/artifacts/$1" max_len=16384
    rm -rf "$corpus"
    mkdir -p "$corpus" "$artifacts"
    cp -R tests/fuzz/corpus/"$t"/. "$corpus"/
    [ "$t" = image ] && max_len=65536
    # The index target writes and syncs a file of up to 340 KB per input;
    # libFuzzer's default rss limit is fine, its per-input timeout too.
    echo "== fuzz_$t for ${RUN_SECONDS}s (corpus $corpus, crashes in $artifacts)"
    # shellcheck disable=SC2086  # FUZZ_FLAGS is a list of flags
    if "$OUT/fuzz_$t" -max_total_time="$RUN_SECONDS" -timeout=10 -rss_limit_mb=2048 \
        -max_len="$max_len" -print_final_stats=1 -artifact_prefix="$artifacts/" \
        ${FUZZ_FLAGS:-} "$corpus"; then
        touch "$OUT/logs/$t.ok"
    else
        echo "== fuzz_$t FOUND A PROBLEM: see $artifacts"
    fi
}

# Targets run side by side, FUZZ_JOBS at once (default: the number of
# cores): each libFuzzer process is one thread. Their logs print in order.
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
rm -rf "$OUT/logs"
mkdir -p "$OUT/logs"
for t in $TARGETS; do
    fuzz_one "$t" >"$OUT/logs/$t.log" 2>&1 &
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
done
wait || true
status=0 fuzz_passed=0 fuzz_failed=0
for t in $TARGETS; do
    cat "$OUT/logs/$t.log"
    if [ -e "$OUT/logs/$t.ok" ]; then
        fuzz_passed=$((fuzz_passed + 1))
    else
        echo "== fuzz_$t FOUND A PROBLEM: see $OUT/artifacts/$t" >&2
        fuzz_failed=$((fuzz_failed + 1))
        status=1
    fi
done
echo "$fuzz_passed passed, $fuzz_failed failed, 0 skipped"
exit $status
