#!/usr/bin/env bash
# CLI tests for the data-subject page of `lethe serve` (issue 10, item 4;
# docs/page.md) and `lethe request`:
#   1. lethe request file|list|status|approve|deny|auto, and their errors;
#   2. every page route (GET /, /page.css, /lookup; POST /lookup, /request,
#      /status, /receipt, /verify): status, type, the security headers;
#      look up by account, link, photo id and exact file (provenance,
#      consent, template, searches by purpose); a request filed, checked,
#      approved by an erasure key over /v1/requests, its receipt
#      downloaded and verified; an opt-out by selfie and a re-ingest that
#      refuses the face (with the models and the shared photos);
#   3. hostile input: HTML in every value that comes back, oversized and
#      unknown fields, wrong methods and types, wrong, malformed and
#      guessed request ids, a tampered receipt; no other route without a
#      key (401); the rate per client address (429 with Retry-After);
#   4. the browser flows in headless Chromium (tests/browser/page.mjs),
#      when chromium, node and tests/browser/node_modules are present.
# Usage: tests/cli/test_page.sh path/to/lethe
set -u
LETHE=${1:-build/lethe}
. "$(dirname "$0")/../cli_lib.sh"
export LETHE_ACTOR=tester
unset LETHE_STORE
MODELS=${LETHE_MODELS:-$PWD/models}
DATA=$(cli_data_dir)
[ -n "$DATA" ] && DATA=$(cd "$DATA" && pwd)
command -v curl >/dev/null || { echo "not ok curl missing (apt-get install curl)"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }

# servers: start_server (sets PORT and BASE), stop_servers (tests/cli_lib.sh)
# req METHOD PATH [CURL ARGS...]: $code, $tmp/body, $tmp/headers
req() {
    local method=$1 path=$2; shift 2
    code=$(curl -s --path-as-is -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' -X "$method" \
        "$@" "$BASE$path" 2>"$tmp/curlerr")
}
is() {
    if [ "$code" != "$2" ]; then bad "$1" "status $code, wanted $2: $(head -c 300 "$tmp/body")"
    elif [ $# -gt 2 ] && ! grep -q -- "$3" "$tmp/body"; then bad "$1" "body lacks '$3': $(head -c 400 "$tmp/body")"
    else ok "$1"; fi
}
header() { if grep -qi -- "$2" "$tmp/headers"; then ok "$1"; else bad "$1" "headers lack '$2': $(cat "$tmp/headers")"; fi; }
rid() { grep -o 'rq_[A-Za-z0-9_-]\{43\}' "$tmp/body" | head -n 1; }

# --- 1. lethe request ----------------------------------------------------------
S=$tmp/store
expect "init" 0 "$LETHE" init --store "$S"
expect "request file by uploader" 0 "$LETHE" request file --uploader nobody --store "$S"
contains "prints the id" "$tmp/out" '^rq_[A-Za-z0-9_-]\{43\}$'
CLI_ID=$(grep '^rq_' "$tmp/out")
expect "request file --json" 0 "$LETHE" request file --optout --url https://x.example/1 --store "$S" --json
contains "json shape" "$tmp/out" '"id":"rq_.*"request":{"number":2,"status":"pending","action":"optout","by":"url"'
expect "request list" 0 "$LETHE" request list --store "$S"
contains "lists the selector of a pending request" "$tmp/out" "^2 .*pending optout url .*https://x.example/1"
expect "request status" 0 "$LETHE" request status "$CLI_ID" --store "$S"
contains "status shows it" "$tmp/out" "^1 .*pending erase  uploader"
# a wrong id: the last character changed (to B when it is an A: the same
# id would be found, 1 time in 16)
case "$CLI_ID" in *A) WRONG_ID=${CLI_ID%?}B ;; *) WRONG_ID=${CLI_ID%?}A ;; esac
expect "request status of a wrong id" 1 "$LETHE" request status "$WRONG_ID" --store "$S"
contains "says no such request" "$tmp/err" "no such request"
expect "request approve" 0 "$LETHE" request approve 1 --store "$S"
contains "says what it erased" "$tmp/out" "request 1 approved: 0 photos"
expect "request approve again" 2 "$LETHE" request approve 1 --store "$S"
contains "says done already" "$tmp/err" "done already"
expect "request deny with a reason" 0 "$LETHE" request deny 2 --reason "<b>not yours</b>" --store "$S"
expect "request deny of no request" 1 "$LETHE" request deny 9 --store "$S"
expect "request approve of a non-number" 2 "$LETHE" request approve one --store "$S"
expect "request auto file on" 0 "$LETHE" request auto file on --store "$S"
contains "rule shown" "$tmp/out" "^file      approved at once"
expect "request auto of an unknown kind" 2 "$LETHE" request auto selfie on --store "$S"
expect "request auto without on/off" 2 "$LETHE" request auto file maybe --store "$S"
expect "request auto file off" 0 "$LETHE" request auto file off --store "$S" --json
contains "json rules" "$tmp/out" '"file":false'
expect "request file with two selectors" 2 "$LETHE" request file --url a --uploader b --store "$S"
expect "request with an unknown action" 2 "$LETHE" request frobnicate --store "$S"
expect "request list --json" 0 "$LETHE" request list --json --store "$S"
same "two requests listed" "$(grep -c '^{"number"' "$tmp/out")" 2
lacks "no selector once decided" "$tmp/out" "x.example"
# a flood is denied by a range of numbers: the pending ones in it, no other
for n in 3 4 5 6; do
    expect "request file $n" 0 "$LETHE" request file --url "https://flood.example/$n" --store "$S"
done
expect "request approve 4" 0 "$LETHE" request approve 4 --store "$S"
expect "request deny a range" 0 "$LETHE" request deny 3-5 --reason "flood" --store "$S"
contains "says how many were pending in it" "$tmp/out" "requests 3 to 5: 2 pending denied"
expect "request list after" 0 "$LETHE" request list --json --store "$S"
contains "3 denied" "$tmp/out" '"number":3,"status":"denied"'
contains "4 stays done" "$tmp/out" '"number":4,"status":"done"'
contains "5 denied" "$tmp/out" '"number":5,"status":"denied"'
contains "6 outside the range still pending" "$tmp/out" '"number":6,"status":"pending"'
expect "request deny a range, json" 0 "$LETHE" request deny 6-100 --store "$S" --json
same "one object" "$(cat "$tmp/out")" '{"first":6,"last":100,"denied":1}'
expect "a range that ends before it begins" 2 "$LETHE" request deny 5-3 --store "$S"
expect "a range that is no range" 2 "$LETHE" request deny 3-x --store "$S"
expect "approve takes no range" 2 "$LETHE" request approve 3-5 --store "$S"
expect "request --help" 0 "$LETHE" request --help
expect "log verifies" 0 "$LETHE" log verify --store "$S"

# --- 2. the page ---------------------------------------------------------------
# two people as descriptors (no models needed); the HTML-looking values come back escaped
vec() { awk -v seed="$1" -v j="$2" 'BEGIN{srand(seed); for (i = 0; i < 128; i++) c[i] = (rand() - 0.5) * 0.4;
        srand(seed * 100 + j); printf "["; for (i = 0; i < 128; i++) printf "%s%.5f", (i ? "," : ""), c[i] + (rand() - 0.5) * 0.02; printf "]"}'; }
{
    for j in 1 2; do
        printf '{"embedding":%s,"uploader":"dana","url":"https://pics.example/dana/%d","photo_id":"dana-%d","source":"pics","license":"CC-BY-4.0","jurisdiction":"US","consent":"explicit"}\n' "$(vec 3 $j)" "$j" "$j"
    done
    printf '{"embedding":%s,"uploader":"<script>alert(1)</script>","url":"javascript:alert(2)","source":"<img src=x onerror=alert(3)>","jurisdiction":"US","consent":"explicit"}\n' "$(vec 5 1)"
} >"$tmp/people.jsonl"
expect "ingest descriptors" 0 "$LETHE" ingest --store "$S" --descriptors "$tmp/people.jsonl"
for role in erasure search ingest; do
    expect "key add $role" 0 "$LETHE" key add "$role" --roles "$role" --store "$S" --json
    declare "KEY_$role=$(sed -n 's/.*"key":"\(lk_[^"]*\)".*/\1/p' "$tmp/out")"
done
FACES=(--no-faces) PHOTOS=0
if [ -n "$DATA" ] && [ -f "$MODELS/face_recognition_model.bin" ] && [ -f "$DATA/faceapi/examples/amy/amy1.png" ]; then
    FACES=(--models "$MODELS") PHOTOS=1
    AMY=$DATA/faceapi/examples/amy
    expect "ingest a photo" 0 "$LETHE" ingest --store "$S" --uploader amy --consent explicit --jurisdiction US "$AMY/amy1.png"
else
    skipt "photos" "no models or no shared photos (\$LETHE_TEST_DATA): the file lookup and the selfie are not tried"
fi
if ! start_server main --store "$S" "${FACES[@]}" --page-rate 100000 --page-requests 1000; then
    bad "server starts" "$(cat "$tmp/main.out" "$tmp/main.err" | head -c 600)"
    cli_summary; exit 1
fi
ok "server starts ($PORT)"

req GET /
is "GET / answers the page" 200 '<form method="get" action="/lookup">'
header "as HTML" "^Content-Type: text/html; charset=utf-8"
header "with a CSP that allows nothing else" "^Content-Security-Policy: default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'"
header "no referrer" "^Referrer-Policy: no-referrer"
header "no framing" "^X-Frame-Options: DENY"
header "not cached" "^Cache-Control: no-store"
lacks "no script on the page" "$tmp/body" "<script"
lacks "nothing loaded from elsewhere" "$tmp/body" 'src="http\|href="http'
same "every input, select and textarea has its label" \
    "$(grep -o '<input type="\(text\|file\|radio\)" id="[^"]*"\|<select id="[^"]*"\|<textarea id="[^"]*"' "$tmp/body" | sed 's/.*id="\([^"]*\)"/\1/' | sort | tr '\n' ' ')" \
    "$(grep -o '<label for="[^"]*"' "$tmp/body" | sed 's/.*for="\([^"]*\)"/\1/' | sort | tr '\n' ' ')"
req GET /page.css
is "GET /page.css" 200 ':focus-visible'
header "as CSS" "^Content-Type: text/css"

# a search that returns dana's photos, with a purpose that looks like HTML
json_search() { curl -s -o /dev/null -w '%{http_code}' -H "x-api-key: $KEY_search" -H 'Content-Type: application/json' -d "{\"purpose\":\"$1\",\"threshold\":0.6,\"descriptor\":$(vec 3 1)}" "$BASE/v1/search"; }
same "a search (case <i>7</i>)" "$(json_search 'case <i>7</i>')" 200
same "a second search" "$(json_search 'case <i>7</i>')" 200
same "a third, another purpose" "$(json_search 'audit 2026')" 200
req GET "/lookup?by=uploader&value=dana"
is "look up by account" 200 '<strong>2 photos</strong> held for the account'
contains "shows the consent basis" "$tmp/body" '<th scope="row">Consent basis</th><td>explicit</td>'
contains "shows the provenance" "$tmp/body" '<th scope="row">Link</th><td>https://pics.example/dana/1</td>'
contains "says a template exists" "$tmp/body" 'yes: a face template exists'
contains "counts searches by purpose, escaped" "$tmp/body" '<tr><td>case &lt;i&gt;7&lt;/i&gt;</td><td>2</td>'
contains "and the other purpose" "$tmp/body" '<tr><td>audit 2026</td><td>1</td>'
lacks "never who searched" "$tmp/body" 'key:'
req GET "/lookup?by=url&value=https://pics.example/dana/2"
is "look up by link" 200 '<strong>1 photo</strong>'
req GET "/lookup?by=photo-id&value=dana-1"
is "look up by photo id" 200 '<strong>1 photo</strong>'
req GET "/lookup?by=uploader&value=nobody-here"
is "nothing held" 200 '<strong>0 photos</strong>'
req GET "/lookup" -G --data-urlencode 'by=uploader' --data-urlencode 'value=<script>alert(1)</script>'
is "look up a value that is HTML" 200 '<strong>1 photo</strong>'
contains "the value comes back escaped" "$tmp/body" '&lt;script&gt;alert(1)&lt;/script&gt;'
contains "the provenance too" "$tmp/body" '&lt;img src=x onerror=alert(3)&gt;'
lacks "no live tag from outside" "$tmp/body" '<script\|<img'
if [ "$PHOTOS" = 1 ]; then
    req POST /lookup -F "photo=@$AMY/amy1.png"
    is "look up the exact file" 200 '<strong>1 photo</strong>'
    req POST /lookup -F "photo=@$AMY/amy2.png"
    is "another file of the same face is not found" 200 '<strong>0 photos</strong>'
fi

# a request, checked, approved by an erasure key, its receipt verified
req POST /request -F action=erase -F by=uploader -F value=dana
is "file a request" 200 'Your request id is'
ID=$(rid)
[ -n "$ID" ] && ok "the answer holds the id" || bad "the answer holds the id" "$(head -c 400 "$tmp/body")"
contains "it waits" "$tmp/body" 'pending: waits for a decision'
lacks "the id is in no URL" "$tmp/body" "href=\"[^\"]*$ID"
req POST /status -F "id=$ID"
is "check it" 200 'pending: waits for a decision'
for wrong in "${ID%?}$([ "${ID: -1}" = A ] && echo B || echo A)" "rq_short" "" "lk_1_$(printf 'a%.0s' $(seq 43))" "$(printf 'rq_%043d' 0)"; do
    req POST /status -F "id=$wrong"
    is "a wrong or malformed id ('${wrong:0:12}...') is not found" 404 'No request has this id'
done
req POST /receipt -F "id=$ID"
is "no receipt while pending" 404 'not done'
EK=$KEY_erasure
req GET /v1/requests
is "the request list needs a key" 401
req GET /v1/requests -H "x-api-key: $KEY_search"
is "a search key may not list requests" 403
req GET "/v1/requests?pending=true" -H "x-api-key: $EK"
is "an erasure key lists the pending ones with their selector" 200 '"status":"pending","action":"erase","by":"uploader".*"selector":"dana"'
NUM=$(grep -o '"number":[0-9]*' "$tmp/body" | head -n 1 | cut -d: -f2)
req POST /v1/requests/approve -H "x-api-key: $KEY_search" -H 'Content-Type: application/json' -d "{\"number\":$NUM}"
is "a search key may not approve" 403
req POST /v1/requests/approve -H "x-api-key: $EK" -H 'Content-Type: application/json' -d '{"number":"1"}'
is "approve needs a number" 400 'must be a request'
req POST /v1/requests/approve -H "x-api-key: $EK" -H 'Content-Type: application/json' -d "{\"number\":$NUM,\"force\":true}"
is "approve refuses an unknown member" 400 'unknown member'
req POST /v1/requests/approve -H "x-api-key: $EK" -H 'Content-Type: application/json' -d "{\"number\":$NUM}"
is "an erasure key approves" 200 '"status":"done".*"erased":{"photos":2,"faces":2,"templates":2}'
contains "the key is the actor" "$tmp/body" "\"decided_by\":\"key:"
req POST /v1/requests/approve -H "x-api-key: $EK" -H 'Content-Type: application/json' -d "{\"number\":$NUM}"
is "approved once" 400 'done already'
req POST /v1/requests/approve -H "x-api-key: $EK" -H 'Content-Type: application/json' -d '{"number":999}'
is "no such request" 404
# the operator's rules over HTTP: an erasure or audit key reads them, only
# an admin key changes them, and the CLI shows the same object
expect "key add admin" 0 "$LETHE" key add admin --roles admin --store "$S" --json
AK=$(sed -n 's/.*"key":"\(lk_[^"]*\)".*/\1/p' "$tmp/out")
KIND_ID=$(sed -n 's/.*"id":\([0-9]*\).*/\1/p' "$tmp/out")
auto_put() { req PUT /v1/requests/auto -H "x-api-key: $1" -H 'Content-Type: application/json' -d "$2"; }
req GET /v1/requests/auto -H "x-api-key: $EK"
is "an erasure key reads the rules" 200 '^{"uploader":false,"url":false,"photo-id":false,"file":false,"face":false}$'
auto_put "$EK" '{"url":true}'
is "an erasure key may not change them" 403 '"code":"forbidden"'
auto_put "$AK" '{}'
is "a change names at least one kind" 400 'name at least one kind'
auto_put "$AK" '{"selfie":true}'
is "an unknown kind is refused" 400 'unknown member \\"selfie\\"'
auto_put "$AK" '{"url":"yes"}'
is "a rule is true or false" 400 '\\"url\\" must be true or false, not a string'
auto_put "$AK" '{"url":true,"file":null}'
is "null is no rule" 400 '\\"file\\" must be true or false, not null'
req GET /v1/requests/auto -H "x-api-key: $EK"
is "a refused change changed nothing" 200 '"url":false'
auto_put "$AK" '{"url":true,"photo-id":true}'
is "an admin key sets two kinds" 200 '^{"uploader":false,"url":true,"photo-id":true,"file":false,"face":false}$'
cp "$tmp/body" "$tmp/auto.json"
expect "the CLI's rules" 0 "$LETHE" request auto --json --store "$S"
same "are the same object" "$(cat "$tmp/out")" "$(cat "$tmp/auto.json")"
expect "log of the change" 0 "$LETHE" log --json --store "$S"
same "each kind changed is logged with the admin key as actor" \
    "$(grep -c "\"kind\":\"request-auto\",\"actor\":\"key:$KIND_ID\"" "$tmp/out")" 2
req POST /request -F action=erase -F by=url -F value=https://pics.example/nobody
is "a request of a kind the rule approves" 200 'Your request id is'
contains "is done at once" "$tmp/body" 'done: erased'
auto_put "$AK" '{"url":false,"photo-id":false}'
is "and the rules set back" 200 '"url":false,"photo-id":false'
req POST /status -F "id=$ID"
is "the requester sees it done" 200 'done: erased'
contains "with counts" "$tmp/body" '2 photos, 2 faces, 2 face templates'
contains "and a receipt to download" "$tmp/body" 'action="/receipt"'
req POST /receipt -F "id=$ID"
is "download the receipt" 200 '"lethe_receipt":1'
header "as an attachment" '^Content-Disposition: attachment; filename="lethe-receipt.json"'
cp "$tmp/body" "$tmp/receipt.json"
lacks "the receipt names no one in clear" "$tmp/receipt.json" 'dana'
req GET "/lookup?by=uploader&value=dana"
is "dana's photos are gone" 200 '<strong>0 photos</strong>'
expect "the store's own check of the receipt" 0 "$LETHE" receipt verify "$tmp/receipt.json" --store "$S"
req POST /verify -F "receipt=@$tmp/receipt.json"
is "verify the receipt on the page" 200 '<strong>Valid.</strong>'
req POST /verify --form-string "receipt=$(cat "$tmp/receipt.json")"
is "verify it pasted" 200 '<strong>Valid.</strong>'
sed 's/"photos":2/"photos":0/' "$tmp/receipt.json" >"$tmp/tampered.json"
req POST /verify -F "receipt=@$tmp/tampered.json"
is "a tampered receipt is not valid" 200 '<strong>Not valid.</strong> The receipt is altered'
req POST /verify --form-string 'receipt=<script>x</script>'
is "garbage is not valid" 200 'Not valid.'
lacks "and not echoed as a tag" "$tmp/body" '<script'
expect "CLI: log verifies after the page's requests" 0 "$LETHE" log verify --store "$S"

# deny through the API, and the page shows the reason escaped
req POST /request -F action=optout -F by=url -F value=https://nowhere.example/x
D_ID=$(rid)
req GET "/v1/requests?pending=true" -H "x-api-key: $EK"
D_NUM=$(grep -o '"number":[0-9]*' "$tmp/body" | head -n 1 | cut -d: -f2)
req POST /v1/requests/deny -H "x-api-key: $EK" -H 'Content-Type: application/json' -d "{\"number\":$D_NUM,\"reason\":\"<b>no such link</b>\"}"
is "an erasure key denies" 200 '"status":"denied"'
req POST /status -F "id=$D_ID"
is "the requester sees the denial" 200 '<td>denied</td>'
contains "with the reason, escaped" "$tmp/body" '&lt;b&gt;no such link&lt;/b&gt;'

# --- 3. hostile input ----------------------------------------------------------
BIG=$(head -c 5000 /dev/zero | tr '\0' 'x')
req GET "/lookup?by=uploader&value=$BIG"
is "an oversized lookup value" 400 'longer than 4096\|more than 4096'
req POST /request -F action=erase -F by=uploader -F "value=$BIG"
is "an oversized request field" 400 'longer than 4096'
req GET "/lookup?by=uploader&value=x&admin=1"
is "an unknown argument" 400 "unknown argument"
req POST /request -F action=erase -F by=uploader -F value=x -F sneaky=1
is "an unknown form field" 400 "unknown form field"
req GET "/lookup?by=face&value=x"
is "an unknown kind of lookup" 400 'Choose what to look up by'
req POST /request -F action=destroy -F by=uploader -F value=x
is "an unknown action" 400 'Choose what should happen'
req POST /request -F action=erase -F by=file
is "a request by file without the file" 400 'Choose the photo file'
req GET "/lookup?by=uploader&value=a%01b"
is "a control character" 400 'control character'
req POST /request -H 'Content-Type: application/x-www-form-urlencoded' -d 'action=erase&by=uploader&value=x'
is "a form not sent as multipart" 415
req POST /status -H 'Content-Type: multipart/form-data'
is "multipart without a boundary" 400
req DELETE /
is "a wrong method" 405
header "with Allow" "^Allow: GET"
req GET /request
is "GET on a form's target" 405
head -c $((17 << 20)) /dev/zero >"$tmp/huge.bin"
req POST /lookup -F "photo=@$tmp/huge.bin"
is "a body over --max-body" 413
req GET /../etc/passwd
is "a path outside the page needs a key" 401
# nothing else answers without a key
for ep in "GET /v1/status" "POST /v1/search" "POST /v1/lookup" "GET /v1/log" "GET /v1/datasheet" \
          "GET /v1/digest" "PUT /v1/policy" "POST /v1/forget" "GET /v1/optouts" "POST /v1/ingest" \
          "GET /v1/requests" "POST /v1/requests/approve" "POST /v1/requests/deny" "GET /admin" "GET /index.html"; do
    req ${ep% *} "${ep#* }"
    is "$ep without a key: 401" 401
done
grep -q '"key":null,"method":"GET","path":"/lookup","status":200' "$tmp/main.err" && ok "the access log has the page's requests, without a key" || bad "access log" "$(tail -n 3 "$tmp/main.err")"
lacks "and never their query strings" "$tmp/main.err" 'value='

# an opt-out by selfie: counts only, and the face refused on re-ingest
grey_png() { /usr/bin/python3 -c '
import struct, sys, zlib
w, h = 64, 48
raw = b"".join(b"\0" + b"\x96" * (3 * w) for _ in range(h))
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
sys.stdout.buffer.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))' >"$1"; }
if [ "$PHOTOS" = 1 ]; then
    req POST /request -F action=optout -F by=face -F "photo=@$AMY/amy3.png"
    is "opt out by selfie" 200 'Your request id is'
    F_ID=$(rid)
    AMY_SHA=$(sha256sum "$AMY/amy1.png" | cut -c1-64)
    lacks "the answer names no photo" "$tmp/body" "$AMY_SHA"
    lacks "nor anyone" "$tmp/body" 'amy'
    req GET "/v1/requests?pending=true" -H "x-api-key: $EK"
    F_NUM=$(grep -o '"number":[0-9]*,"status":"pending","action":"optout","by":"face"' "$tmp/body" | head -n 1 | grep -o '[0-9]*' | head -n 1)
    req POST /v1/requests/approve -H "x-api-key: $EK" -H 'Content-Type: application/json' -d "{\"number\":${F_NUM:-0}}"
    is "approved" 200 '"erased":{"photos":0,"faces":1,"templates":1}'
    req POST /status -F "id=$F_ID"
    is "the requester sees counts only" 200 '0 photos, 1 faces, 1 face templates'
    lacks "no photo named" "$tmp/body" "$AMY_SHA"
    req POST "/v1/ingest?uploader=amy-again&consent=explicit&jurisdiction=US" -H "x-api-key: $KEY_ingest" -H 'Content-Type: image/png' --data-binary "@$AMY/amy2.png"
    is "a re-ingest of another photo of her refuses the face" 200 '"opted_out_faces":1'
    grey_png "$tmp/grey.png"
    req POST /request -F action=optout -F by=face -F "photo=@$tmp/grey.png"
    is "a selfie without a face" 422 'No face was found'
fi

# --- the rate per client address ---------------------------------------------
MAINBASE=$BASE
if start_server slow --store "$S" --no-faces --page-rate 3; then
    for n in 1 2 3; do req GET /; done
    is "three requests a minute are admitted" 200
    req GET "/lookup?by=uploader&value=x"
    is "the fourth is refused" 429 'Too many requests'
    header "with Retry-After" "^Retry-After: [0-9]"
    req GET /v1/status -H "x-api-key: $EK"
    is "keyed endpoints are not limited by the page's rate" 200
else
    bad "a server with --page-rate 3" "$(head -c 300 "$tmp/slow.err")"
fi
# requests filed a day per client network: one network cannot fill the
# bounded queue of pending requests and lock everyone else out
if start_server filer --store "$S" --no-faces --page-rate 1000 --page-requests 2; then
    req POST /request -F action=erase -F by=uploader
    is "a request the form refuses" 400 'Give the account'
    for n in 1 2; do
        req POST /request -F action=optout -F by=url -F "value=https://flood.example/$n"
        is "request $n of 2 a day is filed (a refused form did not count)" 200 'Your request id is'
    done
    npend=$("$LETHE" request list --pending --json --store "$S" | grep -c '"status":"pending"')
    req POST /request -F action=optout -F by=url -F "value=https://flood.example/3"
    is "the third request of the day is refused" 429 'Your network has filed as many requests'
    contains "and says when to come back, in hours" "$tmp/body" 'try again in 1[23] hours'
    header "with Retry-After of about half a day" '^Retry-After: 4[0-3][0-9][0-9][0-9]'
    same "and nothing was filed" "$("$LETHE" request list --pending --json --store "$S" | grep -c '"status":"pending"')" "$npend"
    req GET "/lookup?by=url&value=https://flood.example/3"
    is "looking up is still admitted" 200 '<strong>0 photos</strong>'
else
    bad "a server with --page-requests 2" "$(head -c 300 "$tmp/filer.err")"
fi
expect "--page-requests 0 is refused" 2 "$LETHE" serve --store "$S" --page-requests 0
contains "naming the option" "$tmp/err" "page-requests"
if start_server off --store "$S" --no-faces --page-rate 0; then
    req GET /
    is "--page-rate 0 turns the page off" 401
fi
BASE=$MAINBASE
expect "log verifies at the end" 0 "$LETHE" log verify --store "$S"

# --- 4. the browser flows --------------------------------------------------------
BROWSER_DIR=$(cd "$(dirname "$0")/../browser" && pwd)
CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
if [ "$PHOTOS" != 1 ]; then
    skipt "browser flows" "they need the models and the shared photos"
elif [ -z "$CHROMIUM" ] || ! command -v node >/dev/null; then
    skipt "browser flows" "no chromium or no node (scripts/setup.sh installs them)"
elif [ ! -d "$BROWSER_DIR/node_modules/playwright-core" ]; then
    skipt "browser flows" "no tests/browser/node_modules (npm ci in tests/browser; scripts/setup.sh does it)"
else
    B=$tmp/browser-store
    "$LETHE" init --store "$B" >/dev/null
    "$LETHE" ingest --store "$B" --uploader amy --source photos.example \
        --license CC-BY-4.0 --consent explicit --jurisdiction US "$AMY/amy1.png" >/dev/null
    "$LETHE" ingest --store "$B" --uploader amys-friend --consent explicit --jurisdiction US "$AMY/amy4.png" >/dev/null
    "$LETHE" key add office --roles erasure --store "$B" --json >"$tmp/bk1"
    "$LETHE" key add desk --roles ingest --store "$B" --json >"$tmp/bk2"
    "$LETHE" key add team --roles search --store "$B" --json >"$tmp/bk3"
    BK_S=$(sed -n 's/.*"key":"\(lk_[^"]*\)".*/\1/p' "$tmp/bk3")
    if start_server browser --store "$B" --models "$MODELS" --page-rate 100000; then
        curl -s -o /dev/null -H "x-api-key: $BK_S" -H 'Content-Type: image/png' --data-binary "@$AMY/amy5.png" \
            "$BASE/v1/search?purpose=missing%20person%20case%2014&threshold=0.6"
        SHOTS=${PAGE_SHOTS:-$tmp/shots}
        BASE=$BASE ERASURE_KEY=$(sed -n 's/.*"key":"\(lk_[^"]*\)".*/\1/p' "$tmp/bk1") \
        INGEST_KEY=$(sed -n 's/.*"key":"\(lk_[^"]*\)".*/\1/p' "$tmp/bk2") \
        PHOTO=$AMY/amy1.png SELFIE=$AMY/amy3.png REINGEST=$AMY/amy2.png SHOTS=$SHOTS CHROMIUM=$CHROMIUM \
            timeout 300 node "$BROWSER_DIR/page.mjs" >"$tmp/browser.out" 2>&1
        sed 's/^/  browser: /' "$tmp/browser.out" | grep -v '^  browser: ok ' | grep -v 'passed,.*failed'
        bp=$(grep -c '^ok ' "$tmp/browser.out"); bf=$(grep -c '^not ok ' "$tmp/browser.out")
        pass=$((pass + bp)); fail=$((fail + bf))
        grep -q '^[0-9]* passed, 0 failed' "$tmp/browser.out" && ok "browser: $bp checks in Chromium (screenshots in $SHOTS)" \
            || bad "browser flows" "$(tail -n 5 "$tmp/browser.out")"
    else
        bad "a server for the browser" "$(head -c 300 "$tmp/browser.err")"
    fi
fi
stop_servers
for f in "$tmp"/*.err; do
    [ -f "$f" ] && lacks "no sanitizer report from the $(basename "$f" .err) server" "$f" 'Sanitizer\|runtime error'
done
cli_summary
