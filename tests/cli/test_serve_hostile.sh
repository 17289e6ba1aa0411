#!/usr/bin/env bash
# Hostile clients of `lethe serve` (issue 10), each while a normal request
# must still be answered:
#   1. 10,000 open idle connections (ulimit -n raised for the test);
#   2. a client sending its headers a byte a second: cut off at
#      --header-timeout;
#   3. path traversal in every route with a path parameter;
#   4. a photo that is a decompression bomb (a small PNG claiming 30000 x
#      30000 pixels);
#   5. malformed manifest uploads;
#   6. a manifest upload whose client disconnects halfway: what was
#      committed stays, the log and the digest verify;
#   7. a daily quota used up, the server restarted: still 429; two servers
#      on one store share a key's quota;
#   and SIGTERM during a manifest ingest (6): it stops, commits, says so.
#   (and the 1 MB header, bodies over the limit, malformed JSON and
#   multipart: tests/cli/test_serve.sh, section 6)
# Usage: tests/cli/test_serve_hostile.sh path/to/lethe
# Needs curl and Debian's /usr/bin/python3 (scripts/setup.sh installs both).
set -u
LETHE=${1:-build/lethe}
. "$(dirname "$0")/../cli_lib.sh"
export LETHE_ACTOR=tester
unset LETHE_STORE
PY=/usr/bin/python3
SAMPLES=$PWD/samples
MODELS=${LETHE_MODELS:-$PWD/models}
command -v curl >/dev/null && [ -x "$PY" ] || { bad "curl and /usr/bin/python3" "missing"; cli_summary; exit 1; }

S=$tmp/store
expect "init" 0 "$LETHE" init --store "$S"
declare -A KEY
for role in admin ingest search; do
    "$LETHE" key add "$role" --roles "$role" --store "$S" >"$tmp/out" 2>&1
    KEY[$role]=$(grep '^lk_' "$tmp/out")
    [ -n "${KEY[$role]}" ] || bad "key add $role" "$(cat "$tmp/out")"
done
"$LETHE" key add "daily" --roles search --quota 2 --store "$S" >"$tmp/out" 2>&1
QUOTA=$(grep '^lk_' "$tmp/out")
"$LETHE" key add "shared" --roles search --quota 10 --store "$S" >"$tmp/out" 2>&1
SHARED=$(grep '^lk_' "$tmp/out")
FACES=(--no-faces)
HAVE_FACES=0
if [ -f "$SAMPLES/sample1.jpg" ] && [ -f "$MODELS/face_recognition_model.bin" ]; then
    FACES=(--models "$MODELS") HAVE_FACES=1
else
    skipt "photos" "samples/ or the models absent: the manifest ingest cases are not run"
fi
status() { curl -s -o /dev/null -w '%{http_code}' --max-time 20 -H "x-api-key: ${KEY[admin]}" "$BASE/v1/status"; }

# --- 1. 10,000 idle connections ----------------------------------------------
N=10000
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=30000
[ "$hard" -gt 30000 ] && hard=30000
ulimit -n "$hard" 2>/dev/null
if [ "$(ulimit -n)" -ge $((N + 500)) ]; then
    if start_server idle --store "$S" --no-faces --max-connections 10100 --header-timeout 120; then
        cat >"$tmp/idle.py" <<'EOF'
# Open N connections and hold them, sending nothing; report how many the
# server still holds open, then wait for a line on stdin and close them.
import socket, sys, select
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for i in range(n):
    s = socket.socket()
    s.setblocking(True)
    s.connect(("127.0.0.1", port))
    socks.append(s)
# a connection the server closed reads as end of stream at once
r, _, _ = select.select(socks[:1000], [], [], 1.0) if len(socks) else ([], [], [])
print("open %d closed-of-first-1000 %d" % (len(socks), len(r)), flush=True)
sys.stdin.readline()
for s in socks:
    s.close()
print("closed", flush=True)
EOF
        coproc IDLE { "$PY" "$tmp/idle.py" "$PORT" "$N" 2>&1; }
        read -r -t 120 line <&"${IDLE[0]}"
        same "10,000 idle connections are open" "$(echo "$line" | cut -d' ' -f1-2)" "open $N"
        same "and the server holds them (none closed)" "$(echo "$line" | awk '{print $4}')" 0
        rss=$(awk '/VmRSS/ {print $2}' "/proc/$SPID/status")
        same "a request is answered while they are open" "$(status)" 200
        echo "  (server RSS with $N idle connections: ${rss:-?} kB)"
        echo go >&"${IDLE[1]}"
        read -r -t 60 line <&"${IDLE[0]}"
        wait "$IDLE_PID" 2>/dev/null
        same "a request is answered after they closed" "$(status)" 200
        server_stops_cleanly idle
    else
        bad "a server for the idle connections" "$(head -c 300 "$tmp/idle.err")"
    fi
else
    skipt "10,000 idle connections" "ulimit -n cannot be raised above $((N + 500)) here ($(ulimit -n))"
fi

# --- the server for the rest ---------------------------------------------------
mkdir -p "$tmp/backups"
if ! start_server main --store "$S" "${FACES[@]}" --header-timeout 3 --timeout 30 \
    --backup-dir "$tmp/backups"; then
    bad "server starts" "$(head -c 600 "$tmp/main.err")"
    cli_summary
    exit 1
fi
ok "server starts ($PORT)"

# --- 2. a byte a second ----------------------------------------------------------
start=$(date +%s)
timeout 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT
h=\$'GET /v1/status HTTP/1.1\r\nHost: x\r\nx-api-key: ${KEY[admin]}\r\nX-Slow: '
for ((i = 0; i < \${#h}; i++)); do printf '%s' \"\${h:i:1}\" >&3 2>/dev/null || exit 0; sleep 1; done
for i in \$(seq 30); do printf a >&3 2>/dev/null || exit 0; sleep 1; done" 2>/dev/null &
slow=$!
sleep 1
same "a request is answered while a client sends a byte a second" "$(status)" 200
wait "$slow"
took=$(($(date +%s) - start))
if [ "$took" -le 8 ]; then ok "the slow client is cut off at --header-timeout 3 (after ${took} s)"; else bad "the slow client is cut off" "after ${took} s"; fi
same "and the server still serves" "$(status)" 200

# --- 3. path traversal in every route with a path parameter ----------------------
A=${KEY[admin]}
for p in /v1/optouts/.. /v1/optouts/../status /v1/optouts/1/../../log /v1/optouts/%2e%2e \
    /v1/optouts/1%2f..%2f..%2fstatus /v1/optouts//1 /v1/optouts/1/ /v1/optouts/-1 /v1/optouts/1x \
    /v1/optouts/0x10 /v1/optouts/1234567890123456789 '/v1/optouts/1%00' /v1/optouts/; do
    code=$(curl -s --path-as-is -o "$tmp/body" -w '%{http_code}' -X DELETE -H "x-api-key: $A" "$BASE$p")
    if [ "$code" = 404 ] && grep -q '"code":"not_found"' "$tmp/body"; then ok "DELETE $p: 404"
    else bad "DELETE $p: 404" "$code $(head -c 200 "$tmp/body")"; fi
done
for p in /api/v1/recognition/faces/../../../v1/status /api/v1/recognition/faces/%2e%2e/verify \
    /api/v1/recognition/subjects/..%2f..%2fv1 /api/v1/recognition/subjects/%00 \
    /api/v1/recognition/faces/a/b/verify; do
    for m in DELETE POST; do
        code=$(curl -s --path-as-is -o "$tmp/body" -w '%{http_code}' -X $m -H "x-api-key: $A" "$BASE$p")
        case $code in 400 | 404 | 405 | 415) ok "$m $p: refused ($code)" ;; *) bad "$m $p: refused" "$code $(head -c 200 "$tmp/body")" ;; esac
    done
done

# --- 4. a decompression bomb ------------------------------------------------------
"$PY" - "$tmp/bomb.png" <<'EOF'
# A PNG of 30000 x 30000 grey pixels (900 MB decoded), about 900 kB on disk.
import struct, sys, zlib
w = h = 30000
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
z = zlib.compressobj(9)
row = b"\0" + b"\0" * w
data = b"".join(z.compress(row) for _ in range(h)) + z.flush()
with open(sys.argv[1], "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))
EOF
for path in /v1/detect "/v1/search?purpose=bomb"; do
    start=$(date +%s)
    code=$(curl -s -o "$tmp/body" -w '%{http_code}' --max-time 60 -H "x-api-key: $A" -H 'Content-Type: image/png' --data-binary @"$tmp/bomb.png" "$BASE$path")
    took=$(($(date +%s) - start))
    if [ "$HAVE_FACES" = 1 ]; then
        case $code in 400 | 413 | 415 | 422) ok "a decompression bomb to $path is refused ($code, ${took} s): $(head -c 120 "$tmp/body")" ;;
            *) bad "a decompression bomb to $path is refused" "$code $(head -c 200 "$tmp/body")" ;; esac
    else
        same "a decompression bomb to $path without face models" "$code" 503
    fi
done
same "after the bomb the server serves" "$(status)" 200

# --- 5. malformed manifest uploads -------------------------------------------------
I=${KEY[ingest]}
printf 'path,uploader,consent\nx.jpg,u,explicit\n' >"$tmp/m.csv"
up() { code=$(curl -s -o "$tmp/body" -w '%{http_code}' -H "x-api-key: $I" "$@" "$BASE/v1/ingest/manifest"); }
upis() { if [ "$code" = "$2" ] && grep -q -- "$3" "$tmp/body"; then ok "$1"; else bad "$1" "$code $(head -c 300 "$tmp/body")"; fi; }
up -F "photo=@$tmp/m.csv;filename=x.jpg"
upis "a manifest upload without a manifest" 400 "send a 'manifest' file"
up -F "manifest=@$tmp/m.csv" -F "manifest=@$tmp/m.csv;filename=n.csv"
upis "two manifests" 400 "more than one 'manifest'"
up -F "manifest=@$tmp/m.csv" -F "photo=@$tmp/m.csv;filename=x.jpg" -F "photo=@$tmp/m.csv;filename=x.jpg"
upis "two photos of one name" 400 "two files named 'x.jpg'"
up -F "manifest=@$tmp/m.csv" -F "purpose=x"
upis "a text field" 400 "unknown form field 'purpose'"
up -F "manifest=@$tmp/m.csv" -F "photo=@$tmp/m.csv;filename=$(printf 'a\033b.jpg')"
upis "a file name with a control character" 400 "control character"
up -H 'Content-Type: application/json' --data-binary '{}'
upis "JSON where multipart is taken" 415 "multipart/form-data"
up -H 'Content-Type: multipart/form-data; boundary=XyZ' --data-binary $'--XyZ\r\nContent-Disposition: form-data; name="manifest"; filename="m.csv"\r\n\r\npath'
upis "multipart cut short" 400 "malformed or cut short"
code=$(curl -s -o "$tmp/body" -w '%{http_code}' -H "x-api-key: $I" -F "manifest=@$tmp/m.csv" "$BASE/v1/ingest/manifest?progress=0")
upis "progress 0" 400 "progress.. must be a whole number"
code=$(curl -s -o "$tmp/body" -w '%{http_code}' -H "x-api-key: ${KEY[search]}" -F "manifest=@$tmp/m.csv" "$BASE/v1/ingest/manifest")
upis "a search key may not upload" 403 '"code":"forbidden"'
truncate -s 300M "$tmp/huge" # sparse: refused from its Content-Length
code=$(curl -s -o "$tmp/body" -w '%{http_code}' -H "x-api-key: $I" -H 'Content-Type: multipart/form-data; boundary=b' --data-binary @"$tmp/huge" "$BASE/v1/ingest/manifest")
rm -f "$tmp/huge"
upis "an upload over --max-upload (256 MiB)" 413 '"code":"too_large"'
# raw descriptors with their sidecar
"$PY" - "$tmp/d.f32" <<'EOF'
import struct, sys, random
random.seed(5)
with open(sys.argv[1], "wb") as f:
    for i in range(3):
        f.write(struct.pack("<128f", *[random.uniform(-0.2, 0.2) for _ in range(128)]))
EOF
printf 'uploader,consent,jurisdiction\nraw1,explicit,US\nraw2,explicit,US\nraw3,explicit,US\n' >"$tmp/side.csv"
up -F "descriptors=@$tmp/d.f32" -F "sidecar=@$tmp/side.csv"
upis "raw descriptors with a sidecar" 200 '"done":{"complete":true,.*"added":3'
printf 'uploader\nraw1\n' >"$tmp/side1.csv"
up -F "descriptors=@$tmp/d.f32" -F "sidecar=@$tmp/side1.csv"
upis "a sidecar with fewer records than descriptors" 200 '"done":{"complete":false,"stopped":null,"error":"'
# descriptors as JSON Lines (no sidecar): "embedding" and provenance a line
"$PY" - "$tmp/d.jsonl" <<'EOF'
import json, random, sys
random.seed(6)
with open(sys.argv[1], "w") as f:
    for i in range(3):
        f.write(json.dumps({"embedding": [random.uniform(-0.2, 0.2) for _ in range(128)],
                            "uploader": "jl%d" % i, "consent": "explicit",
                            "jurisdiction": "US"}) + "\n")
    f.write('{"embedding": [1, 2, 3], "uploader": "short"}\n')
EOF
up -F "descriptors=@$tmp/d.jsonl"
upis "descriptors as JSON Lines" 200 '"done":{"complete":true,.*"added":3'
grep -q '"input":"descriptors","line":0,"message":"line 4: .*expected 128 numbers, found 3' "$tmp/body" &&
    ok "and the short descriptor is a row error of the descriptors part, on line 4" ||
    bad "and the short descriptor is a row error of the descriptors part, on line 4" "$(head -c 400 "$tmp/body")"
expect "the CLI finds a JSON Lines descriptor ingested over HTTP" 0 "$LETHE" lookup --store "$S" --uploader jl2
up -F "sidecar=@$tmp/side.csv"
upis "a sidecar without descriptors" 400 "send a 'manifest' file"
up -F "manifest=@$tmp/m.csv" -F "descriptors=@$tmp/d.jsonl"
upis "a manifest and descriptors" 400 "send a 'manifest' file"
# one manifest upload at a time (each is held in memory while read): a
# second while the first is still arriving is told to come back
head -c 600000 /dev/urandom >"$tmp/slow.bin"
curl -s -o "$tmp/slow.out" -w '%{http_code}' -H "x-api-key: $I" --limit-rate 200k \
    -F "descriptors=@$tmp/d.jsonl" -F "photo=@$tmp/slow.bin;filename=pad.jpg" \
    "$BASE/v1/ingest/manifest" >"$tmp/slow.code" &
slow=$!
sleep 1
code=$(curl -s -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' -H "x-api-key: $I" -F "descriptors=@$tmp/d.jsonl" "$BASE/v1/ingest/manifest")
upis "a second upload during the first" 503 '"code":"busy".*another manifest upload'
contains "with Retry-After" "$tmp/headers" 'Retry-After: 10'
wait "$slow"
same "the first upload is answered" "$(cat "$tmp/slow.code")" 200
up -F "descriptors=@$tmp/d.jsonl"
upis "an upload after it is taken" 200 '"done":{"complete":true'

# --- 6. a client that disconnects halfway -----------------------------------------
if [ "$HAVE_FACES" = 1 ]; then
    mkdir -p "$tmp/many"
    printf 'path,uploader,consent,jurisdiction\n' >"$tmp/many/m.csv"
    args=()
    for k in $(seq 4); do
        for i in 1 2 3 4 5 6; do
            # the same photo with a different trailing byte: another photo
            { cat "$SAMPLES/sample$i.jpg"; printf '%02d' "$k"; } >"$tmp/many/p$k-$i.jpg"
            echo "p$k-$i.jpg,up$k$i,explicit,US" >>"$tmp/many/m.csv"
            args+=(-F "photo=@$tmp/many/p$k-$i.jpg")
        done
    done
    before=$("$LETHE" datasheet --store "$S" --format json | grep -o '"photos":[0-9]*' | head -n 1 | cut -d: -f2)
    curl -s -N -H "x-api-key: $I" -F "manifest=@$tmp/many/m.csv" "${args[@]}" \
        "$BASE/v1/ingest/manifest?progress=2" 2>/dev/null | head -n 2 >"$tmp/partial"
    same "two progress lines came before the client left" "$(grep -c '^{"progress"' "$tmp/partial")" 2
    for _ in $(seq $((SERVE_WAIT * 20))); do grep -q 'manifest ingest by' "$tmp/main.err" && break; sleep 0.1; done
    line=$(grep 'manifest ingest by' "$tmp/main.err" | tail -n 1)
    contains "the server says the client left" "$tmp/main.err" 'stopped after [0-9]* rows (the client disconnected)'
    committed=$(echo "$line" | sed -n 's/.*committed: \([0-9]*\) added.*/\1/p')
    rows=$(echo "$line" | sed -n 's/.*stopped after \([0-9]*\) rows.*/\1/p')
    after=$("$LETHE" datasheet --store "$S" --format json | grep -o '"photos":[0-9]*' | head -n 1 | cut -d: -f2)
    if [ -n "$committed" ] && [ "$committed" -ge 1 ] && [ "$rows" -lt 24 ]; then
        ok "it stopped halfway: $rows of 24 rows, $committed photos committed"
    else
        bad "it stopped halfway" "'$line'"
    fi
    same "the store holds exactly what was committed" "$after" $((before + ${committed:-0}))
    expect "the log verifies" 0 "$LETHE" log verify --store "$S"
    expect "the digest verifies" 0 "$LETHE" digest --full --store "$S"
    # the whole upload again: what was committed is not added twice
    curl -s -N -H "x-api-key: $I" -F "manifest=@$tmp/many/m.csv" "${args[@]}" "$BASE/v1/ingest/manifest?progress=5" >"$tmp/full"
    contains "the whole upload again completes" "$tmp/full" '"done":{"complete":true'
    same "it adds the rest and nothing twice" "$(grep -o '"done".*' "$tmp/full" | grep -o '"added":[0-9]*' | cut -d: -f2)" $((24 - ${committed:-0}))
    same "one progress line every 5 rows" "$(grep -c '^{"progress"' "$tmp/full")" 4
    # other requests get the store between the ingest's rounds: a lookup
    # during a long manifest ingest answers before the ingest is done
    for k in 1 2 3 4; do for i in 1 2 3 4 5 6; do
        { cat "$SAMPLES/sample$i.jpg"; printf 'L%02d' "$k"; } >"$tmp/many/p$k-$i.jpg"
    done; done
    curl -s -N -H "x-api-key: $I" -F "manifest=@$tmp/many/m.csv" "${args[@]}" \
        "$BASE/v1/ingest/manifest?progress=2" >"$tmp/long.out" 2>/dev/null &
    lpid=$!
    for _ in $(seq $((SERVE_WAIT * 20))); do grep -q '^{"progress"' "$tmp/long.out" && break; sleep 0.1; done
    code=$(curl -s -o "$tmp/body" -w '%{http_code}' -H "x-api-key: ${KEY[search]}" \
        -H 'Content-Type: application/json' --data-binary '{"uploader":"up11"}' "$BASE/v1/lookup")
    done_then=$(grep -c '"done"' "$tmp/long.out")
    wait "$lpid"
    same "a lookup during a manifest ingest is answered" "$code" 200
    same "before the ingest is done" "$done_then" 0
    contains "and the ingest completes" "$tmp/long.out" '"done":{"complete":true'
    # SIGTERM during a manifest ingest: it stops at its next row, commits,
    # sends its last line, and the server exits 0
    MAIN_PORT=$PORT MAIN_PID=$SPID MAIN_BASE=$BASE
    if start_server term --store "$S" "${FACES[@]}" --drain 600; then
        for k in 1 2 3 4; do for i in 1 2 3 4 5 6; do
            { cat "$SAMPLES/sample$i.jpg"; printf 't%02d' "$k"; } >"$tmp/many/p$k-$i.jpg"
        done; done
        before=$("$LETHE" datasheet --store "$S" --format json | grep -o '"photos":[0-9]*' | head -n 1 | cut -d: -f2)
        curl -s -N -H "x-api-key: $I" -F "manifest=@$tmp/many/m.csv" "${args[@]}" \
            "$BASE/v1/ingest/manifest?progress=2" >"$tmp/term.out" 2>/dev/null &
        cpid=$!
        for _ in $(seq $((SERVE_WAIT * 20))); do grep -q '^{"progress"' "$tmp/term.out" && break; sleep 0.1; done
        term_pid=$SPID
        kill -TERM "$term_pid"
        wait "$cpid"
        contains "SIGTERM: the upload's last line says the server stopped it" "$tmp/term.out" '"done":{"complete":false,"stopped":"the server is stopping"'
        added=$(grep -o '"done".*' "$tmp/term.out" | grep -o '"added":[0-9]*' | cut -d: -f2)
        server_stops_cleanly term "$term_pid"
        after=$("$LETHE" datasheet --store "$S" --format json | grep -o '"photos":[0-9]*' | head -n 1 | cut -d: -f2)
        same "the store holds what the last line says was added" "$after" $((before + ${added:-999}))
        expect "the log verifies after the stop" 0 "$LETHE" log verify --store "$S"
        expect "the digest verifies after the stop" 0 "$LETHE" digest --full --store "$S"
    else
        bad "a server for SIGTERM" "$(head -c 300 "$tmp/term.err")"
    fi
    PORT=$MAIN_PORT SPID=$MAIN_PID BASE=$MAIN_BASE
fi
same "after all that, the server serves" "$(status)" 200

# --- 7. a daily quota across a restart ---------------------------------------------
for i in 1 2; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "x-api-key: $QUOTA" "$BASE/v1/status")
done
same "a quota of 2: the 2nd request" "$code" 200
code=$(curl -s -o "$tmp/body" -w '%{http_code}' -H "x-api-key: $QUOTA" "$BASE/v1/status")
same "the 3rd is refused" "$code" 429
server_stops_cleanly main
if start_server again --store "$S" --no-faces; then
    code=$(curl -s -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' -H "x-api-key: $QUOTA" "$BASE/v1/status")
    same "after a restart the quota is still used up" "$code" 429
    contains "with Retry-After" "$tmp/headers" 'Retry-After: [1-9]'
    same "another key is served" "$(status)" 200
    # two servers on one store share a key's quota: each learns the
    # other's count when it writes its own (a second behind at most)
    A_BASE=$BASE A_PID=$SPID
    if start_server second --store "$S" --no-faces; then
        B_BASE=$BASE B_PID=$SPID
        for i in 1 2 3 4 5 6; do
            curl -s -o /dev/null -H "x-api-key: $SHARED" "$A_BASE/v1/status"
            curl -s -o /dev/null -H "x-api-key: $SHARED" "$B_BASE/v1/status"
        done
        sleep 2.5 # both write their counts: 12 of 10 in the catalog
        a=$(curl -s -o /dev/null -w '%{http_code}' -H "x-api-key: $SHARED" "$A_BASE/v1/status")
        b=$(curl -s -o /dev/null -w '%{http_code}' -H "x-api-key: $SHARED" "$B_BASE/v1/status")
        same "a quota of 10 used 6 + 6 on two servers: the first refuses" "$a" 429
        same "and so does the second" "$b" 429
        server_stops_cleanly second "$B_PID"
    else
        bad "a second server starts on the store" "$(head -c 300 "$tmp/second.err")"
    fi
    BASE=$A_BASE SPID=$A_PID
    server_stops_cleanly again "$A_PID"
else
    bad "the server starts again" "$(head -c 300 "$tmp/again.err")"
fi
cli_summary
