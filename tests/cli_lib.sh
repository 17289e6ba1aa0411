# tests/cli_lib.sh: what the CLI test scripts (tests/cli/*.sh) share; they
# source it. Each check prints "ok NAME" or "not ok NAME" and a reason;
# cli_summary prints the counts tests/run.sh reads and sets the exit status.
# It sets tmp (a folder removed on exit); commands' output goes to
# $tmp/out and $tmp/err.
pass=0 fail=0 skip=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

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
