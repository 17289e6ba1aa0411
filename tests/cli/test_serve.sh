#!/usr/bin/env bash
# CLI tests for API keys and `lethe serve` (issue 10, items 1 and 2):
#   1. lethe key add|list|revoke: output, --json, errors, the log;
#   2. the server on a free port (port 0, read from its first line),
#      stopped at exit whatever happens;
#   3. the authorization matrix: every endpoint x every role, allowed or
#      denied as the table below says, each cell asserted (status, error
#      code, and for a denied call that the log did not grow), and every
#      endpoint without a key, with a wrong key and with a revoked key;
#   4. each endpoint's answer; the key's id as the log's actor; the access
#      log (no query strings in it);
#   5. rate limit and daily quota (429 with Retry-After);
#   6. hostile requests: a huge body (announced and chunked), bad JSON,
#      control characters, wrong content types, path traversal, a 1 MB
#      header, a long URL, bad multipart, a slow client; the server keeps
#      serving;
#   7. concurrent searches; HTTPS; a graceful stop on SIGTERM with a request
#      in flight, the store intact after.
# Usage: tests/cli/test_serve.sh path/to/lethe
# Photos: face-api's samples (samples/) and the models ($LETHE_MODELS) for
# ingest and search by photo; without them those cells use a body that is
# no photo (the answer is then 422 or 503, still never 401 or 403).
set -u
LETHE=${1:-build/lethe}
. "$(dirname "$0")/../cli_lib.sh"
export LETHE_ACTOR=tester
unset LETHE_STORE
SAMPLES=$PWD/samples

command -v curl >/dev/null || { echo "not ok curl missing (apt-get install curl)"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }

# servers: start_server, stop_server, stop_servers (tests/cli_lib.sh)

# req KEY METHOD PATH [CURL ARGS...]: $code, the body in $tmp/body, the
# headers in $tmp/headers (KEY "-" sends none)
req() {
    local key=$1 method=$2 path=$3; shift 3
    local auth=()
    [ "$key" != - ] && auth=(-H "x-api-key: $key")
    code=$(curl -s --path-as-is -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' -X "$method" \
        "${auth[@]}" "$@" "$BASE$path" 2>"$tmp/curlerr")
}
# is NAME WANT_CODE [BODY_PATTERN]: the last req's status (and body)
is() {
    if [ "$code" != "$2" ]; then
        bad "$1" "status $code, wanted $2: $(head -c 300 "$tmp/body")"
    elif [ $# -gt 2 ] && ! grep -q -- "$3" "$tmp/body"; then
        bad "$1" "body lacks '$3': $(head -c 300 "$tmp/body")"
    else
        ok "$1"
    fi
}
json_post() { req "$1" POST "$2" -H 'Content-Type: application/json' --data-binary "$3"; }
log_entries() { "$LETHE" log --store "$S" --json 2>/dev/null | wc -l; }

DESC="[$(awk 'BEGIN{srand(7); for (i = 0; i < 128; i++) printf "%s%.5f", (i ? "," : ""), (rand() - 0.5) * 0.4}')]"

# --- 1. lethe key ------------------------------------------------------------
S="$tmp/store"
expect "init" 0 "$LETHE" init --store "$S"
declare -A KEY
for role in admin ingest search audit erasure; do
    expect "key add $role" 0 "$LETHE" key add "$role holder" --roles "$role" --store "$S" --json
    KEY[$role]=$(sed -n 's/.*"key":"\(lk_[0-9]*_[A-Za-z0-9_-]*\)".*/\1/p' "$tmp/out")
    [ -n "${KEY[$role]}" ] || bad "key add $role prints the key" "$(cat "$tmp/out")"
done
contains "key add --json shape" "$tmp/out" '"name":"erasure holder","roles":\["erasure"\],"rate_per_minute":0,"daily_quota":0,"created_at":"'
expect "key add (text)" 0 "$LETHE" key add "two roles" --roles "search, audit" --rate 2 --store "$S"
contains "text output shows the key once" "$tmp/out" "^lk_6_"
contains "and says it is shown once" "$tmp/out" "shown this once"
RATED=$(grep '^lk_6_' "$tmp/out")
expect "key add with a quota" 0 "$LETHE" key add quota --roles audit --quota 3 --store "$S" --json
QUOTA=$(sed -n 's/.*"key":"\(lk_[0-9]*_[A-Za-z0-9_-]*\)".*/\1/p' "$tmp/out")
expect "key add to be revoked" 0 "$LETHE" key add leaked --roles admin --store "$S" --json
REVOKED=$(sed -n 's/.*"key":"\(lk_[0-9]*_[A-Za-z0-9_-]*\)".*/\1/p' "$tmp/out")
expect "key revoke" 0 "$LETHE" key revoke 8 --store "$S"
contains "key revoke says so" "$tmp/out" "key 8 revoked"
expect "key revoke again is refused" 2 "$LETHE" key revoke 8 --store "$S"
contains "and says why" "$tmp/err" "revoked already"
expect "key revoke of no key" 1 "$LETHE" key revoke 99 --store "$S"
contains "names the id" "$tmp/err" "no API key 99"
expect "key revoke of a non-number" 2 "$LETHE" key revoke eight --store "$S"
expect "key add without roles" 2 "$LETHE" key add x --store "$S"
contains "asks for --roles" "$tmp/err" "--roles"
expect "key add with an unknown role" 2 "$LETHE" key add x --roles search,root --store "$S"
contains "names the role" "$tmp/err" "unknown role 'root'"
expect "key add with a control character in the name" 2 "$LETHE" key add "$(printf 'a\033b')" --roles audit --store "$S"
expect "key add with a negative rate" 2 "$LETHE" key add x --roles audit --rate -5 --store "$S"
expect "key without an action" 2 "$LETHE" key --store "$S"
expect "key --help" 0 "$LETHE" key --help
contains "help names the roles" "$tmp/out" "erasure (forget"
expect "key list" 0 "$LETHE" key list --store "$S"
contains "list shows the revocation" "$tmp/out" "^8 .*Z  leaked"
lacks "list never shows a key" "$tmp/out" "lk_"
expect "key list --json" 0 "$LETHE" key list --store "$S" --json
same "one object a key" "$(grep -c '^{"id":' "$tmp/out")" 8
contains "revoked key has its time" "$tmp/out" '"id":8,.*"revoked_at":"20'
lacks "list --json never shows a key" "$tmp/out" "lk_"
expect "log lists key changes" 0 "$LETHE" log --store "$S" --json
same "8 key-add entries" "$(grep -c '"kind":"key-add"' "$tmp/out")" 8
contains "the revocation is logged with its actor" "$tmp/out" '"kind":"key-revoke","actor":"tester"'
expect "log verifies" 0 "$LETHE" log verify --store "$S"

# A receipt to verify, and a photo (or not) for ingest.
expect "forget makes a receipt" 0 "$LETHE" forget --store "$S" --uploader nobody-q --receipt "$tmp/receipt.json"
PHOTO=$tmp/notaphoto.jpg
printf 'not a photo at all' >"$PHOTO"
INGEST_OK=422 SERVE_FACES=(--no-faces)
if [ -f "$SAMPLES/sample1.jpg" ] && [ -f "${LETHE_MODELS:-models}/face_recognition_model.bin" ]; then
    PHOTO=$SAMPLES/sample1.jpg INGEST_OK=200 SERVE_FACES=(--models "${LETHE_MODELS:-models}")
else
    skipt "photos" "samples/ or the models absent: ingest and search by photo answer 422/503"
fi
[ "$INGEST_OK" = 422 ] && INGEST_OK=503 # --no-faces: no engine

printf 'path,uploader,consent,jurisdiction\nm.jpg,matrix,explicit,US\n' >"$tmp/matrix.csv"
mkdir -p "$tmp/backups"

# --- 2. the server -----------------------------------------------------------
if ! start_server main --store "$S" --timeout 4 --backup-dir "$tmp/backups" "${SERVE_FACES[@]}"; then
    bad "server starts" "$(cat "$tmp/main.out" "$tmp/main.err" | head -c 600)"
    cli_summary
    exit 1
fi
ok "server starts on a free port ($PORT)"
BASE=http://127.0.0.1:$PORT

# --- 3. the authorization matrix ---------------------------------------------
# One row an endpoint; columns admin ingest search audit erasure: y allowed,
# n denied (403, and the log does not grow). The status an allowed call
# answers is the last column.
matrix="
GET  /v1/status            y y y y y 200
POST /v1/search            y n y n n 200
POST /v1/lookup            y n y n y 200
POST /v1/verify            y n y n n 404
GET  /v1/log               y n n y n 200
GET  /v1/log/verify        y n n y n 200
GET  /v1/datasheet         y n n y n 200
GET  /v1/digest            y n n y y 200
GET  /v1/policy            y y n y n 200
GET  /v1/policy/check?jurisdiction=GB&consent=explicit y y n y n 200
PUT  /v1/policy            y n n n n 200
POST /v1/forget            y n n n y 200
GET  /v1/optouts           y n n y y 200
POST /v1/receipts/verify   y y y y y 200
GET  /v1/receipts/0000000000000000000000000000000000000000000000000000000000000000 y n n y y 404
GET  /v1/models            y n n y n 200
POST /v1/models/retire     y n n n n 404
POST /v1/ingest            y y n n n INGEST
POST /v1/ingest/manifest   y y n n n INGEST
POST /v1/detect            y y y n n INGEST
POST /v1/backup            y n n n n 200
DELETE /v1/optouts/999999  y n n n y 404
GET  /v1/requests          y n n n y 200
POST /v1/requests/approve  y n n n y 404
POST /v1/requests/deny     y n n n y 404
GET  /v1/requests/auto     y n n y y 200
PUT  /v1/requests/auto     y n n n n 200
"
# call KEY METHOD PATH: a well-formed request to the endpoint
call() {
    local key=$1 method=$2 path=$3
    case "$method $path" in
    "POST /v1/search") json_post "$key" "$path" "{\"purpose\":\"matrix\",\"descriptor\":$DESC}" ;;
    "POST /v1/lookup") json_post "$key" "$path" '{"uploader":"matrix-nobody"}' ;;
    "POST /v1/requests/approve" | "POST /v1/requests/deny") json_post "$key" "$path" '{"number":999999}' ;;
    "PUT /v1/requests/auto") req "$key" PUT "$path" -H 'Content-Type: application/json' --data-binary '{"face":false}' ;;
    "POST /v1/verify") json_post "$key" "$path" "{\"purpose\":\"matrix\",\"descriptor\":$DESC,\"uploader\":\"matrix-nobody\"}" ;;
    "PUT /v1/policy") req "$key" PUT "$path" -H 'Content-Type: application/json' --data-binary '{"key":"US-CA","allows":"explicit","dry_run":true}' ;;
    "POST /v1/forget") json_post "$key" "$path" '{"uploader":"matrix-nobody","dry_run":true}' ;;
    "POST /v1/models/retire") json_post "$key" "$path" '{"model":"matrix-nomodel@1","dry_run":true}' ;;
    "POST /v1/receipts/verify") req "$key" POST "$path" -H 'Content-Type: application/json' --data-binary @"$tmp/receipt.json" ;;
    "POST /v1/ingest") req "$key" POST "$path?uploader=matrix&consent=explicit&jurisdiction=US" -H 'Content-Type: image/jpeg' --data-binary @"$PHOTO" ;;
    "POST /v1/ingest/manifest") req "$key" POST "$path" -F "manifest=@$tmp/matrix.csv" -F "photo=@$PHOTO;filename=m.jpg" ;;
    "POST /v1/detect") req "$key" POST "$path" -H 'Content-Type: image/jpeg' --data-binary @"$PHOTO" ;;
    *) req "$key" "$method" "$path" ;;
    esac
}
roles=(admin ingest search audit erasure)
cells=0
while read -r method path a b c d e want; do
    [ -n "$method" ] || continue
    [ "$want" = INGEST ] && want=$INGEST_OK
    allowed=("$a" "$b" "$c" "$d" "$e")
    for i in 0 1 2 3 4; do
        role=${roles[$i]}
        cells=$((cells + 1))
        if [ "${allowed[$i]}" = y ]; then
            call "${KEY[$role]}" "$method" "$path"
            is "matrix: $role may $method $path" "$want"
        else
            n0=$(log_entries)
            call "${KEY[$role]}" "$method" "$path"
            is "matrix: $role may not $method $path" 403 '"code":"forbidden"'
            same "matrix: $role's refused $method $path left the log alone" "$(log_entries)" "$n0"
        fi
    done
    call - "$method" "$path"
    is "matrix: no key, $method $path" 401 '"code":"unauthorized"'
    call "lk_1_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" "$method" "$path"
    is "matrix: a wrong key, $method $path" 401 'the key is not valid'
    call "$REVOKED" "$method" "$path"
    is "matrix: a revoked key, $method $path" 401 'key 8 was revoked at'
done <<<"$matrix"
# the /v1/ routes of programs/serve_api.c's table, each once above (the
# CompreFace routes under /api/v1/ have their own: tests/cli/test_compreface.sh)
routes=$(grep -cE '^    \{"(GET|POST|PUT|DELETE)", "/v1/' programs/serve_api.c)
same "the matrix has every endpoint x every role" "$cells" $((routes * 5))
req "${KEY[search]}" GET /v1/status -H "Authorization: Bearer ${KEY[search]}"
is "Authorization: Bearer is accepted" 200 '"roles":\["search"\]'
code=$(curl -s -o "$tmp/body" -w '%{http_code}' -H "Authorization: Bearer ${KEY[audit]}" "$BASE/v1/status")
is "Authorization: Bearer alone" 200 '"name":"audit holder"'
req "${KEY[search]}" POST /v1/forget -H 'Content-Type: application/json' --data-binary '{"uploader":"x"}'
is "a 403 names the roles needed" 403 'needs one of the roles admin|erasure'
req - GET /v1/status
contains "a 401 asks for Bearer" "$tmp/headers" 'WWW-Authenticate: Bearer'

# --- 4. what each endpoint answers ------------------------------------------
A=${KEY[admin]}
json_post "${KEY[search]}" /v1/search "{\"descriptor\":$DESC}"
is "search without a purpose" 400 '"code":"purpose_required"'
json_post "${KEY[search]}" /v1/search "{\"purpose\":\"\",\"descriptor\":$DESC}"
is "search with an empty purpose" 400 '"code":"purpose_required"'
n0=$(log_entries)
json_post "${KEY[search]}" /v1/search "{\"purpose\":\"finding a lost child q8\",\"descriptor\":$DESC,\"top_k\":3}"
is "search by descriptor" 200 '^{"query":0,"source":"descriptor","gallery":[0-9]*,"fpir":null,"threshold":null,"matches":\['
same "the search is one log entry" "$(log_entries)" $((n0 + 1))
"$LETHE" log --store "$S" --json | tail -n 1 >"$tmp/last"
contains "the log's actor is the key's id" "$tmp/last" '"kind":"search","actor":"key:3","purpose":"finding a lost child q8"'
json_post "${KEY[search]}" /v1/search "{\"purpose\":\"x\",\"descriptor\":[1,2,3]}"
is "a short descriptor" 400 'descriptor'
json_post "${KEY[search]}" /v1/search "{\"purpose\":\"x\",\"descriptor\":$DESC,\"top_k\":0}"
is "top_k 0" 400 'top_k'
json_post "${KEY[search]}" /v1/search "{\"purpose\":\"x\",\"descriptor\":$DESC,\"purpse\":\"typo\"}"
is "an unknown member is named" 400 'unknown member \\"purpse\\"'
json_post "${KEY[erasure]}" /v1/lookup '{"uploader":"a","url":"b"}'
is "lookup with two selectors" 400 'exactly one'
json_post "${KEY[erasure]}" /v1/lookup '{"url":"https://nowhere.example/q"}'
is "lookup" 200 '{"lookup":"url","photos":\[\]}'
"$LETHE" log --store "$S" --json | tail -n 1 >"$tmp/last"
contains "the lookup's actor is the key's id" "$tmp/last" '"kind":"lookup","actor":"key:5"'
lacks "the lookup logs no identifier" "$tmp/last" "nowhere.example"
req "$A" GET /v1/log
is "log" 200 '^{"entries":\[{"seq":1,'
req "$A" GET /v1/log/verify
is "log verify" 200 '"intact":true'
req "$A" GET "/v1/datasheet?format=html"
is "datasheet as HTML" 200 '<html'
contains "datasheet HTML content type" "$tmp/headers" 'Content-Type: text/html'
req "$A" GET "/v1/datasheet?format=pdf"
is "datasheet in an unknown format" 400 'json, md or html'
req "$A" GET "/v1/digest?full=true"
is "digest, recomputed" 200 '"matches_kept":true'
same "digest equals the CLI's" "$(sed -n 's/.*"digest":"\([0-9a-f]*\)".*/\1/p' "$tmp/body")" "$("$LETHE" digest --store "$S")"
req "$A" GET /v1/policy
is "policy" 200 '^{"policy":"# lethe consent policy'
req "$A" PUT /v1/policy -H 'Content-Type: application/json' --data-binary '{"key":"US-CA","allows":"explicit,public-license"}'
is "policy set" 200 '"dry_run":false,"templates_dropped":0'
expect "the CLI sees the new rule" 0 "$LETHE" policy check US-CA public-license --store "$S"
"$LETHE" log --store "$S" --json | tail -n 1 >"$tmp/last"
contains "the policy change's actor is the key's id" "$tmp/last" '"kind":"policy","actor":"key:1"'
req "$A" PUT /v1/policy -H 'Content-Type: application/json' --data-binary '{"key":"Atlantis","allows":"explicit"}'
is "policy set with a bad key" 400 'Atlantis'
json_post "${KEY[erasure]}" /v1/forget '{"source":"whole-collection"}'
is "a wide forget needs confirmation" 409 '"code":"confirmation_required"'
contains "and carries the dry run" "$tmp/body" '"dry_run":{"kind":"forget","dry_run":true'
json_post "${KEY[erasure]}" /v1/forget '{}'
is "forget without a selector" 400 'at least one selector'
json_post "${KEY[erasure]}" /v1/forget '{"uploader":"nobody-z"}'
is "forget" 200 '"erased":true'
contains "forget returns the signed receipt" "$tmp/body" '"receipt":{.*"signature":"'
sed 's/.*"receipt":\({.*}\),"matched".*/\1/' "$tmp/body" >"$tmp/r2.json"
expect "the receipt verifies with the CLI" 0 "$LETHE" receipt verify "$tmp/r2.json" --store "$S"
req "${KEY[audit]}" POST /v1/receipts/verify -H 'Content-Type: application/json' --data-binary @"$tmp/r2.json"
is "and over HTTP" 200 '"valid":true,"issued_by_store":true'
sed 's/"photos":0/"photos":9/' "$tmp/r2.json" >"$tmp/r3.json"
req "${KEY[audit]}" POST /v1/receipts/verify -H 'Content-Type: application/json' --data-binary @"$tmp/r3.json"
is "an altered receipt does not" 200 '"valid":false'
req "${KEY[erasure]}" GET /v1/optouts
is "optouts" 200 '^\['
req "${KEY[ingest]}" POST "/v1/ingest?uploader=alice-q&consent=explicit&jurisdiction=US" -H 'Content-Type: image/jpeg' --data-binary 'no photo'
if [ "$INGEST_OK" = 200 ]; then
    is "ingest of bytes that are no photo" 422 '"code":"photo_not_ingested","message":"not a JPEG, PNG or WebP'
else
    is "ingest without face models" 503 '"code":"no_face_engine"'
fi
req "${KEY[ingest]}" POST "/v1/ingest?uploader=alice-q&consnt=explicit" -H 'Content-Type: image/jpeg' --data-binary @"$PHOTO"
is "ingest with an unknown argument" 400 "unknown argument 'consnt'"
req "${KEY[ingest]}" POST "/v1/ingest?uploader=a%1bb" -H 'Content-Type: image/jpeg' --data-binary @"$PHOTO"
is "ingest with a control character" 400 'control character'
if [ "$INGEST_OK" = 200 ]; then
    req "${KEY[ingest]}" POST /v1/ingest -F "photo=@$SAMPLES/sample2.jpg" -F uploader=bob-q -F consent=explicit -F jurisdiction=DE
    is "ingest a multipart upload" 200 '"added":1'
    req "${KEY[ingest]}" POST /v1/ingest -F "photo=@$SAMPLES/sample2.jpg" -F uploader=bob-q -F consnt=x
    is "a multipart upload with an unknown field" 400 "unknown form field 'consnt'"
    req "${KEY[search]}" POST "/v1/search?purpose=photo-search&top_k=1" -H 'Content-Type: image/jpeg' --data-binary @"$SAMPLES/sample2.jpg"
    is "search by photo" 200 '"distance":0.000000,"same":true'
    contains "the match carries its provenance" "$tmp/body" '"uploader":"bob-q"'
    req "${KEY[search]}" POST /v1/search -F "photo=@$SAMPLES/sample2.jpg" -F top_k=1
    is "search by photo without a purpose" 400 'purpose_required'
    "$LETHE" lookup --store "$S" --uploader bob-q --json >"$tmp/lk"
    contains "the CLI finds what was ingested over HTTP" "$tmp/lk" '"path":"sample2.jpg"'
    # 1:1 verification against the stored photos of an account
    req "${KEY[search]}" POST "/v1/verify?purpose=door&uploader=bob-q" -H 'Content-Type: image/jpeg' --data-binary @"$SAMPLES/sample2.jpg"
    is "verify a photo against an account" 200 '"match":true,"distance":0.000000'
    contains "verify: against the uploader's photo" "$tmp/body" '"photos":1,"against":"uploader"'
    req "${KEY[search]}" POST /v1/verify -F "photo=@$SAMPLES/sample2.jpg" -F purpose=door -F uploader=bob-q -F threshold=0.000001 -F photo_id=x
    is "verify with two selectors" 400 'give exactly one of'
    req "${KEY[search]}" POST /v1/verify -F "photo=@$SAMPLES/sample2.jpg" -F purpose=door -F uploader=bob-q -F top_k=3
    is "verify takes no top_k" 400 "top_k"
    req "${KEY[search]}" POST /v1/verify -F "photo=@$SAMPLES/sample2.jpg" -F purpose=door -F uploader=nobody-q
    is "verify against nothing held" 404 'no photo held matches'
    req "${KEY[search]}" POST /v1/verify -F "photo=@$SAMPLES/sample2.jpg" -F uploader=bob-q
    is "verify without a purpose" 400 'purpose_required'
    "$LETHE" log --store "$S" --json >"$tmp/lg"
    same "one verification logged (the refused ones not)" "$(grep -c '"kind":"verify"' "$tmp/lg")" 1
    # forget by face: the person's descriptor, a dry run then the erasure
    "$LETHE" embed --json --precision fp32 "$SAMPLES/sample2.jpg" >"$tmp/emb" 2>/dev/null
    face=$(sed -n 's/.*"embedding":\(\[[^]]*\]\).*/\1/p' "$tmp/emb" | head -n 1)
    json_post "${KEY[erasure]}" /v1/forget "{\"face\":${face:-[]},\"dry_run\":true}"
    is "forget by face, dry run" 200 '"dry_run":true,"erased":false,"photos":0,"provenance":0,"faces":1,"templates":1'
    contains "the dry run names bob-q's photo" "$tmp/body" '"matched":\[{"photo":"[0-9a-f]\{64\}","status":"analysed","distance":0\.0'
    json_post "${KEY[erasure]}" /v1/forget "{\"face\":${face:-[]},\"face_threshold\":0.9}"
    is "forget by face above the match threshold needs confirmation" 409 'confirmation_required'
    json_post "${KEY[erasure]}" /v1/forget '{"face":[1,2,3]}'
    is "forget by a face of 3 numbers" 400 'expected 128 numbers, found 3'
    json_post "${KEY[erasure]}" /v1/forget '{"face_threshold":0.3}'
    is "face_threshold without a face" 400 'goes with'
    f0=$("$LETHE" lookup --store "$S" --uploader bob-q --json | sed -n 's/.*"faces":\([0-9]*\).*/\1/p')
    json_post "${KEY[erasure]}" /v1/forget "{\"face\":${face:-[]}}"
    is "forget by face" 200 '"erased":true,"photos":0,"provenance":0,"faces":1,"templates":1'
    f1=$("$LETHE" lookup --store "$S" --uploader bob-q --json | sed -n 's/.*"faces":\([0-9]*\).*/\1/p')
    same "the photo stays with one face fewer" "$f1" "$((${f0:-0} - 1))"
    contains "the receipt says by face" "$tmp/body" '"receipt":{.*"faces":1'
fi
# detect, backup, opt-out removal, the datasheet's formats
if [ "$INGEST_OK" = 200 ]; then
    n0=$(log_entries)
    req "${KEY[search]}" POST /v1/detect -F "photo=@$SAMPLES/sample2.jpg"
    is "detect (multipart)" 200 '"faces":\[{"box":\['
    contains "detect gives 68 landmarks" "$tmp/body" '"landmarks":\[\[[0-9.]*,[0-9.]*\]\(,\[[0-9.]*,[0-9.]*\]\)\{67\}\]'
    lacks "detect gives no template" "$tmp/body" 'embedding\|descriptor'
    same "detect logs nothing in the store" "$(log_entries)" "$n0"
    req "${KEY[search]}" POST "/v1/detect?purpose=x" -H 'Content-Type: image/jpeg' --data-binary @"$SAMPLES/sample2.jpg"
    is "detect takes no argument" 400 "unknown argument 'purpose'"
    req "${KEY[search]}" POST /v1/detect -H 'Content-Type: image/jpeg' --data-binary 'no photo'
    is "detect of bytes that are no photo" 400 'not an image'
fi
req "$A" POST /v1/backup
is "backup" 200 '"backup":"lethe-backup-[0-9T]*Z[-0-9]*","info":{"lethe_backup":'
name=$(sed -n 's/.*"backup":"\([^"]*\)".*/\1/p' "$tmp/body")
[ -n "$name" ] && [ -f "$tmp/backups/$name/backup.json" ] && ok "the backup is in --backup-dir" || bad "the backup is in --backup-dir" "'$name': $(ls "$tmp/backups")"
req "$A" POST "/v1/backup?dest=/tmp/x"
is "backup takes no destination" 400 "unknown argument 'dest'"
json_post "${KEY[erasure]}" /v1/forget '{"uploader":"opt-me-out","optout":true}'
is "an opt-out" 200 '"kind":"optout"'
req "${KEY[erasure]}" GET /v1/optouts
oid=$(grep -o '"id":[0-9]*' "$tmp/body" | tail -n 1 | cut -d: -f2)
req "${KEY[erasure]}" DELETE "/v1/optouts/${oid:-0}"
is "opt-out removal" 200 "{\"removed\":${oid:-x}}"
req "${KEY[erasure]}" DELETE "/v1/optouts/${oid:-0}"
is "opt-out removal again" 404 'no standing opt-out'
"$LETHE" log --store "$S" --json | tail -n 1 >"$tmp/last"
contains "the removal's actor is the key's id" "$tmp/last" '"actor":"key:5"'
req "${KEY[erasure]}" PUT "/v1/optouts/1"
is "PUT to an opt-out" 405 'does not take PUT'
contains "with Allow" "$tmp/headers" 'Allow: DELETE'
for f in json md html; do
    req "$A" GET "/v1/datasheet?format=$f"
    is "datasheet as $f (every format the CLI has)" 200
done
lacks "the access log holds no query string" "$tmp/main.err" "alice-q"
lacks "nor a purpose" "$tmp/main.err" "lost child"
contains "the access log names the key" "$tmp/main.err" '"key":3,"method":"POST","path":"/v1/search","status":200'

# the exact photo file: lookup and forget by its bytes (hashed, never
# decoded: a photo the policy refused is catalogued, not analysed, so no
# face engine is needed); the receipt read back by its hash
printf '\x89PNG\r\n\x1a\nlethe test: the exact file q\x01\x02' >"$tmp/exact.jpg"
expect "a photo catalogued without analysis (GB needs explicit consent)" 0 \
    "$LETHE" ingest --store "$S" --uploader exact-q --jurisdiction GB --consent none "$tmp/exact.jpg"
req "${KEY[erasure]}" POST /v1/lookup -H 'Content-Type: image/jpeg' --data-binary @"$tmp/exact.jpg"
is "lookup by the exact file (raw)" 200 '{"lookup":"file","photos":\[{"photo":"'"$(sha256sum "$tmp/exact.jpg" | cut -c1-64)"'"'
req "${KEY[search]}" POST /v1/lookup -F "photo=@$tmp/exact.jpg"
is "lookup by the exact file (multipart)" 200 '"uploader":"exact-q"'
"$LETHE" log --store "$S" --json | tail -n 1 >"$tmp/last"
contains "the lookup by file is logged as one" "$tmp/last" '"kind":"lookup","actor":"key:3","purpose":"file"'
printf '\x89PNG\r\n\x1a\nlethe test: the exact file q\x01\x03' >"$tmp/other.jpg"
req "${KEY[erasure]}" POST /v1/lookup -H 'Content-Type: image/png' --data-binary @"$tmp/other.jpg"
is "lookup by a file one byte different" 200 '{"lookup":"file","photos":\[\]}'
req "${KEY[erasure]}" POST /v1/lookup -F "photo=@$tmp/exact.jpg" -F "photo=@$tmp/other.jpg"
is "lookup by two files" 400 "only one 'photo' part"
req "${KEY[erasure]}" POST /v1/lookup -H 'Content-Type: image/jpeg' --data-binary ''
is "lookup by an empty file" 400 'no photo file'
req "${KEY[erasure]}" POST "/v1/forget?dry_run=true" -H 'Content-Type: image/jpeg' --data-binary @"$tmp/exact.jpg"
is "forget by the exact file, dry run" 200 '"dry_run":true,"erased":false,"photos":1,"provenance":1'
contains "a dry run has no receipt" "$tmp/body" '"receipt_hash":null,"receipt":null'
req "${KEY[erasure]}" POST "/v1/forget?dry_run=maybe" -H 'Content-Type: image/jpeg' --data-binary @"$tmp/exact.jpg"
is "forget with dry_run=maybe" 400 "'dry_run' is true or false"
req "${KEY[search]}" POST /v1/forget -F "photo=@$tmp/exact.jpg"
is "forget by file needs the erasure role" 403 'forbidden'
req "${KEY[erasure]}" POST /v1/forget -F "photo=@$tmp/exact.jpg" -F optout=false
is "forget by the exact file (multipart)" 200 '"kind":"forget","dry_run":false,"erased":true,"photos":1'
rhash=$(sed -n 's/.*"receipt_hash":"\([0-9a-f]\{64\}\)".*/\1/p' "$tmp/body")
sed 's/.*"receipt":\({.*}\),"matched".*/\1/' "$tmp/body" >"$tmp/rf.json"
expect "the file is gone (CLI lookup by --image)" 1 "$LETHE" lookup --store "$S" --image "$tmp/exact.jpg"
req "${KEY[audit]}" GET "/v1/receipts/${rhash:-none}"
is "the receipt read back by its hash" 200 '"lethe_receipt":1'
cmp -s <(tr -d '\n' <"$tmp/body") <(tr -d '\n' <"$tmp/rf.json") && ok "byte for byte the receipt the forget gave" ||
    bad "byte for byte the receipt the forget gave" "$(head -c 200 "$tmp/body") vs $(head -c 200 "$tmp/rf.json")"
"$LETHE" receipt show "${rhash:-none}" --store "$S" >"$tmp/rshow"
cmp -s <(tr -d '\n' <"$tmp/rshow") <(tr -d '\n' <"$tmp/rf.json") && ok "lethe receipt show gives the same bytes" ||
    bad "lethe receipt show gives the same bytes" "$(head -c 200 "$tmp/rshow")"
req "${KEY[audit]}" GET "/v1/receipts/$(printf '%s' "${rhash:-x}" | tr a-f A-F)"
is "a receipt hash in capitals is no route" 404 '"code":"not_found"'
req "${KEY[audit]}" GET "/v1/receipts/${rhash:-x}/../../log"
is "no traversal through a receipt's hash" 404
req "${KEY[audit]}" GET "/v1/receipts/${rhash:-x}?x=1"
is "a receipt takes no argument" 400 "unknown argument 'x'"
# the consent policy's single decision, as lethe policy check --json
req "${KEY[ingest]}" GET "/v1/policy/check?jurisdiction=US-IL&consent=none"
is "policy check: BIPA refuses" 200 '{"jurisdiction":"US-IL","consent":"none","allowed":false,"rule":"US-IL'
same "policy check answers as the CLI's --json" "$(cat "$tmp/body")" "$("$LETHE" policy check US-IL none --json --store "$S")"
req "${KEY[audit]}" GET "/v1/policy/check?jurisdiction=US-CA&consent=explicit"
is "policy check: allowed" 200 '"allowed":true'
req "${KEY[audit]}" GET "/v1/policy/check?jurisdiction=Atlantis&consent=explicit"
is "policy check of no place" 400 'Atlantis'
req "${KEY[audit]}" GET "/v1/policy/check?jurisdiction=GB"
is "policy check without a consent" 400 'consent='
# the models: listed as the CLI lists them; retiring needs confirmation
req "${KEY[audit]}" GET /v1/models
is "models" 200 '^{"models":\['
same "models answer as lethe model list --json" "$(sed 's/^{"models":\[//; s/\]}$//; s/},{/}\n{/g' "$tmp/body")" "$("$LETHE" model list --json --store "$S")"
json_post "$A" /v1/models/retire '{"model":"nosuch@9"}'
is "retire an unknown model" 404 'nosuch'
json_post "$A" /v1/models/retire '{"dry_run":true}'
is "retire without a model" 400 'model.. is required'
# fused search: several descriptors of one person, one log entry
DESC2=$(printf '%s' "$DESC" | sed 's/\([0-9]\)\([,\]]\)/\15\2/g')
n0=$(log_entries)
json_post "${KEY[search]}" /v1/search "{\"purpose\":\"fused q\",\"descriptors\":[$DESC,$DESC2],\"top_k\":2}"
is "fused search by descriptors" 200 '^{"query":0,"source":"2 probes of one person, fused","fused":2,"gallery":'
/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["matches"] and all(m["fmr"] is None and m["tier"] == "uncalibrated" for m in d["matches"])' "$tmp/body" &&
    ok "its answer is JSON, the uncalibrated evidence null (it was nan)" || bad "its answer is JSON, the uncalibrated evidence null (it was nan)" "$(head -c 300 "$tmp/body")"
same "a fused search is one log entry" "$(log_entries)" $((n0 + 1))
json_post "${KEY[search]}" /v1/search "{\"purpose\":\"x\",\"descriptors\":[]}"
is "fused search of no descriptor" 400 'is empty'
json_post "${KEY[search]}" /v1/search "{\"purpose\":\"x\",\"descriptors\":[$DESC,[1,2]]}"
is "fused search with a short descriptor" 400 'descriptors\\"\[1\]'
json_post "${KEY[search]}" /v1/search "{\"purpose\":\"x\",\"descriptors\":[$DESC],\"descriptor\":$DESC}"
is "descriptor and descriptors" 400 'give one of'
json_post "${KEY[search]}" /v1/search "{\"purpose\":\"x\",\"descriptors\":{\"a\":1}}"
is "descriptors as an object" 400 'is an array of descriptors'
many=$(for i in $(seq 65); do printf '%s%s' "${i#1}" "$DESC" | sed 's/^[0-9][0-9]*\[/,[/'; done)
json_post "${KEY[search]}" /v1/search "{\"purpose\":\"x\",\"descriptors\":[${many#,}]}"
is "fused search of 65 descriptors" 400 'at most 64'
if [ "$INGEST_OK" = 200 ]; then
    req "${KEY[search]}" POST /v1/search -F "photo=@$SAMPLES/sample2.jpg" -F "photo=@$SAMPLES/sample3.jpg" -F purpose=fused-photos -F top_k=1
    is "fused search by two photos" 200 '"tier":"uncalibrated"'
    req "${KEY[search]}" POST /v1/search -F "photo=@$SAMPLES/sample2.jpg" -F "photo=@$tmp/exact.jpg" -F purpose=fused-photos
    is "fused search: the photo that is none is named" 400 'photo 1: '
    req "${KEY[search]}" POST /v1/verify -F "photo=@$SAMPLES/sample2.jpg" -F "photo=@$SAMPLES/sample3.jpg" -F purpose=door -F uploader=bob-q
    is "verify takes one photo" 400 "only one 'photo' part"
    # forget by the person a photo shows (a selfie), not by its bytes
    req "${KEY[erasure]}" POST "/v1/forget?by=face&dry_run=true" -H 'Content-Type: image/jpeg' --data-binary @"$SAMPLES/sample1.jpg"
    is "forget by the face a photo shows, dry run" 200 '"dry_run":true,"erased":false,"photos":0,"provenance":0,"faces":1,"templates":1'
    contains "the dry run names the matrix's photo of that face" "$tmp/body" '"matched":\[{"photo":"8ecae4b267b2d3169e06e00c7dee97097aa2a94635d45216f7732a5f4943cb51"'
    req "${KEY[erasure]}" POST /v1/forget -F "photo=@$SAMPLES/sample1.jpg" -F by=face -F face_threshold=0.9 -F dry_run=true
    is "by face with a threshold above the match threshold, dry run" 200 '"dry_run":true'
    req "${KEY[erasure]}" POST /v1/forget -F "photo=@$SAMPLES/sample1.jpg" -F by=face -F face_threshold=0.9
    is "and for real it needs confirmation" 409 'confirmation_required'
    req "${KEY[erasure]}" POST /v1/forget -F "photo=@$tmp/exact.jpg" -F by=face
    is "by face, a photo that is none" 400 'corrupt PNG'
    req "${KEY[erasure]}" POST /v1/forget -F "photo=@$SAMPLES/sample1.jpg" -F by=name
    is "by an unknown kind" 400 "'by' is file"
    req "${KEY[erasure]}" POST /v1/forget -F "photo=@$SAMPLES/sample1.jpg" -F face_threshold=0.3
    is "face_threshold without by=face" 400 'goes with by=face'
fi

# --- one shape per object: what the CLI's --json and the server write for
# the same call have the same members, recursively (values aside) -----------
cat >"$tmp/shape.py" <<'EOF'
import json, sys
def shape(v):
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    return "number" if isinstance(v, (int, float)) else type(v).__name__
a, b = (json.loads(open(f).read().splitlines()[0]) for f in sys.argv[1:3])
if shape(a) != shape(b):
    sys.exit("cli  %s\nhttp %s" % (json.dumps(shape(a))[:700], json.dumps(shape(b))[:700]))
EOF
shape_same() { # NAME CLI_FILE HTTP_FILE
    if /usr/bin/python3 "$tmp/shape.py" "$2" "$3" 2>"$tmp/shape.err"; then ok "one shape: $1"
    else bad "one shape: $1" "$(cat "$tmp/shape.err")"; fi
}
A=${KEY[admin]}
"$LETHE" search --store "$S" --purpose shape --descriptor "$DESC" --top 2 --fpir 0.01 --json >"$tmp/c.json"
json_post "$A" /v1/search "{\"purpose\":\"shape\",\"descriptor\":$DESC,\"top_k\":2,\"fpir\":0.01}"
shape_same "search, with fpir" "$tmp/c.json" "$tmp/body"
contains "the fpir's threshold is in the answer" "$tmp/body" '"fpir":0.01,"threshold":0\.[0-9]'
"$LETHE" search --store "$S" --purpose shape --descriptor "$DESC" --descriptor "$DESC2" --fuse --top 2 --json >"$tmp/c.json"
json_post "$A" /v1/search "{\"purpose\":\"shape\",\"descriptors\":[$DESC,$DESC2],\"top_k\":2}"
shape_same "fused search" "$tmp/c.json" "$tmp/body"
json_post "$A" /v1/search "{\"purpose\":\"shape\",\"descriptor\":$DESC,\"fpir\":1.5}"
is "an fpir out of (0, 1)" 400 'fpir'
json_post "$A" /v1/search "{\"purpose\":\"shape\",\"descriptors\":[$DESC,$DESC2],\"fpir\":0.1}"
is "fpir with fused probes" 400 'not calibrated for fused probes'
"$LETHE" lookup --store "$S" --uploader bob-q --json >"$tmp/c.json"
json_post "$A" /v1/lookup '{"uploader":"bob-q"}'
shape_same "lookup" "$tmp/c.json" "$tmp/body"
for pair in "log verify|/v1/log/verify" "digest --full|/v1/digest?full=true" "policy show|/v1/policy" \
            "policy check GB explicit|/v1/policy/check?jurisdiction=GB&consent=explicit" \
            "optout --list|/v1/optouts" "request auto|/v1/requests/auto" \
            "datasheet --format json|/v1/datasheet?format=json"; do
    # shellcheck disable=SC2086
    "$LETHE" ${pair%%|*} --store "$S" --json >"$tmp/c.json" 2>"$tmp/c.err" ||
        "$LETHE" ${pair%%|*} --store "$S" >"$tmp/c.json" 2>"$tmp/c.err"
    req "$A" GET "${pair#*|}"
    shape_same "${pair%%|*}" "$tmp/c.json" "$tmp/body"
done
"$LETHE" forget --store "$S" --uploader bob-q --dry-run --json >"$tmp/c.json"
json_post "$A" /v1/forget '{"uploader":"bob-q","dry_run":true}'
shape_same "forget --dry-run" "$tmp/c.json" "$tmp/body"
"$LETHE" log --store "$S" --json | tail -n 1 >"$tmp/c.json"
req "$A" GET /v1/log
/usr/bin/python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["entries"][-1]))' "$tmp/body" >"$tmp/h.json"
shape_same "a log entry" "$tmp/c.json" "$tmp/h.json"
if [ "$INGEST_OK" = 200 ]; then
    cp "$SAMPLES/sample3.jpg" "$tmp/shape3.jpg"
    "$LETHE" ingest --store "$S" --consent explicit --jurisdiction US "$tmp/shape3.jpg" --json >"$tmp/c.json"
    req "$A" POST "/v1/ingest?uploader=shape&consent=explicit&jurisdiction=US" -H 'Content-Type: image/jpeg' --data-binary @"$SAMPLES/sample3.jpg"
    shape_same "ingest of a photo" "$tmp/c.json" "$tmp/body"
    "$LETHE" detect "$SAMPLES/sample3.jpg" --json >"$tmp/c.json"
    req "$A" POST /v1/detect -F "photo=@$SAMPLES/sample3.jpg"
    shape_same "detect" "$tmp/c.json" "$tmp/body"
    contains "detect names the file it was sent" "$tmp/body" '^{"image":"sample3.jpg",'
    "$LETHE" search --store "$S" --purpose shape "$tmp/shape3.jpg" --top 2 --json >"$tmp/c.json"
    req "$A" POST "/v1/search?purpose=shape&top_k=2" -H 'Content-Type: image/jpeg' --data-binary @"$SAMPLES/sample3.jpg"
    shape_same "search by photo" "$tmp/c.json" "$tmp/body"
    contains "its source is the photo" "$tmp/body" '^{"query":0,"source":"photo",'
fi

# --- 5. rate limit and quota -------------------------------------------------
for i in 1 2; do req "$RATED" GET /v1/status; done
is "a key at 2 a minute: 2nd request" 200
req "$RATED" GET /v1/status
is "3rd request in the minute" 429 '"code":"too_many_requests"'
contains "with Retry-After" "$tmp/headers" 'Retry-After: [1-9]'
for i in 1 2 3; do req "$QUOTA" GET /v1/log/verify; done
is "a key with a quota of 3: 3rd request" 200
req "$QUOTA" GET /v1/log/verify
is "4th request of the day" 429 'requests of the day'
ra=$(sed -n 's/^Retry-After: \([0-9]*\).*/\1/p' "$tmp/headers" | tr -d '\r')
if [ -n "$ra" ] && [ "$ra" -ge 1 ] && [ "$ra" -le 86400 ]; then ok "quota's Retry-After is until midnight ($ra s)"; else bad "quota's Retry-After" "'$ra'"; fi

# --- 6. hostile requests -----------------------------------------------------
SE=${KEY[search]}
head -c 3000000 /dev/zero | tr '\0' ' ' >"$tmp/big"
req "$SE" POST /v1/search -H 'Content-Type: application/json' --data-binary @"$tmp/big"
is "a 3 MB JSON body (announced)" 413 '"code":"too_large"'
req "$SE" POST /v1/search -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' --data-binary @"$tmp/big"
is "a 3 MB JSON body (chunked)" 413 '"code":"too_large"'
head -c 20000000 /dev/zero >"$tmp/huge"
req "${KEY[ingest]}" POST "/v1/ingest?uploader=x" -H 'Content-Type: image/jpeg' --data-binary @"$tmp/huge"
is "a 20 MB photo" 413 'more than POST /v1/ingest takes'
req - POST /v1/search -H 'Content-Type: application/json' --data-binary @"$tmp/big"
is "a big body without a key is refused before it is read" 401
req "$SE" GET /v1/status --data-binary 'x'
is "a body where none is taken" 413 'takes no body'
for bodyname in truncated:'{"purpose":' twice:'{"purpose":"a","purpose":"b"}' trailing:'{"purpose":"a"} x' \
    not-object:'["purpose"]' nul-escape:'{"purpose":"a\u0000b"}' lone-surrogate:'{"purpose":"\udc00"}' \
    bad-escape:'{"purpose":"\q"}' bad-number:'{"purpose":"a","top_k":01}' empty:''; do
    name=${bodyname%%:*} body=${bodyname#*:}
    json_post "$SE" /v1/search "$body"
    is "bad JSON ($name)" 400 '"code":"bad_json"'
done
deep=$(printf '%.0s[' $(seq 200))
json_post "$SE" /v1/search "{\"purpose\":\"a\",\"descriptor\":$deep}"
is "bad JSON (nested 200 deep)" 400 'nested more than'
json_post "$SE" /v1/search "$(printf '{"purpose":"a\tb"}')"
is "a raw control character in a string" 400 'raw control character'
json_post "$SE" /v1/search "$(printf '{"purpose":"a\xffb"}')"
is "a byte that is not UTF-8" 400 'not UTF-8'
json_post "$SE" /v1/search "{\"purpose\":\"a\\u001b[31mred\",\"descriptor\":$DESC}"
is "an escaped control character in the purpose" 400 'control character'
req "$SE" POST /v1/search -H 'Content-Type: text/plain' --data-binary "{\"purpose\":\"a\",\"descriptor\":$DESC}"
is "the wrong content type" 415 '"code":"unsupported_media_type"'
req "$A" PUT /v1/policy -H 'Content-Type: image/jpeg' --data-binary '{"key":"US-CA","allows":"explicit"}'
is "a photo where JSON is taken" 415
req "$SE" POST /v1/search --data-binary "{\"purpose\":\"a\",\"descriptor\":$DESC}"
is "no content type (form-urlencoded)" 415
req "$SE" POST /v1/search -H 'Content-Type: multipart/form-data' --data-binary 'garbage'
is "multipart without a boundary" 400 'multipart'
req "$SE" POST /v1/search -H 'Content-Type: multipart/form-data; boundary=XyZ' --data-binary $'--XyZ\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nabc'
is "multipart cut short" 400
for p in /v1/../v1/status /v1/status/../log /../../etc/passwd '/v1/%2e%2e/status' /v1//status /v1/status/ '/v1/status%00' /V1/STATUS; do
    req "$SE" GET "$p"
    is "path traversal or a near miss: $p" 404 '"code":"not_found"'
done
req - GET /../../etc/passwd
is "path traversal without a key" 401
head -c 1000000 /dev/zero | tr '\0' 'a' >"$tmp/hdr"
{ printf 'X-Big: '; cat "$tmp/hdr"; } >"$tmp/hdrline"
code=$(curl -s -o "$tmp/body" -w '%{http_code}' -H "x-api-key: $SE" -H @"$tmp/hdrline" "$BASE/v1/status" 2>"$tmp/curlerr")
case $code in 413 | 431) ok "a 1 MB header is refused ($code)" ;; *) bad "a 1 MB header is refused" "status $code $(head -c 200 "$tmp/curlerr")" ;; esac
code=$(curl -s -o "$tmp/body" -w '%{http_code}' -H "x-api-key: $SE" "$BASE/v1/status/$(head -c 100000 "$tmp/hdr")" 2>/dev/null)
case $code in 414 | 431) ok "a 100 kB URL is refused ($code)" ;; *) bad "a 100 kB URL is refused" "status $code" ;; esac
req "$SE" GET "/v1/status?$(head -c 2000 "$tmp/hdr")=1"
is "an unknown query argument" 400 'unknown argument'
req - GET /v1/status -H "x-api-key: lk_1_$(head -c 42 "$tmp/hdr")A"
is "a key of the right length but garbage" 401 'the key is not valid'
req - GET /v1/status -H "x-api-key: ${SE}x"
is "a key one character too long" 401 'not a lethe API key'
req - GET /v1/status -H "Authorization: Basic dXNlcjpwYXNz"
is "Basic authorization" 401
# a slow client: the body never finishes within --timeout 4
start=$(date +%s)
timeout 20 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT
printf 'POST /v1/search HTTP/1.1\r\nHost: x\r\nx-api-key: $SE\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n' >&3
for i in \$(seq 15); do printf x >&3 2>/dev/null || exit 0; sleep 1; done" 2>/dev/null
took=$(($(date +%s) - start))
if [ "$took" -lt 12 ]; then ok "a slow client is cut off (after ${took}s)"; else bad "a slow client is cut off" "still connected after ${took}s"; fi
req "$SE" GET /v1/status
is "after all that, the server still serves" 200
kill -0 "$SPID" 2>/dev/null && ok "the server is still running" || bad "the server is still running" "it exited"

# --- 7. concurrency, HTTPS, a graceful stop ----------------------------------
n0=$(log_entries)
cpids=()
for i in $(seq 8); do
    curl -s -o "$tmp/par$i" -w '%{http_code}\n' -H "x-api-key: $SE" -H 'Content-Type: application/json' \
        --data-binary "{\"purpose\":\"parallel $i\",\"descriptor\":$DESC}" "$BASE/v1/search" >"$tmp/parcode$i" &
    cpids+=($!)
done
wait "${cpids[@]}"
same "8 concurrent searches all answer 200" "$(cat "$tmp"/parcode* | sort -u | tr -d '\n')" 200
same "and are 8 log entries" "$(log_entries)" $((n0 + 8))
expect "the log verifies with the server running" 0 "$LETHE" log verify --store "$S"

if command -v openssl >/dev/null; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/tls.key" -out "$tmp/tls.crt" -days 2 \
        -subj /CN=127.0.0.1 >/dev/null 2>&1
    MAIN_PORT=$PORT MAIN_PID=$SPID MAIN_BASE=$BASE
    if start_server tls --store "$S" --no-faces --tls-cert "$tmp/tls.crt" --tls-key "$tmp/tls.key"; then
        ok "an HTTPS server starts"
        code=$(curl -s -k -o "$tmp/body" -w '%{http_code}' -H "x-api-key: ${KEY[audit]}" "https://127.0.0.1:$PORT/v1/status")
        is "status over HTTPS" 200 '"name":"audit holder"'
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1/status" 2>/dev/null)
        [ "$code" != 200 ] && ok "plain HTTP to the HTTPS port fails ($code)" || bad "plain HTTP to the HTTPS port fails" "200"
    else
        bad "an HTTPS server starts" "$(head -c 400 "$tmp/tls.err")"
    fi
    PORT=$MAIN_PORT SPID=$MAIN_PID BASE=$MAIN_BASE
    expect "tls-cert without tls-key" 2 "$LETHE" serve --store "$S" --tls-cert "$tmp/tls.crt"
else
    skipt "HTTPS" "openssl absent"
fi
expect "serve with a bad --listen" 2 "$LETHE" serve --store "$S" --listen nowhere:80
expect "serve --help" 0 "$LETHE" serve --help
contains "serve --help names the headers" "$tmp/out" "x-api-key"

# SIGTERM while a request is in flight: its headers and part of its body
# are in when the signal comes; the rest follows, the answer comes, then the
# server stops
body="{\"purpose\":\"in flight\",\"descriptor\":$DESC}"
exec 5<>"/dev/tcp/127.0.0.1/$PORT"
printf 'POST /v1/search HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
    "$SE" "${#body}" "${body:0:20}" >&5
sleep 1
kill -TERM "$SPID"
sleep 1
code=$(curl -s --max-time 2 -o /dev/null -w '%{http_code} %{exitcode}' -H "x-api-key: $SE" "$BASE/v1/status" 2>/dev/null)
# curl's exit code 7: the connection was refused (not left waiting)
[ "$code" = "000 7" ] && ok "while it drains, new connections are refused" || bad "while it drains, new connections are refused" "curl: $code"
kill -0 "$SPID" 2>/dev/null && ok "and it waits for the request in flight" || bad "and it waits for the request in flight" "it exited"
printf '%s' "${body:20}" >&5
timeout 20 cat <&5 >"$tmp/inflight"
exec 5>&-
contains "the request in flight at SIGTERM was answered" "$tmp/inflight" '^HTTP/1.1 200'
contains "with its results" "$tmp/inflight" '"matches":\['
for _ in $(seq 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$SPID" 2>/dev/null; then bad "SIGTERM stops the server" "still running after 10 s"; else
    wait "$SPID"
    same "SIGTERM stops the server with status 0" "$?" 0
fi
contains "and it says so" "$tmp/main.err" "lethe serve: stopped"
expect "the store's log verifies after the stop" 0 "$LETHE" log verify --store "$S"
expect "the digest is consistent" 0 "$LETHE" digest --full --store "$S"
stop_servers
for f in "$tmp"/*.err; do
    lacks "no sanitizer report from $(basename "$f" .err)" "$f" 'Sanitizer\|runtime error'
done
cli_summary
