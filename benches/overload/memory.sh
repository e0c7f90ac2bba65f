#!/usr/bin/env bash
# Offers a release `bourse serve` its in-flight ceiling, then three times it (open loop, the
# simulator), and reports the server's peak resident memory in each phase and their ratio.
# The bar: at 3x the ceiling, memory stays under 3x its level at the ceiling (the excess gets a
# fast no-bid, never a queue).
#
#   cargo build --release && benches/overload/memory.sh [secs per phase, default 20]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${BOURSE_BIN:-${CARGO_TARGET_DIR:-target}/release/bourse}"
secs="${1:-20}"
ceiling_inflight=64
partner_ms=100
ceiling_rate=$((ceiling_inflight * 1000 / partner_ms))
port="${PORT:-18181}"
work="$(mktemp -d)"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$bin" sim bidders sim/scenarios/overload.toml --write-config "$work/bidders.toml" 2>"$work/bidders.log" &
pids+=($!)
for _ in $(seq 100); do [[ -s "$work/bidders.toml" ]] && break; sleep 0.1; done
sed "s/^listen = .*/listen = \"127.0.0.1:${port}\"\nwatch_config = false/" "$work/bidders.toml" >"$work/serve.toml"
printf '\n[server.connections]\nmax_inflight = %d\n' "$ceiling_inflight" >>"$work/serve.toml"
"$bin" serve --config "$work/serve.toml" 2>"$work/serve.log" &
server=$!
pids+=($server)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:${port}/healthz" >/dev/null && break; sleep 0.1; done

# Samples the server's resident set (KiB) every 200 ms while the given command runs; prints the peak.
peak_rss_during() {
  local peak=0 rss
  "$@" >"$work/phase.txt" 2>&1 &
  local load=$!
  while kill -0 "$load" 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/${server}/status")
    ((rss > peak)) && peak=$rss
    sleep 0.2
  done
  wait "$load"
  echo "$peak"
}

phase() {
  local rate=$1
  local peak
  peak=$(peak_rss_during "$bin" sim run sim/scenarios/overload.toml \
    --target "http://127.0.0.1:${port}/openrtb2/auction" --rate "$rate" --duration "$secs")
  echo "== ${rate}/s for ${secs} s: peak RSS ${peak} KiB" >&2
  grep -E "achieved|requests|bids|no.bid|204|errors|p50|p99|p99.9" "$work/phase.txt" | head -12 >&2 || true
  echo "$peak"
}

idle=$(awk '/^VmRSS:/ {print $2}' "/proc/${server}/status")
at_ceiling=$(phase "$ceiling_rate")
over=$(phase $((ceiling_rate * 3)))
overloaded=$(curl -fs "http://127.0.0.1:${port}/metrics" | awk '/^bourse_kernel_overloaded_total/ {print $2}')
ratio=$(awk -v a="$over" -v b="$at_ceiling" 'BEGIN {printf "%.2f", a / b}')
echo "idle ${idle} KiB; at the ceiling (${ceiling_rate}/s) ${at_ceiling} KiB; at 3x (${ceiling_rate}x3/s) ${over} KiB; ratio ${ratio} (bar < 3); turned away over the ceiling: ${overloaded}"
awk -v r="$ratio" 'BEGIN {exit !(r < 3)}'
