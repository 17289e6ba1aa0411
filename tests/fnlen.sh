#!/usr/bin/env bash
# tests/fnlen.sh: no function in the access, store, forget, manifest, report and requests code
# or in the programs has a body longer than 80 lines (STYLE.md: split
# functions longer than about 80 lines; issue #9, 2.5). One check per .c
# file; an offender is printed as "FILE:LINE N lines: SIGNATURE". Prints the
# "N passed, N failed, 0 skipped" line tests/run.sh reads.
#
#   tests/fnlen.sh             the folders below
#   tests/fnlen.sh PATH...     other files or folders (FNLEN_MAX: the limit)
set -u
cd "$(dirname "$0")/.."
MAX=${FNLEN_MAX:-80}
[ $# -gt 0 ] || set -- src/access src/store src/forget src/manifest src/report src/requests programs

# A function is a line starting in column 0 with a letter and holding a "("
# (its signature; not a declaration, which ends in ";"), then a "{" in
# column 0; its body is every line up to the "}" in column 0 that closes
# it. This is the file's own style (clang-format, braces of functions on
# lines of their own), not a C parser.
measure() {
    awk -v max="$MAX" '
        /^[a-zA-Z].*\(/ && !/;$/ { name = $0; start = FNR; next_is_body = 1; next }
        /^\{/ && next_is_body { body = FNR; inbody = 1; next_is_body = 0; next }
        /^\}/ && inbody {
            len = FNR - body - 1
            if (len > max) printf "%s:%d %d lines: %s\n", FILENAME, start, len, name
            inbody = 0
        }' "$1"
}

pass=0 fail=0 files=0
while IFS= read -r f; do
    files=$((files + 1))
    out=$(measure "$f")
    if [ -z "$out" ]; then
        pass=$((pass + 1))
        echo "ok $f"
    else
        fail=$((fail + 1))
        echo "not ok $f"
        echo "$out" | sed "s/^/  FAIL: body longer than $MAX lines (split it): /"
    fi
done < <(find "$@" -name '*.c' -type f | sort)
if [ "$files" = 0 ]; then
    fail=$((fail + 1))
    echo "not ok no .c file found under $*"
fi
echo "$pass passed, $fail failed, 0 skipped"
[ "$fail" = 0 ]
