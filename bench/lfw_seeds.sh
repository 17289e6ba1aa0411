#!/usr/bin/env bash
# lfw_seeds.sh: the seed descriptors of the benchmark data generators
# (bench/search.sh, bench/forget.sh): `lethe embed` over the first photo of
# each of the first 320 people of LFW, the first face of each, as float32.
#
#   bench/lfw_seeds.sh LETHE DATA OUT    writes OUT/seeds.f32 (also
#                                        seeds.list, seeds.jsonl, embed.err)
set -euo pipefail
LETHE=$1 DATA=$2 out=$3
PY=${PY:-/usr/bin/python3}
[ -d "$DATA/lfw/images" ] || { echo "bench: $DATA/lfw/images is missing" >&2; exit 1; }
people=("$DATA"/lfw/images/*/)
for d in "${people[@]:0:320}"; do
    photos=("$d"*.jpg)
    echo "${photos[0]}"
done >"$out/seeds.list"
echo "== seeds: lethe embed over $(wc -l <"$out/seeds.list") LFW photos"
mapfile -t photos <"$out/seeds.list"
"$LETHE" embed --json "${photos[@]}" >"$out/seeds.jsonl" 2>"$out/embed.err" || true
"$PY" - "$out/seeds.jsonl" "$out/seeds.f32" <<'PYEOF'
import json, struct, sys
n = 0
with open(sys.argv[2], "wb") as f:
    for line in open(sys.argv[1]):
        r = json.loads(line)
        if r.get("faces"):
            f.write(struct.pack("<128f", *r["faces"][0]["embedding"]))
            n += 1
if n < 10:
    sys.exit("bench: only %d seed descriptors" % n)
PYEOF
