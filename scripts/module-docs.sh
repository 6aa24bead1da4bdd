#!/usr/bin/env bash
# Regenerates docs/modules/ (the module reference) from the built modules' own declarations:
#   scripts/module-docs.sh [--check]
# The modules are the ones the project ships: pua (pua-core/) and every directory of plugins/.
# Build first (cargo build --workspace --release). tests/tests/docs.rs runs the --check form.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}/release
mapfile -t modules < <(printf '%s\n' pua; ls plugins)
exec "$target/puahost" docs -L "$target" --out docs/modules "$@" "${modules[@]}"
