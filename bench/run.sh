#!/usr/bin/env bash
# Benchmarks: lethe against face-api.js 1.7.15 on tfjs-wasm (tools/ref), both
# measured in this run on this machine, reported as ratios. Run on demand
# (`make bench`), not in CI. Needs ../shared/data (LFW) and tools/ref set up.
#
#   bench/run.sh [describe] [ssd] [kernels] [search] [store]
#                (default: describe ssd kernels; search and store take minutes)
#
# describe  256 LFW centre chips: the whole `lethe embed --chip` process
#           (start-up, decode, 256 descriptors) against the peer's steady
#           state (bench.mjs --mode describe, chips already decoded), and
#           against the peer's whole process too.
# ssd       SSD detection per photo, photos decoded first, after warm-up,
#           on the same photos (bench_detect against bench.mjs --mode ssd), fp32
#           (the default) and --int8.
# kernels   GFLOP/s of the convolution kernels against the machine's peak
#           (bench_kernels).
# search    exact search over 1,000,000 descriptors against FAISS IndexFlatL2
#           (bench/search.sh; ~4 minutes)
# store     LFW ingest throughput against face-api.js's pipeline, and rank-1
#           identification (bench/lfw_store.sh; ~15 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LETHE_TEST_DATA:-../shared/data}
BUILD=${BUILD:-build}
export LETHE_MODELS=${LETHE_MODELS:-$PWD/models}
what=${*:-describe ssd kernels}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
[ -d "$DATA/lfw/images" ] || { echo "bench: $DATA/lfw absent" >&2; exit 1; }
./scripts/setup-ref.sh

json() { node -e "const r=JSON.parse(require('fs').readFileSync(0,'utf8'));console.log(r$1)"; }

if [[ " $what " == *" describe "* ]]; then
    node tools/ref/make-chips.mjs "$out/chips" --n 256 >"$out/chips.list" 2>/dev/null
    echo "== descriptors: 256 LFW chips (150x150)"
    t0=$(date +%s.%N)
    node tools/ref/bench.mjs --mode describe --n 256 --list "$out/chips.list" >"$out/peer.json" 2>/dev/null
    peer_wall=$(echo "$(date +%s.%N) - $t0" | bc -l)
    peer=$(json ".desc_per_s" <"$out/peer.json")
    best=0
    for run in 1 2 3; do
        t0=$(date +%s.%N)
        "$BUILD/lethe" embed --chip --json $(cat "$out/chips.list") >"$out/lethe.jsonl"
        t=$(echo "$(date +%s.%N) - $t0" | bc -l)
        rate=$(echo "256 / $t" | bc -l)
        best=$(echo "if ($rate > $best) $rate else $best" | bc -l)
    done
    [ "$(wc -l <"$out/lethe.jsonl")" = 256 ] || { echo "bench: lethe embed did not describe 256 chips" >&2; exit 1; }
    printf 'face-api.js (tfjs-wasm %s, 1 thread) steady state: %.1f desc/s; whole process: %.1f desc/s\n' \
        "$(json ".wasm_file" <"$out/peer.json")" "$peer" "$(echo "256 / $peer_wall" | bc -l)"
    printf 'lethe embed --chip, whole process, %s threads: %.1f desc/s (best of 3)\n' "$(nproc)" "$best"
    printf 'ratio: %.1fx the peer steady state, %.1fx its whole process\n' \
        "$(echo "$best / $peer" | bc -l)" "$(echo "$best * $peer_wall / 256" | bc -l)"
    printf 'achieved: %.1f GFLOP/s (0.509 GFLOP per descriptor)\n' "$(echo "$best * 0.509" | bc -l)"
    echo
fi

if [[ " $what " == *" ssd "* ]]; then
    photos="$DATA/faceapi/test-images/faces.jpg samples/sample1.jpg samples/sample3.jpg $DATA/lfw/images/AJ_Cook/AJ_Cook_0001.jpg"
    echo "== SSD detection per photo: $(echo $photos | wc -w) photos, 20 timed runs after warm-up"
    node tools/ref/bench.mjs --mode ssd --n 20 $photos >"$out/peer_ssd.json" 2>/dev/null
    p=$(json ".ms_per_photo.mean" <"$out/peer_ssd.json")
    printf 'face-api.js: %.1f ms/photo\n' "$p"
    for mode in "" --int8; do
        "$BUILD/bench/bench_detect" --n 40 $mode $photos >"$out/lethe_ssd.json"
        l=$(json ".ms_per_photo" <"$out/lethe_ssd.json")
        printf 'lethe %s (%s kernels, %s threads): %.1f ms/photo; ratio %.1fx\n' \
            "$(json ".mode" <"$out/lethe_ssd.json")" "$(json ".kernels" <"$out/lethe_ssd.json")" \
            "$(json ".threads" <"$out/lethe_ssd.json")" "$l" "$(echo "$p / $l" | bc -l)"
    done
    echo
fi

if [[ " $what " == *" kernels "* ]] && [ -x "$BUILD/bench/bench_kernels" ]; then
    echo "== convolution kernels"
    "$BUILD/bench/bench_kernels"
fi

if [[ " $what " == *" search "* ]]; then
    bench/search.sh
fi

if [[ " $what " == *" store "* ]]; then
    bench/lfw_store.sh
fi
