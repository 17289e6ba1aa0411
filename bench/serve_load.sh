#!/usr/bin/env bash
# The load test of `lethe serve` (issue 10, item 5): CLIENTS concurrent
# searchers on loopback for DURATION seconds against a store of N synthetic faces,
# with a forget every FORGET_EVERY seconds; every answer is checked against
# the times the forgets returned (a face returned by a search that started
# after its forget returned is a violation). Then the same searches through
# the CLI, one `lethe search` process per query, CLIENTS at a time, for
# CLI_SECONDS, in the same run on the same store. Run on demand, not in CI.
#
#   bench/serve_load.sh                 100,000 faces, 16 clients, 60 s
#   N=5000 DURATION=10 bench/serve_load.sh   a quick run
#
# Environment: N (100000), CLIENTS (16), DURATION (seconds, 60), FORGET_EVERY (3),
# CLI_SECONDS (20), THREADS (server threads, CLIENTS), BUILD (build),
# KEEP=DIR (keep the store in DIR; must not exist), TMPDIR.
# Prints the two JSON lines of build/bench/serve_load and their ratio; the
# exit status is 1 if any search failed or any violation was seen.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
CLIENTS=${CLIENTS:-16}
DURATION=${DURATION:-60}
FORGET_EVERY=${FORGET_EVERY:-3}
CLI_SECONDS=${CLI_SECONDS:-20}
THREADS=${THREADS:-$CLIENTS}
BUILD=${BUILD:-build}
LETHE=$PWD/$BUILD/lethe
LOAD=$PWD/$BUILD/bench/serve_load
[ -x "$LETHE" ] && [ -x "$LOAD" ] || { echo "build first: make -j2 all" >&2; exit 2; }

if [ -n "${KEEP:-}" ]; then
    mkdir "$KEEP"
    tmp=$(cd "$KEEP" && pwd)
else
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/lethe-load-XXXXXX")
fi
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
S=$tmp/store

echo "== a store of $N synthetic faces"
t0=$(date +%s.%N)
"$LOAD" gen --n "$N" --out "$tmp"
"$LETHE" init --store "$S" >/dev/null
"$LETHE" ingest --store "$S" --descriptors "$tmp/faces.f32" --sidecar "$tmp/faces.csv" >/dev/null
echo "built in $(echo "$(date +%s.%N) - $t0" | bc) s"

key() { # NAME ROLES: the key, made with unlimited rate
    "$LETHE" key add "$1" --roles "$2" --store "$S" | grep '^lk_'
}
SEARCH_KEY=$(key "load searchers" search)
FORGET_KEY=$(key "load forgets" erasure)

echo "== lethe serve, $THREADS threads; $CLIENTS searchers for $DURATION s, a forget every $FORGET_EVERY s"
"$LETHE" serve --store "$S" --listen 127.0.0.1:0 --no-faces --threads "$THREADS" \
    --access-log "$tmp/access.log" >"$tmp/serve.out" 2>"$tmp/serve.err" &
pid=$!
for _ in $(seq 100); do
    grep -q 'listening on' "$tmp/serve.out" 2>/dev/null && break
    sleep 0.1
done
port=$(sed -n 's|.*listening on https\?://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/serve.out")
[ -n "$port" ] || { echo "the server did not start:" >&2; cat "$tmp/serve.err" >&2; exit 2; }
status=0
http=$("$LOAD" http --port "$port" --search-key "$SEARCH_KEY" --forget-key "$FORGET_KEY" \
    --data "$tmp" --clients "$CLIENTS" --seconds "$DURATION" --forget-every "$FORGET_EVERY") ||
    status=1
echo "$http"
kill -TERM "$pid"
wait "$pid" || status=1
pid=
"$LETHE" log verify --store "$S" || status=1

echo "== the same searches through the CLI, one process per query, $CLIENTS at a time, $CLI_SECONDS s"
cli=$("$LOAD" cli --lethe "$LETHE" --store "$S" --data "$tmp" --clients "$CLIENTS" \
    --seconds "$CLI_SECONDS" --skip 64) || status=1
echo "$cli"
"$LETHE" log verify --store "$S" || status=1

rate() { sed -n 's/.*"searches_per_second":\([0-9.]*\).*/\1/p' <<<"$1"; }
echo "server / CLI searches per second: $(echo "scale=1; $(rate "$http") / $(rate "$cli")" | bc)x"
exit $status
