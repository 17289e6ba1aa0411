#!/usr/bin/env bash
# CLI tests for what lethe detect / embed / compare print of text that came
# from outside (file names, messages quoting them, option values): text
# output escapes control characters and invalid UTF-8 (\xNN, a backslash as
# \\), --json output stays valid JSON that decodes to the exact name.
# Usage: tests/cli/test_face_text.sh path/to/lethe
set -u
LETHE=${1:-build/lethe}
. "$(dirname "$0")/../cli_lib.sh"

# no_raw NAME FILE: FILE holds no C0 control but newline and tab, and no DEL
ctl=$'[\x01-\x08\x0b-\x1f\x7f]'
no_raw() {
    if LC_ALL=C grep -q "$ctl" "$2"; then
        bad "$1" "raw control bytes in $2: $(od -c "$2" | head -n 5)"
    else
        ok "$1"
    fi
}
# has NAME FILE TEXT: FILE contains TEXT literally
has() { if grep -qF -- "$3" "$2"; then ok "$1"; else bad "$1" "$2 lacks '$3': $(od -c "$2" | head -n 8)"; fi; }

# json_lines NAME FILE [KEY WANT]: every line of FILE is JSON (node, else
# Debian's python3); with KEY, line 1's KEY is exactly the string WANT.
json_lines() {
    local name=$1 file=$2 key=${3:-} want=${4:-} rc
    if command -v node >/dev/null; then
        node -e 'const [f, k, w] = process.argv.slice(1);
          const l = require("fs").readFileSync(f, "utf8").trim().split("\n").map(x => JSON.parse(x));
          process.exit(k && l[0][k] !== w ? 3 : 0);' "$file" "$key" "$want" 2>/dev/null
        rc=$?
    elif [ -x /usr/bin/python3 ]; then
        /usr/bin/python3 -c 'import json, sys
f, k, w = sys.argv[1:4]
l = [json.loads(x) for x in open(f, encoding="utf-8").read().strip().split("\n")]
sys.exit(3 if k and l[0][k] != w else 0)' "$file" "$key" "$want" 2>/dev/null
        rc=$?
    else
        skipt "$name" "neither node nor /usr/bin/python3"
        return
    fi
    [ $rc = 0 ] && ok "$name" || bad "$name" "$(head -c 300 "$file")"
}

good=samples/sample1.jpg
if [ ! -f "$good" ]; then
    skipt "escaping" "samples/ absent (run scripts/fetch-models.sh)"
    cli_summary
    exit $?
fi

# A photo whose name holds a newline and a terminal escape sequence.
name=$'evil\n\x1b[31mred.jpg'
cp "$good" "$tmp/$name"
shown='evil\x0a\x1b[31mred.jpg'

expect "detect a photo named with control characters" 0 "$LETHE" detect "$tmp/$name"
has "name escaped in text output" "$tmp/out" "$shown: 1920x1280, 3 faces"
lines=$(wc -l <"$tmp/out")
[ "$lines" = 4 ] && ok "the newline in the name does not split the line" \
    || bad "the newline in the name does not split the line" "$lines lines: $(od -c "$tmp/out" | head -n 5)"
no_raw "no raw control bytes in text output" "$tmp/out"

expect "embed --chip, same name" 0 "$LETHE" embed --chip "$tmp/$name"
has "name escaped in embed --chip output" "$tmp/out" "$shown: chip 1920x1280"
no_raw "no raw control bytes in embed output" "$tmp/out"

# --json: valid JSON, and the name comes back exactly.
expect "detect --json, same name" 0 "$LETHE" detect --json "$tmp/$name"
no_raw "no raw control bytes in JSON output" "$tmp/out"
[ "$(wc -l <"$tmp/out")" = 1 ] && ok "one JSON line" || bad "one JSON line" "$(head -c 300 "$tmp/out")"
has "newline and escape as JSON escapes" "$tmp/out" 'evil\u000a\u001b[31mred.jpg'
json_lines "JSON decodes to the exact name" "$tmp/out" image "$tmp/$name"

# A file that is not an image, under such a name: the error message quotes it.
printf 'not an image\n' >"$tmp/$name.png"
expect "bad file named with control characters" 1 "$LETHE" detect "$tmp/$name.png"
has "name escaped in the error message" "$tmp/err" "$shown.png: not an image"
no_raw "no raw control bytes in the error message" "$tmp/err"
expect "bad file, --json" 1 "$LETHE" detect --json "$tmp/$name.png"
json_lines "the JSON error decodes to the exact name" "$tmp/out" image "$tmp/$name.png"
has "the JSON error quotes the name escaped" "$tmp/out" '"error":"'"$tmp"'/evil\u000a\u001b[31mred.jpg.png: not an image'
no_raw "no raw control bytes in the JSON error" "$tmp/out"
expect "compare with such a file" 1 "$LETHE" compare "$good" "$tmp/$name.png"
has "compare escapes the name" "$tmp/err" "$shown.png"
no_raw "no raw control bytes from compare" "$tmp/err"

# Bytes that are not UTF-8, a C1 control (U+009B, a one-character CSI) and a
# backslash; valid UTF-8 stays as it is.
odd=$'caf\xc3\xa9-\xff\xfe-\xc2\x9b-back\\slash.jpg'
cp "$good" "$tmp/$odd"
expect "detect a photo named with invalid UTF-8" 0 "$LETHE" detect "$tmp/$odd"
has "invalid UTF-8 and C1 escaped, UTF-8 kept" "$tmp/out" $'caf\xc3\xa9-\\xff\\xfe-\\xc2\\x9b-back\\\\slash.jpg: 1920x1280'
LC_ALL=C grep -q $'\xff' "$tmp/out" && bad "no raw 0xff byte" "$(od -c "$tmp/out" | head -n 3)" || ok "no raw 0xff byte"
LC_ALL=C grep -q $'\xc2\x9b' "$tmp/out" && bad "no raw C1 control" "$(od -c "$tmp/out" | head -n 3)" || ok "no raw C1 control"
expect "detect --json, invalid UTF-8 name" 0 "$LETHE" detect --json "$tmp/$odd"
has "invalid bytes as \\u00XX, C1 as \\u009b" "$tmp/out" 'caf'$'\xc3\xa9''-\u00ff\u00fe-\u009b-back\\slash.jpg'
json_lines "valid JSON with an invalid UTF-8 name" "$tmp/out"

# Sequences that look like UTF-8 and are not (an overlong "/", a surrogate,
# a code point above U+10FFFF): escaped byte by byte in both outputs, so
# the JSON is well-formed UTF-8.
fake=$'over\xe0\x80\xaflong-\xed\xa0\x80-\xf4\x90\x80\x80.jpg'
cp "$good" "$tmp/$fake"
expect "detect a photo named with ill-formed UTF-8" 0 "$LETHE" detect "$tmp/$fake"
has "ill-formed UTF-8 escaped in text" "$tmp/out" 'over\xe0\x80\xaflong-\xed\xa0\x80-\xf4\x90\x80\x80.jpg: 1920x1280'
expect "detect --json, ill-formed UTF-8 name" 0 "$LETHE" detect --json "$tmp/$fake"
has "ill-formed UTF-8 escaped in JSON" "$tmp/out" 'over\u00e0\u0080\u00aflong-\u00ed\u00a0\u0080-\u00f4\u0090\u0080\u0080.jpg"'
if [ -x /usr/bin/python3 ]; then
    /usr/bin/python3 -c 'import sys; open(sys.argv[1], "rb").read().decode("utf-8", "strict")' "$tmp/out" 2>/dev/null \
        && ok "JSON output is well-formed UTF-8" || bad "JSON output is well-formed UTF-8" "$(od -c "$tmp/out" | head -n 4)"
else
    skipt "JSON output is well-formed UTF-8" "/usr/bin/python3 absent"
fi

# Option values quoted in usage errors.
expect "bad --detector value with an escape" 2 "$LETHE" detect --detector $'\x1b[2Jyolo' x.jpg
has "option value escaped" "$tmp/err" 'not '"'"'\x1b[2Jyolo'"'"
no_raw "no raw control bytes in the usage error" "$tmp/err"
expect "unknown option with a newline" 2 "$LETHE" embed $'--bo\ngus' x.jpg
has "unknown option escaped" "$tmp/err" "'--bo\\x0agus'"

cli_summary
