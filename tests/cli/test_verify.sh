#!/usr/bin/env bash
# CLI tests for lethe verify (1:1 against stored photos selected as lookup
# selects them): answers for the same person and another, a threshold, the
# log entry (and none for a refused verification), usage errors, and
# nothing to verify against after an erasure.
# Usage: tests/cli/test_verify.sh path/to/lethe (needs ../shared/data/lfw)
set -u
LETHE=${1:-build/lethe}
. "$(dirname "$0")/../cli_lib.sh"
DATA=$(cli_data_dir)
DATA=${DATA:-../shared/data}
export LETHE_ACTOR=tester
S="$tmp/s"

# --- usage (no store needed) ---------------------------------------------
expect "help exits 0" 0 "$LETHE" verify --help
contains "help names the selectors" "$tmp/out" "--photo-id"
expect "no purpose" 2 "$LETHE" verify --store "$S" --uploader a x.jpg
contains "no purpose: says why" "$tmp/err" "every verification is logged"
expect "no selector" 2 "$LETHE" verify --store "$S" --purpose t x.jpg
contains "no selector: names them" "$tmp/err" "--uploader, --url, --photo-id, --image"
expect "two selectors" 2 "$LETHE" verify --store "$S" --purpose t --uploader a --url b x.jpg
expect "--top is search's" 2 "$LETHE" verify --store "$S" --purpose t --uploader a --top 3 x.jpg
expect "--queries is search's" 2 "$LETHE" verify --store "$S" --purpose t --uploader a --queries q
expect "no face given" 2 "$LETHE" verify --store "$S" --purpose t --uploader a
expect "bad descriptor" 2 "$LETHE" verify --store "$S" --purpose t --uploader a --descriptor '[1,2]'
expect "control character in the purpose" 2 "$LETHE" verify --store "$S" --purpose "$(printf 'a\033b')" --uploader a x.jpg

A=$DATA/lfw/images/Aaron_Peirsol B=$DATA/lfw/images/Alvaro_Uribe
if [ -d "$A" ] && [ -d "$B" ]; then
    "$LETHE" init --store "$S" >/dev/null
    "$LETHE" ingest --store "$S" --consent explicit --uploader aaron "$A"/Aaron_Peirsol_000[12].jpg >/dev/null 2>&1
    "$LETHE" ingest --store "$S" --consent explicit --uploader alvaro "$B"/Alvaro_Uribe_000[12].jpg >/dev/null 2>&1
    expect "same person" 0 "$LETHE" verify --store "$S" --purpose "door 4" --json --uploader aaron "$A/Aaron_Peirsol_0003.jpg"
    contains "same person: a match" "$tmp/out" '"match":true'
    contains "same person: against the account's templates" "$tmp/out" '"against":"uploader"'
    contains "same person: both photos compared" "$tmp/out" '"photos":2'
    d=$(jnum "$tmp/out" distance)
    expect "another person" 0 "$LETHE" verify --store "$S" --purpose "door 4" --json --uploader alvaro "$A/Aaron_Peirsol_0003.jpg"
    contains "another person: no match" "$tmp/out" '"match":false'
    expect "a threshold below the distance" 0 "$LETHE" verify --store "$S" --purpose "door 4" --uploader aaron --threshold "$(awk -v d="$d" 'BEGIN{print d / 2}')" "$A/Aaron_Peirsol_0003.jpg"
    contains "a threshold below the distance: not the same" "$tmp/out" "not the same person"
    expect "against the exact file" 0 "$LETHE" verify --store "$S" --purpose t --image "$A/Aaron_Peirsol_0001.jpg" "$A/Aaron_Peirsol_0003.jpg"
    contains "against the exact file: one photo" "$tmp/out" "in 1 photo:"
    expect "nothing held" 1 "$LETHE" verify --store "$S" --purpose t --uploader nobody "$A/Aaron_Peirsol_0003.jpg"
    contains "nothing held: says so" "$tmp/err" "no photo held matches"
    "$LETHE" log --store "$S" --json >"$tmp/log" 2>&1
    same "four verifications logged, the refused one not" "$(grep -c '"kind":"verify"' "$tmp/log")" 4
    contains "logged with the purpose" "$tmp/log" '"purpose":"door 4"'
    contains "logged with the actor" "$tmp/log" '"actor":"tester"'
    "$LETHE" forget --store "$S" --uploader aaron >/dev/null 2>&1
    expect "after the erasure: nothing to verify against" 1 "$LETHE" verify --store "$S" --purpose t --uploader aaron "$A/Aaron_Peirsol_0003.jpg"
    expect "log verifies" 0 "$LETHE" log verify --store "$S"
else
    skipt "verify on real photos" "$DATA/lfw absent"
fi
cli_summary
