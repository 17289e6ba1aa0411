#!/usr/bin/env bash
# Fetch the face-api model weights (and its sample photos) from the npm
# package @vladmandic/face-api at a pinned version, verify the tarball against
# the registry's published sha512 integrity (pinned here too), and unpack the
# four models lethe uses into models/ and the demo photos into samples/.
# Idempotent: does nothing when models/ already holds a verified copy.
set -euo pipefail
cd "$(dirname "$0")/.."

PKG="@vladmandic/face-api"
VERSION="1.7.15"
INTEGRITY="sha512-WDMmK3CfNLo8jylWqMoQgf4nIst3M0fzx1dnac96wv/dvMTN4DxC/Pq1DGtduDk1lktCamQ3MIDXFnvrdHTXDw=="
MODELS="ssd_mobilenetv1_model tiny_face_detector_model face_landmark_68_model face_recognition_model"
DEST="${LETHE_MODELS_DEST:-models}"

if [ -f "$DEST/.verified-$VERSION" ] && [ -f samples/sample1.jpg ]; then
    exit 0
fi
command -v npm >/dev/null || { echo "fetch-models: npm is required (apt-get install npm)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && npm pack --silent "$PKG@$VERSION" >/dev/null 2>npm.log ) || {
    echo "fetch-models: npm pack $PKG@$VERSION failed:" >&2; cat "$tmp/npm.log" >&2; exit 1; }
tgz=$(ls "$tmp"/*.tgz)
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
if [ "$got" != "$INTEGRITY" ]; then
    echo "fetch-models: integrity mismatch for $PKG@$VERSION" >&2
    echo "  expected $INTEGRITY" >&2
    echo "  got      $got" >&2
    exit 1
fi
tar -xzf "$tgz" -C "$tmp"
mkdir -p "$DEST" samples
for m in $MODELS; do
    cp "$tmp/package/model/$m-weights_manifest.json" "$tmp/package/model/$m.bin" "$DEST/"
done
cp "$tmp/package/LICENSE" "$DEST/LICENSE.face-api"
cp "$tmp/package/demo/"sample*.jpg samples/
touch "$DEST/.verified-$VERSION"
echo "fetch-models: $PKG@$VERSION verified; models in $DEST/, sample photos in samples/"
