#!/usr/bin/env bash
# The main job on real sample photos: detect, describe and compare the faces
# in face-api's six sample photos (fetched with the models).
set -euo pipefail
cd "$(dirname "$0")/.."
LETHE=${LETHE:-build/lethe}
export LETHE_MODELS=${LETHE_MODELS:-$PWD/models}

echo "== lethe detect samples/*.jpg"
"$LETHE" detect samples/*.jpg
echo
echo "== lethe embed --json samples/sample1.jpg (first face, first 8 of 128 numbers)"
"$LETHE" embed --json samples/sample1.jpg | node -e '
  const r = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const f = r.faces[0];
  console.log(`${r.image}: ${r.faces.length} faces; face 1 box ${f.box.map(v => v.toFixed(0))} embedding [${f.embedding.slice(0, 8).map(v => v.toFixed(3))}, ...]`);'
echo
echo "== lethe compare samples/sample1.jpg samples/sample1.jpg"
"$LETHE" compare samples/sample1.jpg samples/sample1.jpg
echo "== lethe compare samples/sample2.jpg samples/sample4.jpg"
"$LETHE" compare samples/sample2.jpg samples/sample4.jpg || true

# ---------------------------------------------------------------- the store
# A store built from the same photos with a manifest that mixes
# jurisdictions and consent bases, as a photo site's export would.
STORE=${DEMO_STORE:-build/demo-store}
MIRROR=build/demo-keyring-mirror
rm -rf "$STORE" "$MIRROR" build/demo-backup build/demo-restored
mkdir -p build "$MIRROR"
MANIFEST=build/demo-manifest.csv
cat >"$MANIFEST" <<CSV
path,photo_id,url,uploader,source,license,jurisdiction,consent,collected_at
$PWD/samples/sample1.jpg,p1,https://photos.example/p/1,alice,examplr,CC-BY-4.0,GB,explicit,2024-05-01
$PWD/samples/sample2.jpg,p2,https://photos.example/p/2,bob,examplr,CC-BY-4.0,US-IL,public-license,2024-05-02
$PWD/samples/sample3.jpg,p3,https://photos.example/p/3,carol,examplr,CC-BY-SA-4.0,US-CA,public-license,2024-05-03
$PWD/samples/sample4.jpg,p4,https://photos.example/p/4,dave,scraped,unknown,DE,none,2024-05-04
$PWD/samples/sample5.jpg,p5,https://photos.example/p/5,erin,examplr,CC-BY-4.0,FR,withdrawn,2024-05-05
$PWD/samples/sample6.jpg,p6,https://photos.example/p/6,alice,examplr,CC-BY-4.0,DE,explicit,2024-05-06
CSV
export LETHE_ACTOR=demo
echo
echo "== lethe init --store $STORE --keyring-mirror $MIRROR"
echo "   (every photo's personal fields are sealed with its own key, kept in the"
echo "    keyring, never in a backup; the mirror belongs on another disk)"
"$LETHE" init --store "$STORE" --keyring-mirror "$MIRROR"
echo
echo "== lethe policy show (the shipped consent policy)"
"$LETHE" policy show --store "$STORE"
echo "== lethe policy set US-CA explicit,public-license (the operator relaxes California)"
"$LETHE" policy set --store "$STORE" US-CA explicit,public-license
echo
echo "== the manifest: 6 photos, 5 jurisdictions, 4 consent bases"
cat "$MANIFEST"
echo
echo "== lethe ingest --manifest $MANIFEST --allow-outside"
echo "   (the rows name the samples by absolute path, outside the manifest's folder)"
"$LETHE" ingest --store "$STORE" --manifest "$MANIFEST" --allow-outside
echo
echo "== lethe search --purpose 'demo: who is in sample1.jpg' --top 5 samples/sample1.jpg"
"$LETHE" search --store "$STORE" --purpose "demo: who is in sample1.jpg" --top 5 samples/sample1.jpg
echo
echo "== lethe lookup --uploader bob (no face needed; bob's photo is US-IL: catalogued, no template)"
"$LETHE" lookup --store "$STORE" --uploader bob
echo
echo "== lethe log"
"$LETHE" log --store "$STORE"
echo "== lethe log verify"
"$LETHE" log verify --store "$STORE"
echo
echo "== lethe datasheet (also --format html or json)"
"$LETHE" datasheet --store "$STORE"
"$LETHE" datasheet --store "$STORE" --format html -o build/demo-datasheet.html
echo
echo "== lethe backup build/demo-backup (the catalog only: no keyring, nothing in clear)"
"$LETHE" backup --store "$STORE" build/demo-backup
echo
echo "== lethe forget --uploader alice --receipt build/demo-receipt.json"
"$LETHE" forget --store "$STORE" --uploader alice --receipt build/demo-receipt.json
echo "== lethe receipt verify build/demo-receipt.json --store $STORE"
"$LETHE" receipt verify build/demo-receipt.json --store "$STORE"
echo
echo "== the store's disk is lost: lethe restore build/demo-backup --keyring-mirror $MIRROR"
echo "   (alice's photos were erased after the backup: their keys are gone, so they stay gone)"
"$LETHE" restore --store build/demo-restored --keyring-mirror "$MIRROR" build/demo-backup
"$LETHE" lookup --store build/demo-restored --uploader alice || true
echo
echo "The store is in $STORE (restored copy: build/demo-restored); the HTML"
echo "datasheet is build/demo-datasheet.html."
