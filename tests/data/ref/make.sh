#!/usr/bin/env bash
# Regenerate tests/data/ref/detect.json, the face-api.js reference outputs the
# detector parity test (tests/test_detect.c) compares against.
#
# Needs: node, tools/ref/node_modules (cd tools/ref && npm ci), models/, the
# shared test data (LETHE_TEST_DATA, default ../shared/data) and a built
# test_detect (TEST_DETECT, default build/tests/test_detect; made if absent).
#
# Cases: a synthetic group photo made of lossless face crops (written by
# test_detect --write-case, so both sides see identical pixels) and two PNGs
# (decoded here by pngjs; the test checks that lethe decodes the same pixels).
set -euo pipefail
cd "$(dirname "$0")/../../.."

DATA=${LETHE_TEST_DATA:-../shared/data}
TEST_DETECT=${TEST_DETECT:-build/tests/test_detect}
[ -x "$TEST_DETECT" ] || make "$TEST_DETECT"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$TEST_DETECT" --write-case collage "$tmp/collage.900x420.rgb" >/dev/null
node tools/ref/to-rgb.mjs "$tmp" "$DATA/faceapi/test-images/face_rectangular.png" \
    "$DATA/faceapi/test-images/face1.png" >/dev/null

node tests/data/ref/reduce.mjs \
    "collage:collage:$tmp/collage.900x420.rgb:416" \
    "face_rectangular:faceapi/test-images/face_rectangular.png:$tmp/face_rectangular.122x178.rgb:224" \
    "face1:faceapi/test-images/face1.png:$tmp/face1.150x150.rgb:160" \
    > tests/data/ref/detect.json.tmp
mv tests/data/ref/detect.json.tmp tests/data/ref/detect.json
echo "wrote tests/data/ref/detect.json ($(wc -c < tests/data/ref/detect.json) bytes)"
