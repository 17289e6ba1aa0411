#!/usr/bin/env bash
# Install the face-api.js reference harness (tools/ref) from its lockfile with
# `npm ci`, so every machine runs exactly the pinned face-api / tfjs versions.
# Idempotent: exits at once when tools/ref/node_modules was installed from the
# current package.json + package-lock.json (a stamp holds their hash).
# Needs node (>= 18) and npm; only the npm registry is contacted.
set -euo pipefail
cd "$(dirname "$0")/../tools/ref"

fail() { echo "setup-ref: $*" >&2; exit 1; }
command -v node >/dev/null || fail "node is required (apt-get install nodejs npm)"
command -v npm  >/dev/null || fail "npm is required (apt-get install npm)"
[ -f package-lock.json ] || fail "tools/ref/package-lock.json is missing"

want=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)
stamp=node_modules/.lethe-ref-stamp
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && [ -f node_modules/@vladmandic/face-api/dist/face-api.node-wasm.js ] \
   && [ -f node_modules/@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm ]; then
    exit 0
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "setup-ref: npm ci in tools/ref ..." >&2
if ! npm ci --no-audit --no-fund >"$log" 2>&1; then
    cat "$log" >&2
    fail "npm ci failed in tools/ref (is the npm registry reachable?)"
fi
# quick smoke test: the wasm backend must initialise offline from node_modules
if ! node -e '
  const tf = require("@tensorflow/tfjs");
  const w = require("@tensorflow/tfjs-backend-wasm");
  w.setWasmPaths(require("path").join(process.cwd(), "node_modules/@tensorflow/tfjs-backend-wasm/dist") + "/");
  tf.setBackend("wasm").then(ok => { if (!ok || tf.getBackend() !== "wasm") process.exit(1); });
' >"$log" 2>&1; then
    cat "$log" >&2
    fail "tfjs wasm backend failed to initialise in node"
fi
echo "$want" > "$stamp"
echo "setup-ref: reference harness ready in tools/ref" >&2
