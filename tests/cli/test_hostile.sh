#!/usr/bin/env bash
# Regression tests for what a hostile or unlucky user could do to a store
# (issue #9, section 1), one block per finding, each checking every exit
# status. Findings covered elsewhere: 5 (a FIFO as a photo or a manifest
# row: tests/cli/test_manifest.sh), 6 (a full disk: tests/test_faults.c, ENOSPC
# and EIO at every write of every call), 8 (manifest rows outside the
# manifest's folder: tests/cli/test_manifest.sh), 11b (the engine's message
# read from worker threads: tests/test_analyze.c).
# Usage: tests/cli/test_hostile.sh path/to/lethe
# Photos: face-api's samples (samples/) for the face parts, skipped visibly
# when absent.
set -u
LETHE=${1:-build/lethe}
SCAN=${SCAN:-$(dirname "$LETHE")/tests/scan}
. "$(dirname "$0")/../cli_lib.sh"
export LETHE_ACTOR=tester
unset LETHE_STORE
SAMPLES=$PWD/samples
[ -x "$SCAN" ] || { echo "not ok scanner missing ($SCAN)"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }

# Descriptor rows: gen FILE N SEED FIELDS (printf-style members, %d = row)
gen() {
    awk -v n="$2" -v seed="$3" -v fields="$4" 'BEGIN{srand(seed); for (i = 0; i < n; i++) {
        f = fields; gsub(/%d/, i, f);
        printf "{%s,\"embedding\":[", f;
        for (k = 0; k < 128; k++) printf "%s%.6f", (k ? "," : ""), (rand() - 0.5) * 0.6;
        print "]}" } }' >"$1"
}
gen "$tmp/keep.jsonl" 40 1 '"uploader":"keeper%d","url":"https://keep.example/%d","consent":"explicit","jurisdiction":"US","collected_at":"2024-05-01"'
gen "$tmp/victim.jsonl" 12 2 '"uploader":"victim-x9","url":"https://victim-x9.example/%d","photo_id":"victim-x9-%d","consent":"explicit","jurisdiction":"US","collected_at":"2024-05-01"'

# --- 1. erased people come back after a disk loss -------------------------
mkdir -p "$tmp/mirror"
S="$tmp/s1"
expect "1: init with a keyring mirror" 0 "$LETHE" init --store "$S" --keyring-mirror "$tmp/mirror"
expect "1: ingest" 0 "$LETHE" ingest --store "$S" --descriptors "$tmp/keep.jsonl"
expect "1: ingest the victim" 0 "$LETHE" ingest --store "$S" --descriptors "$tmp/victim.jsonl"
expect "1: backup" 0 "$LETHE" backup --store "$S" "$tmp/bk1"
expect "1: the backup holds no identifier in clear" 0 "$SCAN" "$tmp/bk1" --text victim-x9 --text keep.example
expect "1: nor any descriptor as float32" 0 "$SCAN" "$tmp/bk1" --descriptors "$tmp/victim.jsonl" --descriptors "$tmp/keep.jsonl"
expect "1: forget the victim" 0 "$LETHE" forget --store "$S" --uploader victim-x9
after=$("$LETHE" digest --store "$S")
rm -rf "$S" # the store's disk is lost; the mirror survives
expect "1: restore without a keyring is refused" 2 "$LETHE" restore --store "$tmp/new1" "$tmp/bk1"
contains "1: says the mirror is needed" "$tmp/err" "keyring-mirror"
expect "1: restore into a new folder with the mirror" 0 "$LETHE" restore --store "$tmp/new1" --keyring-mirror "$tmp/mirror" --json "$tmp/bk1"
same "1: the 12 forgotten photos were dropped" "$(jnum "$tmp/out" dropped_erased)" 12
same "1: the restored store is the one after the erasure" "$("$LETHE" digest --store "$tmp/new1")" "$after"
expect "1: lookup finds nothing of the victim" 1 "$LETHE" lookup --store "$tmp/new1" --uploader victim-x9
expect "1: no residue in the restored store" 0 "$SCAN" "$tmp/new1" --descriptors "$tmp/victim.jsonl" --text victim-x9
expect "1: the erasure's receipt still checks (carried from the keyring)" 0 "$LETHE" log --store "$tmp/new1" --json
contains "1: receipt carried into the log" "$tmp/out" '"kind":"receipt-carried"'
expect "1: log verifies" 0 "$LETHE" log verify --store "$tmp/new1"
expect "1: digest consistent" 0 "$LETHE" digest --store "$tmp/new1" --full

# --- 2. receipts forged by anyone holding a backup ------------------------
S="$tmp/s2"
expect "2: init" 0 "$LETHE" init --store "$S"
expect "2: ingest" 0 "$LETHE" ingest --store "$S" --descriptors "$tmp/victim.jsonl"
expect "2: forget" 0 "$LETHE" forget --store "$S" --uploader victim-x9 --receipt "$tmp/r2.json"
expect "2: backup" 0 "$LETHE" backup --store "$S" "$tmp/bk2"
# the signing secret and the salt live in the keyring's header (both copies)
secrets=()
for at in 40 552; do h=$(xxd -p -s "$at" -l 32 "$S/keyring" | tr -d '\n'); [ "${h//0/}" ] && secrets+=(--hex "$h"); done
for at in 72 584; do h=$(xxd -p -s "$at" -l 64 "$S/keyring" | tr -d '\n'); [ "${h//0/}" ] && secrets+=(--hex "$h"); done
[ ${#secrets[@]} -ge 4 ] && ok "2: read the keyring's secrets" || bad "2: read the keyring's secrets" "${#secrets[@]}"
expect "2: no backup file holds the signing secret or the salt" 0 "$SCAN" "$tmp/bk2" "${secrets[@]}"
mkdir -p "$tmp/c2" "$tmp/k2" && cp "$S/catalog.db" "$tmp/c2/" && cp "$S/keyring" "$tmp/k2/"
expect "2: nor does the catalog" 0 "$SCAN" "$tmp/c2" "${secrets[@]}"
expect "2: the scanner does find them in the keyring" 1 "$SCAN" "$tmp/k2" "${secrets[@]}"
expect "2: the keyring is mode 0600" 0 test "$(stat -c %a "$S/keyring")" = 600
expect "2: a genuine receipt checks against the store" 0 "$LETHE" receipt verify "$tmp/r2.json" --store "$S"
expect "2: without --store: signature only" 0 "$LETHE" receipt verify "$tmp/r2.json"
contains "2: says authenticity is not established" "$tmp/out" "not established"
S3="$tmp/s2other"
"$LETHE" init --store "$S3" >/dev/null && "$LETHE" ingest --store "$S3" --descriptors "$tmp/victim.jsonl" >/dev/null 2>&1
expect "2: another store's receipt" 0 "$LETHE" forget --store "$S3" --uploader victim-x9 --receipt "$tmp/r2other.json"
expect "2: is refused by this store" 1 "$LETHE" receipt verify "$tmp/r2other.json" --store "$S"
contains "2: as never its key" "$tmp/out" "never had"
expect "2: rotate the signing key" 0 "$LETHE" keyring rotate --store "$S" --json
contains "2: rotation prints the new key" "$tmp/out" '"public_key":"'
expect "2: an old receipt still checks after rotation" 0 "$LETHE" receipt verify "$tmp/r2.json" --store "$S"
expect "2: the rotation is logged" 0 "$LETHE" log --store "$S" --json
contains "2: key-rotate entry" "$tmp/out" '"kind":"key-rotate"'
expect "2: log verifies after rotation" 0 "$LETHE" log verify --store "$S"

# --- 3. the consent policy changed without a trace ------------------------
S="$tmp/s3"
expect "3: init" 0 "$LETHE" init --store "$S"
cp "$S/policy" "$tmp/policy.orig"
sed -i 's/^default .*/default explicit public-license none/' "$S/policy"
expect "3: a hand-edited policy file is refused" 1 "$LETHE" ingest --store "$S" --descriptors "$tmp/keep.jsonl"
contains "3: says so" "$tmp/err" "changed by hand"
expect "3: nothing was ingested" 1 "$LETHE" lookup --store "$tmp/none" --uploader keeper1
rm "$S/policy"
expect "3: with the file deleted, the store opens" 0 "$LETHE" policy show --store "$S"
expect "3: and a writable open writes it back" 0 "$LETHE" keyring check --store "$S"
same "3: the policy is the catalog's" "$(cat "$S/policy")" "$(cat "$tmp/policy.orig")"
expect "3: a logged change" 0 "$LETHE" policy set --store "$S" GB explicit,public-license
expect "3: the log records the rule before and after" 0 "$LETHE" log --store "$S" --json
contains "3: before and after in the entry" "$tmp/out" '"kind":"policy".*"before":.*"after":"explicit public-license"'
expect "3: log verifies" 0 "$LETHE" log verify --store "$S"
sqlite3 "$S/catalog.db" "UPDATE policy SET text = replace(text, 'explicit public-license', 'explicit public-license none') WHERE version = (SELECT MAX(version) FROM policy)" && ok "3: edit the catalog's policy" || bad "3: edit the catalog's policy" "sqlite3"
expect "3: an edited catalog policy is refused on open" 1 "$LETHE" digest --store "$S"
contains "3: as not matching its recorded hash" "$tmp/err" "recorded hash"

# --- 4. restoring over a live store drops newer photos --------------------
S="$tmp/s4"
expect "4: init" 0 "$LETHE" init --store "$S"
expect "4: ingest" 0 "$LETHE" ingest --store "$S" --descriptors "$tmp/keep.jsonl"
expect "4: backup" 0 "$LETHE" backup --store "$S" "$tmp/bk4"
expect "4: ingest after the backup" 0 "$LETHE" ingest --store "$S" --descriptors "$tmp/victim.jsonl"
d4=$("$LETHE" digest --store "$S")
expect "4: restore over it is refused" 1 "$LETHE" restore --store "$S" "$tmp/bk4"
contains "4: naming how many would be dropped" "$tmp/err" "holds 12 photos the backup does not"
same "4: nothing changed" "$("$LETHE" digest --store "$S")" "$d4"
expect "4: --discard-newer accepts it" 0 "$LETHE" restore --store "$S" --discard-newer --json "$tmp/bk4"
same "4: 12 dropped, counted" "$(jnum "$tmp/out" dropped_newer)" 12
expect "4: and they are gone" 1 "$LETHE" lookup --store "$S" --uploader victim-x9
expect "4: log verifies" 0 "$LETHE" log verify --store "$S"

# --- 5. a writer waits for the lock with no message, forever --------------
S="$tmp/s5"
"$LETHE" init --store "$S" >/dev/null
flock "$S/lock" sleep 6 &
holder=$!
sleep 0.5
t0=$(date +%s%N)
expect "5: a writer gives up after --wait" 1 "$LETHE" forget --store "$S" --uploader nobody --wait 1
waited=$(( ($(date +%s%N) - t0) / 1000000 ))
contains "5: naming the lock" "$tmp/err" "is locked by"
[ "$waited" -lt 4000 ] && ok "5: within about a second ($waited ms)" || bad "5: gave up in time" "$waited ms"
expect "5: a dry run does not wait" 0 "$LETHE" forget --store "$S" --uploader nobody --dry-run --wait 0
expect "5: a writer that waits longer says why" 0 "$LETHE" forget --store "$S" --uploader nobody --wait 20
contains "5: waiting message" "$tmp/err" "waiting for the store's lock"
wait $holder

# --- 7. terminal and log-line injection -----------------------------------
S="$tmp/s7"
"$LETHE" init --store "$S" >/dev/null
expect "7: an actor with a newline is refused" 2 "$LETHE" ingest --store "$S" --actor "$(printf 'eve\n    99  2026-01-01T00:00:00Z  forget')" --descriptors "$tmp/keep.jsonl"
contains "7: says why" "$tmp/err" "control character"
expect "7: a purpose with an escape sequence is refused" 2 "$LETHE" search --store "$S" --purpose "$(printf 'x\033[2J')" --descriptor "[$(seq -s, 0 127 | sed 's/[0-9]\+/0/g')]"
printf '{"uploader":"mallory\\n     2  2026-01-01T00:00:00Z  forget  actor root\\u001b[31m","consent":"explicit","jurisdiction":"US","embedding":[%s]}\n' "$(seq -s, 1 128 | sed 's/[0-9]\+/0.01/g')" >"$tmp/evil.jsonl"
expect "7: a hostile uploader name is stored as given" 0 "$LETHE" ingest --store "$S" --descriptors "$tmp/evil.jsonl"
printf 'mallory\n     2  2026-01-01T00:00:00Z  forget  actor root\033[31m' >"$tmp/evil-name"
expect "7: lookup of it" 0 "$LETHE" lookup --store "$S" --uploader "$(cat "$tmp/evil-name")"
lacks "7: lookup prints no escape byte" "$tmp/out" "$(printf '\033')"
lacks "7: lookup prints no line of the planted text" "$tmp/out" '^     2  2026'
contains "7: the newline shown escaped" "$tmp/out" 'mallory\\n'
expect "7: search text output" 0 "$LETHE" search --store "$S" --purpose t --top 3 --descriptor "[$(seq -s, 1 128 | sed 's/[0-9]\+/0.01/g')]"
lacks "7: search prints no escape byte" "$tmp/out" "$(printf '\033')"
lacks "7: search prints no line of the planted text" "$tmp/out" '^     2  2026'
expect "7: log" 0 "$LETHE" log --store "$S"
same "7: one log line per entry" "$(wc -l <"$tmp/out")" "$("$LETHE" log --store "$S" --json | wc -l)"
lacks "7: the log prints no escape byte" "$tmp/out" "$(printf '\033')"

# --- 9. wrong figures -----------------------------------------------------
S="$tmp/s9"
expect "9: init names its actor" 0 "$LETHE" init --store "$S" --actor "alice the operator"
expect "9: log" 0 "$LETHE" log --store "$S" --json
contains "9: the init entry's actor" "$tmp/out" '"kind":"init","actor":"alice the operator"'
printf 'path,uploader,consent\nnope1.jpg,a,explicit\nnope2.jpg,b,maybe\n' >"$tmp/bad.csv"
expect "9: a manifest with bad rows" 1 "$LETHE" ingest --store "$S" --manifest "$tmp/bad.csv"
expect "9: datasheet" 0 "$LETHE" datasheet --store "$S" --format json
same "9: bad manifest rows count as failed inputs" "$(grep -o '"photos_failed":[0-9]*' "$tmp/out" | cut -d: -f2)" 2
expect "9: ingest" 0 "$LETHE" ingest --store "$S" --descriptors "$tmp/keep.jsonl"
expect "9: the log's batches" 0 "$LETHE" log --store "$S" --json
grep '"kind":"ingest"' "$tmp/out" | grep -o '"detail":{[^}]*}' >"$tmp/batches"
bad_sums=$(awk -F'[:,]' '{ gsub(/[{}]/, ""); for (i = 1; i <= NF; i++) v[$i] = $(i + 1); if (v["\"seen\""] != v["\"added\""] + v["\"duplicates\""] + v["\"errors\""] + v["\"opted_out\""]) n++ } END { print n + 0 }' "$tmp/batches")
same "9: every batch's seen = added + duplicates + errors + opted out" "$bad_sums" 0
same "9: batches logged" "$(grep -c . "$tmp/batches")" 2
sqlite3 "$S/catalog.db" "UPDATE photos SET status = 'refused' WHERE id = 1" && ok "9: edit the catalog underneath" || bad "9: edit the catalog" "sqlite3"
expect "9: digest --full sees it" 1 "$LETHE" digest --store "$S" --full
expect "9: the datasheet still renders" 0 "$LETHE" datasheet --store "$S" --format md
contains "9: and says the catalog was edited" "$tmp/out" "Catalog edited outside lethe"
if [ -f "$SAMPLES/sample1.jpg" ]; then
    S="$tmp/s9p"
    "$LETHE" init --store "$S" >/dev/null
    expect "9: ingest a photo" 0 "$LETHE" ingest --store "$S" --consent explicit --jurisdiction US "$SAMPLES/sample1.jpg"
    expect "9: forget its face" 0 "$LETHE" forget --store "$S" --face "$SAMPLES/sample1.jpg"
    expect "9: datasheet after" 0 "$LETHE" datasheet --store "$S" --format json
    same "9: a photo whose face was erased is not 'no face found'" "$(grep -o '"photos_no_face":[0-9]*' "$tmp/out" | cut -d: -f2)" 0
else
    skipt "9: erased faces are not 'no face found'" "samples/ absent"
fi

# --- 10. dangerous defaults -------------------------------------------------
S="$tmp/s10"
"$LETHE" init --store "$S" >/dev/null
gen "$tmp/undated.jsonl" 5 3 '"uploader":"undated%d","consent":"explicit","jurisdiction":"US"'
gen "$tmp/old.jsonl" 4 4 '"uploader":"old%d","consent":"explicit","jurisdiction":"US","collected_at":"1999-01-01"'
expect "10: ingest dated and undated" 0 "$LETHE" ingest --store "$S" --descriptors "$tmp/undated.jsonl"
expect "10: ingest old" 0 "$LETHE" ingest --store "$S" --descriptors "$tmp/old.jsonl"
expect "10: a retention sweep, dry run" 0 "$LETHE" forget --store "$S" --collected-before 2000-01-01 --dry-run --json
same "10: it takes the dated" "$(jnum "$tmp/out" photos)" 4
same "10: and says how many undated it left" "$(jnum "$tmp/out" undated_kept)" 5
expect "10: the sweep needs --yes" 1 "$LETHE" forget --store "$S" --collected-before 2000-01-01
expect "10: with --include-undated --yes" 0 "$LETHE" forget --store "$S" --collected-before 2000-01-01 --include-undated --yes --json
same "10: all nine go" "$(jnum "$tmp/out" photos)" 9
if [ -f "$SAMPLES/sample1.jpg" ]; then
    S="$tmp/s10f"
    "$LETHE" init --store "$S" >/dev/null
    "$LETHE" ingest --store "$S" --consent explicit --jurisdiction US "$SAMPLES"/sample[1-3].jpg >/dev/null 2>&1
    d10=$("$LETHE" digest --store "$S")
    expect "10: a face threshold of 0.9 is refused without --yes" 1 "$LETHE" forget --store "$S" --face "$SAMPLES/sample1.jpg" --face-threshold 0.9
    contains "10: saying it takes other people's faces" "$tmp/out" "other people"
    same "10: nothing erased" "$("$LETHE" digest --store "$S")" "$d10"
    expect "10: at the default threshold no --yes is needed" 0 "$LETHE" forget --store "$S" --face "$SAMPLES/sample1.jpg" --dry-run
else
    skipt "10: --face-threshold above the match threshold" "samples/ absent"
fi

# --- 11a. a withdrawal erases for real ------------------------------------
S="$tmp/s11"
"$LETHE" init --store "$S" >/dev/null
expect "11: ingest" 0 "$LETHE" ingest --store "$S" --descriptors "$tmp/victim.jsonl"
sed 's/"consent":"explicit"/"consent":"withdrawn"/' "$tmp/victim.jsonl" >"$tmp/withdrawn.jsonl"
expect "11: consent withdrawn" 0 "$LETHE" ingest --store "$S" --descriptors "$tmp/withdrawn.jsonl" --json
same "11: every template dropped" "$(jnum "$tmp/out" withdrawn)" 12
expect "11: no byte of the templates left" 0 "$SCAN" "$S" --descriptors "$tmp/victim.jsonl"
expect "11: digest consistent" 0 "$LETHE" digest --store "$S" --full

cli_summary
