#!/usr/bin/env bash
# Builds the Debian package from the release build; nothing is compiled again:
#   cargo build --workspace --release && packaging/build-deb.sh   (prints the .deb's path)
# Installs /usr/bin/puahost, the project's modules under /usr/lib/puahost/modules (where the
# binary looks by default), /etc/puahost/puahost.toml (the presence server of
# configs/presence-server.toml), the other configs as examples under
# /usr/share/doc/puahost/examples, and the systemd unit packaging/puahost.service. In the
# packaged configs relative SQLite files live in /var/lib/puahost and the RPC FIFO in
# /run/puahost (the unit's StateDirectory and RuntimeDirectory).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
rel=$target/release
command -v cargo-deb >/dev/null || { echo "cargo-deb is missing: cargo install cargo-deb --locked" >&2; exit 1; }
# The modules the project ships: pua and every directory of plugins/ (test modules are not).
mapfile -t modules < <(printf '%s\n' pua; ls plugins)
stage=$rel/deb-stage
rm -rf "$stage"
mkdir -p "$stage/etc" "$stage/examples" "$stage/modules"
for m in "${modules[@]}"; do
  [ -f "$rel/lib$m.so" ] || { echo "$rel/lib$m.so is missing: cargo build --workspace --release first" >&2; exit 1; }
  cp "$rel/lib$m.so" "$stage/modules/"
done
for f in configs/*.toml; do
  sed -e 's|sqlite://\([^/"][^"]*\)|sqlite:///var/lib/puahost/\1|g' \
      -e 's|/tmp/puahost_rpc.fifo|/run/puahost/rpc.fifo|g' \
      -e 's|# next to this file|# in /var/lib/puahost|g' "$f" >"$stage/examples/$(basename "$f")"
done
cp "$stage/examples/presence-server.toml" "$stage/etc/puahost.toml"
mkdir -p "$target/debian"
cargo deb -p puahost --no-build --locked --strip --fast --output "$target/debian/" -q >/dev/null
ls -t "$target"/debian/puahost_*.deb | head -1
