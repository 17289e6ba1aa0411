#!/usr/bin/env bash
# CLI tests for templates that know their model: lethe model list | retire,
# ingest --descriptors --model, search --model, lethe retemplate; usage
# errors, the retire's dry run, refusal without --yes, receipt, digest,
# refusals after the retirement, and retemplate's list of the files it
# could not read again.
# Usage: tests/cli/test_model.sh path/to/lethe (photos: samples/)
set -u
LETHE=${1:-build/lethe}
. "$(dirname "$0")/../cli_lib.sh"
export LETHE_ACTOR=tester
S="$tmp/s"
PY=/usr/bin/python3

# --- usage (no store needed) ---------------------------------------------
expect "model help" 0 "$LETHE" model --help
contains "model help names retire" "$tmp/out" "retire"
expect "model: no subcommand" 2 "$LETHE" model
expect "model: unknown subcommand" 2 "$LETHE" model frobnicate --store "$S"
expect "model retire: no MODEL" 2 "$LETHE" model retire --store "$S"
expect "model list: no MODEL" 2 "$LETHE" model list x --store "$S"
expect "model: unknown option" 2 "$LETHE" model list --bogus --store "$S"
expect "retemplate help" 0 "$LETHE" retemplate --help
expect "retemplate: unknown option" 2 "$LETHE" retemplate --bogus
expect "ingest --model without --descriptors" 2 "$LETHE" ingest --store "$S" --model a@1 x.jpg
expect "ingest --model malformed" 2 "$LETHE" ingest --store "$S" --model 'a b' --descriptors x.jsonl
expect "search --model with an IMAGE" 2 "$LETHE" search --store "$S" --purpose t --model a@1 x.jpg

P=samples
if [ ! -f "$P/sample1.jpg" ] || [ ! -f "$P/sample3.jpg" ]; then
    skipt "model: store" "samples/ absent (run scripts/setup.sh)"
    cli_summary
    exit $?
fi
mkdir -p "$tmp/photos"
cp "$P/sample1.jpg" "$P/sample2.jpg" "$tmp/photos/"
expect "init" 0 "$LETHE" init --store "$S"
expect "ingest photos" 0 "$LETHE" ingest --store "$S" --consent explicit --jurisdiction US \
    "$tmp/photos/sample1.jpg" "$tmp/photos/sample2.jpg"
expect "embed" 0 "$LETHE" embed --json "$P/sample3.jpg"
cp "$tmp/out" "$tmp/embed.json"
"$PY" - "$tmp/out" > "$tmp/other.jsonl" <<'EOF'
import json, sys
d = json.loads(open(sys.argv[1]).readline())
for i, f in enumerate(d["faces"]):
    print(json.dumps({"embedding": f["embedding"], "uploader": "u%d" % i,
                      "consent": "explicit", "jurisdiction": "US"}))
EOF
nother=$(wc -l < "$tmp/other.jsonl")
nonempty "descriptors of another model" "$tmp/other.jsonl"
expect "ingest another model's descriptors" 0 "$LETHE" ingest --store "$S" \
    --descriptors "$tmp/other.jsonl" --model other-net@2.0
expect "model list" 0 "$LETHE" model list --store "$S"
contains "list: the shipped model, current" "$tmp/out" "face-api-resnet34@1.7.15 .*current"
contains "list: the other model" "$tmp/out" "other-net@2.0"
expect "model list --json" 0 "$LETHE" model list --store "$S" --json
same "list --json: two models" "$(wc -l < "$tmp/out")" 2
contains "list --json: the other's templates" "$tmp/out" "\"name\":\"other-net\".*\"templates\":$nother,"
q=$(head -n 1 "$tmp/other.jsonl")
expect "search the other model" 0 "$LETHE" search --store "$S" --purpose t --json --top 100 \
    --model other-net@2.0 --descriptor "$q"
same "search the other model: its templates only" "$(grep -o '"distance"' "$tmp/out" | wc -l)" "$nother"
contains "and its gallery is that model's templates, not the store's" "$tmp/out" "\"gallery\":$nother,"
nshipped=$("$LETHE" model list --store "$S" --json | sed -n 's/.*"name":"face-api-resnet34".*"templates":\([0-9]*\),.*/\1/p')
expect "search the shipped model" 0 "$LETHE" search --store "$S" --purpose t --json --descriptor "$q"
contains "its gallery is the shipped model's templates" "$tmp/out" "\"gallery\":$nshipped,"
expect "search the shipped model, text" 0 "$LETHE" search --store "$S" --purpose t --descriptor "$q"
contains "the header counts that model's faces" "$tmp/out" "store of $nshipped face"
expect "search a model never seen" 1 "$LETHE" search --store "$S" --purpose t --model nope@1 --descriptor "$q"
contains "never seen: says so" "$tmp/err" "no templates of model nope@1"

# --- retire ----------------------------------------------------------------
SCAN=$(dirname "$LETHE")/tests/scan
# the scanner finds them before (so its silence after means something)
expect "scan sees the templates before" 1 "$SCAN" "$S" --descriptors "$tmp/embed.json"
d0=$("$LETHE" digest --store "$S")
expect "retire dry run" 0 "$LETHE" model retire other-net --store "$S" --dry-run --json
contains "dry run counts" "$tmp/out" "\"templates\":$nother,"
contains "dry run erased nothing" "$tmp/out" '"erased":false'
expect "retire without --yes" 1 "$LETHE" model retire other-net --store "$S"
contains "without --yes: says so" "$tmp/err" "confirm"
same "nothing changed" "$("$LETHE" digest --store "$S")" "$d0"
expect "retire" 0 "$LETHE" model retire other-net@2.0 --store "$S" --yes --receipt "$tmp/r.json"
contains "retire: templates erased" "$tmp/out" "erased $nother templates"
expect "receipt checks against the store" 0 "$LETHE" receipt verify "$tmp/r.json" --store "$S"
contains "receipt: of kind retire" "$tmp/r.json" '"kind":"retire"'
expect "digest --full agrees" 0 "$LETHE" digest --store "$S" --full
expect "model list after" 0 "$LETHE" model list --store "$S"
contains "list: retired" "$tmp/out" "other-net@2.0 .*retired at"
expect "retire again" 2 "$LETHE" model retire other-net --store "$S" --yes
expect "ingest a retired model" 1 "$LETHE" ingest --store "$S" --descriptors "$tmp/other.jsonl" --model other-net@2.0
contains "ingest refused: says retired" "$tmp/err" "retired"
expect "search a retired model" 1 "$LETHE" search --store "$S" --purpose t --model other-net@2.0 --descriptor "$q"
contains "search refused: says retired" "$tmp/err" "retired"
expect "log verify" 0 "$LETHE" log verify --store "$S"
# no float32 copy of a retired template left in any file
if [ -x "$SCAN" ]; then
    expect "no residue of the retired templates" 0 "$SCAN" "$S" --descriptors "$tmp/embed.json"
else
    bad "no residue of the retired templates" "build/tests/scan missing"
fi
expect "datasheet shows the models" 0 "$LETHE" datasheet --store "$S"
contains "datasheet: retired model" "$tmp/out" "other-net@2.0 | fp32 | 0 | retired"

# --- retemplate (nothing to do: every photo is of the engine's model) ------
expect "retemplate dry run" 0 "$LETHE" retemplate --store "$S" --dry-run --json
contains "retemplate: no candidate" "$tmp/out" '"candidates":0'
expect "retemplate" 0 "$LETHE" retemplate --store "$S"
cli_summary
