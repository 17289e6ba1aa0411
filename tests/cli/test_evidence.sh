#!/usr/bin/env bash
# CLI tests for match evidence: every search result carries the false-match
# rate at its distance, the strangers expected as close in this store and a
# tier, in the text and the JSON (one shape for every query and every
# match); search --fpir chooses the threshold from the store's size (it
# falls as the store grows) and refuses what is not a probability.
# Descriptors only: no models or photos needed.
# Usage: tests/cli/test_evidence.sh path/to/lethe
set -u
LETHE=${1:-build/lethe}
. "$(dirname "$0")/../cli_lib.sh"
export LETHE_ACTOR=tester
unset LETHE_STORE

if ! command -v node >/dev/null; then
    echo "  SKIP everything: node absent (it reads the JSON)"; echo "0 passed, 0 failed, 1 skipped"; exit 0
fi

# PEOPLE people of 5 descriptors each: one centre (components uniform in
# +-0.2), each descriptor the centre plus noise of +-0.03 (same person
# about 0.2 apart, different people about 1.8)
gen() { # gen PEOPLE SEED > FILE.jsonl
    awk -v people="$1" -v seed="$2" 'BEGIN { srand(seed);
        for (p = 0; p < people; p++) {
            for (k = 0; k < 128; k++) c[k] = (rand() - 0.5) * 0.4;
            for (j = 0; j < 5; j++) {
                printf "{\"photo_id\":\"p%d-%d-%d\",\"consent\":\"explicit\",\"jurisdiction\":\"US\",\"embedding\":[", seed, p, j;
                for (k = 0; k < 128; k++) printf "%s%.6f", (k ? "," : ""), c[k] + (rand() - 0.5) * 0.06;
                printf "]}\n" } } }'
}
gen 20 1 >"$tmp/small.jsonl"
gen 180 2 >"$tmp/more.jsonl"
probe=$(head -n 1 "$tmp/small.jsonl" | sed 's/.*"embedding"://; s/}$//')
stranger=$(awk 'BEGIN { srand(99); printf "["; for (k = 0; k < 128; k++) printf "%s%.6f", (k ? "," : ""), (rand() - 0.5) * 0.4; printf "]" }')

S=$tmp/store
expect "init" 0 "$LETHE" init --store "$S"
expect "ingest 100 descriptors" 0 "$LETHE" ingest --store "$S" --descriptors "$tmp/small.jsonl"

# --- JSON: one shape, evidence consistent with the store's size ----------
expect "search --json" 0 "$LETHE" search --store "$S" --purpose t --json --top 8 --descriptor "$probe"
cp "$tmp/out" "$tmp/plain.json"
check_json() { # check_json NAME FILE GALLERY FPIR(or null)
    if node -e '
        const [file, gallery, fpir] = process.argv.slice(1);
        const qkeys = "query,source,gallery,fpir,threshold,matches";
        const mkeys = "distance,same,fmr,strangers,tier,photo,face,box,path,photo_id,url,uploader,source,license,jurisdiction,consent,collected_at,provenance_count";
        const tiers = ["strong", "moderate", "weak", "none"];
        const lines = require("fs").readFileSync(file, "utf8").trim().split("\n");
        for (const l of lines) {
            const q = JSON.parse(l);
            if (Object.keys(q).join() !== qkeys) throw "query keys: " + Object.keys(q).join();
            if (q.gallery !== +gallery) throw "gallery " + q.gallery;
            if (fpir === "null" ? q.fpir !== null || q.threshold !== null : q.fpir !== +fpir || typeof q.threshold !== "number") throw "fpir/threshold " + q.fpir + " " + q.threshold;
            let prev = 0;
            for (const m of q.matches) {
                if (Object.keys(m).join() !== mkeys) throw "match keys: " + Object.keys(m).join();
                if (!(m.fmr > 0 && m.fmr <= 1 && m.fmr >= prev)) throw "fmr " + m.fmr;
                prev = m.fmr;
                if (Math.abs(m.strangers - m.fmr * q.gallery) > 1e-3 * m.strangers + 1e-12) throw "strangers " + m.strangers;
                const want = m.strangers < 0.01 ? 0 : m.strangers < 0.1 ? 1 : m.strangers < 1 ? 2 : 3;
                if (m.tier !== tiers[want]) throw "tier " + m.tier + " for " + m.strangers;
                if (q.threshold !== null && m.distance > q.threshold) throw "beyond the threshold";
            }
        }' "$2" "$3" "$4" 2>"$tmp/why"; then ok "$1"; else bad "$1" "$(cat "$tmp/why")"; fi
}
check_json "JSON: every query and match has the same keys, evidence matches the store" "$tmp/plain.json" 100 null
contains "the nearest (itself) is strong evidence" "$tmp/plain.json" '"matches":\[{"distance":0.000000,"same":true,"fmr":[0-9.e-]*,"strangers":[0-9.e-]*,"tier":"strong"'
contains "another person's face is no evidence" "$tmp/plain.json" '"fmr":1,"strangers":100,"tier":"none"'

# --- --fpir ----------------------------------------------------------------
expect "search --fpir 0.01" 0 "$LETHE" search --store "$S" --purpose t --json --top 8 --fpir 0.01 --descriptor "$probe"
cp "$tmp/out" "$tmp/fpir-small.json"
check_json "--fpir: JSON shape, every match within the chosen threshold" "$tmp/fpir-small.json" 100 0.01
same "--fpir keeps the same person's 5 faces and no one else" "$(grep -o '"distance"' "$tmp/fpir-small.json" | wc -l)" 5
t_small=$(jnum "$tmp/fpir-small.json" threshold)
expect "--fpir: a stranger finds nothing" 0 "$LETHE" search --store "$S" --purpose t --json --fpir 0.01 --descriptor "$stranger"
lacks "--fpir: no match for a stranger" "$tmp/out" '"distance"'
expect "--fpir with a lower --threshold: the lower applies" 0 "$LETHE" search --store "$S" --purpose t --json --fpir 0.01 --threshold 0.0001 --descriptor "$probe"
same "--fpir with --threshold 0.0001: itself only" "$(grep -o '"distance"' "$tmp/out" | wc -l)" 1

expect "ingest 900 more" 0 "$LETHE" ingest --store "$S" --descriptors "$tmp/more.jsonl"
expect "search --fpir 0.01 in the bigger store" 0 "$LETHE" search --store "$S" --purpose t --json --fpir 0.01 --descriptor "$probe"
check_json "--fpir: the gallery is the store's new size" "$tmp/out" 1000 0.01
t_big=$(jnum "$tmp/out" threshold)
if awk -v a="$t_big" -v b="$t_small" 'BEGIN { exit !(a + 0 < b + 0 && a + 0 > 0) }'; then
    ok "--fpir: the threshold falls as the store grows ($t_small -> $t_big)"
else
    bad "--fpir: the threshold falls as the store grows" "$t_small -> $t_big"
fi
expect "the same distance, a bigger store: more strangers" 0 "$LETHE" search --store "$S" --purpose t --json --top 1 --descriptor "$probe"
same "strangers grow with the store (x10)" \
    "$(node -e 'const f=require("fs"),a=JSON.parse(f.readFileSync(process.argv[1],"utf8")).matches[0],b=JSON.parse(f.readFileSync(process.argv[2],"utf8")).matches[0];console.log(a.fmr===b.fmr&&Math.abs(b.strangers/a.strangers-10)<1e-3)' "$tmp/plain.json" "$tmp/out")" true

for bad_p in 0 1 1.5 -0.1 abc nan ""; do
    expect "--fpir '$bad_p' is refused" 2 "$LETHE" search --store "$S" --purpose t --fpir "$bad_p" --descriptor "$probe"
    contains "--fpir '$bad_p': the message says why" "$tmp/err" "fpir"
done

# --- text ------------------------------------------------------------------
expect "search, text" 0 "$LETHE" search --store "$S" --purpose t --top 3 --fpir 0.1 --descriptor "$probe"
contains "text: the store's size" "$tmp/out" "store of 1000 faces"
contains "text: what the threshold promises" "$tmp/out" "returns a face with probability at most 0.1"
contains "text: the evidence columns" "$tmp/out" "false-m. strangers evidence"
contains "text: a strong match" "$tmp/out" " strong "
expect "search --help documents the evidence" 0 "$LETHE" search --help
contains "help: --fpir" "$tmp/out" "\-\-fpir P"
contains "help: the tiers" "$tmp/out" "strong (< 0.01 strangers)"

# --- search --fuse: several descriptors of one person, one answer --------
# Two noisy copies of the first person's second descriptor (the same noise,
# once added and once taken away): fused, their mean is that descriptor.
p2=$(sed -n 2p "$tmp/small.jsonl" | sed 's/.*"embedding"://; s/}$//')
mk() { echo "$p2" | awk -v sign="$1" 'BEGIN { srand(7) } { gsub(/[][]/, ""); n = split($0, v, ",");
    printf "["; for (k = 1; k <= n; k++) printf "%s%.6f", (k > 1 ? "," : ""), v[k] + sign * (rand() - 0.5) * 0.2; printf "]" }'; }
pa=$(mk 1); pb=$(mk -1)
"$LETHE" log --store "$S" --json >"$tmp/log0"
expect "search --fuse --json" 0 "$LETHE" search --store "$S" --purpose "t: fused" --json --top 3 --fuse --descriptor "$pa" --descriptor "$pb"
if node -e '
    const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n");
    if (lines.length !== 1) throw "lines " + lines.length;
    const q = JSON.parse(lines[0]);
    if (Object.keys(q).join() !== "query,source,fused,gallery,fpir,threshold,matches") throw "keys " + Object.keys(q).join();
    if (q.query !== 0 || q.fused !== 2) throw "query " + q.query + " fused " + q.fused;
    if (q.matches.length !== 3) throw "matches " + q.matches.length;
    const m = q.matches[0];
    if (m.photo_id !== "p1-0-1") throw "first " + m.photo_id;
    if (m.distance > 1e-3) throw "distance " + m.distance;
    for (const x of q.matches) if (x.fmr !== null || x.strangers !== null || x.tier !== "uncalibrated") throw "evidence " + JSON.stringify(x);
' "$tmp/out" 2>"$tmp/node.err"; then ok "--fuse: one line, fused 2, the mean found first, evidence null and uncalibrated"; else bad "--fuse JSON" "$(cat "$tmp/node.err") $(head -c 400 "$tmp/out")"; fi
"$LETHE" log --store "$S" --json >"$tmp/log1"
same "--fuse: one log entry" "$(($(wc -l <"$tmp/log0") + 1))" "$(wc -l <"$tmp/log1")"
contains "--fuse: the entry has the purpose" "$tmp/log1" '"purpose":"t: fused"'
printf '%s\n%s\n' "$pa" "$pb" >"$tmp/two.jsonl"
expect "search --fuse --queries" 0 "$LETHE" search --store "$S" --purpose t --fuse --top 1 --queries "$tmp/two.jsonl"
contains "text: says the probes were fused" "$tmp/out" "2 probes of one person, fused"
contains "text: no calibrated rate" "$tmp/out" "uncalibrated"
expect "--fuse with --fpir is refused" 2 "$LETHE" search --store "$S" --purpose t --fuse --fpir 0.01 --descriptor "$pa" --descriptor "$pb"
contains "--fuse --fpir: says why" "$tmp/err" "no calibration was measured for fused probes"
expect "two --descriptor without --fuse are refused" 2 "$LETHE" search --store "$S" --purpose t --descriptor "$pa" --descriptor "$pb"
contains "two --descriptor: suggests --fuse" "$tmp/err" "\-\-fuse"
expect "verify refuses --fuse" 2 "$LETHE" verify --store "$S" --purpose t --uploader x --fuse --descriptor "$pa"
contains "help: --fuse" "$("$LETHE" search --help >"$tmp/help"; echo "$tmp/help")" "\-\-fuse"

cli_summary
