#!/usr/bin/env bash
# Builds bourse's fuzz targets with libFuzzer's coverage instrumentation on stable Rust, replays
# every committed corpus input and crash reproducer through them (`tests/replay.rs`, built by the
# same build), then runs each target for SECONDS (default 10) over a scratch copy of its corpus,
# so a run never changes the repository. Exits non-zero on any crash, naming the input.
#
#   fuzz/run.sh [SECONDS [TARGET...]]
#
# FUZZ_WORK=DIR keeps the grown corpora and logs in DIR (for `-merge=1`, see FUZZING.md);
# FUZZ_ARGS adds libFuzzer flags.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-10}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(openrtb_request tokens config ad_request)

host="$(rustc -vV | sed -n 's/^host: //p')"
# What cargo-fuzz passes, minus its nightly-only sanitizer flag: SanitizerCoverage's module pass
# with inline 8-bit edge counters, the PC table libFuzzer's feature tracking reads, and
# comparison tracing (so magic strings and numbers are learned). `--target` keeps these flags
# off build scripts and proc macros.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

echo "==> building the instrumented fuzz targets and replaying the corpus (${target_dir})"
cargo test --release --locked --target "${host}"

if [[ -n "${FUZZ_WORK:-}" ]]; then
  work="${FUZZ_WORK}"
  mkdir -p "${work}"
else
  work="$(mktemp -d -t bourse-fuzz.XXXXXX)"
  trap 'rm -rf "${work}"' EXIT
fi
artifacts="${PWD}/artifacts"
mkdir -p "${artifacts}"

failed=0
for target in "${targets[@]}"; do
  corpus="${work}/corpus/${target}"
  mkdir -p "${corpus}" "${artifacts}/${target}"
  cp -n corpus/"${target}"/* "${corpus}/" 2>/dev/null || true
  log="${work}/${target}.log"
  echo "==> fuzzing ${target} for ${seconds}s"
  # Runs inside the scratch folder: anything a target writes stays there.
  if (cd "${work}" && "${target_dir}/${host}/release/${target}" "${corpus}" \
    -max_total_time="${seconds}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="${artifacts}/${target}/" ${FUZZ_ARGS:-}) >"${log}" 2>&1; then
    grep -E '^#[0-9]+[[:space:]]+DONE' "${log}" | tail -n 1 || tail -n 3 "${log}"
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "${log}" \
      | tr '\n' ' '
    echo
  else
    failed=1
    tail -n 40 "${log}" >&2
    echo "!! ${target} crashed; the input is in:" >&2
    grep -Eo "(Test unit|artifact_prefix.*) written to [^ ]+" "${log}" >&2 \
      || ls -t "${artifacts}/${target}" >&2
  fi
done
exit "${failed}"
