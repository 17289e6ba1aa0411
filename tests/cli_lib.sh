# tests/cli_lib.sh: what the CLI test scripts (tests/cli/*.sh) share; they
# source it. Each check prints "ok NAME" or "not ok NAME" and a reason;
# cli_summary prints the counts tests/run.sh reads and sets the exit status.
# It sets tmp (a folder removed on exit); commands' output goes to
# $tmp/out and $tmp/err.
pass=0 fail=0 skip=0
tmp=$(mktemp -d)
trap 'stop_servers; rm -rf "$tmp"' EXIT

ok()    { pass=$((pass + 1)); echo "ok $1"; }
bad()   { fail=$((fail + 1)); echo "not ok $1"; echo "  FAIL: $2"; }
skipt() { skip=$((skip + 1)); echo "  SKIP $1: $2"; }
# expect NAME WANT_STATUS CMD...: run CMD, check its exit status
expect() {
    local name=$1 want=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    local got=$?
    if [ "$got" = "$want" ]; then ok "$name"; else bad "$name" "exit $got, wanted $want; stderr: $(head -c 400 "$tmp/err")"; fi
}
# contains / lacks NAME FILE PATTERN
contains() { if grep -q -- "$3" "$2"; then ok "$1"; else bad "$1" "$2 lacks '$3': $(head -c 400 "$2")"; fi; }
lacks() { if grep -q -- "$3" "$2"; then bad "$1" "$2 has '$3'"; else ok "$1"; fi; }
# same NAME A B
same() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1" "'$2' != '$3'"; fi; }
# jnum FILE KEY: a number from a one-line JSON object
jnum() { grep -oE "\"$2\":[0-9.]+" "$1" | head -n 1 | cut -d: -f2; }
cli_summary() {
    echo "$pass passed, $fail failed, $skip skipped"
    [ "$fail" = 0 ]
}

# --- added for checks that cannot pass on an empty or missing input ---
# jline FILE NAME: the JSON line of FILE whose "image" ends with NAME
# (nothing if none).
jline() { grep -E "\"image\":\"([^\"]*/)?$2\"" "$1" | head -n 1; }
# errof NAME FILE IMAGE PATTERN: the line for IMAGE in FILE has an "error"
# whose text matches PATTERN (grep -E, case-insensitive). The image's own
# name is not looked at, so it cannot make the check pass.
errof() {
    local line err
    line=$(jline "$2" "$3")
    err=$(printf '%s' "$line" | grep -oE '"error":"([^"\\]|\\.)*"')
    if [ -z "$line" ]; then bad "$1" "no line for $3 in $2: $(head -c 300 "$2")"
    elif [ -z "$err" ]; then bad "$1" "no error for $3: $(printf '%s' "$line" | head -c 300)"
    elif printf '%s' "$err" | grep -qiE -- "$4"; then ok "$1"
    else bad "$1" "error for $3 lacks '$4': $err"; fi
}
# nonempty NAME FILE: FILE exists and has bytes (guards a contains/lacks
# check whose input could be empty)
nonempty() { if [ -s "$2" ]; then ok "$1"; else bad "$1" "$2 is empty or missing"; fi; }
# cli_data_dir: the shared test data folder, found as tests/test.h finds it
# ($LETHE_TEST_DATA, ../shared/data, ../../shared/data); empty if none.
cli_data_dir() {
    local d
    for d in "${LETHE_TEST_DATA:-}" ../shared/data ../../shared/data; do
        [ -n "$d" ] && [ -d "$d" ] && { echo "$d"; return; }
    done
}

# --- lethe serve: one way to start and stop servers (test_serve.sh,
# test_serve_hostile.sh, test_page.sh, test_compreface.sh) ---------------------
# Every server started is stopped when the script exits, whatever happens.
SERVER_PIDS=()
SERVE_WAIT=30
[ "${LETHE_TEST_SAN:-0}" = 1 ] && SERVE_WAIT=120
# start_server NAME ARGS...: `$LETHE serve --listen 127.0.0.1:0 ARGS` in the
# background, its output in $tmp/NAME.out and $tmp/NAME.err; once it says
# where it listens (port 0: a free port), sets PORT, SPID and BASE and
# returns 0; 1 if it exits or says nothing within $SERVE_WAIT seconds.
start_server() {
    local name=$1 scheme; shift
    "$LETHE" serve --listen 127.0.0.1:0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    SPID=$!
    SERVER_PIDS+=("$SPID")
    PORT=
    for _ in $(seq $((SERVE_WAIT * 10))); do
        PORT=$(sed -n 's|^lethe serve: listening on https\?://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/$name.out")
        [ -n "$PORT" ] && break
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    scheme=$(sed -n 's|^lethe serve: listening on \(https\?\)://.*|\1|p' "$tmp/$name.out")
    BASE=${scheme:-http}://127.0.0.1:$PORT
    [ -n "$PORT" ]
}
# stop_server [PID]: SIGTERM to it ($SPID by default), SIGKILL after
# $SERVE_WAIT seconds; returns its exit status (137 when it had to be killed).
stop_server() {
    local p=${1:-${SPID:-}} st=0
    [ -n "$p" ] || return 0
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq $((SERVE_WAIT * 10))); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && { kill -KILL "$p" 2>/dev/null; st=137; }
    wait "$p" 2>/dev/null
    [ "$st" = 0 ] && st=$?
    return "$st"
}
# stop_servers: every server this script started.
stop_servers() {
    local p
    for p in "${SERVER_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${SERVER_PIDS[@]}"; do stop_server "$p"; done
    SERVER_PIDS=()
}
# server_stops_cleanly NAME [PID]: stop it and check that it exits 0, says
# "lethe serve: stopped" and no sanitizer spoke in $tmp/NAME.err.
server_stops_cleanly() {
    local name=$1 p=${2:-${SPID:-}} st
    stop_server "$p"
    st=$?
    same "the $name server stops with status 0" "$st" 0
    contains "the $name server says it stopped" "$tmp/$name.err" "lethe serve: stopped"
    lacks "no sanitizer report from the $name server" "$tmp/$name.err" 'Sanitizer\|runtime error'
}
