#!/usr/bin/env bash
# The project's test command: installs what the tests need, builds everything once with the
# release profile (the modules the end-to-end tests load are cdylibs of the workspace), then
# runs every test. Benchmarks and packaging use the same profile, so nothing builds twice.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo build --workspace --release --locked
cargo test --workspace --release --locked
