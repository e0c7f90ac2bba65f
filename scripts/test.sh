#!/usr/bin/env bash
# Runs every check and test of bourse, installing what a fresh Debian machine lacks.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust with rustup (https://rustup.rs) and run this again" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    log "installing the ${component} component"
    rustup component add "${component}"
  fi
done

# System packages the tests drive for real: Redis (reach and billing across nodes), etcd (config
# shared across nodes), a headless Chromium with its WebDriver (the ad tag and the admin in a
# browser), Prometheus with promtool (the shipped dashboards, scrape config and alerting rules),
# and protoc, which the etcd-client crate's build needs (only with `--features etcd`, which the
# tests use). Installed only when missing.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# The commerce tests and the Prebid.js browser test: Node with npm (Stripe's own library signs
# webhooks; Prebid.js is bundled from npm with esbuild), Python with pip
# (aiosmtpd, a real SMTP server) and openssl (certificates for SMTP over TLS). PostgreSQL is
# expected on 127.0.0.1:5432 (database `test`, user `postgres`), or at BOURSE_TEST_POSTGRES_URL.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-pip)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  log "installing aiosmtpd from PyPI"
  # A distribution's own Python refuses pip installs unless told (PEP 668).
  python3 -m pip install --quiet aiosmtpd \
    || python3 -m pip install --quiet --break-system-packages aiosmtpd
fi
if [[ ! -d tests/prebid/node_modules/prebid.js ]]; then
  log "installing Prebid.js and esbuild for the Prebid.js browser test"
  (cd tests/prebid && npm ci --no-audit --no-fund --silent)
fi
if [[ ! -d commerce/tests/stripe-node/node_modules/stripe ]]; then
  log "installing Stripe's Node library for the webhook tests"
  (cd commerce/tests/stripe-node && npm ci --no-audit --no-fund --silent)
fi

log "format"
cargo fmt --all -- --check

# The wasm plugins (a cargo workspace of their own, for wasm32-wasip2): built first so that the
# host's tests load current modules and a broken plugin fails here with its own message.
log "wasm plugins"
./plugins/build.sh
(cd plugins && cargo fmt --all -- --check)
(cd plugins && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/wasm-guests" \
  cargo clippy --workspace --target wasm32-wasip2 --release --locked -- -D warnings)

# Every feature is built and tested (etcd's client needs the protoc installed above); the
# default build, which is what `cargo build` and the demo make, is linted too.
# The default build (the demo's) must need nothing but a Rust toolchain: nothing in it may run
# protoc, which only etcd support (a feature) needs.
log "default build needs no protoc"
if cargo tree --locked -p bourse -e normal,build --prefix none | grep -E '^(etcd-client|prost-build|tonic-build|tonic-prost-build) '; then
  echo "the default build pulls in a crate that runs protoc" >&2
  exit 1
fi

log "lints"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
cargo clippy --workspace --locked -- -D warnings

log "tests"
cargo test --workspace --all-features --locked

# --- fuzzing (see FUZZING.md) -------------------------------------------------------------------
# The fuzz targets are a cargo workspace of their own (fuzz/). Its format and lints are checked
# with the usual flags; then fuzz/run.sh builds it with libFuzzer's coverage instrumentation on
# stable Rust, replays every committed corpus input and crash reproducer as an ordinary test
# (fuzz/tests/replay.rs) and fuzzes each target for 10 seconds from its corpus. On a 2-core
# machine that adds about 13 minutes of instrumented build and a few minutes of lint checks from
# cold, then under a minute (replay 2 s, fuzzing 4 x 10 s plus start-up); about a minute warm.
fuzz_target_dir="${CARGO_TARGET_DIR:-$PWD/target}/fuzz"
log "fuzz: format and lints"
(cd fuzz && cargo fmt -- --check)
(cd fuzz && CARGO_TARGET_DIR="${fuzz_target_dir}" cargo clippy --all-targets --locked -- -D warnings)
log "fuzz: corpus replay, then every target for 10 seconds"
CARGO_TARGET_DIR="${fuzz_target_dir}" ./fuzz/run.sh 10
# --- end of fuzzing -----------------------------------------------------------------------------
