#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and end-to-end tests (with the Ballista
# feature, whose tests start a scheduler and an executor on loopback).
# Installs what the tests need: the Python readers used to check published files, the
# reporting page's assets (Chart.js), browser driver (playwright-core) and accessibility
# checker (axe-core) from npm, and Debian's Chromium for the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r tests/requirements.txt
npm ci --prefix engine/web --no-audit --no-fund --loglevel=error
if ! command -v chromium > /dev/null; then
    if [ "$(id -u)" = 0 ]; then apt=(apt-get); else apt=(sudo apt-get); fi
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends chromium > /dev/null ||
        { "${apt[@]}" update > /dev/null && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends chromium > /dev/null; }
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# With Ballista (the cluster commands and tests/ballista.rs); the same build of DataFusion.
cargo clippy --workspace --all-targets --locked --features valtava/ballista -- -D warnings
# The fuzz targets (tests/fuzz.rs) read 3000 mutated inputs each in CI: bounded, about half
# a minute in all; `VALTAVA_FUZZ_CASES` set by the caller wins.
export VALTAVA_FUZZ_CASES=${VALTAVA_FUZZ_CASES:-3000}
cargo test --workspace --locked --features valtava/ballista
