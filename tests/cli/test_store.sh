#!/usr/bin/env bash
# CLI tests for the store: init, ingest (folders, manifests, descriptors),
# the consent policy, search, lookup, the audit log and its tamper checks,
# the datasheet, the digest, bad manifest rows, and kill -9 during ingest.
# Usage: tests/cli/test_store.sh path/to/lethe
# Photos: face-api's samples (samples/, fetched by the set-up). The kill -9
# test also uses ../shared/data/lfw when present (it says so when absent).
set -u
LETHE=${1:-build/lethe}
BUILD=$(dirname "$LETHE")
SCAN=${SCAN:-$(dirname "$LETHE")/tests/scan}
DATA=${LETHE_TEST_DATA:-../shared/data}
. "$(dirname "$0")/../cli_lib.sh"
export LETHE_ACTOR=tester
unset LETHE_STORE
# kill -9 moments: 20 (fewer under the sanitizers, which are slow)
KILLS=${LETHE_TEST_KILLS:-20} FOLDERS=60 ROWS=20000
[ "${LETHE_TEST_SAN:-0}" = 1 ] && KILLS=${LETHE_TEST_KILLS:-5} FOLDERS=12 ROWS=4000

S="$tmp/store"
SAMPLES=$PWD/samples
if [ ! -f "$SAMPLES/sample1.jpg" ]; then
    echo "  SKIP everything: samples/ absent (run scripts/setup.sh)"; echo "0 passed, 0 failed, 1 skipped"; exit 0
fi

# --- usage and init ---------------------------------------------------
expect "search without a store names it" 1 "$LETHE" search --store "$tmp/none" --purpose x --descriptor "[$(seq -s, 0 127 | sed 's/[0-9]\+/0/g')]"
contains "missing store hints at init" "$tmp/err" "lethe init"
expect "init creates" 0 "$LETHE" init --store "$S"
contains "init says created" "$tmp/out" "created"
expect "init again keeps it" 0 "$LETHE" init --store "$S"
contains "init again says existing" "$tmp/out" "existing"
expect "ingest without inputs is a usage error" 2 "$LETHE" ingest --store "$S"
expect "ingest with a bad consent flag" 2 "$LETHE" ingest --store "$S" --consent maybe "$SAMPLES/sample1.jpg"
contains "bad consent flag is named" "$tmp/err" "maybe"
expect "ingest with a bad jurisdiction flag" 2 "$LETHE" ingest --store "$S" --jurisdiction UK "$SAMPLES/sample1.jpg"
contains "bad jurisdiction is named" "$tmp/err" "UK"
expect "ingest with a bad precision" 2 "$LETHE" ingest --store "$S" --precision half "$SAMPLES/sample1.jpg"
contains "bad precision is named" "$tmp/err" "half"
expect "search without purpose is a usage error" 2 "$LETHE" search --store "$S" "$SAMPLES/sample1.jpg"
contains "search without purpose says why" "$tmp/err" "purpose"
expect "unknown option" 2 "$LETHE" ingest --store "$S" --frobnicate x
expect "policy show" 0 "$LETHE" policy show --store "$S"
for k in default EEA GB US-IL US-TX US-WA; do contains "default policy has $k" "$tmp/out" "^$k "; done
expect "policy check US-IL public-license refused" 1 "$LETHE" policy check --store "$S" US-IL public-license
contains "check names the rule" "$tmp/out" "US-IL"
expect "policy check FR explicit allowed" 0 "$LETHE" policy check --store "$S" FR explicit
contains "FR falls under EEA" "$tmp/out" "EEA"
expect "policy check withdrawn refused" 1 "$LETHE" policy check --store "$S" US-CA withdrawn
expect "policy set withdrawn is refused" 2 "$LETHE" policy set --store "$S" US-CA withdrawn

# --- ingest with a manifest mixing jurisdictions and consent -----------
mkdir -p "$tmp/photos"
cp "$SAMPLES"/sample*.jpg "$tmp/photos/"
cat >"$tmp/photos/manifest.csv" <<'CSV'
path,photo_id,url,uploader,source,license,jurisdiction,consent,collected_at
sample1.jpg,p1,https://photos.example/p1,alice,examplr,CC-BY-4.0,GB,explicit,2024-05-01
sample2.jpg,p2,https://photos.example/p2,bob,examplr,CC-BY-4.0,US-IL,public-license,2024-05-02
sample3.jpg,p3,https://photos.example/p3,carol,examplr,CC-BY-SA-4.0,US-CA,public-license,2024-05-03
sample4.jpg,p4,https://photos.example/p4,dave,scrape,unknown,DE,none,2024-05-04
sample5.jpg,p5,https://photos.example/p5,erin,examplr,CC-BY-4.0,FR,withdrawn,2024-05-05
sample6.jpg,p6,https://photos.example/p6,alice,examplr,CC-BY-4.0,DE,explicit,2024-05-06
CSV
expect "ingest manifest" 0 "$LETHE" ingest --store "$S" --json --manifest "$tmp/photos/manifest.csv"
cp "$tmp/out" "$tmp/ingest1.json"
same "6 photos seen" "$(jnum "$tmp/ingest1.json" seen)" 6
same "6 photos added" "$(jnum "$tmp/ingest1.json" added)" 6
same "4 refused (US-IL, US-CA public-license, none, withdrawn)" "$(jnum "$tmp/ingest1.json" refused)" 4
faces1=$(jnum "$tmp/ingest1.json" templates)
if [ "${faces1:-0}" -ge 2 ]; then ok "templates stored for the 2 explicit photos ($faces1)"; else bad "templates stored" "$faces1"; fi
d1=$("$LETHE" digest --store "$S")
expect "same ingest again" 0 "$LETHE" ingest --store "$S" --json --manifest "$tmp/photos/manifest.csv"
same "second run adds nothing" "$(jnum "$tmp/out" added)" 0
same "second run sees 6 duplicates" "$(jnum "$tmp/out" duplicates)" 6
same "second run adds no provenance" "$(jnum "$tmp/out" provenance)" 0
same "digest unchanged by the second run" "$("$LETHE" digest --store "$S")" "$d1"
expect "kept digest equals the recomputed one" 0 "$LETHE" digest --store "$S" --full

# the US-IL photo: no descriptor anywhere in the store
"$LETHE" embed --json "$SAMPLES/sample2.jpg" >"$tmp/il.jsonl" 2>/dev/null
"$LETHE" embed --json "$SAMPLES/sample1.jpg" >"$tmp/gb.jsonl" 2>/dev/null
if [ -x "$SCAN" ]; then
    expect "no US-IL descriptor in any store file" 0 "$SCAN" "$S" --descriptors "$tmp/il.jsonl"
    expect "the scanner does find a stored descriptor" 1 "$SCAN" "$S" --descriptors "$tmp/gb.jsonl"
else
    bad "residue scanner" "$SCAN missing (make tests builds it)"
fi

# --- search -------------------------------------------------------------
expect "search by image" 0 "$LETHE" search --store "$S" --purpose "test: find alice" --json "$SAMPLES/sample1.jpg"
cp "$tmp/out" "$tmp/search1.json"
contains "search finds alice's photo" "$tmp/search1.json" '"uploader":"alice"'
contains "search top match is the same face" "$tmp/search1.json" '"matches":\[{"distance":0.0'
lacks "search never returns the US-IL photo" "$tmp/search1.json" '"uploader":"bob"'
lacks "search never returns the withdrawn photo" "$tmp/search1.json" '"uploader":"erin"'
expect "search --all-faces --top 1" 0 "$LETHE" search --store "$S" --purpose "test" --all-faces --top 1 --json "$SAMPLES/sample1.jpg"
nq=$(wc -l <"$tmp/out")
if [ "$nq" -ge 2 ]; then ok "--all-faces searches each face ($nq)"; else bad "--all-faces" "$nq lines"; fi
expect "search by --queries (embed output)" 0 "$LETHE" search --store "$S" --purpose "batch" --json --queries "$tmp/il.jsonl"
lacks "US-IL faces not found by their own descriptor" "$tmp/out" '"uploader":"bob"'
expect "search human output" 0 "$LETHE" search --store "$S" --purpose "test" --top 3 "$SAMPLES/sample6.jpg"
contains "human output has a table" "$tmp/out" "distance"
expect "threshold 0 finds nothing but exact" 0 "$LETHE" search --store "$S" --purpose "t" --threshold 0 --json --queries "$tmp/il.jsonl"
lacks "threshold 0: no match for an unstored face" "$tmp/out" '"distance"'
expect "bad --descriptor" 2 "$LETHE" search --store "$S" --purpose t --descriptor '[1,2,3]'

# --- policy relaxed: the US-CA photo gets templates on re-ingest --------
expect "policy set US-CA" 0 "$LETHE" policy set --store "$S" US-CA explicit,public-license
expect "re-ingest after relaxing" 0 "$LETHE" ingest --store "$S" --json --manifest "$tmp/photos/manifest.csv"
t2=$(jnum "$tmp/out" templates)
if [ "${t2:-0}" -ge 1 ]; then ok "US-CA photo analysed after relaxing ($t2 templates)"; else bad "relaxed policy" "$(cat "$tmp/out")"; fi
expect "policy tightened again drops them" 0 "$LETHE" policy set --store "$S" --json US-CA explicit
same "dropped as many as were added" "$(jnum "$tmp/out" templates_dropped)" "$t2"

# --- a photo seen again under new provenance; then withdrawn ------------
printf 'path,uploader,source,jurisdiction,consent\nsample6.jpg,alice2,mirror,DE,explicit\n' >"$tmp/photos/again.csv"
expect "same photo, new provenance" 0 "$LETHE" ingest --store "$S" --json --manifest "$tmp/photos/again.csv"
same "new provenance recorded" "$(jnum "$tmp/out" provenance)" 1
same "no photo added" "$(jnum "$tmp/out" added)" 0
expect "lookup alice2" 0 "$LETHE" lookup --store "$S" --json --uploader alice2
contains "lookup lists both provenances" "$tmp/out" '"uploader":"alice"'
printf 'path,uploader,source,jurisdiction,consent\nsample6.jpg,alice,examplr,DE,withdrawn\n' >"$tmp/photos/withdraw.csv"
expect "withdrawal" 0 "$LETHE" ingest --store "$S" --json --manifest "$tmp/photos/withdraw.csv"
w=$(jnum "$tmp/out" withdrawn)
if [ "${w:-0}" -ge 1 ]; then ok "withdrawal dropped $w templates"; else bad "withdrawal" "$(cat "$tmp/out")"; fi
"$LETHE" embed --json "$SAMPLES/sample6.jpg" >"$tmp/de.jsonl" 2>/dev/null
expect "withdrawn photo no longer found" 0 "$LETHE" search --store "$S" --purpose t --json --queries "$tmp/de.jsonl"
lacks "withdrawn photo not in results" "$tmp/out" "sample6.jpg"
[ -x "$SCAN" ] && expect "withdrawn descriptors gone from every file" 0 "$SCAN" "$S" --descriptors "$tmp/de.jsonl"

expect "digest after withdrawals and policy changes" 0 "$LETHE" digest --store "$S" --full

# --- lookup -------------------------------------------------------------
expect "lookup by uploader" 0 "$LETHE" lookup --store "$S" --uploader bob
contains "lookup shows consent" "$tmp/out" "public-license"
contains "lookup shows refusal" "$tmp/out" "status refused"
expect "lookup by image (hash only)" 0 "$LETHE" lookup --store "$S" --json --image "$SAMPLES/sample2.jpg"
contains "lookup by image: templates 0" "$tmp/out" '"templates":0'
expect "lookup by url" 0 "$LETHE" lookup --store "$S" --json --url https://photos.example/p1
contains "lookup by url finds p1" "$tmp/out" '"photo_id":"p1"'
expect "lookup by photo id" 0 "$LETHE" lookup --store "$S" --json --photo-id p4
sha=$(sha256sum "$SAMPLES/sample4.jpg" | cut -c1-64)
contains "photo id lookup gives the hash" "$tmp/out" "$sha"
expect "lookup by sha256" 0 "$LETHE" lookup --store "$S" --json --photo-id "$sha"
expect "lookup of an unknown account exits 1" 1 "$LETHE" lookup --store "$S" --uploader nobody
expect "lookup needs one selector" 2 "$LETHE" lookup --store "$S"

# --- the log -------------------------------------------------------------
expect "log lists entries" 0 "$LETHE" log --store "$S" --json
contains "log has the search with its purpose" "$tmp/out" '"purpose":"test: find alice"'
contains "log has the actor" "$tmp/out" '"actor":"tester"'
lacks "log holds no uploader names" "$tmp/out" "alice2"
# The default precision (and --precision int8) is recorded as int8 where
# the CPU runs it, else as default; --precision fp32 as fp32.
want=default
if grep -q avx512_vnni /proc/cpuinfo && [ "${LETHE_INT8:-1}" != 0 ] &&
    { [ -z "${LETHE_KERNELS:-}" ] || [ "$LETHE_KERNELS" = avx512 ]; }; then want=int8; fi
contains "log records the precision of an ingest batch" "$tmp/out" "\"precision\":\"$want\""
expect "log verify" 0 "$LETHE" log verify --store "$S"
contains "log intact" "$tmp/out" "intact"
"$LETHE" init --store "$tmp/p8" >/dev/null
expect "ingest --precision int8" 0 "$LETHE" ingest --store "$tmp/p8" --consent explicit --precision int8 "$SAMPLES/sample1.jpg"
expect "log of the int8 store" 0 "$LETHE" log --store "$tmp/p8" --json
contains "log records precision $want" "$tmp/out" "\"precision\":\"$want\""
"$LETHE" init --store "$tmp/p32" >/dev/null
expect "ingest --precision fp32" 0 "$LETHE" ingest --store "$tmp/p32" --consent explicit --precision fp32 "$SAMPLES/sample1.jpg"
expect "log of the fp32 store" 0 "$LETHE" log --store "$tmp/p32" --json
contains "log records precision fp32" "$tmp/out" '"precision":"fp32"'
tamper() { # NAME SQL WANT_PATTERN
    rm -rf "$tmp/t"; cp -r "$S" "$tmp/t"
    sqlite3 "$tmp/t/catalog.db" "$2"
    expect "log verify fails after $1" 1 "$LETHE" log verify --store "$tmp/t"
    contains "verify names the entry ($1)" "$tmp/out" "$3"
}
if command -v sqlite3 >/dev/null; then
    tamper "an edit" "UPDATE log SET actor = 'mallory' WHERE seq = 3" "entry 3 was altered"
    tamper "a deletion" "DELETE FROM log WHERE seq = 4" "entry 4 is missing"
    tamper "a reorder" "UPDATE log SET seq = -1 WHERE seq = 3; UPDATE log SET seq = 3 WHERE seq = 4; UPDATE log SET seq = 4 WHERE seq = -1" "entry 3"
    tamper "truncation" "DELETE FROM log WHERE seq > (SELECT MAX(seq) - 2 FROM log)" "cut short"
    tamper "an edit of purpose" "UPDATE log SET purpose = 'routine' WHERE kind = 'search'" "was altered"
    rm -rf "$tmp/t"; cp -r "$S" "$tmp/t"; rm "$tmp/t/log.head"
    expect "log verify fails without its head file" 1 "$LETHE" log verify --store "$tmp/t"
else
    bad "log tamper tests" "sqlite3 is not installed (scripts/setup.sh installs it)"
fi

# --- datasheet and digest -----------------------------------------------
expect "datasheet md" 0 "$LETHE" datasheet --store "$S"
contains "datasheet shows a source" "$tmp/out" "examplr"
contains "datasheet shows US-IL" "$tmp/out" "US-IL"
expect "datasheet json" 0 "$LETHE" datasheet --store "$S" --format json
contains "datasheet json counts searches" "$tmp/out" '"searches":'
contains "datasheet json says the log is intact" "$tmp/out" '"intact":true'
expect "datasheet html" 0 "$LETHE" datasheet --store "$S" --format html -o "$tmp/ds.html"
contains "html has svg charts" "$tmp/ds.html" "<svg"
lacks "html is self-contained" "$tmp/ds.html" "http://\|https://"
expect "datasheet bad format" 2 "$LETHE" datasheet --store "$S" --format pdf

# --- descriptors without photos -----------------------------------------
grep -o '"embedding":\[[^]]*\]' "$tmp/gb.jsonl" | head -n 3 | awk '{printf "{%s,\"uploader\":\"mig%d\",\"source\":\"migration\",\"jurisdiction\":\"NL\",\"consent\":\"explicit\"}\n", $0, NR}' >"$tmp/desc.jsonl"
grep -o '"embedding":\[[^]]*\]' "$tmp/il.jsonl" | head -n 1 | awk '{printf "{%s,\"uploader\":\"migIL\",\"source\":\"migration\",\"jurisdiction\":\"US-IL\",\"consent\":\"public-license\"}\n", $0}' >>"$tmp/desc.jsonl"
S2="$tmp/store2"
"$LETHE" init --store "$S2" >/dev/null
expect "ingest --descriptors" 0 "$LETHE" ingest --store "$S2" --json --descriptors "$tmp/desc.jsonl"
same "3 descriptor templates" "$(jnum "$tmp/out" templates)" 3
same "1 descriptor refused" "$(jnum "$tmp/out" refused)" 1
[ -x "$SCAN" ] && expect "refused descriptor not stored" 0 "$SCAN" "$S2" --descriptors "$tmp/il.jsonl"
expect "descriptor ingest is idempotent" 0 "$LETHE" ingest --store "$S2" --json --descriptors "$tmp/desc.jsonl"
same "nothing added the second time" "$(jnum "$tmp/out" added)" 0
expect "search finds a migrated descriptor" 0 "$LETHE" search --store "$S2" --purpose t --json --queries "$tmp/gb.jsonl"
contains "migrated descriptor found" "$tmp/out" '"uploader":"mig1"'

# raw float32 with a sidecar
if command -v node >/dev/null; then
    node -e '
      const fs = require("fs");
      const rows = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map(l => JSON.parse(l).embedding);
      const buf = Buffer.alloc(rows.length * 512);
      rows.forEach((r, i) => r.forEach((v, k) => buf.writeFloatLE(v, i * 512 + k * 4)));
      fs.writeFileSync(process.argv[2], buf);' "$tmp/desc.jsonl" "$tmp/desc.f32"
    printf 'uploader,source,jurisdiction,consent\nraw1,raw,NL,explicit\nraw2,raw,NL,explicit\nraw3,raw,NL,none\nraw4,raw,US-IL,explicit\n' >"$tmp/desc.sidecar.csv"
    S4="$tmp/store4"
    "$LETHE" init --store "$S4" >/dev/null
    expect "ingest raw float32 with a sidecar" 0 "$LETHE" ingest --store "$S4" --json --descriptors "$tmp/desc.f32" --sidecar "$tmp/desc.sidecar.csv"
    same "raw: 3 templates (one refused: consent none)" "$(jnum "$tmp/out" templates)" 3
    same "raw: 1 refused" "$(jnum "$tmp/out" refused)" 1
    expect "raw descriptors are searchable" 0 "$LETHE" search --store "$S4" --purpose t --json --queries "$tmp/gb.jsonl"
    contains "raw descriptor found with its sidecar provenance" "$tmp/out" '"uploader":"raw1"'
    head -c 700 "$tmp/desc.f32" >"$tmp/bad.f32"
    expect "raw file of a wrong size" 1 "$LETHE" ingest --store "$S4" --descriptors "$tmp/bad.f32" --sidecar "$tmp/desc.sidecar.csv"
    contains "wrong size explained" "$tmp/err" "512 bytes"
    expect "raw without sidecar is a usage error" 2 "$LETHE" ingest --store "$S4" --descriptors "$tmp/desc.f32"
else
    skipt "raw float32 descriptors" "node absent"
fi

# --- bad manifest rows ---------------------------------------------------
{
    echo 'path,uploader,jurisdiction,consent'
    echo 'sample1.jpg,ok1,GB,explicit'
    echo 'missing.jpg,x,GB,explicit'
    echo 'sample2.jpg,x,GB,maybe'
    echo 'sample3.jpg,x,XX,explicit'
    echo 'sample4.jpg,"bro"ken,GB,explicit'
    printf 'sample5.jpg,'; head -c 10000000 /dev/zero | tr '\0' 'a'; echo ',GB,explicit'
    echo 'sample6.jpg,ok6,GB,explicit'
} >"$tmp/photos/bad.csv"
S3="$tmp/store3"
"$LETHE" init --store "$S3" >/dev/null
expect "bad rows: exit 1, rest ingested" 1 "$LETHE" ingest --store "$S3" --json --manifest "$tmp/photos/bad.csv"
same "bad rows: the 2 good rows added" "$(jnum "$tmp/out" added)" 2
contains "missing file reported at line 3" "$tmp/out" '"line":3,'
contains "unknown consent reported at line 4" "$tmp/out" '"line":4,'
contains "bad jurisdiction reported at line 5" "$tmp/out" '"line":5,'
contains "broken quoting reported at line 6" "$tmp/out" '"line":6,'
contains "10 MB line reported at line 7" "$tmp/out" '"line":7,'
contains "unknown consent named" "$tmp/out" "maybe"
printf 'not a manifest at all\n' >"$tmp/photos/junk.csv"
expect "a manifest without a path column" 1 "$LETHE" ingest --store "$S3" --manifest "$tmp/photos/junk.csv"
contains "missing path column named" "$tmp/err" "path"
printf 'garbage' >"$tmp/photos/corrupt.jpg"
expect "corrupt photo reported, exit 1" 1 "$LETHE" ingest --store "$S3" --json --consent explicit "$tmp/photos/corrupt.jpg" "$SAMPLES/sample3.jpg"
contains "corrupt photo named" "$tmp/out" "corrupt.jpg"
same "the good photo beside it is added" "$(jnum "$tmp/out" added)" 1
head -c 3000 "$SAMPLES/sample1.jpg" >"$tmp/photos/truncated.jpg"
expect "truncated photo reported" 1 "$LETHE" ingest --store "$S3" --json --consent explicit "$tmp/photos/truncated.jpg"
contains "truncated photo named" "$tmp/out" "truncated.jpg"
printf 'not an image' >"$tmp/photos/text.jpg"
expect "non-image refused even when policy would refuse it anyway" 1 "$LETHE" ingest --store "$S3" --json "$tmp/photos/text.jpg"
contains "non-image says so" "$tmp/out" "not a JPEG"
expect "store still intact" 0 "$LETHE" log verify --store "$S3"

# --- a store of another format is refused --------------------------------
rm -rf "$tmp/t"; cp -r "$S3" "$tmp/t"
sqlite3 "$tmp/t/catalog.db" "UPDATE meta SET value = 99 WHERE key = 'format'" 2>/dev/null
expect "other format version refused" 1 "$LETHE" digest --store "$tmp/t"
contains "format version named" "$tmp/err" "format 99"
printf 'garbage' >"$tmp/t/catalog.db"; rm -f "$tmp/t/catalog.db-wal" "$tmp/t/catalog.db-shm"
expect "damaged catalog refused" 1 "$LETHE" digest --store "$tmp/t"

# --- the index is rebuilt when it lags the catalog -----------------------
rm -rf "$tmp/t"; cp -r "$S" "$tmp/t"; rm -f "$tmp/t/faces.idx"
expect "index missing: rebuilt on open" 0 "$LETHE" search --store "$tmp/t" --purpose t --json "$SAMPLES/sample1.jpg"
contains "rebuilt index finds alice" "$tmp/out" '"uploader":"alice"'

# --- kill -9 during ingest ------------------------------------------------
kill_test() { # NAME ARGS...: kill an ingest at 20 random moments, then finish
    local name=$1; shift
    local K="$tmp/kill" C="$tmp/clean"
    rm -rf "$K" "$C"
    "$LETHE" init --store "$C" >/dev/null; "$LETHE" init --store "$K" >/dev/null
    local t0; t0=$(date +%s%N)
    "$LETHE" ingest --store "$C" --quiet "$@" >/dev/null 2>&1
    local full_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    local okays=0 landed=0 i rc=0
    cp -r "$K" "$tmp/kill-empty"
    for i in $(seq 1 "$KILLS"); do
        # odd trials start again from the empty store, even ones resume what
        # the kill before left (a re-run skips what earlier runs committed);
        # after a run that finished, there is nothing left to resume
        if [ $((i % 2)) = 1 ] || [ "$rc" != 137 ]; then
            rm -rf "$K"; cp -r "$tmp/kill-empty" "$K"
        fi
        "$LETHE" ingest --store "$K" --quiet "$@" >/dev/null 2>&1 &
        local pid=$!
        sleep "$(awk -v s="$RANDOM" -v f="$full_ms" \
            'BEGIN{srand(s); printf "%.3f", (0.05 + rand() * 0.45) * f / 1000}')"
        kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
        rc=$?
        # 137: killed while it ran; 0: it had finished, and proves nothing
        [ $rc = 137 ] && landed=$((landed + 1))
        # the next writable open finishes what the kill interrupted
        if "$LETHE" keyring check --store "$K" >/dev/null 2>&1 &&
            "$LETHE" log verify --store "$K" >/dev/null 2>&1 &&
            "$LETHE" digest --store "$K" --full >/dev/null 2>&1; then
            okays=$((okays + 1))
        fi
    done
    [ $((landed * 2)) -ge "$KILLS" ] && ok "$name: $landed of $KILLS kills landed mid-ingest" \
        || bad "$name: most kills land mid-ingest" "only $landed of $KILLS"
    same "$name: store opens, log verifies, digest consistent after each of $KILLS kills" "$okays" "$KILLS"
    rm -rf "$tmp/kill-empty"
    "$LETHE" ingest --store "$K" --quiet "$@" >/dev/null 2>&1
    same "$name: re-run after kills ends where a clean run does" "$("$LETHE" digest --store "$K")" "$("$LETHE" digest --store "$C")"
    expect "$name: log verifies at the end" 0 "$LETHE" log verify --store "$K"
    expect "$name: kept digest equals the recomputed one" 0 "$LETHE" digest --store "$K" --full
}
if [ -d "$DATA/lfw/images" ]; then
    ls -d "$DATA"/lfw/images/A* | head -n "$FOLDERS" >"$tmp/dirs"
    mapfile -t dirs <"$tmp/dirs"
    kill_test "photos" --source lfw --jurisdiction US --consent explicit "${dirs[@]}"
else
    skipt "kill -9 during a photo ingest" "$DATA/lfw absent"
fi
# descriptors: many small commits
awk -v rows="$ROWS" 'BEGIN{srand(7); for (i = 0; i < rows; i++) { printf "{\"uploader\":\"u%d\",\"jurisdiction\":\"%s\",\"consent\":\"explicit\",\"embedding\":[", i % 300, (i % 10 ? "US" : "US-IL"); for (k = 0; k < 128; k++) printf "%s%.6f", (k ? "," : ""), rand() - 0.5; print "]}" } }' >"$tmp/many.jsonl"
kill_test "descriptors" --descriptors "$tmp/many.jsonl"

cli_summary
