#!/usr/bin/env bash
# CLI tests for lethe detect / embed / compare: usage errors, bad input in a
# batch, JSON shape, real photos. Usage: tests/cli/test_cli.sh path/to/lethe
# Every lethe run's exit status is checked (expect).
set -u
LETHE=${1:-build/lethe}
. "$(dirname "$0")/../cli_lib.sh"
DATA=$(cli_data_dir)
DATA=${DATA:-../shared/data}

# --- usage -----------------------------------------------------------
expect "no args is a usage error" 2 "$LETHE"
expect "help exits 0" 0 "$LETHE" help
contains "help lists detect" "$tmp/out" "detect"
expect "detect --help exits 0" 0 "$LETHE" detect --help
contains "detect --help documents --json" "$tmp/out" "--json"
expect "unknown command" 2 "$LETHE" frobnicate
contains "unknown command is named" "$tmp/err" "frobnicate"
expect "unknown flag" 2 "$LETHE" detect --bogus x.jpg
contains "unknown flag is named" "$tmp/err" "bogus"
expect "bad detector value" 2 "$LETHE" detect --detector yolo x.jpg
contains "bad detector value is named" "$tmp/err" "yolo"
expect "bad threads value" 2 "$LETHE" embed --threads -3 x.jpg
expect "bad precision value" 2 "$LETHE" detect --precision fp16 x.jpg
contains "bad precision value is named" "$tmp/err" "fp16"
expect "embed --help documents int8" 0 "$LETHE" embed --help
contains "embed --help lists int8" "$tmp/out" "default|fp32|int8"
expect "flag without value" 2 "$LETHE" detect --min-score
expect "detect without image" 2 "$LETHE" detect
expect "compare needs two" 2 "$LETHE" compare a.jpg
expect "version" 0 "$LETHE" --version
contains "version printed" "$tmp/out" "lethe 0."

# --- bad input in a batch ---------------------------------------------
: >"$tmp/empty.jpg"
head -c 5000 /dev/urandom >"$tmp/random.jpg"
echo "this is not an image" >"$tmp/text.png"
mkdir -p "$tmp/dir.jpg"
# A PNG whose header claims 65536 x 65536 pixels (with a valid CRC).
cp tests/fuzz/corpus/image/huge-header.png "$tmp/huge.png"
good=samples/sample1.jpg
if [ -f "$good" ]; then
    head -c 20000 "$good" >"$tmp/truncated.jpg"
    start=$(date +%s%N)
    expect "batch with bad files exits 1" 1 "$LETHE" detect --json "$tmp/empty.jpg" "$tmp/random.jpg" \
        "$tmp/text.png" "$tmp/huge.png" "$tmp/truncated.jpg" "$tmp/missing.jpg" "$tmp/dir.jpg" "$good"
    lines=$(wc -l <"$tmp/out")
    [ "$lines" = 8 ] && ok "one JSON line per input" || bad "one JSON line per input" "$lines lines"
    errors=$(grep -c '"error"' "$tmp/out")
    [ "$errors" = 7 ] && ok "seven errors reported" || bad "seven errors reported" "$errors: $(cat "$tmp/out" | cut -c1-200)"
    tail -n 1 "$tmp/out" | grep -q '"faces":\[{"box"' && ok "good image still analysed" \
        || bad "good image still analysed" "$(tail -n 1 "$tmp/out" | cut -c1-200)"
    # each error is about its own file, and says what is wrong with it
    errof "huge PNG refused by size" "$tmp/out" huge.png "65536"
    errof "truncation named" "$tmp/out" truncated.jpg "truncat|premature"
    errof "missing file named" "$tmp/out" missing.jpg "missing|no such|not found|cannot open"
    errof "empty file refused" "$tmp/out" empty.jpg "empty|not an image|no data|truncat"
    errof "folder refused" "$tmp/out" dir.jpg "folder|director|not a (regular )?file"
    # Every line parses as JSON.
    if node -e 'const l=require("fs").readFileSync(process.argv[1],"utf8").trim().split("\n");for(const x of l)JSON.parse(x)' "$tmp/out" 2>/dev/null; then
        ok "output is JSON Lines"
    else
        bad "output is JSON Lines" "$(head -c 300 "$tmp/out")"
    fi
    # Errors alone come back fast (no model work needed to refuse them).
    start=$(date +%s%N)
    expect "a batch of bad images only exits 1" 1 "$LETHE" detect --json "$tmp/huge.png" "$tmp/random.jpg"
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    [ "$ms" -lt 3000 ] && ok "bad images refused quickly (${ms} ms incl. model load)" \
        || bad "bad images refused quickly" "${ms} ms"
    expect "text mode names the failure" 1 "$LETHE" detect "$tmp/random.jpg"
    nonempty "text mode writes an error" "$tmp/err"
    contains "text mode error message" "$tmp/err" "random.jpg"
else
    skipt "bad-input batch" "samples/ absent (run scripts/fetch-models.sh)"
fi

# --- real photos ------------------------------------------------------
faces="$DATA/faceapi/test-images/faces.jpg"
if [ -f "$faces" ]; then
    expect "detect faces.jpg" 0 "$LETHE" detect --json "$faces"
    n=$(node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(r.faces.length)' "$tmp/out")
    [ "$n" = 6 ] && ok "six faces in faces.jpg" || bad "six faces in faces.jpg" "found $n"
    node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));
      for (const f of r.faces) { if (f.landmarks.length!==68||f.box.length!==4||f.embedding) process.exit(1);
        for (const [x,y] of f.landmarks) if (!(x>=f.box[0]-0.3*f.box[2]&&x<=f.box[0]+1.3*f.box[2]&&y>=f.box[1]-0.3*f.box[3]&&y<=f.box[1]+1.3*f.box[3])) process.exit(2); }' "$tmp/out" \
      && ok "68 landmarks inside each box, no embedding from detect" || bad "landmarks inside boxes" "$(head -c 300 "$tmp/out")"
    cp "$tmp/out" "$tmp/detect_first.json"
    expect "detect with its options after the path" 0 "$LETHE" detect "$faces" --json --threads 1
    same "answers as with them before" "$(cat "$tmp/out")" "$(cat "$tmp/detect_first.json")"
    expect "a path after -- that looks like an option" 1 "$LETHE" detect -- --json
    contains "is taken as a path" "$tmp/err" "cannot open --json"
    expect "embed faces.jpg" 0 "$LETHE" embed --json "$faces"
    node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));
      for (const f of r.faces) { if (f.embedding.length!==128) process.exit(1);
        const n=Math.hypot(...f.embedding); if (!(n>0.1&&n<10)) process.exit(2); }' "$tmp/out" \
      && ok "128-D embeddings" || bad "128-D embeddings" "$(head -c 300 "$tmp/out")"
    # --precision fp32 finds the same six faces, each descriptor near the
    # default's (int8 where the CPU has AVX-512 VNNI: the int8 detector
    # moves boxes by a fraction of a pixel).
    cp "$tmp/out" "$tmp/default.json"
    expect "embed --precision fp32" 0 "$LETHE" embed --json --precision fp32 "$faces"
    node -e 'const fs=require("fs"); const a=JSON.parse(fs.readFileSync(process.argv[1],"utf8")).faces,
        b=JSON.parse(fs.readFileSync(process.argv[2],"utf8")).faces;
      if (a.length!==6||b.length!==6) process.exit(1);
      for (const f of a) { const g=b.reduce((p,q)=>Math.hypot(q.box[0]-f.box[0],q.box[1]-f.box[1])<Math.hypot(p.box[0]-f.box[0],p.box[1]-f.box[1])?q:p);
        const d=Math.hypot(...f.embedding.map((v,i)=>v-g.embedding[i])); if (!(d<0.15)) process.exit(2); }' \
      "$tmp/default.json" "$tmp/out" \
      && ok "fp32 and the default: same faces, descriptors within 0.15" || bad "fp32 descriptors" "$(head -c 300 "$tmp/out")"
else
    skipt "faces.jpg" "$DATA absent"
fi
lfw="$DATA/lfw/images"
if [ -d "$lfw" ]; then
    a="$lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg"; b="$lfw/Aaron_Peirsol/Aaron_Peirsol_0002.jpg"
    c="$lfw/Abdullah_Gul/Abdullah_Gul_0001.jpg"
    expect "compare same person" 0 "$LETHE" compare --json "$a" "$b"
    contains "same person judged same" "$tmp/out" '"same":true'
    expect "compare different people" 0 "$LETHE" compare "$a" "$c"
    contains "different people judged different" "$tmp/out" "different people"
    expect "compare with a bad file" 1 "$LETHE" compare "$a" "$tmp/random.jpg"
else
    skipt "compare" "$lfw absent"
fi

cli_summary
