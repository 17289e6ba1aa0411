#!/usr/bin/env bash
# Forgetting at scale (issue #4's speed criterion): the time for `lethe
# forget` to erase one account (~100 faces) and a whole jurisdiction (10% of
# the faces) from a store of N faces, each against the naive way to guarantee
# forgetting, rebuilding the store from scratch without those faces, timed in
# the same run on the same machine. Run on demand, not in CI.
#
#   bench/forget.sh             N = 1,000,000 faces (about 20 minutes here; 6 GB of disk)
#   N=100000 bench/forget.sh    a quick run
#
# Environment: N (faces, default 1000000), FORGET_ACCOUNT (the account's
# rows, 100), FORGET_GB_FRAC (the jurisdiction's share, 0.10),
# FORGET_SAMPLE (GB descriptors checked for residue, 1000), FORGET_SEEDS
# (a float32 file of seed descriptors instead of running lethe embed),
# FORGET_KEEP=DIR (keep the data and stores in DIR instead of a temporary
# folder; DIR must not exist), LETHE_TEST_DATA (../shared/data), BUILD
# (build), TMPDIR.
#
# The data (bench/forget_gen.c): ~300 real descriptors (`lethe embed --json`
# over the first photo of the first 320 people of LFW) are the seeds; every
# row is a seed plus Gaussian noise (sigma 0.025 per component), all
# distinct, ingested as descriptors (`lethe ingest --descriptors F.f32
# --sidecar F.csv`, consent explicit): `rest` (US, uploaders of 100 rows),
# `gb` (10% of N, GB), `account` (100 rows of uploader target-account, US).
#
# What is timed (wall clock of whole processes, as a user would see them):
#   build       init + ingest rest, gb, account: the full store
#   rebuild -A  init + ingest rest, gb: the store without the account
#   rebuild -GB init + ingest rest, account: the store without GB
#   forget -A   lethe forget --uploader target-account, on a copy of the full
#               store (copied and synced before the clock starts); it returns
#               after the erasure committed, the index rows were overwritten
#               and the WAL truncated
#   forget -GB  lethe forget --jurisdiction GB, likewise
# and, after each forget, the checks (each must pass, or the script fails):
#   - lethe search --threshold 0.0001 with the erased descriptors (all the
#     account's; FORGET_SAMPLE of GB's) finds nothing (on the full store it
#     finds every one: the control);
#   - lethe lookup --uploader (target-account; g0000000) finds nothing;
#   - tests/scan finds no byte of them in any file of the store: each
#     descriptor as float32 (whole, and each 64-byte eighth), the uploader
#     names and the rows' numbers (in their urls and photo ids); on the full
#     store the same scan finds them (the control);
#   - the write-ahead log is empty, lethe digest --full recomputes the kept
#     digest, and that digest equals the rebuilt store's: forgetting left
#     the same logical content as rebuilding without those faces.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LETHE_TEST_DATA:-../shared/data}
BUILD=${BUILD:-build}
N=${N:-1000000}
ACCOUNT=${FORGET_ACCOUNT:-100}
GB_FRAC=${FORGET_GB_FRAC:-0.10}
SAMPLE=${FORGET_SAMPLE:-1000}
LETHE=$BUILD/lethe
PY=/usr/bin/python3
export LETHE_ACTOR=bench-forget

die() {
    echo "bench/forget.sh: $*" >&2
    exit 1
}

[ -x "$LETHE" ] || die "$LETHE is missing: build it with 'make' at the repository root"

if [ -n "${FORGET_KEEP:-}" ]; then
    [ -e "$FORGET_KEEP" ] && die "FORGET_KEEP=$FORGET_KEEP exists"
    mkdir -p "$FORGET_KEEP"
    out=$(cd "$FORGET_KEEP" && pwd)
else
    out=$(mktemp -d "${TMPDIR:-/tmp}/lethe-forget.XXXXXX")
    trap 'rm -rf "$out"' EXIT
    trap 'exit 130' INT TERM HUP
fi
mkdir -p "$out/data" "$out/bin"

# Disk: the full store is ~1.9 KB a face; at most two stores exist at once
# (the full one and a rebuild or a copy), plus the data (~0.7 KB a face).
need_kb=$((N * 6))
avail_kb=$(df -Pk "$out" | awk 'NR == 2 { print $4 }')
if [ "$avail_kb" -lt "$need_kb" ]; then
    die "$((avail_kb / 1024)) MB free under $out, $((need_kb / 1024)) MB needed for N=$N (set TMPDIR)"
fi

# forget_gen and scan: the make-built ones, else built here (neither needs
# liblethe), so the benchmark runs while other parts of the tree do not build.
GEN=$BUILD/bench/forget_gen
if [ ! -x "$GEN" ] || [ bench/forget_gen.c -nt "$GEN" ]; then
    if ! make -s "$GEN" >/dev/null 2>&1; then
        GEN=$out/bin/forget_gen
        gcc -std=c11 -O2 -D_GNU_SOURCE -o "$GEN" bench/forget_gen.c -lm
    fi
fi
SCAN=$BUILD/tests/scan
if [ ! -x "$SCAN" ] || [ tests/scan.c -nt "$SCAN" ]; then
    if ! make -s "$SCAN" >/dev/null 2>&1; then
        SCAN=$out/bin/scan
        gcc -std=c11 -O2 -D_GNU_SOURCE -o "$SCAN" tests/scan.c
    fi
fi

# Wall-clock timing, in seconds with milliseconds, into the results file.
res=$out/results
: >"$res"
put() { echo "$1=$2" >>"$res"; }
timed() { # NAME COMMAND...: run, record the wall time
    local name=$1 s e
    shift
    s=$(date +%s%N)
    "$@"
    e=$(date +%s%N)
    put "$name" "$(awk -v ns=$((e - s)) 'BEGIN { printf "%.3f", ns / 1e9 }')"
}
get() { sed -n "s/^$1=//p" "$res" | tail -1; }
bytes() { du -sb "$1" | cut -f1; }

# ------------------------------------------------------------------ data
seeds=${FORGET_SEEDS:-}
if [ -z "$seeds" ]; then
    [ -d "$DATA/lfw/images" ] || die "$DATA/lfw/images is missing (or pass FORGET_SEEDS=FILE)"
    PY=$PY bench/lfw_seeds.sh "$LETHE" "$DATA" "$out"
    seeds=$out/seeds.f32
fi

echo "== data: $N descriptors (account $ACCOUNT, GB ${GB_FRAC}, rest)"
"$GEN" --seeds "$seeds" --out "$out/data" --n "$N" --account "$ACCOUNT" --gb-frac "$GB_FRAC" \
    --sample "$SAMPLE" >"$out/gen.json"
rows() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$out/gen.json" "$1"; }
N_ACCOUNT=$(rows account)
N_GB=$(rows gb)
N_REST=$(rows rest)
N_SAMPLE=$(rows gb_sample)
put n "$N"
put n_account "$N_ACCOUNT"
put n_gb "$N_GB"
put n_sample "$N_SAMPLE"

# scan's arguments: the descriptors (JSON Lines) and the texts of one part
scan_args() { # JSONL TEXTS
    local t
    printf '%s\0%s\0' --descriptors "$1"
    while IFS= read -r t; do printf '%s\0%s\0' --text "$t"; done <"$2"
}
mapfile -d '' SCAN_A < <(scan_args "$out/data/account.jsonl" "$out/data/account.texts")
mapfile -d '' SCAN_GB < <(scan_args "$out/data/gb-sample.jsonl" "$out/data/gb-sample.texts")

# ------------------------------------------------------------- the stores
ingest_parts() { # STORE PART...: a new store holding these parts, in order
    local store=$1 p
    shift
    "$LETHE" init --store "$store" >/dev/null
    for p in "$@"; do
        "$LETHE" ingest --store "$store" --quiet --json \
            --descriptors "$out/data/$p.f32" --sidecar "$out/data/$p.csv" >"$out/ingest.json"
        "$PY" - "$out/ingest.json" "$(rows "$p")" "$p" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
if not (r["complete"] and not r["errors"] and r["added"] == r["templates"] == n):
    sys.exit("bench/forget.sh: ingest of %s: %d rows, got %s" % (sys.argv[3], n, json.dumps(r)))
EOF
    done
}
matches() { # STORE QUERIES: how many faces within 1e-4 of the queries
    "$LETHE" search --store "$1" --purpose "bench: forgetting at scale" --threshold 0.0001 \
        --json --queries "$2" >"$out/search.json" || die "lethe search failed on $1"
    [ "$(wc -l <"$out/search.json")" -eq "$(wc -l <"$2")" ] ||
        die "lethe search on $1 answered $(wc -l <"$out/search.json") of $(wc -l <"$2") queries"
    { grep -o '"distance"' "$out/search.json" || true; } | wc -l
}
scan_hits() { # STORE ARGS...: the hits of tests/scan (status 0 none, 1 some)
    local store=$1 rc=0
    shift
    "$SCAN" "$store" "$@" >"$out/scan.txt" || rc=$?
    [ $rc -le 1 ] || die "tests/scan failed (exit $rc) on $store"
    wc -l <"$out/scan.txt"
}

echo "== lethe $("$LETHE" version | awk '{ print $2 }'), $(nproc) cores; $(uptime | sed 's/.*load/load/')"
echo "== build: the full store (ingest rest $N_REST, gb $N_GB, account $N_ACCOUNT)"
timed build ingest_parts "$out/full" rest gb account
put full_bytes "$(bytes "$out/full")"
put full_digest "$("$LETHE" digest --store "$out/full")"

echo "== controls on the full store: the erased data is there to be found"
[ "$(matches "$out/full" "$out/data/account.jsonl")" -eq "$N_ACCOUNT" ] ||
    die "control: the account's descriptors are not all found in the full store"
[ "$(matches "$out/full" "$out/data/gb-sample.jsonl")" -eq "$N_SAMPLE" ] ||
    die "control: the GB sample is not all found in the full store"
"$LETHE" lookup --store "$out/full" --uploader target-account >/dev/null ||
    die "control: lookup does not find target-account in the full store"
timed scan_full_account scan_hits "$out/full" "${SCAN_A[@]}" >"$out/hits"
put hits_full_account "$(cat "$out/hits")"
[ "$(get hits_full_account)" -gt 0 ] || die "control: tests/scan finds nothing of the account in the full store"
timed scan_full_gb scan_hits "$out/full" "${SCAN_GB[@]}" >"$out/hits"
put hits_full_gb "$(cat "$out/hits")"
[ "$(get hits_full_gb)" -gt 0 ] || die "control: tests/scan finds nothing of GB in the full store"

echo "== rebuild baselines (the naive way): without the account, without GB"
timed rebuild_account ingest_parts "$out/rebuild" rest gb
put rebuild_account_bytes "$(bytes "$out/rebuild")"
put rebuild_account_digest "$("$LETHE" digest --store "$out/rebuild")"
rm -rf "$out/rebuild"
timed rebuild_gb ingest_parts "$out/rebuild" rest account
put rebuild_gb_bytes "$(bytes "$out/rebuild")"
put rebuild_gb_digest "$("$LETHE" digest --store "$out/rebuild")"
rm -rf "$out/rebuild"

forget_case() { # KEY ERASED SAMPLED QUERIES SCAN-ARGS-NAME UPLOADER FORGET-SELECTOR...
    local key=$1 erased=$2 sampled=$3 queries=$4 uploader=$6 store=$out/copy name rc=0
    local -n sargs=$5
    shift 6
    rm -rf "$store"
    cp -r "$out/full" "$store"
    sync
    timed "forget_$key" "$LETHE" forget --store "$store" --json "$@" >"$out/receipt.json"
    "$PY" - "$out/receipt.json" "$erased" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
e = r["receipt"]["erased"]
if not (e["photos"] == e["faces"] == e["templates"] == n):
    sys.exit("bench/forget.sh: forget erased %s, expected %d photos" % (json.dumps(e), n))
EOF
    for name in "$store"/*-wal; do
        [ ! -s "$name" ] || die "forget $*: $name holds $(bytes "$name") bytes after forget returned"
    done
    put "forget_${key}_bytes" "$(bytes "$store")"
    timed "search_$key" matches "$store" "$queries" >"$out/found"
    [ "$(cat "$out/found")" -eq 0 ] ||
        die "forget $*: search still finds $(cat "$out/found") of the $sampled erased descriptors"
    "$LETHE" lookup --store "$store" --uploader "$uploader" >/dev/null || rc=$?
    [ $rc -eq 1 ] || die "forget $*: lookup --uploader $uploader exits $rc (1: nothing found)"
    timed "scan_$key" scan_hits "$store" "${sargs[@]}" >"$out/hits"
    if [ "$(cat "$out/hits")" -ne 0 ]; then
        head -20 "$out/scan.txt" >&2
        die "forget $*: tests/scan finds $(cat "$out/hits") residues (above)"
    fi
    "$LETHE" digest --store "$store" --full >"$out/digest" ||
        die "forget $*: lethe digest --full differs from the kept digest"
    [ "$(cat "$out/digest")" = "$(get "rebuild_${key}_digest")" ] ||
        die "forget $*: digest $(cat "$out/digest") differs from the rebuilt store's $(get "rebuild_${key}_digest")"
    rm -rf "$store"
}

echo "== forget one account: lethe forget --uploader target-account ($N_ACCOUNT faces)"
forget_case account "$N_ACCOUNT" "$N_ACCOUNT" "$out/data/account.jsonl" SCAN_A target-account \
    --uploader target-account

echo "== forget a jurisdiction: lethe forget --jurisdiction GB ($N_GB faces)"
forget_case gb "$N_GB" "$N_SAMPLE" "$out/data/gb-sample.jsonl" SCAN_GB g0000000 \
    --jurisdiction GB --yes

"$PY" - "$res" "$(nproc)" <<'EOF'
import sys
r = dict(l.rstrip("\n").split("=", 1) for l in open(sys.argv[1]) if "=" in l)
f = lambda k: float(r[k])
i = lambda k: int(r[k])
n = i("n")
print()
print("%d faces (%d cores, shared with whatever else runs); wall-clock seconds of whole lethe processes"
      % (n, int(sys.argv[2])))
print("%-46s %10s %12s %15s" % ("", "forget, s", "rebuild, s", "rebuild/forget"))
for key, what in (("account", "one account (--uploader, %d faces)" % i("n_account")),
                  ("gb", "a jurisdiction (--jurisdiction GB, %d faces)" % i("n_gb"))):
    print("%-46s %10.3f %12.1f %14.0fx" % (what, f("forget_" + key), f("rebuild_" + key),
                                          f("rebuild_" + key) / f("forget_" + key)))
print()
print("build of the full store (ingest of %d descriptors): %.1f s (%.0f faces/s)"
      % (n, f("build"), n / f("build")))
print("store: %.1f MB, %.0f bytes per face; after forgetting the account %.1f MB, GB %.1f MB "
      "(rebuilt without GB: %.1f MB)" % (i("full_bytes") / 1e6, i("full_bytes") / n,
                                         i("forget_account_bytes") / 1e6, i("forget_gb_bytes") / 1e6,
                                         i("rebuild_gb_bytes") / 1e6))
print("after each forget: search within 1e-4 finds none of the erased descriptors (%.2f s, %.2f s); "
      "tests/scan finds no byte of them in the store (%.1f s, %.1f s; on the full store it finds "
      "%d and %d); the WAL is empty; digest --full passes and equals the rebuilt store's digest"
      % (f("search_account"), f("search_gb"), f("scan_account"), f("scan_gb"),
         i("hits_full_account"), i("hits_full_gb")))
print("checked for residue: all %d of the account's descriptors, %d of GB's (sample)"
      % (i("n_account"), i("n_sample")))
ratio = f("rebuild_account") / f("forget_account")
print("one account: %.0fx faster than rebuilding (target >= 100x): %s"
      % (ratio, "met" if ratio >= 100 else "NOT met"))
EOF
