#!/usr/bin/env bash
# Exact k-NN search: lethe's descriptor index against FAISS IndexFlatL2, both
# measured in this run on this machine, on the same data, reported as ratios.
# Run on demand, not in CI.
#
#   bench/search.sh              1,000,000 descriptors, 1,000 queries, top 10
#   SEARCH_N=100000 bench/search.sh     a quick run
#
# Environment: SEARCH_N (rows, default 1000000), SEARCH_NQ (queries, 1000),
# SEARCH_K (10), SEARCH_THREADS (lethe's threads, 0 = one per core),
# SEARCH_SINGLE (FAISS: time only this many single queries; 0 = all, the
# default), SEARCH_SEEDS (a float32 file of seed descriptors to use instead of
# running lethe embed), LETHE_TEST_DATA (../shared/data), BUILD (build).
#
# The data: ~300 real descriptors (`lethe embed --json` over the first photo
# of the first 320 people of LFW) are the seeds; every row and query is a seed
# plus Gaussian noise (sigma 0.025 per component: two copies of one seed are
# ~0.40 apart, like two photos of one person; copies of different seeds ~0.9).
# FAISS's single-query search runs on one core (it parallelises over
# queries); its batch search is timed with 1 OpenMP thread and with one per
# core, and the better is kept. Both sides see the same busy machine.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LETHE_TEST_DATA:-../shared/data}
BUILD=${BUILD:-build}
N=${SEARCH_N:-1000000}
NQ=${SEARCH_NQ:-1000}
K=${SEARCH_K:-10}
THREADS=${SEARCH_THREADS:-0}
PY=/usr/bin/python3

if ! "$PY" -c 'import faiss, numpy' 2>/dev/null; then
    echo "bench/search.sh: FAISS for $PY is not installed; install it with:" >&2
    echo "    apt-get install -y python3-faiss libopenblas0-pthread python3-numpy" >&2
    exit 1
fi

out=$(mktemp -d "${TMPDIR:-/tmp}/lethe-search.XXXXXX")
trap 'rm -rf "$out"' EXIT

# bench_search: the make-built one, else built here from the few sources it
# needs (the index, the nn kernel selection and the util wrapper), so the
# benchmark runs even while other parts of the tree do not build.
BENCH=$BUILD/bench/bench_search
if [ ! -x "$BENCH" ] || [ -n "$(find src/index bench/bench_search.c -newer "$BENCH" 2>/dev/null)" ]; then
    if ! make -s "$BENCH" >/dev/null 2>&1; then
        echo "bench/search.sh: 'make $BENCH' failed; building bench_search directly" >&2
        BENCH=$out/bench_search
        mkdir -p "$out/obj"
        flags="-std=c11 -O2 -g -Iinclude -Isrc -D_GNU_SOURCE -pthread"
        objs=()
        for f in src/index/*.c src/nn/*.c src/util/util.c; do
            o=$out/obj/$(echo "$f" | tr / _).o
            case $f in
            *_avx2.c) x="-mavx2 -mfma -mf16c" ;;
            *_avx512.c) x="-mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mavx512vnni -mfma -mf16c" ;;
            *) x="" ;;
            esac
            gcc $flags $x -c "$f" -o "$o"
            objs+=("$o")
        done
        gcc $flags -o "$BENCH" bench/bench_search.c "${objs[@]}" -lm -lpthread
    fi
fi

# Seed descriptors.
seeds=${SEARCH_SEEDS:-}
if [ -z "$seeds" ]; then
    LETHE=$BUILD/lethe
    if [ ! -x "$LETHE" ]; then
        echo "bench/search.sh: $LETHE is missing: build it with 'make' at the repository root" >&2
        echo "(or pass SEARCH_SEEDS=FILE, float32 x 128 per descriptor)" >&2
        exit 1
    fi
    PY=$PY bench/lfw_seeds.sh "$LETHE" "$DATA" "$out"
    seeds=$out/seeds.f32
fi

echo "== data: $N rows, $NQ queries (seed descriptors + noise)"
"$BENCH" gen --seeds "$seeds" --out "$out" --n "$N" --nq "$NQ" >"$out/gen.json"

echo "== FAISS $("$PY" -c 'import faiss; print(faiss.__version__)') IndexFlatL2 (this takes a few minutes at 1M rows)"
# Passive OpenMP waiting: with spinning workers FAISS's batch search was
# several times slower here (they compete with OpenBLAS's threads).
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} \
    "$PY" bench/faiss_peer.py --dir "$out" --k "$K" --single "${SEARCH_SINGLE:-0}" --repeat 2 \
    >"$out/faiss.json"

echo "== lethe index"
rc=0
"$BENCH" run --dir "$out" --k "$K" --threads "$THREADS" --repeat 3 \
    --faiss-single "$out/faiss_single.i64" --faiss-batch "$out/faiss_batch.i64" \
    >"$out/lethe.json" || rc=$?

"$PY" - "$out/faiss.json" "$out/lethe.json" "$(nproc)" <<'EOF'
import json, sys
f = json.load(open(sys.argv[1]))
l = json.load(open(sys.argv[2]))
cores = sys.argv[3]
n, nq, k = l["n"], l["nq"], l["k"]
print()
print("%d descriptors, %d queries, top %d, %s cores (shared with whatever else runs)" % (n, nq, k, cores))
print("%-34s %12s %12s %8s" % ("", "lethe", "FAISS flat", "ratio"))
print("%-34s %12.1f %12.1f %7.1fx" % ("single query, queries/s", l["single_qps"], f["single_qps"],
                                      l["single_qps"] / f["single_qps"]))
print("%-34s %12.1f %12.1f %7.1fx" % ("batch of %d, queries/s" % nq, l["batch_qps"], f["batch_qps"],
                                      l["batch_qps"] / f["batch_qps"]))
print("%-34s %12.2f %12.2f" % ("build, s", l["build_s"], f["build_s"]))
print("%-34s %12d %12d" % ("bytes per stored face (file)", l["bytes_per_row"], 4 * 128))
print("%-34s %12.0f %12.0f" % ("RSS after searching, MB", l["rss_mb"], f["rss_mb"]))
print()
print("FAISS batch by OpenMP threads: %s; lethe: kernels %s, threads %s (0 = one per core)"
      % (", ".join("%s: %.1f q/s" % kv for kv in f["batch_qps_by_threads"].items()), l["isa"], l["threads"]))
print("lethe index file: %.1f MB (%d bytes per face: fp32 row, int8 codes, norms, id)"
      % (l["file_bytes"] / 1e6, l["bytes_per_row"]))
print("exact candidates reranked per query: %.1f" % l["candidates_per_query_batch"])
print("top-%d ids equal to FAISS's: single %d/%d (+%d near-ties ordered differently by FAISS's "
      "rounding), batch %d/%d (+%d)" % (k, l["faiss_single_equal"], nq, l["faiss_single_explained"],
                                        l["faiss_batch_equal"], nq, l["faiss_batch_explained"]))
print("lethe single == lethe batch: %d/%d; equal to brute force (double): %d/%d sampled queries"
      % (l["single_equals_batch"], nq, l["brute_equal"], l["brute_checked"]))
EOF
if [ $rc -ne 0 ]; then
    echo "bench/search.sh: results differ (exit $rc); see above" >&2
    exit $rc
fi
