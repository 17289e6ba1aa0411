#!/usr/bin/env bash
# api_coverage.sh: which public functions (declared LETHE_API in
# include/lethe.h) no C test calls. Lists them and counts them, from
# tests/*.c with comments stripped (a name in a comment is not a call).
# A report, not a check: it exits 0 whatever it finds.
#
#   tests/api_coverage.sh
set -uo pipefail
cd "$(dirname "$0")/.."

header=include/lethe.h
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Every name declared LETHE_API: the first identifier followed by "(" in the
# declaration (which may go on to the next line).
awk '/^[[:space:]]*LETHE_API[[:space:]]/ { decl = $0; if (decl !~ /\(/) { getline nxt; decl = decl " " nxt }
                                           print decl }' "$header" |
    grep -oE '[A-Za-z_][A-Za-z_0-9]*[[:space:]]*\(' | grep -vE '^(__attribute__|visibility)' |
    tr -d '( \t' | awk '!seen[$0]++' >"$tmp/api"

# The tests' code without comments or string contents' comments.
for f in tests/*.c; do
    gcc -fpreprocessed -dD -E -P "$f" 2>/dev/null || sed -e 's://.*$::' "$f"
done >"$tmp/code"

total=0 uncalled=0
while read -r name; do
    total=$((total + 1))
    if ! grep -qE "(^|[^A-Za-z_0-9])$name[[:space:]]*\(" "$tmp/code"; then
        uncalled=$((uncalled + 1))
        echo "$name"
    fi
done <"$tmp/api" >"$tmp/uncalled"

echo "public functions no tests/*.c calls ($uncalled of $total declared LETHE_API in $header):"
sed 's/^/  /' "$tmp/uncalled"
echo "$uncalled of $total public functions are never called from tests/*.c"
# a check: every public function is called from a C test
echo "$((total - uncalled)) passed, $uncalled failed, 0 skipped"
[ "$uncalled" = 0 ]
