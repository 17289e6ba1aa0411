#!/usr/bin/env bash
# CLI tests for what ingest and search read: manifest rows confined to the
# manifest's folder (--allow-outside), FIFOs given as photos, named by
# manifest rows or given as the manifest (each under `timeout 20`, so a
# regression fails instead of hanging), raw float32 descriptors with a
# sidecar and their errors, and --descriptor / --queries errors.
# Usage: tests/cli/test_manifest.sh path/to/lethe
# Photos: face-api's samples (samples/, fetched by the set-up).
set -u
LETHE=${1:-build/lethe}
. "$(dirname "$0")/../cli_lib.sh"
export LETHE_ACTOR=tester
unset LETHE_STORE

SAMPLES=$PWD/samples
if [ ! -f "$SAMPLES/sample1.jpg" ]; then
    echo "  SKIP everything: samples/ absent (run scripts/setup.sh)"; echo "0 passed, 0 failed, 1 skipped"; exit 0
fi
if ! command -v perl >/dev/null; then
    echo "  SKIP everything: perl absent (it writes the float32 files)"; echo "0 passed, 0 failed, 1 skipped"; exit 0
fi
S="$tmp/store"
expect "init" 0 "$LETHE" init --store "$S"
OUTSIDE="is outside the manifest's folder (--allow-outside permits it)"

# --- confinement -------------------------------------------------------
mkdir -p "$tmp/m/sub" "$tmp/elsewhere"
cp "$SAMPLES/sample1.jpg" "$tmp/m/"
cp "$SAMPLES/sample2.jpg" "$tmp/elsewhere/"
ln -s ../elsewhere/sample2.jpg "$tmp/m/link-out.jpg"
ln -s sample1.jpg "$tmp/m/link-in.jpg"
cat >"$tmp/m/escape.csv" <<CSV
path,uploader,consent,jurisdiction
sample1.jpg,in,explicit,DE
link-in.jpg,in2,explicit,DE
../elsewhere/sample2.jpg,dotdot,explicit,DE
sub/../../elsewhere/sample2.jpg,dotdot2,explicit,DE
$tmp/elsewhere/sample2.jpg,absolute,explicit,DE
link-out.jpg,link,explicit,DE
/etc/shadow,shadow,explicit,DE
CSV
expect "escaping rows are row errors" 1 "$LETHE" ingest --store "$S" --json --quiet --manifest "$tmp/m/escape.csv"
for n in 4 5 6 7 8; do contains "line $n refused as outside" "$tmp/err" "line $n: path '.*' $OUTSIDE"; done
lacks "rows inside are not refused" "$tmp/err" "line [23]:"
# every row counts as seen; the 5 refused ones as errors (and so in the
# batch's log entry and the datasheet's failed inputs)
same "7 rows seen" "$(jnum "$tmp/out" seen)" 7
same "2 rows inside taken in" "$(( $(jnum "$tmp/out" added) + $(jnum "$tmp/out" duplicates) ))" 2
cat >"$tmp/m/out.csv" <<CSV
path,uploader,consent,jurisdiction
../elsewhere/sample2.jpg,dotdot,explicit,DE
link-out.jpg,link,explicit,DE
CSV
expect "--allow-outside lets them through" 0 "$LETHE" ingest --store "$S" --json --quiet --manifest "$tmp/m/out.csv" --allow-outside
same "--allow-outside: 2 seen" "$(jnum "$tmp/out" seen)" 2
expect "--allow-outside without --manifest is a usage error" 2 "$LETHE" ingest --store "$S" --allow-outside "$SAMPLES/sample1.jpg"
contains "--allow-outside usage says why" "$tmp/err" "goes with --manifest"
expect "ingest --help documents --allow-outside" 0 "$LETHE" ingest --help
contains "help names --allow-outside" "$tmp/out" "--allow-outside"
# a manifest in the current folder
LETHE_ABS=$(cd "$(dirname "$LETHE")" && pwd)/$(basename "$LETHE")
( cd "$tmp/m" && "$LETHE_ABS" ingest --store "$S" --quiet --manifest escape.csv >"$tmp/out" 2>"$tmp/err"; echo $? >"$tmp/rc" )
same "relative manifest name: escaping rows refused" "$(cat "$tmp/rc")" 1
contains "relative manifest name: message" "$tmp/err" "line 4: path '../elsewhere/sample2.jpg' $OUTSIDE"

# --- FIFOs: refused, never waited on -----------------------------------
mkfifo "$tmp/m/pipe.jpg" "$tmp/pipe.csv" "$tmp/pipe.f32"
expect "a FIFO as a photo" 1 timeout 20 "$LETHE" ingest --store "$S" --quiet "$tmp/m/pipe.jpg"
contains "a FIFO as a photo: said so" "$tmp/err" "pipe.jpg is a FIFO (named pipe), not a regular file"
printf 'path,consent,jurisdiction\npipe.jpg,explicit,DE\nsample1.jpg,explicit,DE\n' >"$tmp/m/pipe-row.csv"
expect "a manifest row naming a FIFO" 1 timeout 20 "$LETHE" ingest --store "$S" --quiet --json --manifest "$tmp/m/pipe-row.csv"
contains "a FIFO row: said so with its line" "$tmp/err" "line 2: .*pipe.jpg is a FIFO (named pipe), not a regular file"
same "a FIFO row: the other row still seen" "$(jnum "$tmp/out" seen)" 2
expect "a FIFO as the manifest" 1 timeout 20 "$LETHE" ingest --store "$S" --quiet --manifest "$tmp/pipe.csv"
contains "a FIFO manifest: said so" "$tmp/err" "pipe.csv is a FIFO (named pipe), not a regular file"
expect "a FIFO as --descriptors (JSON Lines)" 1 timeout 20 "$LETHE" ingest --store "$S" --quiet --descriptors "$tmp/pipe.csv"
contains "a FIFO --descriptors: said so" "$tmp/err" "FIFO"
expect "a folder as the manifest" 1 timeout 20 "$LETHE" ingest --store "$S" --quiet --manifest "$tmp/m"
contains "a folder manifest: said so" "$tmp/err" "is a directory, not a regular file"
expect "the store's lock was let go" 0 timeout 20 "$LETHE" log verify --store "$S"

# --- raw float32 with a sidecar ----------------------------------------
# f32 FILE N [NAN_ROW]: N descriptors, row i (from 1) holding i/1000 + k/10^6.
f32() {
    perl -e 'my ($n, $bad) = @ARGV; for my $i (1 .. $n) { print pack("f<*",
        map { ($bad && $i == $bad && $_ == 3) ? 9**9**9 / 9**9**9 : $i / 1000 + $_ / 1e6 } 0 .. 127) }' "$2" "${3:-0}" >"$1"
}
f32 "$tmp/d.f32" 3
printf 'uploader,consent,jurisdiction\nr1,explicit,NL\nr2,explicit,NL\nr3,explicit,NL\n' >"$tmp/d.csv"
expect "raw f32 + sidecar" 0 timeout 20 "$LETHE" ingest --store "$S" --json --quiet --descriptors "$tmp/d.f32" --sidecar "$tmp/d.csv"
same "raw: 3 templates" "$(jnum "$tmp/out" templates)" 3
head -c 1000 "$tmp/d.f32" >"$tmp/short.f32"
expect "raw: a size not a multiple of 512" 1 "$LETHE" ingest --store "$S" --quiet --descriptors "$tmp/short.f32" --sidecar "$tmp/d.csv"
contains "raw: the size is explained" "$tmp/err" "1000 bytes is not a whole number of 128-float descriptors (512 bytes each)"
f32 "$tmp/d4.f32" 4
expect "raw: more descriptors than sidecar rows" 1 "$LETHE" ingest --store "$S" --quiet --json --descriptors "$tmp/d4.f32" --sidecar "$tmp/d.csv"
contains "raw: counts named" "$tmp/err" "holds 4 descriptors but its sidecar .*d.csv has 3 rows"
same "raw: nothing ingested when the counts differ" "$(jnum "$tmp/out" seen)" 0
f32 "$tmp/d2.f32" 2
expect "raw: fewer descriptors than sidecar rows" 1 "$LETHE" ingest --store "$S" --quiet --descriptors "$tmp/d2.f32" --sidecar "$tmp/d.csv"
contains "raw: counts named (fewer)" "$tmp/err" "holds 2 descriptors but its sidecar .*d.csv has 3 rows"
f32 "$tmp/nan.f32" 3 2
expect "raw: a NaN is a row error" 1 "$LETHE" ingest --store "$S" --quiet --json --descriptors "$tmp/nan.f32" --sidecar "$tmp/d.csv"
contains "raw: the NaN row is named" "$tmp/err" "d.csv: line 3: descriptor 2 of .*nan.f32 has a non-finite value (NaN at component 4)"
same "raw: every row seen" "$(jnum "$tmp/out" seen)" 3
same "raw: the other rows go in" "$(( $(jnum "$tmp/out" added) + $(jnum "$tmp/out" duplicates) ))" 2
expect "raw: a FIFO as the descriptors" 1 timeout 20 "$LETHE" ingest --store "$S" --quiet --descriptors "$tmp/pipe.f32" --sidecar "$tmp/d.csv"
contains "raw: FIFO descriptors said so" "$tmp/err" "pipe.f32 is a FIFO"
expect "raw: a FIFO as the sidecar" 1 timeout 20 "$LETHE" ingest --store "$S" --quiet --descriptors "$tmp/d.f32" --sidecar "$tmp/pipe.csv"
contains "raw: FIFO sidecar said so" "$tmp/err" "sidecar: .*pipe.csv is a FIFO"
expect "raw: a missing sidecar" 1 "$LETHE" ingest --store "$S" --quiet --descriptors "$tmp/d.f32" --sidecar "$tmp/none.csv"
contains "raw: missing sidecar named" "$tmp/err" "none.csv"

# --- --descriptor and --queries -------------------------------------------
vec() { seq -s, "$1" $(($1 + 127)) | sed 's/\([0-9]\+\)/0.00\1/g'; }
expect "--descriptor: an array" 0 "$LETHE" search --store "$S" --purpose t --descriptor "[$(vec 1)]"
expect "--descriptor: an object with embedding" 0 "$LETHE" search --store "$S" --purpose t --descriptor "{\"embedding\":[$(vec 1)]}"
expect "--descriptor: 3 numbers" 2 "$LETHE" search --store "$S" --purpose t --descriptor '[1,2,3]'
contains "--descriptor: the count is named" "$tmp/err" "expected 128 numbers, found 3"
expect "--descriptor: not JSON" 2 "$LETHE" search --store "$S" --purpose t --descriptor '[1,2'
contains "--descriptor: invalid JSON said" "$tmp/err" "invalid JSON"
{
    echo "[$(vec 1)]"
    echo "[1, 2, 3]"
    echo ""
    echo "{\"uploader\": \"x\", \"embedding\": [$(vec 2)]}"
    echo "{\"image\": \"a.jpg\", \"faces\": [{\"embedding\": [$(vec 3)]}, {\"embedding\": [$(vec 4)]}]}"
    echo "{\"image\": \"b.jpg\", \"error\": \"not an image\"}"
    echo "not json"
    echo "{\"image\": \"c.jpg\", \"faces\": []}"
    echo "[$(vec 5)"
} >"$tmp/q.jsonl"
expect "--queries: bad lines make exit 1, the rest is searched" 1 "$LETHE" search --store "$S" --purpose t --json --queries "$tmp/q.jsonl"
same "--queries: 4 queries answered" "$(wc -l <"$tmp/out")" 4
contains "--queries: labels of embed output" "$tmp/out" "q.jsonl:5#1"
contains "--queries: line 2 named" "$tmp/err" "q.jsonl: line 2: expected 128 numbers, found 3"
contains "--queries: an error record named" "$tmp/err" "line 6: the record is an error, not a descriptor: 'not an image'"
contains "--queries: invalid JSON named" "$tmp/err" "line 7: invalid JSON"
contains "--queries: empty faces named" "$tmp/err" "line 8: no face in this record"
contains "--queries: a cut line named" "$tmp/err" "line 9: invalid JSON"
expect "--queries from stdin" 1 "$LETHE" search --store "$S" --purpose t --json --queries - <"$tmp/q.jsonl"
same "--queries -: 4 queries answered" "$(wc -l <"$tmp/out")" 4
contains "--queries -: line named" "$tmp/err" "-: line 2: expected 128 numbers"
head -n 1 "$tmp/q.jsonl" >"$tmp/q1.jsonl"
expect "--queries from a pipe the user named" 0 timeout 20 "$LETHE" search --store "$S" --purpose t --json --queries <(cat "$tmp/q1.jsonl")
same "--queries <(...): 1 query answered" "$(wc -l <"$tmp/out")" 1
: >"$tmp/empty.jsonl"
expect "--queries: an empty file" 1 "$LETHE" search --store "$S" --purpose t --queries "$tmp/empty.jsonl"
contains "--queries: empty said" "$tmp/err" "no queries (the input is empty)"
expect "--queries: a missing file" 1 "$LETHE" search --store "$S" --purpose t --queries "$tmp/none.jsonl"
contains "--queries: missing file named" "$tmp/err" "none.jsonl"
expect "--queries: a folder" 1 timeout 20 "$LETHE" search --store "$S" --purpose t --queries "$tmp/m"
contains "--queries: a folder said so" "$tmp/err" "is a directory, not a regular file"
expect "--queries: a device" 1 timeout 20 "$LETHE" search --store "$S" --purpose t --queries /dev/zero
contains "--queries: a device said so" "$tmp/err" "is a character device, not a regular file"
expect "the log still verifies" 0 "$LETHE" log verify --store "$S"

cli_summary
