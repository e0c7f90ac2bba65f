#!/usr/bin/env bash
# Builds the plugin SDK's examples and the test plugins for wasm32-wasip2 and puts each module
# with its manifest template in plugins/dist/: NAME.wasm and NAME.toml. `floor-rule-v2` is the
# floor rule's second table, the next version of the same plugin.
#
# Safe to run concurrently (a lock serialises runs) and cheap when nothing changed; the tests
# of bourse-wasm run it before they load any module, so they always load current builds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi

# Never the host workspace's own target directory: a host `cargo test` may be holding its lock.
export CARGO_TARGET_DIR="${BOURSE_PLUGINS_TARGET_DIR:-${CARGO_TARGET_DIR:-$here/target}/wasm-guests}"
out="$CARGO_TARGET_DIR/wasm32-wasip2/release"
mkdir -p dist "$CARGO_TARGET_DIR"

exec 9>"$CARGO_TARGET_DIR/.build-lock"
flock 9

build() { cargo build --quiet --locked --target wasm32-wasip2 --release "$@"; }

# name, crate directory
plugins=(
  "floor-rule examples/floor-rule"
  "brand-safety examples/brand-safety"
  "status-site examples/status-site"
  "spin testdata/spin"
  "hog testdata/hog"
  "trap testdata/trap"
)
build --workspace
for entry in "${plugins[@]}"; do
  read -r name dir <<<"$entry"
  install -m 0644 "$out/${name//-/_}.wasm" "dist/$name.wasm.tmp"
  mv "dist/$name.wasm.tmp" "dist/$name.wasm"
  cp "$dir/plugin.toml" "dist/$name.toml"
done

# The floor rule's next version: the same crate with its second table.
build -p floor-rule --features v2-table
install -m 0644 "$out/floor_rule.wasm" dist/floor-rule-v2.wasm.tmp
mv dist/floor-rule-v2.wasm.tmp dist/floor-rule-v2.wasm
sed 's/^version = .*/version = "1.1.0"/' examples/floor-rule/plugin.toml >dist/floor-rule-v2.toml
# Leave the default build in place for the next incremental run.
build -p floor-rule
