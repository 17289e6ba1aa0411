#!/usr/bin/env bash
# forget --face on LFW: erasing one person (George_W_Bush, 530 photos) from
# a store of all 13,233 LFW photos, given one photo of him. Reports the share
# of his photos whose face is erased and the share of everyone else's faces
# erased with them (a dry run: the store is not changed).
#
#   bench/eval_forget_face.sh [THRESHOLD...]     (default: 0.55, the default)
#
# STORE=DIR reuses a store built from LFW (bench/lfw_store.sh builds one);
# otherwise one is built here (~12 minutes on 2 cores). PERSON=Name and
# QUERY=FILE pick someone else.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LETHE_TEST_DATA:-../shared/data}
LETHE=${BUILD:-build}/lethe
PERSON=${PERSON:-George_W_Bush}
QUERY=${QUERY:-$DATA/lfw/images/$PERSON/${PERSON}_0001.jpg}
[ -d "$DATA/lfw/images" ] || { echo "eval: $DATA/lfw absent" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
if [ -z "${STORE:-}" ]; then
    STORE=$out/store
    "$LETHE" init --store "$STORE" >/dev/null
    "$LETHE" ingest --store "$STORE" --quiet --consent explicit --source lfw "$DATA/lfw/images" >/dev/null
fi
total=$(ls "$DATA/lfw/images/$PERSON" | wc -l)
faces=$(sqlite3 "$STORE/catalog.db" "SELECT COUNT(*) FROM faces" 2>/dev/null || echo 0)
his_faces=$(sqlite3 "$STORE/catalog.db" "SELECT COUNT(*) FROM faces f JOIN provenance v ON v.photo = f.photo WHERE v.path LIKE '%/$PERSON/%'" 2>/dev/null || echo 0)
echo "store: $faces faces; $PERSON: $total photos ($his_faces faces in them); query: $(basename "$QUERY")"
for t in ${*:-0.55}; do
    "$LETHE" forget --store "$STORE" --dry-run --json --face "$QUERY" --face-threshold "$t" >"$out/m.json"
    node -e '
      const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      const person = process.argv[2], total = +process.argv[3], faces = +process.argv[4], his = +process.argv[5];
      let photos = 0, other = 0;
      for (const m of r.matched) {
        if (m.path.includes("/" + person + "/")) photos++; else other += m.faces;
      }
      console.log(`threshold ${process.argv[6]}: ${photos} of ${total} of his photos (${(100 * photos / total).toFixed(2)}%); ` +
                  `${other} of ${faces - his} other faces (${(100 * other / (faces - his)).toFixed(3)}%)`);
    ' "$out/m.json" "$PERSON" "$total" "$faces" "$his_faces" "$t"
done
