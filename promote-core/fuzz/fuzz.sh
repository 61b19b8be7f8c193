#!/usr/bin/env bash
# Fuzzes promote-core's targets with cargo-fuzz (libFuzzer) on stable Rust.
#
#   promote-core/fuzz/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS per target: 60 by default, 1200 with RELIABILITY_LONG=1. TARGETS: all by default (reference spec
# ledger oci_layout documents templates). Two targets run at a time (JOBS=2). New inputs go to a scratch
# corpus; `fuzz.sh merge TARGET...` folds them, minimised, into corpus/<target>. A crash or timeout lands in
# artifacts/<target>/, which the replay tests then run on every `cargo test`.
#
# Stable works because no sanitizer is asked for (`-s none`): safe Rust needs none to turn a bug into a
# panic, and cargo-fuzz's coverage instrumentation (`-Cpasses=sancov-module` and `-Cllvm-args=...`) is
# stable. Builds go to $CARGO_TARGET_DIR/fuzz (or target/fuzz), beside the workspace's own target.
set -euo pipefail
cd "$(dirname "$0")/.."
all=(reference spec ledger oci_layout documents templates)
target_dir="${CARGO_TARGET_DIR:-$(pwd)/../target}/fuzz"
bin="$target_dir/x86_64-unknown-linux-gnu/release"
scratch="${FUZZ_SCRATCH:-/tmp/promote-fuzz}"
# Targets write temporary directories per input: memory is faster than disk for that.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
build() { CARGO_TARGET_DIR="$target_dir" cargo fuzz build -O -a -s none "$@"; }

if [ "${1:-}" = merge ]; then
  shift
  targets=("${@:-${all[@]}}")
  build
  for t in "${targets[@]}"; do
    # Inputs up to MERGE_MAX_BYTES (2048), then the smallest set of them that keeps every feature (edges and
    # hit counts); past 300 inputs, the smallest that keeps every edge. Small corpora replay fast in CI.
    staged=$(mktemp -d)
    find "fuzz/corpus/$t" "$scratch/$t" -type f -size -"$((${MERGE_MAX_BYTES:-2048} + 1))"c \
      -exec cp {} "$staged/" \; 2>/dev/null || true
    fresh=$(mktemp -d)
    "$bin/$t" -set_cover_merge=1 -timeout=10 -rss_limit_mb=4096 "$fresh" "$staged" 2>&1 | tail -n 1
    if [ "$(ls "$fresh" | wc -l)" -gt 300 ]; then
      rm -rf "$fresh" && fresh=$(mktemp -d)
      "$bin/$t" -set_cover_merge=1 -use_counters=0 -timeout=10 -rss_limit_mb=4096 "$fresh" "$staged" 2>&1 | tail -n 1
    fi
    rm -rf "$staged"
    rm -rf "fuzz/corpus/$t" && mkdir -p "fuzz/corpus/$t"
    # Named by content, as libFuzzer names them.
    for f in "$fresh"/*; do [ -e "$f" ] && cp "$f" "fuzz/corpus/$t/"; done
    rm -rf "$fresh"
    echo "$t: $(ls "fuzz/corpus/$t" | wc -l) inputs kept"
  done
  exit 0
fi

default_seconds=60
[ -n "${RELIABILITY_LONG:-}" ] && default_seconds=1200
seconds="${1:-$default_seconds}"
shift || true
targets=("${@:-${all[@]}}")
jobs="${JOBS:-2}"
build
mkdir -p "$scratch"
run_one() {
  local t=$1
  mkdir -p "$scratch/$t" "fuzz/corpus/$t" "fuzz/artifacts/$t"
  # -timeout: an input that takes 10 s breaks the render budget or a bounded loop; -rss_limit_mb: likewise memory.
  "$bin/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=16384 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" "$scratch/$t" "fuzz/corpus/$t" >"$scratch/$t.log" 2>&1 || true
  local execs
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$t.log" | grep -o '[0-9]*$' || echo '?')
  echo "$t: $execs execs in ${seconds}s, $(ls "$scratch/$t" | wc -l) new inputs, $(ls "fuzz/artifacts/$t" | wc -l) artifacts (log: $scratch/$t.log)"
}
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait
