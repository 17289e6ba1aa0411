#!/usr/bin/env bash
# The store on LFW: ingest throughput against face-api.js's pipeline, and
# rank-1 identification of lethe's store search against face-api.js's own
# descriptors on the same gallery. Run on demand (make bench runs it with
# the others); needs ../shared/data/lfw and tools/ref set up.
#
#   bench/lfw_store.sh [N]        N photos for the throughput run (default all 13,233)
#
# Environment:
#   PEER_N=300        photos the peer's throughput is measured on (the first
#                     PEER_N of the same sorted list; face-api.js takes ~0.3 s
#                     a photo on one core, so the whole set takes over an hour)
#   PEER_JSONL=FILE   face-api.js pipeline output over all 13,233 photos
#                     (tools/ref/pipeline.mjs --list) for the rank-1 comparison;
#                     without it the peer's rank-1 is computed only if
#                     PEER_FULL=1 (runs it here, over an hour)
#   STORE=DIR         where to build the store (default: a temporary folder)
#   PRECISIONS="default fp32"
#                     the lethe --precision values whose ingest is timed, each
#                     into its own store; the first builds STORE, used for rank-1
#                     (the default is the int8 detector where the CPU has
#                     AVX-512 VNNI; LETHE_INT8=0 gives the fp32 detector)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LETHE_TEST_DATA:-../shared/data}
BUILD=${BUILD:-build}
LETHE=$BUILD/lethe
export LETHE_MODELS=${LETHE_MODELS:-$PWD/models}
N=${1:-13233}
PEER_N=${PEER_N:-300}
[ -d "$DATA/lfw/images" ] || { echo "bench: $DATA/lfw absent" >&2; exit 1; }
./scripts/setup-ref.sh
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
STORE=${STORE:-$out/store}
rm -rf "$STORE"

lfw=$(cd "$DATA/lfw/images" && pwd)
# (not `| head`: under pipefail, sort killed by SIGPIPE would end the script)
find "$lfw" -name '*.jpg' | sort >"$out/all"
head -n "$N" "$out/all" >"$out/list"
n=$(wc -l <"$out/list")
{
    echo "path,photo_id,uploader,source,license,jurisdiction,consent"
    awk -F/ '{name=$(NF-1); file=$NF; sub(/\.jpg$/, "", file); printf "%s,%s,%s,lfw,research-only,US,explicit\n", $0, file, name}' "$out/list"
} >"$out/manifest.csv"

echo "== ingest throughput: $n LFW photos (250x250 JPEG), $(nproc) cores"
rates=()
for p in ${PRECISIONS:-default fp32}; do
    st=$STORE
    [ "${#rates[@]}" = 0 ] || st=$out/store-$p
    "$LETHE" init --store "$st" >/dev/null
    t0=$(date +%s.%N)
    "$LETHE" ingest --store "$st" --quiet --json --precision "$p" --allow-outside --manifest "$out/manifest.csv" >"$out/ingest.json"
    t=$(echo "$(date +%s.%N) - $t0" | bc -l)
    rates+=("$p" "$(echo "$n / $t" | bc -l)")
    node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); console.log(`lethe ingest --precision ${process.argv[2]} (computed at ${r.precision}, ${r.kernels} kernels): ${r.added} photos added, ${r.faces} faces, ${r.templates} templates, ${r.no_face} without a face, ${r.errors.length} errors`)' "$out/ingest.json" "$p"
    printf 'lethe ingest --precision %s (whole process: decode, detect, landmarks, align, describe, catalog, index): %.1f photos/s (%.0f s)\n' "$p" "${rates[-1]}" "$t"
    [ "$st" = "$STORE" ] || rm -rf "$st"
done

head -n "$PEER_N" "$out/list" >"$out/peer.list"
t0=$(date +%s.%N)
node tools/ref/pipeline.mjs --list "$out/peer.list" >"$out/peer.jsonl" 2>/dev/null
pt=$(echo "$(date +%s.%N) - $t0" | bc -l)
prate=$(echo "$PEER_N / $pt" | bc -l)
printf 'face-api.js pipeline (tfjs-wasm, detectAllFaces+landmarks+descriptors, whole process) on the first %d: %.2f photos/s\n' "$PEER_N" "$prate"
for ((k = 0; k < ${#rates[@]}; k += 2)); do
    printf 'ratio, --precision %s: %.1fx\n' "${rates[k]}" "$(echo "${rates[k + 1]} / $prate" | bc -l)"
done
du -sh "$STORE" | awk '{print "store size: " $1}'

if [ "$n" -lt 13233 ]; then
    echo "(rank-1 needs all 13,233 photos; skipped)"
    exit 0
fi
echo
echo "== rank-1 identification"
peer_arg=()
if [ -n "${PEER_JSONL:-}" ]; then
    peer_arg=(--peer "$PEER_JSONL")
    echo "(peer descriptors from $PEER_JSONL)"
elif [ "${PEER_FULL:-0}" = 1 ]; then
    node tools/ref/pipeline.mjs --list "$out/list" >"$out/peer-full.jsonl" 2>/dev/null
    peer_arg=(--peer "$out/peer-full.jsonl")
fi
"$BUILD/bench/eval_rank1" --store "$STORE" --lfw "$DATA/lfw" "${peer_arg[@]}"
