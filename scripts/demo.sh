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
