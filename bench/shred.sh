#!/usr/bin/env bash
# The cost of crypto-shredding (issue #9): every photo's personal fields are
# sealed with a key of its own kept in the keyring, so ingest seals, an index
# rebuild opens every template, and a search opens its matches. Measured at N
# faces against the same commands of the last lethe before it (the peer,
# commit PEER, built here in a git worktree), on the same data, in the same
# run. Run on demand, not in CI.
#
#   bench/shred.sh              N = 1,000,000 faces (about 25 minutes here; 5 GB of disk)
#   N=100000 bench/shred.sh     a quick run
#
# Environment: N (default 1000000), PEER (the commit without sealing,
# default 1b6ef0f), QUERIES (single searches timed, 200), SHRED_SEEDS (a
# float32 file of seed descriptors instead of running lethe embed on LFW),
# LETHE_TEST_DATA (../shared/data), BUILD (build), TMPDIR.
#
# Data: bench/forget_gen.c (as bench/forget.sh): N descriptors made from real
# ones (lethe embed over LFW) plus noise, with a provenance sidecar (uploader,
# url, photo id, source, jurisdiction, consent, date), ingested with
# `lethe ingest --descriptors F.f32 --sidecar F.csv` by both.
#
# What is timed (wall clock of whole processes), for lethe and the peer:
#   ingest    init + ingest of the N rows (sealing: a key, and the photo,
#             provenance and face sealed, per row; keys fsynced per batch)
#   rebuild   the first writable open after faces.idx is deleted: the index
#             rebuilt from the catalog (sealing: every template opened with
#             its photo's key)
#   search    QUERIES searches, one process each, top 10 (sealing: each of
#             the 10 matches opened: photo, first provenance record, face)
# and the bytes of the catalog, the keyring and the index.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LETHE_TEST_DATA:-../shared/data}
BUILD=${BUILD:-build}
N=${N:-1000000}
PEER=${PEER:-1b6ef0f}
QUERIES=${QUERIES:-200}
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
LETHE=$BUILD/lethe
PY=/usr/bin/python3
export LETHE_ACTOR=bench-shred

die() {
    echo "bench/shred.sh: $*" >&2
    exit 1
}
[ -x "$LETHE" ] || die "$LETHE is missing: build it with 'make'"
out=$(mktemp -d "${TMPDIR:-/tmp}/lethe-shred.XXXXXX")
cleanup() {
    git worktree remove --force "$out/peer-src" >/dev/null 2>&1 || true
    rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
need_kb=$((N * 5))
avail_kb=$(df -Pk "$out" | awk 'NR == 2 { print $4 }')
[ "$avail_kb" -ge "$need_kb" ] || die "$((avail_kb / 1024)) MB free under $out, $((need_kb / 1024)) MB needed"

echo "== the peer: lethe at $PEER (before sealing), built in a worktree"
git worktree add -q --detach "$out/peer-src" "$PEER" || die "cannot check out $PEER"
ln -s "$PWD/models" "$out/peer-src/models"
make -s -C "$out/peer-src" -j"$(nproc)" BUILD=build cli >/dev/null || die "the peer does not build"
PEER_LETHE=$out/peer-src/build/lethe

res=$out/results
: >"$res"
put() { echo "$1=$2" >>"$res"; }
timed() { # NAME COMMAND...
    local name=$1 s e
    shift
    s=$(date +%s%N)
    "$@"
    e=$(date +%s%N)
    put "$name" "$(awk -v ns=$((e - s)) 'BEGIN { printf "%.3f", ns / 1e9 }')"
}
bytes() { if [ -e "$1" ]; then stat -c %s "$1"; else echo 0; fi; }

GEN=$BUILD/bench/forget_gen
[ -x "$GEN" ] || make -s "$GEN" >/dev/null || die "cannot build $GEN"
seeds=${SHRED_SEEDS:-}
if [ -z "$seeds" ]; then
    PY=$PY bench/lfw_seeds.sh "$LETHE" "$DATA" "$out"
    seeds=$out/seeds.f32
fi
mkdir -p "$out/data"
echo "== data: $N descriptors"
"$GEN" --seeds "$seeds" --out "$out/data" --n "$N" --account 100 --gb-frac 0.1 \
    --sample "$QUERIES" >"$out/gen.json"
# one file of all rows: rest + gb + account
cat "$out/data/rest.f32" "$out/data/gb.f32" "$out/data/account.f32" >"$out/all.f32"
{ cat "$out/data/rest.csv"; tail -n +2 "$out/data/gb.csv"; tail -n +2 "$out/data/account.csv"; } >"$out/all.csv"
head -n "$QUERIES" "$out/data/gb-sample.jsonl" >"$out/queries.jsonl"
split -l 1 -d -a 4 "$out/queries.jsonl" "$out/q."

run_side() { # NAME LETHE
    local name=$1 L=$2 S=$out/store-$1
    echo "== $name: ingest $N rows"
    timed "${name}_ingest" sh -c '"$1" init --store "$2" >/dev/null &&
        "$1" ingest --store "$2" --quiet --descriptors "$3" --sidecar "$4" >/dev/null' \
        _ "$L" "$S" "$out/all.f32" "$out/all.csv"
    put "${name}_catalog_bytes" "$(bytes "$S/catalog.db")"
    put "${name}_keyring_bytes" "$(bytes "$S/keyring")"
    put "${name}_index_bytes" "$(bytes "$S/faces.idx")"
    echo "== $name: $QUERIES searches"
    timed "${name}_search" sh -c 'for q in "$3"/q.*; do
        "$1" search --store "$2" --purpose bench --top 10 --json --queries "$q" >/dev/null || exit 1
        done' _ "$L" "$S" "$out"
    echo "== $name: index rebuild"
    rm -f "$S/faces.idx"
    timed "${name}_rebuild_and_search" "$L" search --store "$S" --purpose bench --top 10 \
        --json --queries "$out/q.0000" >/dev/null
    rm -rf "$S"
}
run_side lethe "$LETHE"
run_side peer "$PEER_LETHE"

"$PY" - "$res" "$N" "$QUERIES" <<'EOF'
import sys
r = dict(l.rstrip("\n").split("=", 1) for l in open(sys.argv[1]))
n, q = int(sys.argv[2]), int(sys.argv[3])
f = lambda k: float(r[k])
one = lambda side: f(side + "_search") / q
rb = lambda side: f(side + "_rebuild_and_search") - one(side)
print()
print("crypto-shredding at %d faces (lethe against the peer without sealing, same run)" % n)
print("| | lethe | peer | lethe / peer |")
print("|---|---:|---:|---:|")
print("| ingest (s) | %.1f | %.1f | %.2fx |" % (f("lethe_ingest"), f("peer_ingest"),
                                            f("lethe_ingest") / f("peer_ingest")))
print("| rows ingested per second | %.0f | %.0f | |" % (n / f("lethe_ingest"), n / f("peer_ingest")))
print("| index rebuild (s) | %.2f | %.2f | %.2fx |" % (rb("lethe"), rb("peer"), rb("lethe") / rb("peer")))
print("| one search, top 10, whole process (ms) | %.1f | %.1f | %.2fx |" % (
    1000 * one("lethe"), 1000 * one("peer"), one("lethe") / one("peer")))
for part in ("catalog", "keyring", "index"):
    a, b = int(r["lethe_%s_bytes" % part]), int(r["peer_%s_bytes" % part])
    print("| %s bytes per face | %.0f | %.0f | |" % (part, a / n, b / n))
EOF
