#!/usr/bin/env bash
# Open-set 1:N identification on LFW, as NIST measures it, for lethe and
# face-api.js's pipeline in the same run (build/bench/openset), the check
# of the shipped calibration table on LFW's N-Z half (build/bench/calibrate
# --check), and `lethe search --fpir 0.01` through the CLI on a store of
# every LFW face but the non-mated probes. Run on demand; needs
# ../shared/data/lfw. See bench/README.md, "Match evidence and open-set
# identification".
#
#   bench/openset.sh
#
# Environment:
#   CACHE=DIR         where the descriptor caches live (default /work/cache,
#                     else $TMPDIR): lfw-lethe.jsonl (`lethe embed --json` over
#                     every LFW photo, made here once if absent: ~15 min on 2
#                     cores) and lfw-faceapi.jsonl (tools/ref/pipeline.mjs)
#   PEER_FULL=1       make lfw-faceapi.jsonl here if absent (about 2 hours on
#                     one core); without it, and without the file, no peer.
#                     The peer runs over people in a fixed shuffled order, so
#                     a file cut short still covers whole people at random
#   SVG=FILE          where the DET curve goes (default docs/openset-det.svg)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LETHE_TEST_DATA:-../shared/data}
BUILD=${BUILD:-build}
LETHE=$BUILD/lethe
export LETHE_MODELS=${LETHE_MODELS:-$PWD/models}
[ -d "$DATA/lfw/images" ] || { echo "openset: $DATA/lfw absent" >&2; exit 1; }
CACHE=${CACHE:-/work/cache}
mkdir -p "$CACHE" 2>/dev/null || CACHE=${TMPDIR:-/tmp}
SVG=${SVG:-docs/openset-det.svg}
LFW=$(cd "$DATA/lfw" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

if [ ! -s "$CACHE/lfw-lethe.jsonl" ]; then
    echo "== lethe embed --json over every LFW photo, once, into $CACHE/lfw-lethe.jsonl"
    find "$LFW/images" -name '*.jpg' | sort >"$out/all"
    # fp32: the detector the shipped calibration table was measured with
    # (the default is the int8 detector where the CPU has AVX-512 VNNI)
    xargs -a "$out/all" -d '\n' "$LETHE" embed --json --precision fp32 >"$CACHE/lfw-lethe.jsonl.part"
    mv "$CACHE/lfw-lethe.jsonl.part" "$CACHE/lfw-lethe.jsonl"
fi
peer=()
if [ ! -s "$CACHE/lfw-faceapi.jsonl" ] && [ "${PEER_FULL:-0}" = 1 ]; then
    ./scripts/setup-ref.sh
    echo "== face-api.js's pipeline over every LFW photo, once (people in a shuffled order)"
    for d in "$LFW"/images/*/; do n=$(basename "$d"); echo "$(printf %s "$n" | md5sum | cut -c1-12) $n"; done |
        sort | while read -r _ n; do ls "$LFW/images/$n"/*.jpg; done >"$out/peer.list"
    node tools/ref/pipeline.mjs --list "$out/peer.list" >"$CACHE/lfw-faceapi.jsonl"
fi
[ -s "$CACHE/lfw-faceapi.jsonl" ] && peer=(--peer "$CACHE/lfw-faceapi.jsonl")

echo "== the calibration table (shipped) against LFW's N-Z half"
"$BUILD/bench/calibrate" --lfw "$LFW" --embeddings "$CACHE/lfw-lethe.jsonl" --check

echo
echo "== open-set identification"
"$BUILD/bench/openset" --lfw "$LFW" --embeddings "$CACHE/lfw-lethe.jsonl" "${peer[@]}" --multi --store-dir "$out/multi-store" \
    --svg "$SVG" --write-fpir "$out"
echo "(DET curve: $SVG)"

echo
echo "== lethe search --fpir 0.01 through the CLI: a store of every LFW face but the non-mated probes"
S=$out/store
"$LETHE" init --store "$S" >/dev/null
"$LETHE" ingest --store "$S" --quiet --descriptors "$out/gallery.jsonl"
"$LETHE" search --store "$S" --purpose "evaluation: LFW open-set" --json --top 1 --fpir 0.01 \
    --queries "$out/nonmated.jsonl" >"$out/search.jsonl"
node -e '
    const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
    const hit = lines.filter((q) => q.matches.length > 0).length;
    const q = lines[0];
    console.log(`store of ${q.gallery} faces, --fpir 0.01: threshold ${q.threshold}; ` +
        `${hit} of ${lines.length} non-mated searches returned a face (${(100 * hit / lines.length).toFixed(2)}%)`);
    process.exit(hit <= 0.01 * lines.length ? 0 : 1);' "$out/search.jsonl"
