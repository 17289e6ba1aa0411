#!/usr/bin/env bash
# CLI tests for lethe serve's CompreFace-compatible API (issue 10, item 3;
# docs/serve.md, "CompreFace compatibility"):
#   1. lethe key add --purpose, and a key without one;
#   2. the server on a free port, driven by CompreFace's own JavaScript SDK
#      (@exadel/compreface-js-sdk 1.0.0, tests/compreface/flow.mjs):
#      examples of two LFW people, recognition (the right subject first),
#      verification, detection, a subject deleted, recognition again;
#   3. after the deletion, a byte scan of the store finds none of that
#      subject's templates, nor its name; the log holds the searches with the
#      key's purpose, the erasures with their receipts, and verifies;
#   4. every error, with curl: no key, wrong key, wrong role, no purpose,
#      missing subject, a file that is no photo, an unknown image id, bad
#      JSON, face plugins, two faces, an unknown argument, a wide deletion.
# Usage: tests/cli/test_compreface.sh path/to/lethe
# Needs LFW ($LETHE_TEST_DATA/lfw), the models, node and the SDK
# (scripts/setup.sh: npm ci in tests/compreface); skips visibly without.
set -u
LETHE=${1:-build/lethe}
. "$(dirname "$0")/../cli_lib.sh"
export LETHE_ACTOR=tester
unset LETHE_STORE
SCAN=${SCAN:-$(dirname "$LETHE")/tests/scan}
HERE=$(cd "$(dirname "$0")/../compreface" && pwd)
DATA=$(cli_data_dir)
IMAGES=${DATA:+$DATA/lfw/images}
A=Aaron_Peirsol
B=Alvaro_Uribe

missing=
command -v curl >/dev/null || missing="curl"
command -v node >/dev/null || missing="$missing node"
[ -d "$HERE/node_modules/@exadel/compreface-js-sdk" ] || missing="$missing the SDK (npm ci in tests/compreface)"
[ -n "$IMAGES" ] && [ -d "$IMAGES/$A" ] && [ -d "$IMAGES/$B" ] || missing="$missing LFW photos"
[ -x "$SCAN" ] || missing="$missing the residue scanner ($SCAN)"
if [ -n "$missing" ]; then
    skipt "CompreFace compatibility" "missing:$missing"
    cli_summary
    exit
fi

# servers: start_server, stop_server (tests/cli_lib.sh)

# req KEY METHOD PATH [CURL ARGS...]: $code and the body in $tmp/body (KEY
# "-" sends none)
req() {
    local key=$1 method=$2 path=$3; shift 3
    local auth=()
    [ "$key" != - ] && auth=(-H "x-api-key: $key")
    code=$(curl -s -o "$tmp/body" -w '%{http_code}' -X "$method" "${auth[@]}" "$@" "$BASE$path" \
        2>"$tmp/curlerr")
}
# is NAME WANT_CODE CF_CODE: the last req's status and CompreFace code
is() {
    if [ "$code" != "$2" ]; then
        bad "$1" "status $code, wanted $2: $(head -c 300 "$tmp/body")"
    elif ! grep -q "^{\"message\":\".*\",\"code\":$3}\$" "$tmp/body"; then
        bad "$1" "not CompreFace's error with code $3: $(head -c 300 "$tmp/body")"
    else
        ok "$1"
    fi
}

# --- 1. keys -------------------------------------------------------------------
S="$tmp/store"
expect "init" 0 "$LETHE" init --store "$S"
declare -A KEY
for role in ingest search erasure audit; do
    expect "key add $role --purpose" 0 "$LETHE" key add "$role desk" --roles "$role" \
        --purpose "door access, building 4" --store "$S" --json
    KEY[$role]=$(sed -n 's/.*"key":"\(lk_[0-9]*_[A-Za-z0-9_-]*\)".*/\1/p' "$tmp/out")
done
contains "key add --json shows the purpose" "$tmp/out" '"purpose":"door access, building 4"'
expect "key add without a purpose" 0 "$LETHE" key add "no purpose" --roles search --store "$S" --json
NOPURPOSE=$(sed -n 's/.*"key":"\(lk_[0-9]*_[A-Za-z0-9_-]*\)".*/\1/p' "$tmp/out")
contains "its purpose is null" "$tmp/out" '"purpose":null'
expect "key list --json shows purposes" 0 "$LETHE" key list --store "$S" --json
contains "key list: the purpose" "$tmp/out" '"id":2,.*"purpose":"door access, building 4"'
expect "key add: --purpose with a control character" 2 "$LETHE" key add x --roles search \
    --purpose "$(printf 'a\tb')" --store "$S"
expect "key list --purpose is refused" 2 "$LETHE" key list --purpose x --store "$S"

# --- 2. the SDK's flow ---------------------------------------------------------
if ! start_server serve --store "$S"; then
    bad "server starts" "$(head -c 600 "$tmp/serve.err")"
    cli_summary
    exit
fi
mkdir -p "$tmp/flow"
CF_PORT=$PORT CF_INGEST=${KEY[ingest]} CF_SEARCH=${KEY[search]} CF_ERASURE=${KEY[erasure]} \
    CF_IMAGES=$IMAGES CF_A=$A CF_B=$B CF_OUT=$tmp/flow \
    node "$HERE/flow.mjs" >"$tmp/flow.out" 2>"$tmp/flow.err"
cat "$tmp/flow.out"
pass=$((pass + $(grep -c '^ok ' "$tmp/flow.out")))
fail=$((fail + $(grep -c '^not ok ' "$tmp/flow.out")))
[ -s "$tmp/flow.err" ] && echo "  (node's stderr: $(head -c 300 "$tmp/flow.err"))"
n=$(grep -c '^ok ' "$tmp/flow.out")
[ "$n" -ge 20 ] || bad "the SDK flow ran through" "$n checks passed; stderr: $(head -c 400 "$tmp/flow.err")"

# --- 3. the deleted subject left nothing; the log --------------------------------
"$LETHE" embed --json "$IMAGES/$A/${A}_0001.jpg" "$IMAGES/$A/${A}_0002.jpg" \
    "$IMAGES/$A/${A}_0003.jpg" >"$tmp/a.jsonl" 2>/dev/null
nonempty "descriptors of $A's examples" "$tmp/a.jsonl"
ids=()
while read -r id; do [ -n "$id" ] && ids+=(--text "$id"); done <"$tmp/flow/deleted_ids"
same "three image ids of $A deleted" "${#ids[@]}" 6
expect "no residue of $A: templates, name, image ids" 0 "$SCAN" "$S" --descriptors "$tmp/a.jsonl" \
    --text "$A" "${ids[@]}"
"$LETHE" embed --json "$IMAGES/$B/${B}_0002.jpg" >"$tmp/b.jsonl" 2>/dev/null
expect "the scanner finds $B's template, still held" 1 "$SCAN" "$S" --descriptors "$tmp/b.jsonl"
expect "log" 0 "$LETHE" log --store "$S"
contains "searches logged with the key's purpose" "$tmp/out" 'search  actor key:2  results [0-9]*  purpose "door access, building 4"'
contains "examples logged as ingests by the key" "$tmp/out" 'ingest  actor key:1'
contains "erasures logged with their receipts" "$tmp/out" 'forget  actor key:3  receipt '
expect "log verify" 0 "$LETHE" log verify --store "$S"

# --- 4. errors ---------------------------------------------------------------------
P=$IMAGES/$B/${B}_0004.jpg
req - POST /api/v1/recognition/recognize -F "file=@$P"
is "no key: 400, code 20" 400 20
req lk_1_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA POST /api/v1/recognition/recognize -F "file=@$P"
is "wrong key: 404, code 10" 404 10
req "${KEY[audit]}" POST /api/v1/recognition/recognize -F "file=@$P"
is "wrong role (recognize with audit): 403, code 1" 403 1
req "${KEY[search]}" POST "/api/v1/recognition/faces?subject=x" -F "file=@$P"
is "wrong role (enrol with search): 403, code 1" 403 1
req "${KEY[search]}" DELETE "/api/v1/recognition/faces?subject=$B"
is "wrong role (delete with search): 403, code 1" 403 1
req "$NOPURPOSE" POST /api/v1/recognition/recognize -F "file=@$P"
is "a key without a purpose: 400, code 5" 400 5
req "${KEY[ingest]}" POST /api/v1/recognition/faces -F "file=@$P"
is "missing subject: 400, code 33" 400 33
req "${KEY[ingest]}" POST "/api/v1/recognition/faces?subject=x" -F "file=@$0"
is "a file that is no photo: 400, code 21" 400 21
req "${KEY[ingest]}" POST "/api/v1/recognition/faces?subject=x" -F "photo=@$P"
is "no file part: 400, code 34" 400 34
req "${KEY[erasure]}" DELETE /api/v1/recognition/faces/00000000-0000-4000-8000-000000000000
is "unknown image_id: 404, code 11" 404 11
req "${KEY[search]}" POST /api/v1/recognition/faces/00000000-0000-4000-8000-000000000000/verify -F "file=@$P"
is "verify against an unknown image_id: 404, code 11" 404 11
req "${KEY[ingest]}" POST "/api/v1/recognition/faces?subject=x" -H 'Content-Type: application/json' \
    --data-binary '{"file": "abc'
is "bad JSON: 400, code 36" 400 36
req "${KEY[ingest]}" POST "/api/v1/recognition/faces?subject=x" -H 'Content-Type: application/json' \
    --data-binary '{"file": "not base64!"}'
is "base64 that is not: 400, code 36" 400 36
req "${KEY[search]}" POST "/api/v1/recognition/recognize?face_plugins=age,gender" -F "file=@$P"
is "face plugins are refused: 400, code 36" 400 36
req "${KEY[search]}" POST "/api/v1/recognition/recognize?purpose=x" -F "file=@$P"
is "an unknown argument: 400, code 36" 400 36
req "${KEY[erasure]}" DELETE /api/v1/recognition/faces
is "deleting every example at once: 400, code 33" 400 33
req "${KEY[erasure]}" DELETE /api/v1/recognition/subjects/nobody
is "deleting an unknown subject: 404, code 42" 404 42
req "${KEY[search]}" GET /api/v1/nothing
is "no endpoint: 404, code 0" 404 0
req "${KEY[search]}" PATCH /api/v1/recognition/recognize
is "a method not taken: 405, code 0" 405 0
req "${KEY[ingest]}" PUT /api/v1/recognition/subjects/x -H 'Content-Type: application/json' \
    --data-binary '{"subject": "y"}'
is "renaming a subject is refused: 400, code 36" 400 36
if [ -f samples/sample1.jpg ]; then
    req "${KEY[ingest]}" POST "/api/v1/recognition/faces?subject=group" -F "file=@samples/sample1.jpg"
    is "an example with several faces: 400, code 31" 400 31
else
    skipt "an example with several faces" "samples/sample1.jpg missing"
fi
# a subject with a space, escaped in the path (and a NUL escape refused)
req "${KEY[ingest]}" POST "/api/v1/recognition/faces?subject=Jane%20Doe" -F "file=@$IMAGES/$B/${B}_0005.jpg"
if [ "$code" = 200 ] && grep -q '"subject":"Jane Doe"' "$tmp/body"; then ok "a subject with a space"; else bad "a subject with a space" "$code $(head -c 300 "$tmp/body")"; fi
req "${KEY[erasure]}" DELETE "/api/v1/recognition/subjects/Jane%00Doe"
is "a NUL escape in the path: 404, code 0" 404 0
req "${KEY[erasure]}" DELETE "/api/v1/recognition/subjects/Jane%20Doe"
if [ "$code" = 200 ] && grep -q '"subject":"Jane Doe","receipt":{' "$tmp/body"; then ok "deleting it by its escaped name"; else bad "deleting it by its escaped name" "$code $(head -c 300 "$tmp/body")"; fi
req "${KEY[search]}" GET "/api/v1/recognition/faces?subject=$B&page=0&size=1"
if [ "$code" = 200 ] && grep -q '"page_size":1,"total_pages":2,"total_elements":2}' "$tmp/body"; then ok "list a subject's examples, paged"; else bad "list a subject's examples, paged" "$code $(head -c 300 "$tmp/body")"; fi
req "${KEY[search]}" GET /api/v1/recognition/subjects
is "listing every subject is refused: 400, code 36" 400 36
kill -0 "$SPID" 2>/dev/null && ok "the server still serves" || bad "the server still serves" "it died"
server_stops_cleanly serve
cli_summary
