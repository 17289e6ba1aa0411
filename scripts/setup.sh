#!/usr/bin/env bash
# One-time set-up on a fresh Debian 12 machine (run as root, or with the
# packages already present): system packages, the model weights, and the
# face-api.js reference harness used by the tests and benchmarks.
# Idempotent and quick once done.
set -euo pipefail
cd "$(dirname "$0")/.."

# python3-pytest: the Python module's tests (python/tests), on Debian's python3;
# libmicrohttpd-dev: lethe serve's HTTP server; curl: its tests (tests/cli/test_serve.sh);
# chromium: the data-subject page's browser tests (tests/browser, driven by playwright-core).
PACKAGES="build-essential pkg-config libjpeg62-turbo-dev libpng-dev libwebp-dev
libsodium-dev libsqlite3-dev sqlite3 zlib1g-dev clang libclang-rt-14-dev valgrind openssl bc
python3 python3-pytest libmicrohttpd-dev curl chromium"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# node and npm may come from elsewhere than Debian (e.g. NodeSource): only
# install Debian's when the commands are absent.
command -v node >/dev/null || missing="$missing nodejs"
command -v npm >/dev/null || missing="$missing npm"
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: missing packages:$missing (run as root, or apt-get install them)" >&2
        exit 1
    fi
    echo "setup: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

./scripts/fetch-models.sh
# playwright-core (pinned by tests/browser/package-lock.json), which drives
# Debian's chromium in tests/cli/test_page.sh; it downloads no browser
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi
if [ -x scripts/setup-ref.sh ]; then
    ./scripts/setup-ref.sh
fi
# CompreFace's JavaScript SDK (pinned by tests/compreface/package-lock.json)
# for tests/cli/test_compreface.sh; npm ci checks every package's integrity.
if [ ! -d tests/compreface/node_modules/@exadel/compreface-js-sdk ]; then
    (cd tests/compreface && npm ci --no-audit --no-fund --loglevel=error)
fi
